//! Helpers the batch CLI tests share: running `dirascope` from the checkout, and a
//! snapshot of an OUT folder that two runs on the same inputs must agree on.
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sha2::Digest;

pub mod restain;

/// `../shared/fixtures/real` from the crate root, or `$DIRASCOPE_REAL_FIXTURES` (for
/// git worktrees that do not sit beside `shared/`), when it holds `marker`;
/// otherwise a printed reason to skip (a user's fresh clone has no `../shared`).
pub fn real_dir(marker: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("DIRASCOPE_REAL_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/fixtures/real"));
    if dir.join(marker).exists() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: {} has no {marker} (real slide fixtures live beside the project, not in it)",
            dir.display()
        );
        None
    }
}

/// The real H&E fixtures in `real_dir`, each with the `--mpp` it is scored at
/// (the public-domain JPEG has none in its file; 0.75 is its estimate).
pub const REAL_H_AND_E: [(&str, Option<f64>); 2] = [
    ("CMU-1-Small-Region.svs", None),
    ("skin-normal-10x-public-domain.jpg", Some(0.75)),
];

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `dirascope ARGS`, run in the checkout so `fixtures/...` paths are the same in
/// every run (they are echoed into summary.csv and report.json).
pub fn dirascope(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dirascope"));
    cmd.current_dir(root())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// `dirascope score SLIDE [--model MODEL] [--mpp MPP] EXTRA... --out OUT`, which
/// must succeed; returns the slide's report.json.
pub fn score_report(
    slide: &Path,
    model: Option<&Path>,
    mpp: Option<f64>,
    extra: &[&str],
    out: &Path,
) -> serde_json::Value {
    let mut cmd = dirascope(&["score"]);
    cmd.arg(slide).arg("--out").arg(out).args(extra);
    if let Some(model) = model {
        cmd.arg("--model").arg(model);
    }
    if let Some(mpp) = mpp {
        cmd.arg("--mpp").arg(mpp.to_string());
    }
    let output = cmd.output().expect("run dirascope");
    assert!(
        output.status.success(),
        "{}: {}",
        slide.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let id = slide.file_stem().unwrap().to_string_lossy().to_string();
    slide_report(out, &id)
}

/// OUT/ID/report.json as JSON.
pub fn slide_report(out: &Path, id: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join(id).join("report.json")).expect("report.json");
    serde_json::from_str(&text).expect("json")
}

/// Runs to the end; returns the exit code, the `--json` summary and stderr.
pub fn run_json(mut cmd: Command) -> (i32, serde_json::Value, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.arg("--json").output().unwrap();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    let json = serde_json::from_slice(&stdout)
        .unwrap_or_else(|e| panic!("no JSON on stdout ({e}); stderr: {stderr}"));
    (status.code().unwrap_or(-1), json, stderr)
}

/// The ids `--json` lists under `key` ("reused", or "slides"/"errors" by slide_id).
pub fn ids(json: &serde_json::Value, key: &str) -> Vec<String> {
    let mut ids: Vec<String> = json[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().or(v["slide_id"].as_str()).unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// Every file under `out` by relative path: report.json as JSON without timings and
/// audit times (read back with `read_report`), anything else as its sha256.
pub fn snapshot(out: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    walk(out, out, &mut files);
    files
}

fn walk(base: &Path, dir: &Path, files: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = path.strip_prefix(base).unwrap().display().to_string();
        if path.is_dir() {
            walk(base, &path, files);
        } else if path.file_name().is_some_and(|n| n == "report.json") {
            let report = dirascope::report::json::read_report(&path).unwrap();
            let masked = dirascope::report::json::to_json_without_times(&report).unwrap();
            files.insert(rel, masked);
        } else {
            let digest = sha2::Sha256::digest(std::fs::read(&path).unwrap());
            files.insert(rel, hex::encode(digest));
        }
    }
}

/// Hidden entries of `out` (slides or files in transit).
pub fn hidden(out: &Path) -> Vec<String> {
    std::fs::read_dir(out)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts two snapshots are equal, naming the first files that differ.
pub fn assert_same(got: &BTreeMap<String, String>, want: &BTreeMap<String, String>, what: &str) {
    let differ: Vec<&String> = want
        .keys()
        .chain(got.keys())
        .filter(|k| got.get(*k) != want.get(*k))
        .take(5)
        .collect();
    assert!(differ.is_empty(), "{what}: outputs differ in {differ:?}");
}

/// Runs `cmd` (stdout and stderr to files, unless the caller set stdout) and fails
/// the test, killing the child, when it is still running after `limit`: a command
/// that hangs is a failing test, never a hanging one.
pub fn output_within(mut cmd: Command, limit: std::time::Duration) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    cmd.stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    wait_within(cmd, limit, &out, &err)
}

/// As [`output_within`] with stdout left as the caller set it (a closed pipe,
/// /dev/full); the returned stdout is empty.
pub fn status_within(mut cmd: Command, limit: std::time::Duration) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let err = dir.path().join("stderr");
    cmd.stderr(std::fs::File::create(&err).unwrap());
    wait_within(cmd, limit, &dir.path().join("none"), &err)
}

fn wait_within(mut cmd: Command, limit: std::time::Duration, out: &Path, err: &Path) -> Output {
    let start = std::time::Instant::now();
    let mut child = cmd.spawn().unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} still running after {limit:?} (hung); stderr: {}",
                std::fs::read_to_string(err).unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Output {
        status,
        stdout: std::fs::read(out).unwrap_or_default(),
        stderr: std::fs::read(err).unwrap_or_default(),
    }
}
