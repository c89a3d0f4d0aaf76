//! QC's stain check (flag `not-h-and-e`, gate `qc-fail`): a slide whose two stains
//! are not haematoxylin and eosin is refused whatever the model, before any
//! finding is called; H&E slides (phantoms, real normal skin) pass it. Cases: the
//! immunostain fixture (DAB and haematoxylin) at two MPPs, a held-out phantom
//! re-stained trichrome-like (methyl blue for eosin) and as an immunostain (DAB for
//! eosin), the same phantom in its own H&E, and the real H&E fixtures. A
//! Giemsa-like re-stain is measured and printed, not asserted: its vectors are
//! within H&E's range (docs/stain.md).
//!
//! Scored with the bundled default model: the check does not depend on it.

use std::path::Path;

use common::restain::{
    held_out_normal_at_1um, restain, DAB, GIEMSA_BLUE, GIEMSA_EOSIN, HEMATOXYLIN, METHYL_BLUE,
};

mod common;

/// Scores `slide` (with `--mpp` when given) under the default model; returns
/// (call, QC flag names, haematoxylin and eosin angles).
fn score(slide: &Path, mpp: Option<f64>, out: &Path) -> (String, Vec<String>, f64, f64) {
    let report = common::score_report(slide, None, mpp, &[], out);
    let id = slide.file_stem().unwrap().to_string_lossy().to_string();
    let qc = &report["qc"];
    let flags = qc["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["flag"].as_str().unwrap().to_string())
        .collect();
    let stain = &qc["stain"];
    assert!(stain.is_object(), "{id}: no stain measurement: {qc}");
    let angle = |k: &str| stain[k].as_f64().unwrap();
    let call = report["result"]["call"].as_str().unwrap().to_string();
    let (h, e) = (angle("hematoxylin_angle_deg"), angle("eosin_angle_deg"));
    eprintln!("{id}: haematoxylin {h:.1}°, eosin {e:.1}°, call {call}, flags {flags:?}");
    (call, flags, h, e)
}

fn refused(what: &str, (call, flags, _, _): &(String, Vec<String>, f64, f64)) {
    assert!(
        flags.iter().any(|f| f == "not-h-and-e"),
        "{what}: {flags:?}"
    );
    assert_eq!(call, "qc-fail", "{what}");
}

fn passed(what: &str, (_, flags, _, _): &(String, Vec<String>, f64, f64)) {
    assert!(
        !flags.iter().any(|f| f == "not-h-and-e"),
        "{what}: {flags:?}"
    );
}

#[test]
fn an_immunostain_is_refused_as_not_h_and_e_at_any_mpp() {
    let work = tempfile::tempdir().unwrap();
    let slide = common::root().join("fixtures/ood/ihc-dab-hematoxylin.jpg");
    for mpp in [1.0, 2.0] {
        let got = score(&slide, Some(mpp), &work.path().join(mpp.to_string()));
        refused(&format!("IHC at {mpp} um/px"), &got);
    }
}

#[test]
fn a_phantom_restained_off_h_and_e_is_refused_and_in_h_and_e_is_not() {
    let work = tempfile::tempdir().unwrap();
    let phantom = held_out_normal_at_1um(&work.path().join("p"), 910901);
    let mut results = Vec::new();
    for (name, stains) in [
        ("h-and-e", [HEMATOXYLIN, common::restain::EOSIN]),
        ("trichrome-like", [HEMATOXYLIN, METHYL_BLUE]),
        ("h-dab", [HEMATOXYLIN, DAB]),
        ("giemsa-like", [GIEMSA_BLUE, GIEMSA_EOSIN]),
    ] {
        let path = work.path().join(format!("{name}.png"));
        restain(&phantom, stains).save(&path).expect("write png");
        results.push((name, score(&path, Some(1.0), &work.path().join(name))));
    }
    passed("the phantom unmixed and mixed again in H&E", &results[0].1);
    refused("trichrome-like", &results[1].1);
    refused("H-DAB", &results[2].1);
    // Giemsa-like: printed above, a known miss (docs/stain.md).
}

#[test]
fn a_lab_can_widen_the_eosin_limit_and_a_wrong_one_is_a_usage_error() {
    let work = tempfile::tempdir().unwrap();
    let slide = common::root().join("fixtures/ood/ihc-dab-hematoxylin.jpg");
    let out = work.path().join("wide");
    let status = common::dirascope(&["score", "--mpp", "2.0", "--max-eosin-angle", "60"])
        .arg(&slide)
        .arg("--out")
        .arg(&out)
        .status()
        .expect("run dirascope");
    assert!(status.success());
    let text = std::fs::read_to_string(out.join("ihc-dab-hematoxylin/report.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    let flags = report["qc"]["flags"].to_string();
    assert!(!flags.contains("not-h-and-e"), "{flags}");
    assert!(report["qc"]["stain"]["eosin_angle_deg"].as_f64().unwrap() > 50.0);

    let output = common::dirascope(&["score", "--max-eosin-angle", "200", "--out"])
        .arg(work.path().join("bad"))
        .arg(&slide)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--max-eosin-angle"), "{stderr}");
}

#[test]
fn real_h_and_e_passes_the_stain_check() {
    let Some(dir) = common::real_dir("CMU-1-Small-Region.svs") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    for (file, mpp) in common::REAL_H_AND_E {
        let got = score(&dir.join(file), mpp, &work.path().join(file));
        passed(file, &got);
    }
}
