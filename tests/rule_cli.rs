//! `dirascope recall` and `dirascope calibrate` at the command line, on the four
//! bundled phantoms scored once with the bundled model.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use assert_cmd::Command;
use predicates::prelude::*;
use predicates::str::contains;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The bundled model's folder (the binary embeds the same files).
fn bundled_model() -> PathBuf {
    PathBuf::from(dirascope::model::BUNDLED_MODEL_DIR)
}

fn dirascope() -> Command {
    Command::cargo_bin("dirascope").unwrap()
}

/// The four phantoms scored with the bundled model (once per test binary).
fn scored() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let out = dir.join("scored");
        dirascope()
            .arg("score")
            .arg(root().join("fixtures/phantoms"))
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        out
    })
}

/// A fresh copy of the scored run (recall rewrites it).
fn copy_of_run(into: &Path) -> PathBuf {
    let out = into.join("run");
    copy_tree(scored(), &out);
    out
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// The bundled model folder copied, with `edit` applied to its model.toml.
fn model_copy(into: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let dir = into.join("model");
    copy_tree(&bundled_model(), &dir);
    let toml = dir.join("model.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, edit(text)).unwrap();
    dir
}

fn report(run: &Path, id: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join(id).join("report.json")).unwrap()).unwrap()
}

fn labels(dir: &Path, classes: &[(&str, &str)]) -> PathBuf {
    let path = dir.join("labels.csv");
    let mut text = String::from("slide_id,label\n");
    for (id, label) in classes {
        text.push_str(&format!("{id},{label}\n"));
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// `dirascope calibrate` of the bundled model on the scored phantoms with `labels`.
fn calibrate(labels: &Path) -> Command {
    let mut cmd = dirascope();
    cmd.args(["calibrate", "--results"])
        .arg(scored())
        .arg("--labels")
        .arg(labels)
        .arg("--model")
        .arg(bundled_model());
    cmd
}

/// `dirascope recall RUN --model MODEL`.
fn recall(run: &Path, model: &Path) -> Command {
    let mut cmd = dirascope();
    cmd.arg("recall").arg(run).arg("--model").arg(model);
    cmd
}

const PHANTOMS: [(&str, &str); 4] = [
    ("dira-3", "dira"),
    ("normal-4", "normal"),
    ("psoriasis-3", "psoriasis"),
    ("pustular-psoriasis-2", "pustular-psoriasis"),
];

#[test]
fn recall_under_the_same_rule_changes_no_call_and_no_score() {
    let dir = tempfile::tempdir().unwrap();
    let run = copy_of_run(dir.path());
    recall(&run, &bundled_model())
        .assert()
        .success()
        .stdout(contains("recalled 4 slides").and(contains("0 calls changed")));
    for (id, _) in PHANTOMS {
        let (a, b) = (report(scored(), id), report(&run, id));
        assert_eq!(a["result"]["call"], b["result"]["call"], "{id}");
        for key in ["dira_score", "psoriasiform_score"] {
            let (x, y) = (
                a["result"][key].as_f64().unwrap(),
                b["result"][key].as_f64().unwrap(),
            );
            // tiles.csv keeps 6 decimals of each probability.
            assert!((x - y).abs() < 1e-5, "{id} {key}: {x} vs {y}");
        }
    }
    let leftovers: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn recall_under_another_rule_rewrites_reports_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let run = copy_of_run(dir.path());
    // A DIRA threshold whose no-call band holds the DIRA phantom: it is no longer called.
    let model = model_copy(dir.path(), |t| {
        t.lines()
            .map(|l| match l.split(" = ").next() {
                Some("version") => "version = \"9.9.9\"".to_string(),
                Some("dira_threshold") => "dira_threshold = 0.99".to_string(),
                Some("dira_rule") => String::new(),
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
            .replace("[rule]\n", "[rule]\ndira_rule = \"two-of-three\"\n")
    });
    recall(&run, &model)
        .assert()
        .success()
        .stdout(contains("dira-3: dira-pattern ->"));
    let r = report(&run, "dira-3");
    assert_ne!(r["result"]["call"], "dira-pattern");
    assert_eq!(r["model"]["version"], "9.9.9");
    assert_eq!(r["parameters"]["aggregate"]["dira_rule"], "two-of-three");
    assert_eq!(r["parameters"]["aggregate"]["dira_threshold"], 0.99);
    assert!(r.get("note").is_none());
    let summary = std::fs::read_to_string(run.join("summary.csv")).unwrap();
    let row = summary.lines().find(|l| l.starts_with("dira-3,")).unwrap();
    assert!(!row.starts_with("dira-3,dira-pattern"), "{row}");
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains("9.9.9"));
}

#[test]
fn recall_refuses_a_model_with_other_weights() {
    let dir = tempfile::tempdir().unwrap();
    let run = copy_of_run(dir.path());
    let before = std::fs::read(run.join("dira-3/report.json")).unwrap();
    recall(&run, &root().join("fixtures/model/tiny-random-64"))
        .assert()
        .code(4)
        .stderr(contains("sha256"));
    assert_eq!(
        std::fs::read(run.join("dira-3/report.json")).unwrap(),
        before
    );
    recall(dir.path(), &bundled_model())
        .assert()
        .code(2)
        .stderr(contains("summary.csv"));
}

#[test]
fn calibrate_writes_a_new_model_folder_and_says_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let labels = labels(dir.path(), &PHANTOMS);
    let new = dir.path().join("new-model");
    calibrate(&labels)
        .arg("--out")
        .arg(&new)
        .assert()
        .success()
        .stdout(contains("version").and(contains("rule.dira_threshold")));
    let old_onnx = std::fs::read(bundled_model().join("model.onnx")).unwrap();
    assert_eq!(std::fs::read(new.join("model.onnx")).unwrap(), old_onnx);
    let toml = std::fs::read_to_string(new.join("model.toml")).unwrap();
    let bundled = std::fs::read_to_string(bundled_model().join("model.toml")).unwrap();
    let version = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("version = "))
            .unwrap()
            .to_string()
    };
    assert_ne!(version(&toml), version(&bundled), "{toml}");
    // The bundled [rule] notes describe its own thresholds: the copy says whose they are.
    let stamp = toml
        .lines()
        .skip_while(|l| *l != "[rule]")
        .take(3)
        .collect::<Vec<_>>();
    assert!(
        stamp[1].starts_with("# Thresholds fitted by dirascope calibrate on 4 slides"),
        "{toml}"
    );
    let source_version = version(&bundled).replace("version = ", "").replace('"', "");
    assert!(
        stamp[2].contains(&format!(
            "predate this calibration (source version {source_version})"
        )),
        "{toml}"
    );
    for f in [
        "calibration.md",
        "scores.csv",
        "dira_scores.svg",
        "psoriasiform_scores.svg",
    ] {
        assert!(new.join("calibration").join(f).is_file(), "{f}");
    }
    let scores = std::fs::read_to_string(new.join("calibration/scores.csv")).unwrap();
    assert_eq!(scores.lines().count(), 5);
    // Each of the four phantoms keeps its call under the refitted rule.
    for line in scores.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        let expected = match cols[1] {
            "dira" => "dira-pattern",
            "normal" => "no-pustular-pattern",
            _ => "psoriasiform-pattern",
        };
        assert_eq!(cols[cols.len() - 1], expected, "{line}");
    }
    // The new folder is a model folder recall accepts (same ONNX).
    let run = copy_of_run(dir.path());
    recall(&run, &new).assert().success();
    // A second calibrate into the same folder is refused.
    calibrate(&labels)
        .arg("--out")
        .arg(&new)
        .assert()
        .code(2)
        .stderr(contains("not empty"));
}

#[test]
fn calibrate_names_a_missing_class_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let labels = labels(dir.path(), &PHANTOMS[..3]);
    calibrate(&labels)
        .arg("--out")
        .arg(dir.path().join("new"))
        .assert()
        .code(2)
        .stderr(contains("none labelled pustular-psoriasis"));
    assert!(!dir.path().join("new").exists());
}

/// A rule fitted on overlapping tiles travels with its overlap: calibrate on a run
/// scored with another `--overlap` than the bundled folder's (0 px) writes it into
/// the new folder, `score` with that folder tiles with it by default, and `recall`
/// refuses a run scored with another overlap (its tiles are other tiles), naming
/// the field.
#[test]
fn a_rule_fitted_on_overlapping_tiles_keeps_its_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run-overlap");
    dirascope()
        .arg("score")
        .arg(root().join("fixtures/phantoms"))
        .args(["--overlap", "56", "--out"])
        .arg(&run)
        .assert()
        .success()
        .stderr(contains(
            "warning: tiles overlap by 56 px, the model's rule was fitted at 0 px",
        ));
    // Every report of the off-rule run says so too.
    let warned = |r: &serde_json::Value| {
        r["audit"]["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("off the rule's calibration"))
    };
    for id in PHANTOMS.iter().map(|(id, _)| id) {
        assert!(warned(&report(&run, id)), "{id}");
    }
    // And the run's index page, once, on top.
    let index = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert_eq!(
        index.matches("fitted at 0 px").count(),
        1,
        "the warning once on the index"
    );
    let labels = labels(dir.path(), &PHANTOMS);
    let new = dir.path().join("fitted-at-56");
    dirascope()
        .args(["calibrate", "--results"])
        .arg(&run)
        .arg("--labels")
        .arg(&labels)
        .arg("--model")
        .arg(bundled_model())
        .arg("--out")
        .arg(&new)
        .assert()
        .success()
        .stdout(contains("aggregation.overlap_px"));
    let toml = std::fs::read_to_string(new.join("model.toml")).unwrap();
    assert!(toml.contains("overlap_px = 56"), "{toml}");

    // The bundled run (at the bundled 0 px) under the new folder: refused,
    // nothing rewritten.
    let plain = copy_of_run(dir.path());
    let before = std::fs::read(plain.join("dira-3/report.json")).unwrap();
    recall(&plain, &new)
        .assert()
        .code(4)
        .stderr(contains("overlap_px").and(contains("0 px there, 56 px here")));
    assert_eq!(
        std::fs::read(plain.join("dira-3/report.json")).unwrap(),
        before
    );
    // The overlapping run under its own folder is accepted.
    recall(&run, &new).assert().success();
    // Scoring with the new folder tiles at its overlap without being told.
    let again = dir.path().join("again");
    dirascope()
        .arg("score")
        .arg(root().join("fixtures/phantoms/dira-3.tiff"))
        .arg("--model")
        .arg(&new)
        .arg("--out")
        .arg(&again)
        .assert()
        .success();
    let r = report(&again, "dira-3");
    assert_eq!(
        r["audit"]["configuration"]["tiling"]["overlap_px"], 56,
        "{r}"
    );
    // At the overlap its rule was fitted at: no warning.
    assert!(!warned(&r), "{r}");
    let index = std::fs::read_to_string(again.join("report.html")).unwrap();
    assert!(!index.contains("off the rule's calibration"), "{index}");
}
