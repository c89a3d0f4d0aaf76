//! `dirascope score` at the command line: usage errors that need no model.

use assert_cmd::Command;
use predicates::str::contains;

#[test]
fn png_without_mpp_exits_2_and_says_pass_mpp() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("export.png");
    image::RgbImage::from_pixel(64, 64, image::Rgb([200, 100, 150]))
        .save(&png)
        .unwrap();
    Command::cargo_bin("dirascope")
        .unwrap()
        .args(["score", png.to_str().unwrap(), "--out"])
        .arg(dir.path().join("out"))
        .assert()
        .code(2)
        .stderr(contains("--mpp"));
}

#[test]
fn bad_min_tissue_is_usage() {
    let dir = tempfile::tempdir().unwrap();
    Command::cargo_bin("dirascope")
        .unwrap()
        .args(["score", "x.svs", "--min-tissue", "2", "--out"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(contains("--min-tissue"));
}

#[test]
fn shards_split_a_batch_without_overlap() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    for k in 1..=2 {
        let out = dir.path().join(format!("shard{k}"));
        Command::cargo_bin("dirascope")
            .unwrap()
            .args(["score", root.join("fixtures/phantoms").to_str().unwrap()])
            .args(["--shard", &format!("{k}/2"), "--out"])
            .arg(&out)
            .assert()
            .success();
        let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
        seen.extend(
            summary
                .lines()
                .skip(1)
                .map(|l| l.split(',').next().unwrap().to_string()),
        );
    }
    seen.sort();
    assert_eq!(
        seen,
        ["dira-3", "normal-4", "psoriasis-3", "pustular-psoriasis-2"]
    );
    Command::cargo_bin("dirascope")
        .unwrap()
        .args(["score", "x.svs", "--shard", "3/2", "--out"])
        .arg(dir.path())
        .assert()
        .code(2);
}
