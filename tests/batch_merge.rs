//! `dirascope merge` joins shard outputs into what one run over the same slides
//! writes: summary.csv, errors.csv and report.html byte for byte, the same slide
//! folders, report.json equal without its times. It refuses duplicate slide ids,
//! folders that are not outputs, and an OUT that is one of its inputs.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_same, dirascope, run_json, snapshot};

/// The batch every test here scores: the four phantoms and one file that fails.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let notes = dir.join("notes.svs");
    std::fs::write(&notes, "not a slide").unwrap();
    vec![PathBuf::from("fixtures/phantoms"), notes]
}

fn score(inputs: &[PathBuf], out: &Path, extra: &[&str]) -> i32 {
    let mut cmd = dirascope(&["score", "--threads", "2"]);
    cmd.args(inputs).arg("--out").arg(out).args(extra);
    let (code, _, stderr) = run_json(cmd);
    assert!(code == 0 || code == 3, "score: exit {code}: {stderr}");
    code
}

fn merge(dirs: &[PathBuf], out: &Path) -> (i32, String) {
    let mut cmd = dirascope(&["merge"]);
    cmd.args(dirs).arg("--out").arg(out);
    let output = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code().unwrap_or(-1), stderr)
}

#[test]
fn merged_shards_equal_one_run_and_bad_merges_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let slides = inputs(dir.path());
    let single = dir.path().join("single");
    assert_eq!(score(&slides, &single, &[]), 3);
    let shards: Vec<PathBuf> = (1..=2).map(|k| dir.path().join(format!("s{k}"))).collect();
    for (k, shard) in shards.iter().enumerate() {
        score(&slides, shard, &["--shard", &format!("{}/2", k + 1)]);
    }
    let merged = dir.path().join("merged");
    let (code, stderr) = merge(&shards, &merged);
    assert_eq!(code, 3, "merge: {stderr}");
    assert_same(&snapshot(&merged), &snapshot(&single), "merged shards");

    let (code, stderr) = merge(
        &[shards[0].clone(), shards[0].clone()],
        &dir.path().join("x"),
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("unique") && stderr.contains("duplicated"),
        "{stderr}"
    );
    let (code, stderr) = merge(&[PathBuf::from("fixtures")], &dir.path().join("y"));
    assert_eq!(code, 2);
    assert!(stderr.contains("not a dirascope output"), "{stderr}");
    let (code, stderr) = merge(&shards, &shards[1]);
    assert_eq!(code, 2);
    assert!(stderr.contains("one of the inputs"), "{stderr}");
}

/// The workflow's case: `dirascope score ONE_SLIDE --out DIRi` per job, then
/// `dirascope merge DIR1 ... --out OUT`. A DIRi holds one slide folder, or (for the
/// slide that failed) no folder and one errors row.
#[test]
fn one_slide_per_job_outputs_merge_like_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut slides: Vec<PathBuf> = ["dira-3", "normal-4"]
        .iter()
        .map(|id| PathBuf::from(format!("fixtures/phantoms/{id}.tiff")))
        .collect();
    slides.extend(inputs(dir.path()).into_iter().skip(1));
    let single = dir.path().join("single");
    assert_eq!(score(&slides, &single, &[]), 3);
    let jobs: Vec<PathBuf> = slides
        .iter()
        .enumerate()
        .map(|(i, slide)| {
            let out = dir.path().join(format!("job{i}"));
            score(std::slice::from_ref(slide), &out, &[]);
            out
        })
        .collect();
    assert!(!jobs[2].join("notes").exists() && jobs[2].join("errors.csv").is_file());
    let merged = dir.path().join("merged");
    let (code, stderr) = merge(&jobs, &merged);
    assert_eq!(code, 3, "merge: {stderr}");
    assert_same(&snapshot(&merged), &snapshot(&single), "merged jobs");

    // Without the failed job the merge is clean: exit 0, an errors.csv of one header.
    let clean = dir.path().join("clean");
    let (code, stderr) = merge(&jobs[..2], &clean);
    assert_eq!(code, 0, "merge: {stderr}");
    let errors = std::fs::read_to_string(clean.join("errors.csv")).unwrap();
    assert_eq!(errors, "slide_id,path,stage,kind,message\n");
}
