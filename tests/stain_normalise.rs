//! `score --normalise-stain`: each slide's stains are mapped onto the model's
//! training stain (the `[stain]` table of its model.toml) before the model sees
//! its tiles. Cases: slides already in the model's stain keep their calls, and the
//! outputs do not depend on the thread count; a phantom re-stained as another lab
//! might stain it (both vectors turned, everything paler) scores closer to the
//! original with the option than without; the report records what was done; a
//! model without `[stain]` is a usage error naming the table; `dirascope model
//! stain` prints a table that a manifest accepts.

use std::collections::BTreeMap;
use std::path::Path;

use common::restain::{held_out_phantom_at_1um, restain, EOSIN, HEMATOXYLIN};

mod common;

const FIXTURES: [&str; 4] = ["dira-3", "normal-4", "psoriasis-3", "pustular-psoriasis-2"];

fn score(slides: &[&Path], extra: &[&str], out: &Path) {
    let output = common::dirascope(&["score"])
        .args(slides)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("run dirascope");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// tiles.csv as (col, row) -> the findings' probabilities.
fn tile_probabilities(out: &Path, id: &str) -> BTreeMap<(u32, u32), Vec<f64>> {
    let mut rows = csv::Reader::from_path(out.join(id).join("tiles.csv")).expect("tiles.csv");
    let header = rows.headers().unwrap().clone();
    let at = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (col, row, first) = (at("col"), at("row"), at("subcorneal_pustule"));
    rows.records()
        .map(|r| {
            let r = r.unwrap();
            let p = (first..first + 4).map(|i| r[i].parse().unwrap()).collect();
            ((r[col].parse().unwrap(), r[row].parse().unwrap()), p)
        })
        .collect()
}

/// Mean |probability difference| over the tiles both runs scored, and how many.
fn mean_difference(
    a: &BTreeMap<(u32, u32), Vec<f64>>,
    b: &BTreeMap<(u32, u32), Vec<f64>>,
) -> (f64, usize) {
    let (mut sum, mut n) = (0.0, 0);
    for (key, pa) in a {
        if let Some(pb) = b.get(key) {
            sum += pa.iter().zip(pb).map(|(x, y)| (x - y).abs()).sum::<f64>();
            n += 1;
        }
    }
    (sum / (4 * n.max(1)) as f64, n)
}

#[test]
fn slides_in_the_models_own_stain_keep_their_calls_at_any_thread_count() {
    let work = tempfile::tempdir().unwrap();
    let slides: Vec<_> = FIXTURES
        .iter()
        .map(|id| common::root().join(format!("fixtures/phantoms/{id}.tiff")))
        .collect();
    let slides: Vec<&Path> = slides.iter().map(|p| p.as_path()).collect();
    let (plain, one, two) = (
        work.path().join("plain"),
        work.path().join("one"),
        work.path().join("two"),
    );
    score(&slides, &["--threads", "2"], &plain);
    score(&slides, &["--normalise-stain", "--threads", "1"], &one);
    score(&slides, &["--normalise-stain", "--threads", "2"], &two);
    common::assert_same(
        &common::snapshot(&two),
        &common::snapshot(&one),
        "--normalise-stain at 2 threads against 1",
    );
    for id in FIXTURES {
        let (before, after) = (
            common::slide_report(&plain, id),
            common::slide_report(&one, id),
        );
        assert_eq!(
            before["result"]["call"], after["result"]["call"],
            "{id}: the call changed"
        );
        let (diff, tiles) = mean_difference(
            &tile_probabilities(&plain, id),
            &tile_probabilities(&one, id),
        );
        eprintln!("{id}: mean |probability change| {diff:.4} over {tiles} tiles");
        assert!(diff < 0.05, "{id}: {diff}");
        let n = &after["qc"]["stain_normalisation"];
        assert_eq!(n["applied"], true, "{id}: {n}");
        // Up to 64 tissue tiles are sampled: all of them on a slide with fewer.
        let scored = after["tiles"]["scored"].as_u64().unwrap();
        assert_eq!(
            n["sampled_tiles"].as_u64(),
            Some(scored.min(64)),
            "{id}: {n}"
        );
        assert!(n["slide"]["max_concentration"][1].as_f64().unwrap() > 0.0);
        assert_eq!(
            after["audit"]["configuration"]["stain_reference"], n["reference"],
            "{id}"
        );
        assert!(before["qc"].get("stain_normalisation").is_none(), "{id}");
        let page = |out: &Path| std::fs::read_to_string(out.join(id).join("report.html")).unwrap();
        assert!(
            page(&one).contains("Stain normalised (--normalise-stain)"),
            "{id}"
        );
        assert!(!page(&plain).contains("--normalise-stain"), "{id}");
        // QC measures the slide as scanned, not as normalised.
        assert_eq!(before["qc"]["stain"], after["qc"]["stain"], "{id}");
    }
}

/// Turns `v` towards `towards` by the share `t` (then back to unit length).
fn turn(v: [f64; 3], towards: [f64; 3], t: f64) -> [f64; 3] {
    let mixed = [0, 1, 2].map(|c| (1.0 - t) * v[c] + t * towards[c]);
    let n = mixed.iter().map(|x| x * x).sum::<f64>().sqrt();
    mixed.map(|x| x / n)
}

#[test]
fn another_labs_stain_scores_closer_to_the_original_once_normalised() {
    let work = tempfile::tempdir().unwrap();
    let model = common::root().join("models/dirascope-v2");
    // Normalisation maps a slide onto the model's training stain, so "closer to
    // the original" is the right measure only for an original in a stain like
    // it: a held-out seed whose synth 1.3 stain is drawn around CMU-1's bright
    // scanner (910903, drawn around the public-domain camera's dim glass and
    // purple haematoxylin, is itself far from the reference: 0.0059 as scanned,
    // 0.0439 normalised).
    let phantom = held_out_phantom_at_1um(&work.path().join("p"), "dira", 910904);
    let original = work.path().join("original.png");
    phantom.save(&original).unwrap();
    // Another lab's H&E: haematoxylin bluer, eosin more purple, 30% paler; still
    // H&E to QC's stain check.
    let (h, e) = (
        turn(HEMATOXYLIN, [0.2, 0.5, 0.85], 0.25),
        turn(EOSIN, [0.5, 0.8, 0.3], 0.25),
    );
    let angles = (angle(h, HEMATOXYLIN), angle(e, EOSIN));
    let paler = |v: [f64; 3]| v.map(|x| 0.7 * x);
    let lab = work.path().join("lab.png");
    restain(&phantom, [paler(h), paler(e)]).save(&lab).unwrap();
    let m = model.to_str().unwrap();
    let args = ["--model", m, "--mpp", "1.0"];
    score(&[&original], &args, &work.path().join("original"));
    score(&[&lab], &args, &work.path().join("scanned"));
    let mut normalised_args = args.to_vec();
    normalised_args.push("--normalise-stain");
    score(&[&lab], &normalised_args, &work.path().join("normalised"));
    let truth = tile_probabilities(&work.path().join("original"), "original");
    let (scanned, n1) = mean_difference(
        &truth,
        &tile_probabilities(&work.path().join("scanned"), "lab"),
    );
    let (normalised, n2) = mean_difference(
        &truth,
        &tile_probabilities(&work.path().join("normalised"), "lab"),
    );
    eprintln!(
        "vectors turned {:.1} and {:.1} degrees, 30% paler: mean |probability - original's| \
         {scanned:.4} as scanned ({n1} tiles), {normalised:.4} normalised ({n2} tiles)",
        angles.0, angles.1
    );
    let r = common::slide_report(&work.path().join("scanned"), "lab");
    assert!(
        r["qc"]["flags"].as_array().unwrap().is_empty(),
        "the lab's stain must stay H&E to QC: {}",
        r["qc"]
    );
    assert!(n2 > 100 && n1 > 100);
    assert!(
        normalised < 0.6 * scanned,
        "normalised {normalised:.4} against {scanned:.4} as scanned"
    );
}

fn angle(a: [f64; 3], b: [f64; 3]) -> f64 {
    let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    let n = |v: &[f64; 3]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    (dot / (n(&a) * n(&b))).clamp(-1.0, 1.0).acos().to_degrees()
}

/// A copy of the bundled model in `work/model` with `table` in place of its own
/// `[stain]` table (none for "").
fn bundled_model_with_stain(work: &Path, table: &str) -> std::path::PathBuf {
    let dir = work.join("model");
    std::fs::create_dir(&dir).unwrap();
    let source = common::root().join("models/dirascope-phantom-v1");
    let manifest = std::fs::read_to_string(source.join("model.toml")).unwrap();
    let cut = manifest
        .find("\n[stain]")
        .expect("the bundled model has a [stain] table");
    std::fs::write(
        dir.join("model.toml"),
        format!("{}\n{table}", &manifest[..cut]),
    )
    .unwrap();
    std::fs::copy(source.join("model.onnx"), dir.join("model.onnx")).unwrap();
    dir
}

#[test]
fn a_model_without_a_stain_table_is_a_usage_error() {
    let work = tempfile::tempdir().unwrap();
    let dir = bundled_model_with_stain(work.path(), "");
    let slide = common::root().join("fixtures/phantoms/normal-4.tiff");
    let output = common::dirascope(&["score"])
        .arg(&slide)
        .arg("--model")
        .arg(&dir)
        .arg("--normalise-stain")
        .arg("--out")
        .arg(work.path().join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("[stain]") && stderr.contains("dirascope model stain"),
        "{stderr}"
    );
}

#[test]
fn model_stain_prints_a_table_the_manifest_accepts() {
    let work = tempfile::tempdir().unwrap();
    let slides = ["normal-4", "psoriasis-3"].map(|id| format!("fixtures/phantoms/{id}.tiff"));
    let output = common::dirascope(&["model", "stain", &slides[0], &slides[1]])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(table.contains("[stain]\nhematoxylin = ["), "{table}");
    // Into a copy of the bundled model in place of its own table: it loads.
    let dir = bundled_model_with_stain(work.path(), &table);
    let out = work.path().join("out");
    let slide = common::root().join("fixtures/phantoms/normal-4.tiff");
    score(
        &[&slide],
        &["--model", dir.to_str().unwrap(), "--normalise-stain"],
        &out,
    );
    assert_eq!(
        common::slide_report(&out, "normal-4")["qc"]["stain_normalisation"]["applied"],
        true
    );
    // A slide that is not there is an error naming it; the rest still print.
    let output = common::dirascope(&["model", "stain", &slides[0], "no-such-slide.tiff"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("no-such-slide.tiff"), "{stderr}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("[stain]"));
}

#[test]
fn real_normal_skin_is_normalised_against_its_own_glass() {
    // Optical density is measured against the slide's glass, read off the tissue
    // step's thumbnail: the public-domain camera's is dim (226, 225, 227 on its
    // train part, training/realism/stain_ranges.py), CMU-1's scanner's bright.
    // Against white glass the dim image's haematoxylin came out at (0.54, 0.55,
    // 0.64), 21 degrees from stain_ranges.py's (0.668, 0.677, 0.310): the glass
    // counted as faint stain.
    let Some(real) = common::real_dir("skin-normal-10x-public-domain.jpg") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let mut slides = Vec::new();
    for (name, mpp) in common::REAL_H_AND_E {
        let out = work.path().join(name);
        let r = common::score_report(&real.join(name), None, mpp, &["--normalise-stain"], &out);
        let n = r["qc"]["stain_normalisation"].clone();
        eprintln!(
            "{name}: {} with --normalise-stain; slide {}",
            r["result"]["call"], n["slide"]
        );
        assert_eq!(n["applied"], true, "{name}");
        assert!(
            r["qc"]["flags"].as_array().unwrap().is_empty(),
            "{name}: {}",
            r["qc"]
        );
        slides.push(n["slide"].clone());
    }
    let numbers = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    // A bright scanner's glass: at least 240 (written only where it is not white).
    if let Some(g) = slides[0].get("glass") {
        assert!(numbers(g).iter().all(|&v| v >= 240.0), "CMU-1 glass {g}");
    }
    // The camera's: within 6 levels of what stain_ranges.py measures.
    let glass = numbers(&slides[1]["glass"]);
    for (got, want) in glass.iter().zip([226.0, 225.0, 227.0]) {
        assert!((got - want).abs() <= 6.0, "public-domain glass {glass:?}");
    }
    let h = numbers(&slides[1]["hematoxylin"]);
    let a = angle([h[0], h[1], h[2]], [0.668, 0.677, 0.310]);
    assert!(
        a < 10.0,
        "public-domain haematoxylin {h:?} is {a:.1} degrees off"
    );
}
