//! The binary on its own, as a user installs it: the default model is embedded, so a
//! copy of the binary in another folder, run from yet another, checks its model and
//! scores a slide; `dirascope selfcheck` renders, scores and judges a phantom set
//! (issue 14: "a binary that works once installed", selfcheck).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// Runs `bin ARGS` in `cwd`, with temporary files in `cwd/tmp`.
fn run(bin: &Path, cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let tmp = cwd.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let output = Command::new(bin)
        .current_dir(cwd)
        .env("TMPDIR", &tmp)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_copied_binary_finds_its_model_and_scores_from_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let (bin_dir, cwd) = (dir.path().join("bin"), dir.path().join("elsewhere"));
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::create_dir_all(&cwd).unwrap();
    let bin = bin_dir.join("dirascope");
    std::fs::copy(env!("CARGO_BIN_EXE_dirascope"), &bin).unwrap();

    let (code, stdout, stderr) = run(&bin, &cwd, &["model", "check"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("source     bundled, embedded in the binary"),
        "{stdout}"
    );
    // The bundled model is models/dirascope-v2's, checked against its manifest's digest.
    let manifest = std::fs::read_to_string(fixture("models/dirascope-v2/model.toml")).unwrap();
    let digest = manifest
        .lines()
        .find_map(|l| l.strip_prefix("sha256 = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap();
    assert!(stdout.contains(&format!("sha256 {digest} ok)")), "{stdout}");
    let source_tree = env!("CARGO_MANIFEST_DIR");
    assert!(
        !stdout.contains(source_tree),
        "reads the source tree: {stdout}"
    );

    // A model folder given with --model is named as such.
    let tiny = fixture("fixtures/model/tiny-random-64");
    let tiny_arg = tiny.to_str().unwrap();
    let (code, stdout, stderr) = run(&bin, &cwd, &["model", "check", tiny_arg]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("source     {tiny_arg}")),
        "{stdout}"
    );

    let slide = fixture("fixtures/phantoms/dira-3.tiff");
    let (code, _, stderr) = run(
        &bin,
        &cwd,
        &[
            "score",
            slide.to_str().unwrap(),
            "--out",
            "out",
            "--threads",
            "2",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let summary = std::fs::read_to_string(cwd.join("out/summary.csv")).unwrap();
    assert!(summary.contains("\ndira-3,dira-pattern,"), "{summary}");
    assert!(cwd.join("out/report.html").is_file() && cwd.join("out/dira-3/report.html").is_file());
}

#[test]
fn selfcheck_passes_with_the_embedded_model_and_refuses_an_altered_one() {
    let dir = tempfile::tempdir().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_dirascope"));
    let (code, stdout, stderr) = run(bin, dir.path(), &["selfcheck", "--threads", "2"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for needle in [
        "(bundled, embedded in the binary)",
        "matches the manifest",
        "dira-3                 dira                 dira-pattern           dira-pattern",
        "selfcheck  pass: 4 of 4 calls as expected",
    ] {
        assert!(stdout.contains(needle), "'{needle}' not in: {stdout}");
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "only the tmp folder: {left:?}");
    let temp_left: Vec<_> = std::fs::read_dir(dir.path().join("tmp")).unwrap().collect();
    assert!(temp_left.is_empty(), "selfcheck left {temp_left:?}");

    // One changed byte in a model folder's ONNX: exit 4 naming the file, no work done.
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    let bundled = Path::new(dirascope::model::BUNDLED_MODEL_DIR);
    std::fs::copy(bundled.join("model.toml"), model.join("model.toml")).unwrap();
    let mut onnx = std::fs::read(bundled.join("model.onnx")).unwrap();
    let last = onnx.len() - 1;
    onnx[last] ^= 1;
    std::fs::write(model.join("model.onnx"), onnx).unwrap();
    let (code, _, stderr) = run(
        bin,
        dir.path(),
        &["selfcheck", "--model", model.to_str().unwrap()],
    );
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("model.onnx") && stderr.contains("sha256"),
        "{stderr}"
    );
}
