//! `dirascope synth` end to end: files and their contents, determinism whatever the
//! thread count, bad arguments, and phantoms reopened by the slide reader.

use std::fs;
use std::path::Path;

use assert_cmd::Command;
use dirascope::slide::{self, OpenOptions, Rect};

fn synth(args: &[&str]) -> assert_cmd::assert::Assert {
    Command::cargo_bin("dirascope")
        .expect("binary")
        .arg("synth")
        .args(args)
        .assert()
}

fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = fs::read_dir(&d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p.strip_prefix(dir).unwrap_or(&p).display().to_string());
                }
            }
        }
    }
    out.sort();
    out
}

const SMALL: [&str; 6] = ["--mpp", "1.0", "--width-mm", "1.5", "--height-mm", "1.2"];

#[test]
fn writes_tiff_truth_and_masks_that_the_reader_opens_at_the_same_mpp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let out_s = out.to_str().expect("utf8");
    synth(
        &[
            &["--class", "dira", "--seed", "3", "--out", out_s][..],
            &SMALL[..],
        ]
        .concat(),
    )
    .success();
    let names = files(&out);
    for want in [
        "dira-3.tiff",
        "dira-3.truth.json",
        "dira-3.masks/tissue.png",
        "dira-3.masks/epidermis.png",
        "dira-3.masks/subcorneal_pustule.png",
        "dira-3.masks/acantholysis.png",
        "dira-3.masks/neutrophilic_eccrine_hidradenitis.png",
        "dira-3.masks/psoriasiform.png",
    ] {
        assert!(
            names.contains(&want.to_string()),
            "{want} missing from {names:?}"
        );
    }
    assert!(
        names.iter().all(|n| !n.contains(".tmp")),
        "temporary left: {names:?}"
    );
    let reader = slide::open(&out.join("dira-3.tiff"), &OpenOptions::default()).expect("open");
    let info = reader.info();
    let mpp = info.mpp.expect("mpp stored");
    assert!(
        (mpp.x - 1.0).abs() < 1e-3 && (mpp.y - 1.0).abs() < 1e-3,
        "{mpp:?}"
    );
    assert_eq!((info.width(), info.height()), (1500, 1200));
    assert!(info.levels.len() >= 3, "levels {:?}", info.levels);
    let truth: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("dira-3.truth.json")).expect("truth"))
            .expect("json");
    assert_eq!(truth["class"], "dira");
    assert_eq!(truth["seed"], 3);
    assert_eq!(truth["width"], 1500);
    assert_eq!(truth["mpp"], 1.0);
    assert!(truth["generator_version"].is_string());
    assert!(truth["stain"]["hematoxylin"].is_array());
    let ds = truth["mask_downsample"].as_u64().expect("downsample") as u32;
    let mask = image::open(out.join("dira-3.masks/tissue.png"))
        .expect("mask")
        .to_luma8();
    assert_eq!(mask.width(), 1500u32.div_ceil(ds));
    // The tissue mask agrees with the pixels: tissue is stained, glass is not.
    let rgb = reader
        .read_region(0, Rect::new(0, 0, 1500, 1200))
        .expect("read");
    let (mut tissue_dark, mut tissue_n, mut glass_dark, mut glass_n) = (0u64, 0u64, 0u64, 0u64);
    for (x, y, p) in mask.enumerate_pixels() {
        let c = rgb.get_pixel((x * ds + ds / 2).min(1499), (y * ds + ds / 2).min(1199));
        let dark = (c[0] as u32 + c[1] as u32 + c[2] as u32) < 3 * 215;
        if p[0] > 0 {
            tissue_n += 1;
            tissue_dark += dark as u64;
        } else {
            glass_n += 1;
            glass_dark += dark as u64;
        }
    }
    assert!(
        tissue_dark as f64 / tissue_n as f64 > 0.5,
        "tissue pixels mostly stained"
    );
    assert!(
        (glass_dark as f64 / glass_n as f64) < 0.02,
        "glass pixels clean"
    );
}

#[test]
fn same_arguments_give_identical_files_whatever_the_thread_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut listings = Vec::new();
    for (k, threads) in ["1", "2", "3"].iter().enumerate() {
        let out = dir.path().join(format!("run{k}"));
        let out_s = out.to_str().expect("utf8").to_string();
        Command::cargo_bin("dirascope")
            .expect("binary")
            .env("RAYON_NUM_THREADS", threads)
            .args(["synth", "--seed", "10", "--count", "2", "--out", &out_s])
            .args(SMALL)
            .assert()
            .success();
        let names = files(&out);
        let contents: Vec<Vec<u8>> = names
            .iter()
            .map(|n| fs::read(out.join(n)).expect("read"))
            .collect();
        listings.push((names, contents));
    }
    assert!(listings[0].0.contains(&"manifest.csv".to_string()));
    for l in &listings[1..] {
        assert_eq!(l.0, listings[0].0);
        for (i, c) in l.1.iter().enumerate() {
            assert!(c == &listings[0].1[i], "{} differs between runs", l.0[i]);
        }
    }
}

#[test]
fn a_set_mixes_classes_and_lists_them_in_the_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("set");
    synth(
        &[
            &[
                "--seed",
                "4",
                "--count",
                "4",
                "--out",
                out.to_str().expect("utf8"),
            ][..],
            &SMALL[..],
        ]
        .concat(),
    )
    .success();
    let manifest = fs::read_to_string(out.join("manifest.csv")).expect("manifest");
    let lines: Vec<&str> = manifest.lines().collect();
    assert_eq!(lines[0], "slide_id,path,class");
    assert_eq!(lines.len(), 5);
    for class in ["dira", "pustular-psoriasis", "psoriasis", "normal"] {
        assert!(
            lines.iter().any(|l| l.ends_with(&format!(",{class}"))),
            "{class} missing: {manifest}"
        );
    }
    for l in &lines[1..] {
        let path = l.split(',').nth(1).expect("path");
        assert!(out.join(path).is_file(), "{path}");
    }
}

#[test]
fn tile_export_writes_pngs_and_labels_with_the_contract_columns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("tiles");
    synth(&[
        "--class",
        "pustular-psoriasis",
        "--seed",
        "1",
        "--width-mm",
        "2",
        "--height-mm",
        "1.5",
        "--tiles",
        "--tile-px",
        "128",
        "--tile-mpp",
        "1.0",
        "--out",
        out.to_str().expect("utf8"),
    ])
    .success();
    let labels = fs::read_to_string(out.join("labels.csv")).expect("labels");
    let mut lines = labels.lines();
    assert_eq!(
        lines.next(),
        Some("path,slide_id,class,seed,x_um,y_um,tile_px,tile_mpp,tissue,subcorneal_pustule,acantholysis,neutrophilic_eccrine_hidradenitis,psoriasiform")
    );
    let rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    assert!(rows.len() > 20, "{} tiles", rows.len());
    let mut pustule_tiles = 0;
    for r in &rows {
        assert_eq!(r.len(), 13);
        assert_eq!(r[1], "pustular-psoriasis-1");
        assert_eq!(r[2], "pustular-psoriasis");
        let img = image::open(out.join(&r[0])).expect("tile png");
        assert_eq!((img.width(), img.height()), (128, 128));
        for v in &r[8..] {
            let f: f64 = v.parse().expect("fraction");
            assert!((0.0..=1.0).contains(&f));
        }
        let tissue: f64 = r[8].parse().expect("tissue");
        assert!(
            tissue >= 0.1 || tissue == 0.0,
            "tile with little tissue kept: {tissue}"
        );
        if r[9].parse::<f64>().expect("pustule") > 0.0 {
            pustule_tiles += 1;
        }
    }
    assert!(pustule_tiles > 0, "no tile covers a pustule");
    // Each slide of the export has its truth and masks beside its tiles.
    assert!(out.join("tiles/pustular-psoriasis-1.truth.json").is_file());
    assert!(out
        .join("tiles/pustular-psoriasis-1.masks/subcorneal_pustule.png")
        .is_file());
    // The acantholysis and hidradenitis columns are zero for pustular psoriasis.
    assert!(rows.iter().all(|r| r[10] == "0.0000" && r[11] == "0.0000"));
}

fn assert_usage_error(args: &[&str], needle: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("o");
    let mut all: Vec<&str> = args.to_vec();
    let out_s = out.to_str().expect("utf8").to_string();
    if !args.contains(&"--out") {
        all.extend(["--out", &out_s]);
    }
    let assert = synth(&all).code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(stderr.contains(needle), "stderr for {args:?}: {stderr}");
    assert!(
        files(&out).is_empty(),
        "files left for {args:?}: {:?}",
        files(&out)
    );
}

#[test]
fn bad_arguments_exit_2_with_a_clear_message_and_no_files() {
    assert_usage_error(&["--class", "lupus"], "lupus");
    assert_usage_error(&["--mpp", "0"], "--mpp");
    assert_usage_error(&["--mpp=-0.5"], "--mpp");
    assert_usage_error(&["--mpp", "nan"], "--mpp");
    assert_usage_error(&["--width-mm", "0"], "--width-mm");
    assert_usage_error(&["--height-mm", "5000"], "--height-mm");
    assert_usage_error(&["--width-mm", "50", "--mpp", "0.1"], "pixels");
    assert_usage_error(&["--count", "0"], "--count");
    assert_usage_error(&["--artefacts", "coffee"], "coffee");
    assert_usage_error(&["--tiles", "--tile-px", "0"], "--tile-px");
}

#[test]
fn an_unwritable_output_folder_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("plain-file");
    fs::write(&file, b"x").expect("write");
    let out = file.join("sub");
    let assert = synth(&["--out", out.to_str().expect("utf8")]).code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(stderr.contains("--out"), "{stderr}");
    assert!(!out.exists());
}
