//! `dirascope calibrate` reproduces the thresholds of model folder 1.2.0 (0.342 and
//! 0.535, MODEL_CARD.md "Slide-level rule") from its calibration set: seeds
//! 950000-950039, 2 x 1.5 mm at 0.5 um/px (synth 0.3, as model 1.2.0 was made), scored with the same ONNX, under the
//! 1.2.0 rule shape (every finding on max-3x3-mean, DIRA = sqrt(P * max(A, H)),
//! margin 0.03; `fixtures/model/phantom-v1-1.2.0.model.toml`).
//!
//! Rendering and scoring 40 slides takes minutes, so it is ignored by default:
//!
//!     cargo test --test calibration_reproduce -- --ignored --nocapture
//!
//! `DIRASCOPE_CALIBRATION_SET` may name a set rendered earlier by the same synth
//! command, `DIRASCOPE_CALIBRATION_SCORED` a score run of it (both are checked by
//! slide id). `tests/rule_cli.rs` checks calibrate on the bundled phantoms in every run.

use std::path::PathBuf;

use assert_cmd::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dirascope() -> Command {
    Command::cargo_bin("dirascope").unwrap()
}

#[test]
#[ignore = "renders and scores 40 phantom slides (minutes); run with --ignored"]
fn calibrate_reproduces_the_thresholds_of_model_1_2_0() {
    let dir = tempfile::tempdir().unwrap();
    let set = match std::env::var_os("DIRASCOPE_CALIBRATION_SET") {
        Some(p) => PathBuf::from(p),
        None => {
            let set = dir.path().join("set");
            dirascope()
                .args(["synth", "--count", "40", "--seed", "950000", "--mpp", "0.5"])
                .args(["--generator", "0.3"])
                .args(["--width-mm", "2", "--height-mm", "1.5", "--out"])
                .arg(&set)
                .assert()
                .success();
            set
        }
    };
    let manifest = std::fs::read_to_string(set.join("manifest.csv")).unwrap();
    let mut labels = String::from("slide_id,label\n");
    for (i, line) in manifest.lines().skip(1).enumerate() {
        let cols: Vec<&str> = line.split(',').collect();
        assert!(cols[0].ends_with(&format!("-{}", 950000 + i)), "{line}");
        labels.push_str(&format!("{},{}\n", cols[0], cols[2]));
    }
    assert_eq!(labels.lines().count(), 41);
    let labels_path = dir.path().join("labels.csv");
    std::fs::write(&labels_path, labels).unwrap();

    // The 1.2.0 folder: the bundled ONNX with 1.2.0's model.toml.
    let model = dir.path().join("model-1.2.0");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::copy(
        root().join("models/dirascope-phantom-v1/model.onnx"),
        model.join("model.onnx"),
    )
    .unwrap();
    std::fs::copy(
        root().join("fixtures/model/phantom-v1-1.2.0.model.toml"),
        model.join("model.toml"),
    )
    .unwrap();

    let scored = match std::env::var_os("DIRASCOPE_CALIBRATION_SCORED") {
        Some(p) => PathBuf::from(p),
        None => {
            let scored = dir.path().join("scored");
            dirascope()
                .arg("score")
                .arg(&set)
                .arg("--model")
                .arg(&model)
                .arg("--out")
                .arg(&scored)
                .assert()
                .success();
            scored
        }
    };
    let out = dir.path().join("calibrated");
    let output = dirascope()
        .args(["calibrate", "--results"])
        .arg(&scored)
        .arg("--labels")
        .arg(&labels_path)
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success());
    assert!(
        stdout.contains("calibrated") && stdout.contains("on 40 slides"),
        "{stdout}"
    );
    let toml = std::fs::read_to_string(out.join("model.toml")).unwrap();
    assert!(toml.contains("dira_threshold = 0.342"), "{toml}");
    assert!(toml.contains("psoriasiform_threshold = 0.535"), "{toml}");
    assert!(toml.contains("no_call_margin = 0.03"), "{toml}");
    assert!(toml.contains("version = \"1.3.0\""), "{toml}");
}
