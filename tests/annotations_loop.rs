//! The annotation path end to end, on phantoms: `synth` writes each slide's truth
//! as QuPath GeoJSON, `dirascope tiles` turns slides + GeoJSON into labelled tiles
//! (each tile's coverage within 1% of the phantom mask's), and `validate
//! --truth-geojson` gives the same tile AUROCs as `--truth` on the masks. Also the
//! hand-written QuPath 0.5/0.6 fixtures (holes, a MultiPolygon, skipped objects),
//! thread-count independence, and every refusal naming its file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("fixtures/annotations").join(name)
}

fn dirascope() -> Command {
    Command::cargo_bin("dirascope").unwrap()
}

/// One small phantom slide `dira-7` (1 x 1 mm at 0.5 µm/px: 2000 x 2000 px).
fn phantom(dir: &Path, args: &[&str]) -> PathBuf {
    let set = dir.join("set");
    dirascope()
        .args(["synth", "--mpp", "0.5", "--out"])
        .arg(&set)
        .args(args)
        .assert()
        .success();
    set
}

fn read_labels(data: &Path) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(data.join("labels.csv")).unwrap();
    let headers = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            headers
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

fn tiles(
    slides: &Path,
    annotations: &Path,
    mapping: &Path,
    out: &Path,
    threads: &str,
) -> assert_cmd::assert::Assert {
    dirascope()
        .arg("tiles")
        .arg("--slides")
        .arg(slides)
        .arg("--annotations")
        .arg(annotations)
        .arg("--mapping")
        .arg(mapping)
        .arg("--out")
        .arg(out)
        .args(["--threads", threads])
        .assert()
}

#[test]
fn qupath_fixtures_give_analytic_labels_at_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let set = phantom(
        dir.path(),
        &[
            "--class",
            "dira",
            "--seed",
            "7",
            "--width-mm",
            "1",
            "--height-mm",
            "1",
        ],
    );
    let slide = set.join("dira-7.tiff");
    // Level-0 tile origin -> (pustule, acantholysis) coverage, worked out by hand
    // from the fixture's polygons for 448 px tiles (224 px at 1 µm/px over 0.5 µm/px);
    // tiles less than 90% annotated (the Normal region's hole, the slide edge) are
    // left out.
    let expected: BTreeMap<(i64, i64), (f64, f64)> = BTreeMap::from([
        ((0, 0), (60000.0 / 200704.0, 0.0)),
        ((448, 0), (20000.0 / 200704.0, 0.0)),
        ((896, 0), (0.0, 0.0)),
        ((0, 448), (0.0, 0.0)),
        ((448, 448), (0.0, 0.0)),
        ((896, 448), (0.0, 62624.0 / 200704.0)),
        ((1344, 448), (0.0, 16576.0 / 200704.0)),
    ]);
    let mut outputs = Vec::new();
    for (name, threads) in [
        ("qupath-0.6-collection.geojson", "1"),
        ("qupath-0.6-collection.geojson", "2"),
        ("qupath-0.5-array.geojson", "2"),
    ] {
        let ann = dir.path().join(format!("ann-{threads}-{name}"));
        std::fs::create_dir_all(&ann).unwrap();
        std::fs::copy(fixture(name), ann.join("dira-7.geojson")).unwrap();
        let out = dir.path().join(format!("data-{threads}-{name}"));
        tiles(&slide, &ann, &fixture("mapping.toml"), &out, threads)
            .success()
            .stderr(predicates::str::contains(
                "skipped 1 detection/cell objects, 1 unclassified annotations, 1 point/line annotations",
            ));
        outputs.push(out);
    }
    let labels = read_labels(&outputs[0]);
    assert!(labels.len() >= 3, "only {} labelled tiles", labels.len());
    for row in &labels {
        let x = (row["x_um"].parse::<f64>().unwrap() / 0.5).round() as i64;
        let y = (row["y_um"].parse::<f64>().unwrap() / 0.5).round() as i64;
        let (p, a) = expected
            .get(&(x, y))
            .unwrap_or_else(|| panic!("tile ({x}, {y}) should have been left out"));
        let got_p: f64 = row["subcorneal_pustule"].parse().unwrap();
        let got_a: f64 = row["acantholysis"].parse().unwrap();
        assert!(
            (got_p - p).abs() < 1e-4 && (got_a - a).abs() < 1e-4,
            "tile ({x}, {y}): {got_p} {got_a}"
        );
        assert_eq!(row["neutrophilic_eccrine_hidradenitis"], "0.0000");
        assert_eq!(
            (row["tile_px"].as_str(), row["tile_mpp"].as_str()),
            ("224", "1")
        );
        assert_eq!(row["seed"], "7");
        let png = image::open(outputs[0].join(&row["path"])).unwrap();
        assert_eq!((png.width(), png.height()), (224, 224));
    }
    // Same labels and the same tile bytes at 1 and 2 threads, and from either export form.
    let first = std::fs::read(outputs[0].join("labels.csv")).unwrap();
    for out in &outputs[1..] {
        assert_eq!(std::fs::read(out.join("labels.csv")).unwrap(), first);
        for row in &labels {
            assert_eq!(
                std::fs::read(out.join(&row["path"])).unwrap(),
                std::fs::read(outputs[0].join(&row["path"])).unwrap()
            );
        }
    }
    // The header is the one `synth --tiles` writes.
    let header = String::from_utf8(first)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(header, dirascope::synth::LABEL_COLUMNS.join(","));
}

#[test]
fn bad_annotations_are_refused_naming_file_and_feature_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let set = phantom(
        dir.path(),
        &[
            "--class",
            "dira",
            "--seed",
            "7",
            "--width-mm",
            "1",
            "--height-mm",
            "1",
        ],
    );
    let slide = set.join("dira-7.tiff");
    let good = std::fs::read_to_string(fixture("qupath-0.6-collection.geojson")).unwrap();
    let cases: Vec<(&str, String, &str, PathBuf)> = vec![
        (
            "unknown class",
            good.replace("\"Acantholysis\"", "\"Clefts\"")
                .replace("\"Pustule\"", "\"Blister\""),
            "missing from [classes]: \"Blister\", \"Clefts\"",
            fixture("mapping.toml"),
        ),
        (
            "outside the slide",
            good.replace("[1400, 600], [1400, 1000]", "[2600, 600], [1400, 1000]"),
            "feature 2: point (2600, 600) lies outside the slide (2000 x 2000",
            fixture("mapping.toml"),
        ),
        (
            "self-intersecting",
            good.replace(
                "[[100, 100], [400, 100], [400, 300], [100, 300], [100, 100]]",
                "[[100, 100], [400, 300], [400, 100], [100, 300], [100, 100]]",
            ),
            "feature 1 (\"Pustules\"): the polygon intersects itself near (250.0, 200.0)",
            fixture("mapping.toml"),
        ),
        (
            "malformed JSON",
            good.replacen("]]", "]", 1),
            "not valid JSON at line",
            fixture("mapping.toml"),
        ),
    ];
    for (what, text, needle, mapping) in cases {
        let ann = dir.path().join(format!("ann-{}", what.replace(' ', "-")));
        std::fs::create_dir_all(&ann).unwrap();
        std::fs::write(ann.join("dira-7.geojson"), text).unwrap();
        let out = dir.path().join("data");
        let assert = tiles(&slide, &ann, &mapping, &out, "2").failure();
        let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
        assert!(stderr.contains(needle), "{what}: {stderr}");
        assert!(
            stderr.contains("dira-7.geojson")
                || what == "unknown class" && stderr.contains("mapping.toml"),
            "{what}: {stderr}"
        );
        assert!(!out.exists(), "{what}: an output folder was left");
    }
    // A GeoJSON whose slide id has no slide.
    let ann = dir.path().join("ann-orphan");
    std::fs::create_dir_all(&ann).unwrap();
    std::fs::write(ann.join("dira-7.geojson"), &good).unwrap();
    std::fs::write(ann.join("case-12.geojson"), &good).unwrap();
    let assert = tiles(
        &slide,
        &ann,
        &fixture("mapping.toml"),
        &dir.path().join("data"),
        "1",
    )
    .code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(
        stderr.contains("case-12.geojson: no slide has the id 'case-12'"),
        "{stderr}"
    );
    // Nothing temporary left beside the output either.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".dirascope-tiles")
        })
        .collect();
    assert!(leftovers.is_empty());
}

/// Coverage of a level-0 rectangle by a mask PNG (`ds` level-0 px per mask px),
/// pixel by pixel: the naive reference the labels are checked against.
fn mask_coverage(mask: &image::GrayImage, ds: f64, rect: [f64; 4]) -> f64 {
    let [x, y, w, h] = rect;
    let mut covered = 0.0;
    for (mx, my, p) in mask.enumerate_pixels() {
        if p.0[0] < 128 {
            continue;
        }
        let (px0, py0) = (mx as f64 * ds, my as f64 * ds);
        let dx = ((px0 + ds).min(x + w) - px0.max(x)).max(0.0);
        let dy = ((py0 + ds).min(y + h) - py0.max(y)).max(0.0);
        covered += dx * dy;
    }
    covered / (w * h)
}

#[test]
fn phantom_loop_geojson_tiles_and_validation_agree_with_the_masks() {
    let dir = tempfile::tempdir().unwrap();
    let set = phantom(
        dir.path(),
        &[
            "--count",
            "2",
            "--seed",
            "4",
            "--width-mm",
            "1.5",
            "--height-mm",
            "1.2",
        ],
    );
    let mapping = fixture("phantom-mapping.toml");
    let data = dir.path().join("data");
    tiles(&set, &set, &mapping, &data, "2").success();
    let labels = read_labels(&data);
    assert!(labels.len() > 10);
    let findings = dirascope::Finding::ALL.map(|f| f.key());
    let mut positives = [0usize; 4];
    for row in &labels {
        let id = &row["slide_id"];
        let (x, y) = (
            row["x_um"].parse::<f64>().unwrap() / 0.5,
            row["y_um"].parse::<f64>().unwrap() / 0.5,
        );
        for (k, f) in findings.iter().enumerate() {
            let mask = image::open(set.join(format!("{id}.masks/{f}.png")))
                .unwrap()
                .into_luma8();
            let want = mask_coverage(&mask, 8.0, [x, y, 448.0, 448.0]);
            let got: f64 = row[*f].parse().unwrap();
            assert!(
                (got - want).abs() <= 0.01,
                "{id} ({x}, {y}) {f}: {got} vs mask {want}"
            );
            if got > 0.0 {
                positives[k] += 1;
            }
        }
    }
    assert!(
        positives.iter().sum::<usize>() > 0,
        "no finding in any tile"
    );

    // Score with the bundled model; validate against the masks and the GeoJSON.
    let out = dir.path().join("out");
    dirascope()
        .arg("score")
        .arg(&set)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let manifest = std::fs::read_to_string(set.join("manifest.csv")).unwrap();
    let mut slide_labels = String::from("slide_id,label\n");
    for line in manifest.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        slide_labels.push_str(&format!("{},{}\n", cols[0], cols[2]));
    }
    std::fs::write(dir.path().join("labels.csv"), slide_labels).unwrap();
    let run = |truth: &[&std::ffi::OsStr], name: &str| -> serde_json::Value {
        let val = dir.path().join(name);
        let assert = dirascope()
            .arg("validate")
            .arg("--results")
            .arg(&out)
            .arg("--labels")
            .arg(dir.path().join("labels.csv"))
            .args(["--resamples", "200", "--out"])
            .arg(&val)
            .args(truth)
            .assert()
            .success();
        let stdout = String::from_utf8_lossy(&assert.get_output().stdout).to_string();
        assert!(stdout.to_lowercase().contains("auroc"), "{stdout}");
        println!("{stdout}");
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(val.join("metrics.json")).unwrap()).unwrap();
        m["tile_truth"]["findings"].clone()
    };
    let masks = run(&["--truth".as_ref(), set.as_os_str()], "val-masks");
    let polygons = run(
        &[
            "--truth-geojson".as_ref(),
            set.as_os_str(),
            "--mapping".as_ref(),
            mapping.as_os_str(),
        ],
        "val-geojson",
    );
    // The polygons are pixel-exact traces of the masks: the same tiles fall in each
    // class, so the AUROCs agree (finding by finding, where the masks have one).
    let by_key = |v: &serde_json::Value| -> BTreeMap<String, serde_json::Value> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|f| (f["finding"].as_str().unwrap().to_string(), f.clone()))
            .collect()
    };
    let (m, p) = (by_key(&masks), by_key(&polygons));
    for f in findings {
        for field in ["positives", "negatives", "excluded", "auroc"] {
            assert_eq!(m[f][field], p[f][field], "{f} {field}");
        }
    }
}
