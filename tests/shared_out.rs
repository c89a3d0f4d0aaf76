//! Issue 14, defects 3 and 5: one OUT, several runs, and folders a run cannot write.
//!
//! - A run holds OUT through a lock file (pid and host); a second run is refused with
//!   exit 1 while it is held, a stale lock (its process gone) is taken over with a
//!   warning, and two runs started together never leave a damaged OUT.
//! - A rerun reuses a slide folder only when it is complete: a folder missing or
//!   altering one of the files its report.json lists is scored again.
//! - An earlier slide folder that cannot be written never leaves an error row beside a
//!   result, nor a hidden `.X.old-PID` folder.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{dirascope, hidden, ids, output_within, root};

const TINY_MODEL: &str = "fixtures/model/tiny-random-64";
const LOCK: &str = ".dirascope.lock";
const LIMIT: Duration = Duration::from_secs(120);

fn score(inputs: &[&Path], out: &Path, extra: &[&str]) -> Command {
    let mut cmd = dirascope(&["score", "--model", TINY_MODEL, "--out"]);
    cmd.arg(out).args(inputs).args(extra);
    cmd
}

fn run(cmd: Command) -> (i32, String, String) {
    let o: Output = output_within(cmd, LIMIT);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

fn slide() -> PathBuf {
    root().join("fixtures/phantoms/normal-4.tiff")
}

#[test]
fn a_second_run_into_a_held_out_is_refused_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let lock = std::fs::File::create(out.join(LOCK)).unwrap();
    std::io::Write::write_all(
        &mut &lock,
        format!("{} {}\n", std::process::id(), host()).as_bytes(),
    )
    .unwrap();
    lock.try_lock().unwrap();
    let (code, _, err) = run(score(&[&slide()], &out, &[]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(LOCK), "{err}");
    assert!(err.contains(&std::process::id().to_string()), "{err}");
    assert!(
        !out.join("normal-4").exists(),
        "the refused run wrote a slide"
    );
    assert!(!out.join("summary.csv").exists());
    let input = dir.path().join("input");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(
        input.join("errors.csv"),
        "slide_id,path,stage,kind,message\n",
    )
    .unwrap();
    let mut merge = dirascope(&["merge", "--out"]);
    merge.arg(&out).arg(&input);
    let (code, _, err) = run(merge);
    assert_eq!(code, 1, "merge into a held OUT: {err}");
    drop(lock);
}

#[test]
fn a_stale_lock_is_taken_over_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    std::fs::write(out.join(LOCK), format!("{dead} {}\n", host())).unwrap();
    let (code, _, err) = run(score(&[&slide()], &out, &[]));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("stale") && err.contains(&dead.to_string()),
        "{err}"
    );
    assert!(out.join("normal-4/report.json").is_file());
    assert!(!out.join(LOCK).exists(), "the lock outlived its run");
}

/// Every slide summary.csv lists has a whole folder, and nothing hidden is left.
fn assert_consistent(out: &Path) {
    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    for line in summary.lines().skip(1) {
        let id = line.split(',').next().unwrap();
        for file in ["report.json", "tiles.csv", "tiles.geojson", "thumbnail.png"] {
            assert!(out.join(id).join(file).is_file(), "{id}/{file} missing");
        }
    }
    assert!(hidden(out).is_empty(), "left: {:?}", hidden(out));
}

#[test]
fn a_run_started_while_another_scores_into_out_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let phantoms = root().join("fixtures/phantoms");
    let mut first = score(&[&phantoms], &out, &["--force"]);
    first.stdout(std::process::Stdio::null());
    first.stderr(std::process::Stdio::piped());
    let first = first.spawn().unwrap();
    // Wait until the first run is scoring its first slide (a staged folder exists).
    let start = std::time::Instant::now();
    while !hidden(&out).iter().any(|n| n.contains(".partial-")) {
        assert!(
            start.elapsed() < LIMIT,
            "the first run never started a slide"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let (code, _, err) = run(score(&[&phantoms], &out, &["--force"]));
    assert_eq!(code, 1, "a second run while the first scores: {err}");
    assert!(err.contains(LOCK) && err.contains("in use"), "{err}");
    let o = first.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "the first run: {err}");
    assert_consistent(&out);
    let (code, json, err) = common::run_json(score(&[&phantoms], &out, &[]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(ids(&json, "reused").len(), 4, "{err}");
}

#[test]
fn a_damaged_slide_folder_is_scored_again_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (code, _, err) = run(score(&[&slide()], &out, &[]));
    assert_eq!(code, 0, "{err}");
    let tiles = out.join("normal-4/tiles.csv");
    let want = std::fs::read(&tiles).unwrap();

    std::fs::remove_file(&tiles).unwrap();
    let (code, json, err) = common::run_json(score(&[&slide()], &out, &[]));
    assert_eq!(code, 0, "{err}");
    assert!(
        ids(&json, "reused").is_empty(),
        "a folder without tiles.csv was reused"
    );
    assert_eq!(std::fs::read(&tiles).unwrap(), want);

    // An altered file (same name, other bytes) is damage too.
    let heatmap = out.join("normal-4/thumbnail.png");
    let mut bytes = std::fs::read(&heatmap).unwrap();
    bytes.push(0);
    std::fs::write(&heatmap, bytes).unwrap();
    let (_, json, err) = common::run_json(score(&[&slide()], &out, &[]));
    assert!(
        ids(&json, "reused").is_empty(),
        "an altered folder was reused: {err}"
    );
    let (_, json, _) = common::run_json(score(&[&slide()], &out, &[]));
    assert_eq!(
        ids(&json, "reused"),
        ["normal-4"],
        "a whole folder is reused"
    );
}

/// `cmd` as an unprivileged user when the test runs as root (root ignores the
/// permissions these tests rely on), as the current user otherwise.
fn unprivileged(mut cmd: Command, dir: &Path) -> Command {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let root =
        std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
    if root {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        cmd.uid(65534).gid(65534);
    }
    cmd
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn an_unwritable_earlier_folder_never_leaves_an_error_row_beside_a_result() {
    let dir = tempfile::tempdir().unwrap();
    // The test runs dirascope as an unprivileged user; a checkout under a private
    // folder (mktemp -d is 0700) keeps that user from the binary and the model.
    let probe = unprivileged(dirascope(&["model", "check", TINY_MODEL]), dir.path()).output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!(
            "skipped: an unprivileged user cannot run this checkout's dirascope on its model \
             ({probe:?}); move the checkout where others can read it to run this test"
        );
        return;
    }
    let out = dir.path().join("out");
    let copy = dir.path().join("s.tiff");
    std::fs::copy(slide(), &copy).unwrap();
    set_mode(&copy, 0o666);
    let first = unprivileged(score(&[&copy], &out, &[]), dir.path());
    let (code, _, err) = run(first);
    assert_eq!(code, 0, "{err}");

    // Scored again over a folder whose files cannot be deleted: the slide is scored.
    set_mode(&out.join("s"), 0o555);
    let again = unprivileged(score(&[&copy], &out, &["--force"]), dir.path());
    let (code, _, err) = run(again);
    assert_eq!(code, 0, "{err}");
    assert!(out.join("s/report.json").is_file());
    let errors = std::fs::read_to_string(out.join("errors.csv")).unwrap();
    assert_eq!(errors.lines().count(), 1, "{errors}");
    assert!(hidden(&out).is_empty(), "left: {:?}", hidden(&out));

    // The slide now fails over such a folder: an error row and no folder.
    set_mode(&out.join("s"), 0o555);
    std::fs::write(&copy, "no longer a slide").unwrap();
    let broken = unprivileged(score(&[&copy], &out, &[]), dir.path());
    let (code, _, err) = run(broken);
    assert_eq!(code, 3, "{err}");
    assert!(!out.join("s").exists(), "a result beside its error row");
    let errors = std::fs::read_to_string(out.join("errors.csv")).unwrap();
    assert!(errors.contains("\ns,"), "{errors}");
    assert!(hidden(&out).is_empty(), "left: {:?}", hidden(&out));
}
