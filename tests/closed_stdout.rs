//! Issue 14, defect 1: a closed stdout pipe (`| head`, `| true`) or a full disk
//! (`> /dev/full`) must never panic. `inspect`, `score --list` and `model check` end
//! quietly with exit 0 on a closed pipe; `score`, `merge`, `recall` and `synth` finish their
//! work and exit by it; a full disk is an error with exit 1.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{dirascope, status_within};

const SLIDE: &str = "fixtures/phantoms/dira-3.tiff";
const TINY_MODEL: &str = "fixtures/model/tiny-random-64";
const LIMIT: Duration = Duration::from_secs(120);

/// Runs `cmd` with stdout a pipe whose reading end is closed before it starts.
fn with_closed_pipe(mut cmd: Command) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cmd.stdout(writer);
    status_within(cmd, LIMIT)
}

fn with_full_disk(mut cmd: Command) -> Output {
    cmd.stdout(std::fs::File::create("/dev/full").unwrap());
    status_within(cmd, LIMIT)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit `code`, and no panic on stderr.
fn assert_exit(o: &Output, code: i32, what: &str) {
    let err = stderr(o);
    assert!(!err.contains("panicked"), "{what}: panicked: {err}");
    assert_eq!(o.status.code(), Some(code), "{what}: stderr: {err}");
}

fn score(out: &Path, extra: &[&str]) -> Command {
    let mut cmd = dirascope(&["score", SLIDE, "--model", TINY_MODEL, "--out"]);
    cmd.arg(out).args(extra);
    cmd
}

#[test]
fn closed_pipe_ends_inspect_list_and_model_check_quietly() {
    let dir = tempfile::tempdir().unwrap();
    for (what, cmd) in [
        ("inspect --json", dirascope(&["inspect", SLIDE, "--json"])),
        ("inspect", dirascope(&["inspect", SLIDE])),
        ("score --list", score(&dir.path().join("out"), &["--list"])),
        ("model check", dirascope(&["model", "check", TINY_MODEL])),
    ] {
        let o = with_closed_pipe(cmd);
        assert_exit(&o, 0, what);
        assert_eq!(stderr(&o), "", "{what} ends quietly");
    }
    assert!(!dir.path().join("out").exists(), "--list writes nothing");
}

#[test]
fn closed_pipe_stops_only_the_printing_of_score_merge_and_synth() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    assert_exit(&with_closed_pipe(score(&out, &["--json"])), 0, "score");
    assert!(out.join("dira-3/report.json").is_file());
    assert!(out.join("summary.csv").is_file());

    let merged = dir.path().join("merged");
    let mut merge = dirascope(&["merge", "--json", "--out"]);
    merge.arg(&merged).arg(&out);
    assert_exit(&with_closed_pipe(merge), 0, "merge");
    assert!(merged.join("dira-3/report.json").is_file());

    // recall prints its changed calls; it panicked on a closed pipe before it printed
    // through the one writer.
    let mut recall = dirascope(&["recall"]);
    recall.arg(&out).args(["--model", TINY_MODEL]);
    assert_exit(&with_closed_pipe(recall), 0, "recall");
    assert!(out.join("dira-3/report.json").is_file());

    let phantoms = dir.path().join("phantoms");
    let mut synth = dirascope(&["synth", "--class", "normal", "--seed", "5"]);
    synth.args(["--width-mm", "1", "--height-mm", "1", "--out"]);
    synth.arg(&phantoms);
    assert_exit(&with_closed_pipe(synth), 0, "synth");
    assert!(phantoms.join("normal-5.tiff").is_file());
}

#[test]
fn a_full_disk_is_an_error_with_exit_1_after_the_work() {
    let o = with_full_disk(dirascope(&["inspect", SLIDE, "--json"]));
    assert_exit(&o, 1, "inspect > /dev/full");
    assert!(stderr(&o).contains("standard output"), "{}", stderr(&o));

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = with_full_disk(score(&out, &["--json"]));
    assert_exit(&o, 1, "score > /dev/full");
    assert!(
        out.join("dira-3/report.json").is_file(),
        "the work completes"
    );
    assert!(out.join("summary.csv").is_file());
}
