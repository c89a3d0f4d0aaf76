//! `dirascope inspect`: readable output, JSON fields, and one-line errors that name
//! the file and the reason for files that are not slides.

use assert_cmd::Command;
use std::path::Path;

fn dirascope() -> Command {
    Command::cargo_bin("dirascope").unwrap()
}

fn one_line_error(args: &[&str], must_contain: &[&str]) {
    let out = dirascope().args(args).output().unwrap();
    assert!(!out.status.success(), "{args:?} succeeded");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line: {stderr}"
    );
    for m in must_contain {
        assert!(stderr.contains(m), "{args:?}: '{m}' not in: {stderr}");
    }
}

#[test]
fn bad_files_give_one_line_errors_naming_file_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.svs");
    one_line_error(
        &["inspect", missing.to_str().unwrap()],
        &["missing.svs", "No such file"],
    );

    let empty = dir.path().join("empty.svs");
    std::fs::write(&empty, b"").unwrap();
    one_line_error(
        &["inspect", empty.to_str().unwrap()],
        &["empty.svs", "empty"],
    );

    let text = dir.path().join("notes.svs");
    std::fs::write(&text, b"this is a text file, not a slide\n").unwrap();
    one_line_error(
        &["inspect", text.to_str().unwrap()],
        &["notes.svs", "unknown file signature"],
    );

    let real = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/real/CMU-1-Small-Region.svs");
    match std::fs::read(&real) {
        Ok(bytes) => {
            let truncated = dir.path().join("truncated.svs");
            std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
            one_line_error(
                &["inspect", truncated.to_str().unwrap()],
                &["truncated.svs", "truncated"],
            );
        }
        Err(_) => eprintln!(
            "skipped the truncated-SVS case: {} is absent",
            real.display()
        ),
    }
}

#[test]
fn bad_mpp_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("a.png");
    image::RgbImage::new(4, 4).save(&png).unwrap();
    dirascope()
        .args(["inspect", png.to_str().unwrap(), "--mpp", "-1"])
        .assert()
        .code(2);
}

#[test]
fn json_output_has_the_documented_fields() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("export.png");
    image::RgbImage::from_pixel(40, 30, image::Rgb([200, 100, 150]))
        .save(&png)
        .unwrap();
    let thumb = dir.path().join("thumb.png");
    let out = dirascope()
        .args([
            "inspect",
            png.to_str().unwrap(),
            "--json",
            "--mpp",
            "0.5",
            "--thumbnail",
            thumb.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in [
        "format",
        "vendor",
        "width",
        "height",
        "levels",
        "mpp_x",
        "mpp_y",
        "mpp_source",
        "objective_power",
        "associated",
    ] {
        assert!(v.get(field).is_some(), "missing {field} in {v}");
    }
    assert_eq!(v["format"], "png");
    assert_eq!(v["mpp_x"], 0.5);
    assert_eq!(v["mpp_source"], "override");
    assert_eq!(v["levels"][0]["width"], 40);
    assert!(image::open(&thumb).is_ok());
}
