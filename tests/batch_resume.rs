//! A batch killed with SIGKILL at any moment and run again ends exactly like one
//! uninterrupted run (same slide folders and files, report.json equal without its
//! times, no temporary folders left); a finished batch run again reuses every
//! slide; `--force` or a changed parameter scores them again.

mod common;

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use common::{assert_same, dirascope, hidden, ids, run_json, snapshot};
use rand::{Rng, SeedableRng};

const PHANTOMS: [&str; 4] = ["dira-3", "normal-4", "psoriasis-3", "pustular-psoriasis-2"];

/// The tests here run one at a time: the kill moments are measured on an
/// uninterrupted run, which another test running beside it would slow down.
static SERIAL: Mutex<()> = Mutex::new(());

fn score(out: &Path, extra: &[&str]) -> std::process::Command {
    let mut cmd = dirascope(&["score", "fixtures/phantoms", "--threads", "2", "--out"]);
    cmd.arg(out).args(extra);
    cmd
}

/// Every visible folder of a killed run's OUT is a whole slide: its report.json
/// (written last) is there and reads back.
fn assert_only_whole_slides(out: &Path) {
    let Ok(entries) = std::fs::read_dir(out) else {
        return; // killed before OUT was made
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() && !name.starts_with('.') {
            let report = path.join("report.json");
            assert!(
                dirascope::report::json::read_report(&report).is_ok(),
                "{name}: a visible slide folder without a whole report.json"
            );
        }
    }
}

#[test]
fn killed_runs_resume_to_the_uninterrupted_outputs() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference");
    let start = Instant::now();
    let (code, json, stderr) = run_json(score(&reference, &[]));
    let duration = start.elapsed();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(ids(&json, "slides"), PHANTOMS);
    let want = snapshot(&reference);
    assert!(want.contains_key("errors.csv") && want.contains_key("dira-3/tiles.csv"));
    eprintln!("uninterrupted run: {duration:.2?}");

    // One kill in each quarter of the first 90% of the run, at a seeded random
    // moment within it (the last 10% is left as slack for a machine that got busier).
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20_260_101);
    let mut interrupted = 0;
    for quarter in 0..4 {
        let at = duration.mul_f64(0.9 * (quarter as f64 + rng.gen::<f64>()) / 4.0);
        let out = dir.path().join(format!("killed-{quarter}"));
        let mut child = score(&out, &[]).spawn().unwrap();
        std::thread::sleep(at);
        let finished_first = child.try_wait().unwrap().is_some();
        interrupted += usize::from(!finished_first);
        child.kill().unwrap(); // SIGKILL on Unix: no destructor, no cleanup runs
        child.wait().unwrap();
        assert_only_whole_slides(&out);
        let (code, json, stderr) = run_json(score(&out, &[]));
        assert_eq!(code, 0, "{stderr}");
        let reused = ids(&json, "reused");
        eprintln!(
            "killed at {at:.2?}{}: {} slides reused on resume",
            if finished_first {
                " (after it finished)"
            } else {
                ""
            },
            reused.len()
        );
        assert!(hidden(&out).is_empty(), "left over: {:?}", hidden(&out));
        assert_same(&snapshot(&out), &want, &format!("killed at {at:?}"));
    }
    assert!(
        interrupted > 0,
        "every kill came after the run had finished"
    );
}

#[test]
fn a_finished_batch_is_reused_and_force_or_new_parameters_score_again() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (code, _, stderr) = run_json(score(&out, &[]));
    assert_eq!(code, 0, "{stderr}");
    let want = snapshot(&out);

    let (code, json, stderr) = run_json(score(&out, &[]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(ids(&json, "reused"), PHANTOMS);
    assert!(stderr.contains("reused 4 of 4 slides"), "{stderr}");
    assert_same(&snapshot(&out), &want, "rerun");

    let (code, json, stderr) = run_json(score(&out, &["--force"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(ids(&json, "reused").is_empty());
    assert_same(&snapshot(&out), &want, "--force");

    let read = || dirascope::report::json::read_report(&out.join("dira-3/report.json")).unwrap();
    let at_default = read().tiles.scored;
    let (code, json, stderr) = run_json(score(&out, &["--min-tissue", "0.9"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(ids(&json, "reused").is_empty());
    let report = read();
    assert_eq!(report.audit.configuration.tiling.min_tissue, 0.9);
    assert!(
        report.tiles.scored < at_default * 3 / 4,
        "{} tiles at 0.9, {at_default} at the model's minimum",
        report.tiles.scored
    );
}
