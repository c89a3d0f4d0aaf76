//! `synth --texture-from`: phantoms in a real slide's own texture and stain, from
//! `../shared/fixtures/real/` (skipped with a printed reason where it is absent).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn real_dir() -> Option<PathBuf> {
    common::real_dir("CMU-1-Small-Region.svs")
}

fn synth(args: &[&str], out: &Path, threads: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dirascope"))
        .arg("synth")
        .args(args)
        .args(["--mpp", "0.5", "--width-mm", "1.5", "--height-mm", "1.2"])
        .arg("--out")
        .arg(out)
        .env("RAYON_NUM_THREADS", threads)
        .output()
        .expect("dirascope runs")
}

#[test]
fn a_textured_phantom_samples_the_train_part_in_the_slides_own_stain() {
    let Some(dir) = real_dir() else { return };
    let src = dir.join("CMU-1-Small-Region.svs");
    let out = tempfile::tempdir().unwrap();
    let args = [
        "--texture-from",
        src.to_str().unwrap(),
        "--class",
        "dira",
        "--seed",
        "3",
    ];
    let run = synth(&args, out.path(), "2");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let truth: Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("dira-3.truth.json")).unwrap(),
    )
    .unwrap();
    let t = &truth["texture_from"];
    assert_eq!(t["file"].as_str(), Some("CMU-1-Small-Region.svs"));
    // The train part only (training/real_split.toml: rows above 1484).
    assert_eq!(t["part"].as_str(), Some("train"));
    assert_eq!(t["region"][3].as_u64(), Some(1484));
    let patches: Vec<u64> = (0..3).map(|i| t["patches"][i].as_u64().unwrap()).collect();
    assert!(
        patches[1] >= 4 && patches[2] >= 4,
        "epidermis and dermis patches: {patches:?}"
    );
    // The phantom is drawn in the slide's measured stain (docs/realism.md's
    // Macenko figures for the CMU-1 train part).
    let h: Vec<f64> = (0..3)
        .map(|i| truth["stain"]["hematoxylin"][i].as_f64().unwrap())
        .collect();
    for (got, want) in h.iter().zip([0.883, 0.390, 0.261]) {
        assert!((got - want).abs() < 0.05, "{h:?}");
    }
    // Masks and lesions as for any phantom.
    assert!(truth["findings_present"].as_array().unwrap().len() >= 2);
}

#[test]
fn a_textured_phantom_is_the_same_at_one_and_two_threads_and_needs_synth_1() {
    let Some(dir) = real_dir() else { return };
    let src = dir.join("CMU-1-Small-Region.svs");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let args = [
        "--texture-from",
        src.to_str().unwrap(),
        "--class",
        "psoriasis",
        "--seed",
        "2",
    ];
    for (d, threads) in [(&a, "1"), (&b, "2")] {
        let run = synth(&args, d.path(), threads);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    for name in ["psoriasis-2.tiff", "psoriasis-2.truth.json"] {
        assert_eq!(
            std::fs::read(a.path().join(name)).unwrap(),
            std::fs::read(b.path().join(name)).unwrap(),
            "{name}"
        );
    }
    let mut old = args.to_vec();
    old.extend(["--generator", "0.3"]);
    let run = synth(&old, &a.path().join("old"), "2");
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(err.contains("synth 1.x generator"), "{err}");
}
