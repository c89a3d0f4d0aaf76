//! Model 2's out-of-distribution detector on the cases it must flag and must not:
//! an immunostain (DAB and haematoxylin), a photograph that is not tissue, a
//! phantom re-stained with stain vectors that are not H&E and a heavily blurred one
//! must be flagged; a held-out synth 1.0 phantom and the real normal-skin fixtures
//! must not (and the real ones are called `no-pustular-pattern`).
//!
//! The flag is read from `report.json`'s `result.ood` whatever the call: a blurred
//! slide is `qc-fail` first (QC sees blur before the model), and so is a slide
//! whose stains QC's stain check finds are not H&E (tests/stain_check.rs); the
//! detector's out-of-distribution verdict is kept in `result.other_reasons`.

use std::path::{Path, PathBuf};

use dirascope::slide::{self, OpenOptions, Rect};
use image::RgbImage;

mod common;

fn model() -> PathBuf {
    common::root().join("models/dirascope-v2")
}

/// Scores `slide` (with `--mpp` when given) under model 2; returns report.json.
fn score(slide: &Path, mpp: Option<f64>, out: &Path) -> serde_json::Value {
    common::score_report(slide, Some(&model()), mpp, &[], out)
}

/// (share of tissue tiles over the OOD threshold, flagged, call).
fn verdict(report: &serde_json::Value) -> (f64, bool, String) {
    let r = &report["result"];
    let ood = &r["ood"];
    assert!(ood.is_object(), "model 2 reports its OOD measurement: {r}");
    (
        ood["fraction"].as_f64().unwrap(),
        ood["out_of_distribution"].as_bool().unwrap(),
        r["call"].as_str().unwrap().to_string(),
    )
}

/// A fixture phantom's pixels at 1.0 um/px (its level 1; the fixtures are 0.5 um/px).
fn phantom_at_1um(name: &str) -> RgbImage {
    let path = common::root().join("fixtures/phantoms").join(name);
    let reader = slide::open(&path, &OpenOptions::default()).expect("open phantom");
    let info = reader.info();
    let level = info
        .levels
        .iter()
        .position(|l| (l.downsample - 2.0).abs() < 0.01)
        .expect("a 2x level");
    let l = &info.levels[level];
    reader
        .read_region(level, Rect::new(0, 0, l.width as u32, l.height as u32))
        .expect("read level")
}

fn save_png(image: &RgbImage, path: &Path) {
    image.save(path).expect("write png");
}

/// Scores `slide` at `mpp` into `out`: the detector must flag it. Returns the report.
fn assert_flagged(what: &str, slide: &Path, mpp: f64, out: &Path) -> serde_json::Value {
    let report = score(slide, Some(mpp), out);
    let (fraction, flagged, call) = verdict(&report);
    eprintln!(
        "{what}: {:.0}% of tiles over, call {call}",
        100.0 * fraction
    );
    assert!(flagged, "{what} not flagged: {fraction}");
    report
}

/// QC's stain check refused the slide (`qc-fail`, flag `not-h-and-e`) and the
/// detector's verdict is kept beside it.
fn assert_refused_as_not_h_and_e_and_flagged(what: &str, report: &serde_json::Value) {
    let r = &report["result"];
    assert_eq!(r["call"], "qc-fail", "{what}");
    let flags: Vec<&str> = report["qc"]["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["flag"].as_str().unwrap())
        .collect();
    assert!(flags.contains(&"not-h-and-e"), "{what}: {flags:?}");
    let others = r["other_reasons"].as_array().expect("other reasons");
    assert!(
        others
            .iter()
            .any(|o| o.as_str().unwrap().contains("unlike the training data")),
        "{what}: {others:?}"
    );
}

#[test]
fn an_immunostain_is_out_of_distribution() {
    let work = tempfile::tempdir().unwrap();
    let slide = common::root().join("fixtures/ood/ihc-dab-hematoxylin.jpg");
    let report = assert_flagged("IHC", &slide, 2.0, work.path());
    assert_refused_as_not_h_and_e_and_flagged("IHC", &report);
}

#[test]
fn a_photograph_is_not_called_a_pattern() {
    let work = tempfile::tempdir().unwrap();
    let slide = common::root().join("fixtures/ood/astronaut-photograph.jpg");
    let report = score(&slide, Some(2.0), work.path());
    let call = report["result"]["call"].as_str().unwrap().to_string();
    eprintln!("photograph: call {call}, ood {}", report["result"]["ood"]);
    // Whatever of it the tissue detector keeps must be flagged.
    if report["tiles"]["scored"].as_u64().unwrap() > 0 {
        let (fraction, flagged, _) = verdict(&report);
        assert!(flagged, "photograph not flagged: {fraction}");
    }
    assert!(
        ["out-of-distribution", "insufficient-tissue", "qc-fail"].contains(&call.as_str()),
        "{call}"
    );
}

#[test]
#[ignore = "a known miss of the v2 detector (2.2.0 and 2.6.0: 0% of tiles over the threshold, models/dirascope-v2/MODEL_CARD.md); QC's stain check refuses the slide (tests/stain_check.rs)"]
fn a_phantom_restained_off_h_and_e_is_out_of_distribution() {
    use common::restain::{held_out_normal_at_1um, restain, HEMATOXYLIN, METHYL_BLUE};
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("restained-normal.png");
    save_png(
        &restain(
            &held_out_normal_at_1um(&work.path().join("p"), 910901),
            [HEMATOXYLIN, METHYL_BLUE],
        ),
        &path,
    );
    let report = assert_flagged("re-stained phantom", &path, 1.0, &work.path().join("out"));
    assert_refused_as_not_h_and_e_and_flagged("re-stained phantom", &report);
}

#[test]
fn a_heavily_blurred_phantom_is_flagged_beside_the_blur_gate() {
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("blurred-normal-4.png");
    save_png(
        &image::imageops::blur(&phantom_at_1um("normal-4.tiff"), 8.0),
        &path,
    );
    let report = score(&path, Some(1.0), &work.path().join("out"));
    let (fraction, flagged, call) = verdict(&report);
    eprintln!("blurred: {:.0}% over, call {call}", 100.0 * fraction);
    assert!(flagged, "blurred phantom not flagged: {fraction}");
    // QC's blur gate comes first; the OOD verdict is kept beside it.
    assert_eq!(call, "qc-fail");
    let others = report["result"]["other_reasons"]
        .as_array()
        .expect("other reasons");
    assert!(others
        .iter()
        .any(|r| r.as_str().unwrap().contains("unlike the training data")));
}

#[test]
fn a_held_out_phantom_is_in_distribution() {
    let work = tempfile::tempdir().unwrap();
    let phantoms = work.path().join("phantoms");
    // A seed in model 2's held-out range (training/model2_data.sh), synth 1.0.
    let status = common::dirascope(&["synth", "--class", "dira", "--seed", "910900"])
        .args(["--width-mm", "2", "--height-mm", "1.5", "--out"])
        .arg(&phantoms)
        .status()
        .expect("synth");
    assert!(status.success());
    let (fraction, flagged, call) = verdict(&score(
        &phantoms.join("dira-910900.tiff"),
        None,
        &work.path().join("out"),
    ));
    eprintln!(
        "held-out phantom: {:.0}% over, call {call}",
        100.0 * fraction
    );
    assert!(!flagged, "held-out phantom flagged: {fraction}");
}

#[test]
fn real_normal_skin_is_in_distribution_and_called_no_pustular_pattern() {
    // (The gate on the test parts, under 1% of tiles above 0.5 per
    // finding, is measured by training/ood_cases.py and not met yet: see the card.)
    let Some(dir) = common::real_dir("CMU-1-Small-Region.svs") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    for (file, mpp) in common::REAL_H_AND_E {
        let out = work.path().join(file);
        let report = score(&dir.join(file), mpp, &out);
        let (fraction, flagged, call) = verdict(&report);
        eprintln!("{file}: {:.1}% over, call {call}", 100.0 * fraction);
        assert!(!flagged, "{file} flagged: {fraction}");
        assert_eq!(call, "no-pustular-pattern", "{file}");
    }
}
