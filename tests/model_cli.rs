//! `dirascope model check` on the bundled model and on broken copies of it:
//! every broken model must give exit code 4 and a message naming the file.

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::str::contains;

/// A small random-weight model with a parity fixture (training/make_test_fixture.py).
fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/model/tiny-random-64")
}

/// The bundled model, or None (with the reason printed) where it is absent.
fn bundled() -> Option<PathBuf> {
    let dir = PathBuf::from(dirascope::model::BUNDLED_MODEL_DIR);
    if dir.join("model.toml").exists() {
        Some(dir)
    } else {
        eprintln!("skipped: no bundled model at {}", dir.display());
        None
    }
}

/// A scratch copy of the fixture model folder (model.toml, model.onnx, parity/).
fn copy_model() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("temp dir");
    copy_dir(&fixture(), tmp.path());
    tmp
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).expect("read model dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            fs::create_dir_all(&target).expect("mkdir");
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn check(dir: &Path) -> assert_cmd::assert::Assert {
    Command::cargo_bin("dirascope")
        .expect("binary")
        .args(["model", "check"])
        .arg(dir)
        .assert()
}

#[test]
fn fixture_model_checks_out_and_runs_its_sample_batch() {
    check(&fixture())
        .success()
        .stdout(contains("tiny-random-64"))
        .stdout(contains("not a diagnostic device"))
        .stdout(contains("parameters"))
        .stdout(contains("neutrophilic_eccrine_hidradenitis"))
        .stdout(contains(") ok"));
}

#[test]
fn bundled_model_checks_out_with_no_argument() {
    // No argument: the model embedded in the binary (its parity fixture is not).
    Command::cargo_bin("dirascope")
        .expect("binary")
        .args(["model", "check"])
        .assert()
        .success()
        .stdout(contains("dirascope-v2"))
        .stdout(contains("source     bundled, embedded in the binary"))
        .stdout(contains(" ok)"))
        .stdout(contains("not embedded"));
    // Its source folder: the same model, and the parity batch against onnxruntime.
    if let Some(dir) = bundled() {
        check(&dir)
            .success()
            .stdout(contains(format!("source     {}", dir.display())))
            .stdout(contains(") ok"));
    }
}

#[test]
fn the_int8_option_checks_out_with_its_precision_and_exact_parity() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/dirascope-phantom-v1-int8");
    check(&dir)
        .success()
        .stdout(contains("dirascope-phantom-v1-int8 1.5.0 (int8)"))
        .stdout(contains(
            "parity     max |dirascope - onnxruntime| = 0.00e0",
        ));
    // The fp32 default says so too.
    check(&fixture()).success().stdout(contains("(fp32)"));
}

#[test]
fn one_changed_byte_in_the_onnx_file_is_refused_naming_it() {
    let tmp = copy_model();
    let onnx = tmp.path().join("model.onnx");
    let mut bytes = fs::read(&onnx).expect("read onnx");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&onnx, bytes).expect("write onnx");
    check(tmp.path())
        .code(4)
        .stderr(contains(onnx.display().to_string()))
        .stderr(contains("sha256"));
}

#[test]
fn manifest_with_a_wrong_class_count_is_refused_naming_it() {
    let tmp = copy_model();
    let manifest = tmp.path().join("model.toml");
    let text = fs::read_to_string(&manifest).expect("read manifest");
    let text = text.replace("\"acantholysis\", ", "");
    fs::write(&manifest, text).expect("write manifest");
    check(tmp.path())
        .code(4)
        .stderr(contains(manifest.display().to_string()))
        .stderr(contains("3 entries"));
}

#[test]
fn a_file_that_is_not_onnx_is_refused_naming_it() {
    let tmp = copy_model();
    let onnx = tmp.path().join("model.onnx");
    let junk = b"this is a text file, not a protobuf\n".repeat(10);
    fs::write(&onnx, &junk).expect("write junk");
    let manifest = tmp.path().join("model.toml");
    let text = fs::read_to_string(&manifest).expect("read manifest");
    let old_sha = text
        .lines()
        .find_map(|l| l.strip_prefix("sha256 = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("sha256 line")
        .to_string();
    // Give it the right sha256, so the refusal is about the content.
    let text = text.replace(&old_sha, &dirascope::model::sha256_hex(&junk));
    fs::write(&manifest, text).expect("write manifest");
    check(tmp.path())
        .code(4)
        .stderr(contains(onnx.display().to_string()))
        .stderr(contains("not an ONNX model"));
}

#[test]
fn a_tile_size_the_onnx_graph_does_not_take_is_refused() {
    let tmp = copy_model();
    let manifest = tmp.path().join("model.toml");
    let text = fs::read_to_string(&manifest).expect("read manifest");
    let px = dirascope::model::Manifest::from_file(&fixture().join("model.toml"))
        .expect("fixture manifest")
        .input
        .tile_px;
    let text = text.replace(
        &format!("tile_px = {px}"),
        &format!("tile_px = {}", px + 32),
    );
    fs::write(&manifest, text).expect("write manifest");
    check(tmp.path())
        .code(4)
        .stderr(contains("model.onnx"))
        .stderr(contains("input shape"));
}

#[test]
fn missing_model_folder_is_exit_4_and_bad_usage_is_exit_2() {
    let tmp = tempfile::tempdir().expect("temp dir");
    check(&tmp.path().join("nope"))
        .code(4)
        .stderr(contains("model.toml"));
    Command::cargo_bin("dirascope")
        .expect("binary")
        .args(["model", "frobnicate"])
        .assert()
        .code(2);
}

/// The random-weight fixture with an out-of-distribution output (model 2's graph
/// shape: logits, then `ood`).
fn ood_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/model/tiny-random-64-ood")
}

#[test]
fn a_model_with_an_ood_output_checks_out_with_its_distance_and_parity() {
    check(&ood_fixture())
        .success()
        .stdout(contains("ood        output 'ood' (mahalanobis)"))
        .stdout(contains("ood\n"))
        .stdout(contains(") ok (logits "))
        .stdout(contains(", OOD distance "));
    check(&fixture())
        .success()
        .stdout(contains("ood        none"));
}

#[test]
fn an_ood_output_the_onnx_lacks_is_refused_with_exit_4() {
    // The manifest declares [ood], the graph has only its logits.
    let tmp = copy_model();
    let manifest = tmp.path().join("model.toml");
    let text = fs::read_to_string(&manifest).expect("read manifest");
    let text = format!(
        "{text}\n[ood]\noutput = \"ood\"\nmethod = \"mahalanobis\"\nthreshold = 1.0\nmax_fraction = 0.5\n"
    );
    fs::write(&manifest, text).expect("write manifest");
    check(tmp.path())
        .code(4)
        .stderr(contains(
            tmp.path().join("model.onnx").display().to_string(),
        ))
        .stderr(contains("'ood'"))
        .stderr(contains("graph's outputs are: logits"));
}

#[test]
fn a_second_output_the_manifest_does_not_declare_is_refused_with_exit_4() {
    let tmp = tempfile::tempdir().expect("temp dir");
    copy_dir(&ood_fixture(), tmp.path());
    let manifest = tmp.path().join("model.toml");
    let text = fs::read_to_string(&manifest).expect("read manifest");
    let cut = text.find("\n[ood]").expect("[ood] table");
    fs::write(&manifest, &text[..cut]).expect("write manifest");
    check(tmp.path())
        .code(4)
        .stderr(contains("number of outputs"))
        .stderr(contains("logits, ood"));
}

#[test]
fn a_checkpoint_is_checked_against_its_sha256() {
    let tmp = copy_model();
    let ckpt = tmp.path().join("checkpoint.pt");
    fs::write(&ckpt, b"weights").expect("write checkpoint");
    let sha = dirascope::model::sha256_hex(b"weights");
    let manifest = tmp.path().join("model.toml");
    let text = fs::read_to_string(&manifest).expect("read manifest");
    let with = |sha: &str| {
        text.replacen(
            "sha256 =",
            &format!("checkpoint = \"checkpoint.pt\"\ncheckpoint_sha256 = \"{sha}\"\nsha256 ="),
            1,
        )
    };
    fs::write(&manifest, with(&sha)).expect("write manifest");
    check(tmp.path())
        .success()
        .stdout(contains("checkpoint "))
        .stdout(contains("ok; fine-tune from it"));
    fs::write(&manifest, with(&"0".repeat(64))).expect("write manifest");
    check(tmp.path())
        .code(4)
        .stderr(contains(ckpt.display().to_string()))
        .stderr(contains("sha256"));
    // A checkpoint the manifest names but the folder lacks: named, the reason once.
    fs::remove_file(&ckpt).expect("remove checkpoint");
    let out = check(tmp.path()).code(4).get_output().stderr.clone();
    let err = String::from_utf8_lossy(&out);
    assert!(err.contains(&ckpt.display().to_string()), "{err}");
    assert!(err.contains("cannot read"), "{err}");
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
}
