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
