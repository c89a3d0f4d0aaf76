//! `dirascope validate` end to end on the committed phantoms: labels joined to
//! results with every mismatch listed, and `--truth` tile AUROC from the masks.

use std::fs;
use std::path::Path;

use assert_cmd::Command;

fn dirascope() -> Command {
    Command::cargo_bin("dirascope").expect("binary")
}

const PHANTOMS: &str = "fixtures/phantoms";

#[test]
fn validate_lists_mismatches_and_measures_tiles_against_phantom_masks() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    dirascope()
        .args(["score", PHANTOMS, "--out"])
        .arg(&out)
        .assert()
        .success();

    // normal-4 has no label; "ghost" names no scored slide.
    let labels = dir.path().join("labels.csv");
    fs::write(
        &labels,
        "slide_id,label,stratum\ndira-3,dira,small\npsoriasis-3,psoriasis,small\n\
         pustular-psoriasis-2,pustular-psoriasis,large\nghost,dira,large\n",
    )
    .unwrap();
    let validate_with = |truth: &Path, extra: &[&str], val: &Path| {
        dirascope()
            .args(["validate", "--resamples", "1000", "--results"])
            .arg(&out)
            .arg("--labels")
            .arg(&labels)
            .arg("--truth")
            .arg(truth)
            .args(extra)
            .arg("--out")
            .arg(val)
            .assert()
    };
    let validate = |truth: &Path, val: &Path| validate_with(truth, &[], val);
    let val = dir.path().join("val");
    let assert = validate(Path::new(PHANTOMS), &val).success();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(
        stderr.contains("'normal-4' has results but no label"),
        "{stderr}"
    );
    assert!(stderr.contains("'ghost' names no scored slide"), "{stderr}");

    let md = fs::read_to_string(val.join("validation.md")).unwrap();
    assert!(
        md.contains("slides with results but no label (1): normal-4"),
        "{md}"
    );
    assert!(
        md.contains("labels naming slides without results (1): ghost"),
        "{md}"
    );
    assert!(
        md.contains("## Tile-level AUROC against truth masks"),
        "{md}"
    );
    for f in [
        "roc.png",
        "reliability.png",
        "metrics.json",
        "roc.svg",
        "reliability.svg",
        "strata/roc_small.svg",
        "strata/reliability_small.svg",
        "strata/roc_large.svg",
    ] {
        assert!(val.join(f).is_file(), "{f}");
    }
    // SVG text stays text: the legend names each score with its AUROC.
    let svg = fs::read_to_string(val.join("roc.svg")).unwrap();
    assert!(svg.contains(">dira_pattern "), "{svg}");
    let small = fs::read_to_string(val.join("strata/roc_small.svg")).unwrap();
    assert!(small.contains("stratum small (2 slides)"), "{small}");

    // Tile truth covers every scored tile of all four slides (truth does not need labels).
    let metrics: serde_json::Value =
        serde_json::from_slice(&fs::read(val.join("metrics.json")).unwrap()).unwrap();
    let truth = &metrics["tile_truth"];
    assert_eq!(truth["slides"], 4);
    let rows: usize = ["dira-3", "normal-4", "psoriasis-3", "pustular-psoriasis-2"]
        .iter()
        .map(|id| {
            fs::read_to_string(out.join(id).join("tiles.csv"))
                .unwrap()
                .lines()
                .count()
                - 1
        })
        .sum();
    assert_eq!(truth["tiles"].as_u64(), Some(rows as u64));
    let findings = truth["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 4);
    for f in findings {
        let (pos, neg, excluded) = (
            f["positives"].as_u64().unwrap(),
            f["negatives"].as_u64().unwrap(),
            f["excluded"].as_u64().unwrap(),
        );
        assert_eq!(pos + neg + excluded, rows as u64, "{f}");
        assert!(pos >= 1, "every finding is drawn on some fixture: {f}");
        // The bundled model ranks the truth well on slides it never saw; findings
        // with a handful of positive tiles are checked loosely.
        let auroc = f["auroc"].as_f64().unwrap();
        let floor = if pos >= 5 { 0.8 } else { 0.6 };
        assert!(auroc >= floor, "{f}");
        let ci = &f["auroc_ci95"];
        assert!(ci["low"].as_f64().unwrap() <= ci["high"].as_f64().unwrap());
    }
    let psoriasiform = findings
        .iter()
        .find(|f| f["finding"] == "psoriasiform")
        .unwrap();
    assert!(psoriasiform["positives"].as_u64().unwrap() >= 10);

    // The same run is reproducible: the seeded bootstrap gives identical metrics.
    let val2 = dir.path().join("val2");
    validate(Path::new(PHANTOMS), &val2).success();
    assert_eq!(
        fs::read(val.join("metrics.json")).unwrap(),
        fs::read(val2.join("metrics.json")).unwrap()
    );

    // A per-finding label fraction is applied and reported; an unknown finding is refused.
    let val4 = dir.path().join("val4");
    let hidradenitis = [
        "--truth-min-fraction",
        "neutrophilic_eccrine_hidradenitis=0.1",
    ];
    validate_with(Path::new(PHANTOMS), &hidradenitis, &val4).success();
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(val4.join("metrics.json")).unwrap()).unwrap();
    for f in m["tile_truth"]["findings"].as_array().unwrap() {
        let expected = if f["finding"] == "neutrophilic_eccrine_hidradenitis" {
            0.1
        } else {
            0.01
        };
        assert_eq!(f["min_fraction"].as_f64(), Some(expected), "{f}");
    }
    let unknown = ["--truth-min-fraction", "pustules=0.1"];
    validate_with(Path::new(PHANTOMS), &unknown, &dir.path().join("val5"))
        .code(2)
        .stderr(predicates::str::contains("'pustules'"));

    // A truth folder without any truth file is refused with the folder named.
    let empty = dir.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    let assert = validate(&empty, &dir.path().join("val3")).failure();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(
        stderr.contains(&empty.display().to_string()) && stderr.contains("truth.json"),
        "{stderr}"
    );
    assert!(!Path::new(&dir.path().join("val3").join("metrics.json")).exists());
}
