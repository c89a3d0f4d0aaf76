//! The out-of-distribution gate end to end: a model folder whose graph has an
//! `ood` output (the random-weight fixture) scores a phantom; with a threshold every
//! tile exceeds, the call is `out-of-distribution` with its reason, shown in
//! report.json, summary.csv, tiles.csv and the HTML page; with one no tile exceeds,
//! the pattern rule calls as before and the measurement is still reported.

use std::fs;
use std::path::{Path, PathBuf};

mod common;

fn ood_model(threshold: f64, max_fraction: f64) -> tempfile::TempDir {
    let src = common::root().join("fixtures/model/tiny-random-64-ood");
    let tmp = tempfile::tempdir().expect("temp dir");
    for entry in fs::read_dir(&src).expect("model dir") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_file() {
            fs::copy(entry.path(), tmp.path().join(entry.file_name())).expect("copy");
        }
    }
    let manifest = tmp.path().join("model.toml");
    let text = fs::read_to_string(&manifest).expect("manifest");
    let text = text
        .replace("threshold = 1.0000", &format!("threshold = {threshold}"))
        .replace(
            "max_fraction = 0.5",
            &format!("max_fraction = {max_fraction}"),
        );
    fs::write(&manifest, text).expect("write manifest");
    tmp
}

fn score(model: &Path, out: &Path) -> serde_json::Value {
    let slide = "fixtures/phantoms/normal-4.tiff";
    let status = common::dirascope(&["score", slide, "--model"])
        .arg(model)
        .arg("--out")
        .arg(out)
        .status()
        .expect("run");
    assert!(status.success(), "score failed");
    let text = fs::read_to_string(out.join("normal-4/report.json")).expect("report");
    serde_json::from_str(&text).expect("json")
}

fn out_dir(tmp: &tempfile::TempDir, name: &str) -> PathBuf {
    tmp.path().join(name)
}

#[test]
fn tiles_unlike_the_training_data_make_the_call_out_of_distribution() {
    let work = tempfile::tempdir().expect("temp dir");
    let model = ood_model(0.0, 0.25);
    let out = out_dir(&work, "all-over");
    let report = score(model.path(), &out);
    let result = &report["result"];
    assert_eq!(result["call"], "out-of-distribution");
    let reason = result["call_reason"].as_str().unwrap();
    assert!(
        reason.starts_with("100% of tissue tiles are unlike the training data"),
        "{reason}"
    );
    assert_eq!(result["ood"]["out_of_distribution"], true);
    assert_eq!(result["ood"]["fraction"], 1.0);
    assert_eq!(
        report["parameters"]["aggregate"]["ood"]["max_fraction"],
        0.25
    );

    let tiles = fs::read_to_string(out.join("normal-4/tiles.csv")).expect("tiles.csv");
    let header = tiles.lines().next().unwrap();
    assert!(header.ends_with(",psoriasiform,ood"), "{header}");
    let rows = tiles.lines().skip(1).count();
    assert!(rows > 0);
    for line in tiles.lines().skip(1) {
        let d: f64 = line.rsplit(',').next().unwrap().parse().expect("distance");
        assert!(d > 0.0 && d.is_finite(), "{line}");
    }
    let summary = fs::read_to_string(out.join("summary.csv")).expect("summary.csv");
    let mut lines = summary.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("slide_id,call,ood_fraction,dira_score"));
    assert!(lines
        .next()
        .unwrap()
        .starts_with("normal-4,out-of-distribution,1.000000,"));
    let index = fs::read_to_string(out.join("report.html")).expect("report.html");
    assert!(index.contains("unlike the model's training data; it abstained on them"));
    let page = fs::read_to_string(out.join("normal-4/report.html")).expect("slide page");
    assert!(page.contains("Out-of-distribution check"), "slide page");
}

#[test]
fn a_slide_under_the_limit_keeps_its_pattern_call_and_its_measurement() {
    let work = tempfile::tempdir().expect("temp dir");
    let model = ood_model(1.0e6, 0.25);
    let report = score(model.path(), &out_dir(&work, "none-over"));
    let result = &report["result"];
    assert_ne!(result["call"], "out-of-distribution");
    assert_eq!(result["ood"]["tiles_over"], 0);
    assert_eq!(result["ood"]["out_of_distribution"], false);
    assert!(result["ood"]["median_distance"].as_f64().unwrap() > 0.0);
    assert!(result.get("other_reasons").is_none());
}
