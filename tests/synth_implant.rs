//! `synth --implant-into`: lesions drawn into the real CMU-1 slide from
//! `../shared/fixtures/real/` (skipped with a printed reason where that folder is
//! absent). The masks must line up with what was drawn, the real pixels outside the
//! implants must be the slide's own bytes, the stain must be the slide's, and the
//! same seed must give the same file at any thread count. Generator 1.8 (the default)
//! sees what it draws through the optics; 1.7 draws model 2's implants byte for byte.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use dirascope::slide::{self, OpenOptions, Rect};
use serde_json::Value;

fn real_dir() -> Option<PathBuf> {
    common::real_dir("CMU-1-Small-Region.svs")
}

fn synth(args: &[&str], threads: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dirascope"))
        .arg("synth")
        .args(args)
        .env("RAYON_NUM_THREADS", threads)
        .output()
        .expect("dirascope runs")
}

/// `synth --implant-into SLIDE EXTRA... --out OUT`, which must succeed.
fn implant(slide: &Path, extra: &[&str], out: &Path, threads: &str) {
    let mut args = vec!["--implant-into", slide.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--out", out.to_str().unwrap()]);
    let run = synth(&args, threads);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

fn pixels(path: &Path) -> (Vec<u8>, u32, u32) {
    let r = slide::open(path, &OpenOptions::default()).expect("opens");
    let (w, h) = (r.info().width() as u32, r.info().height() as u32);
    let img = r.read_region(0, Rect::new(0, 0, w, h)).expect("reads");
    (img.into_raw(), w, h)
}

/// An implant run's truth.json for slide `id`.
fn truth(out: &Path, id: &str) -> Value {
    let text = std::fs::read_to_string(out.join(format!("{id}.truth.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Each implant of `truth` as (centre x, centre y, reach) in level-0 pixels, the
/// reach widened by `margin_px`.
fn reaches(truth: &Value, margin_px: f64) -> Vec<(f64, f64, f64)> {
    let mpp = truth["mpp"].as_f64().unwrap();
    truth["implant"]["implants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let c = i["centre_um"].as_array().unwrap();
            (
                c[0].as_f64().unwrap() / mpp,
                c[1].as_f64().unwrap() / mpp,
                i["reach_um"].as_f64().unwrap() / mpp + margin_px,
            )
        })
        .collect()
}

/// Whether pixel (x, y)'s centre lies beyond every reach of [`reaches`].
fn outside_all(reach: &[(f64, f64, f64)], x: usize, y: usize) -> bool {
    let (fx, fy) = (x as f64 + 0.5, y as f64 + 0.5);
    reach
        .iter()
        .all(|&(cx, cy, r)| (fx - cx).hypot(fy - cy) > r)
}

fn grey(path: &Path) -> (Vec<u8>, u32, u32) {
    let img = image::open(path).expect("mask png").to_luma8();
    let (w, h) = img.dimensions();
    (img.into_raw(), w, h)
}

#[test]
fn implants_line_up_with_their_masks_and_leave_every_other_pixel_as_it_was() {
    let Some(dir) = real_dir() else { return };
    let src = dir.join("CMU-1-Small-Region.svs");
    let out = tempfile::tempdir().unwrap();
    implant(&src, &["--class", "dira", "--seed", "3"], out.path(), "2");
    let (before, w, h) = pixels(&src);
    let (after, w2, h2) = pixels(&out.path().join("dira-implant-3.tiff"));
    assert_eq!((w, h), (w2, h2));
    let truth = truth(out.path(), "dira-implant-3");
    let mpp = truth["mpp"].as_f64().unwrap();
    assert!((mpp - 0.499).abs() < 1e-9);
    let implants = truth["implant"]["implants"].as_array().unwrap();
    assert!(
        implants.iter().any(|i| i["finding"].is_null()),
        "shams are implanted too"
    );
    let reach = reaches(&truth, 2.0);
    // Outside every implant's reach the bytes are the slide's own (lossless output).
    let (mut outside, mut changed_outside) = (0usize, 0usize);
    for y in 0..h as usize {
        for x in 0..w as usize {
            if outside_all(&reach, x, y) {
                outside += 1;
                let q = (y * w as usize + x) * 3;
                if before[q..q + 3] != after[q..q + 3] {
                    changed_outside += 1;
                }
            }
        }
    }
    assert!(outside > (w * h) as usize / 2);
    assert_eq!(changed_outside, 0, "pixels changed outside every implant");
    // Inside each finding's mask the pixels were drawn.
    let ds = truth["mask_downsample"].as_u64().unwrap() as usize;
    let mut checked = 0;
    for f in truth["findings"].as_array().unwrap() {
        if !f["present"].as_bool().unwrap() {
            continue;
        }
        let (mask, mw, _) = grey(&out.path().join(f["mask"].as_str().unwrap()));
        let (mut n, mut drawn) = (0usize, 0usize);
        for (k, &m) in mask.iter().enumerate() {
            if m == 0 {
                continue;
            }
            let (x, y) = (
                (k % mw as usize) * ds + ds / 2,
                (k / mw as usize) * ds + ds / 2,
            );
            if x >= w as usize || y >= h as usize {
                continue;
            }
            n += 1;
            // Any pixel of the mask cell differs from the slide's.
            let differs = (y - ds / 2..(y + ds / 2).min(h as usize)).any(|yy| {
                (x - ds / 2..(x + ds / 2).min(w as usize)).any(|xx| {
                    let q = (yy * w as usize + xx) * 3;
                    before[q..q + 3] != after[q..q + 3]
                })
            });
            drawn += differs as usize;
        }
        let key = f["key"].as_str().unwrap();
        // Every finding's mask is what was drawn, psoriasiform change included
        // (its rete, capillaries and parakeratosis; the real epidermis of the
        // stretch is not marked).
        let floor = 0.9;
        assert!(n > 0, "{key}: empty mask");
        assert!(
            drawn as f64 >= floor * n as f64,
            "{key}: only {drawn} of {n} mask cells were drawn"
        );
        checked += 1;
    }
    assert!(checked >= 2, "a DIRA implant shows at least two findings");
    let present: Vec<&str> = truth["findings_present"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let dira = [
        "subcorneal_pustule",
        "acantholysis",
        "neutrophilic_eccrine_hidradenitis",
    ];
    assert!(
        present.iter().filter(|k| dira.contains(k)).count() >= 2,
        "{present:?}"
    );
    // QuPath annotations beside it, as for phantoms.
    assert!(out.path().join("dira-implant-3.geojson").is_file());
}

#[test]
fn the_stain_blended_in_is_the_slides_own_as_the_python_measurement_gives_it() {
    let Some(dir) = real_dir() else { return };
    let src = dir.join("CMU-1-Small-Region.svs");
    let out = tempfile::tempdir().unwrap();
    let args = ["--part", "train", "--class", "normal", "--seed", "1"];
    implant(&src, &args, out.path(), "2");
    let truth = truth(out.path(), "normal-implant-1");
    // The train part only: rows above 1484 (training/real_split.toml).
    assert_eq!(truth["height"].as_u64(), Some(1484));
    assert_eq!(truth["implant"]["part"].as_str(), Some("train"));
    assert!(truth["findings_present"].as_array().unwrap().is_empty());
    // docs/realism.md: training/realism/stain_ranges.py on the same train part.
    let stain = &truth["implant"]["stain"];
    let v = |k: &str| -> Vec<f64> {
        stain[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    for (got, want) in [
        (v("hematoxylin"), [0.883, 0.390, 0.261]),
        (v("eosin"), [0.102, 0.916, 0.388]),
    ] {
        for c in 0..3 {
            assert!((got[c] - want[c]).abs() < 0.05, "{got:?} vs {want:?}");
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_file_at_one_and_two_threads() {
    let Some(dir) = real_dir() else { return };
    let src = dir.join("CMU-1-Small-Region.svs");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (d, threads) in [(&a, "1"), (&b, "2")] {
        implant(
            &src,
            &["--class", "psoriasis", "--seed", "3"],
            d.path(),
            threads,
        );
    }
    for name in ["psoriasis-implant-3.tiff", "psoriasis-implant-3.truth.json"] {
        assert_eq!(
            std::fs::read(a.path().join(name)).unwrap(),
            std::fs::read(b.path().join(name)).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn a_slide_without_epidermis_or_outside_the_split_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // Eosin-pink tissue on glass, no hematoxylin-dense band anywhere.
    let png = dir.path().join("dermis-only.png");
    let img = image::RgbImage::from_fn(600, 400, |x, y| {
        if x < 300 {
            let n = ((x * 7 + y * 13) % 17) as u8;
            image::Rgb([230 - n, 150 - n, 190 - n])
        } else {
            image::Rgb([245, 245, 245])
        }
    });
    img.save(&png).unwrap();
    let out = dir.path().join("out");
    let run = synth(
        &[
            "--implant-into",
            png.to_str().unwrap(),
            "--mpp",
            "0.5",
            "--class",
            "dira",
            "--out",
            out.to_str().unwrap(),
        ],
        "2",
    );
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(err.contains("dermis-only.png"), "{err}");
    assert!(
        err.contains("epidermis") || err.contains("no place"),
        "{err}"
    );
    // No MPP in a PNG: say so.
    let run = synth(
        &[
            "--implant-into",
            png.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        "2",
    );
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(err.contains("--mpp"), "{err}");
    // --part needs the image in the real split.
    let run = synth(
        &[
            "--implant-into",
            png.to_str().unwrap(),
            "--mpp",
            "0.5",
            "--part",
            "train",
            "--out",
            out.to_str().unwrap(),
        ],
        "2",
    );
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(err.contains("real_split.toml"), "{err}");
    assert!(!out.join("dira-implant-0.tiff").exists());
}

#[test]
fn an_acantholytic_cleft_is_an_open_space_with_rounded_cells_floating_in_it() {
    let Some(dir) = real_dir() else { return };
    let src = dir.join("CMU-1-Small-Region.svs");
    let out = tempfile::tempdir().unwrap();
    let args = ["--class", "dira", "--seed", "3604", "--part", "train"];
    implant(&src, &args, out.path(), "2");
    let slide_path = out.path().join("dira-implant-3604.tiff");
    let (px, w, h) = pixels(&slide_path);
    let truth = truth(out.path(), "dira-implant-3604");
    let ds = truth["mask_downsample"].as_u64().unwrap() as usize;
    let glass = truth["implant"]["stain"]["glass"].as_array().unwrap();
    let glass_lum = glass.iter().map(|v| v.as_f64().unwrap()).sum::<f64>() / 3.0;
    let f = truth["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == "acantholysis")
        .unwrap();
    assert!(f["present"].as_bool().unwrap(), "seed 3604 draws clefts");
    let (mask, mw, _) = grey(&out.path().join(f["mask"].as_str().unwrap()));
    let (mut n, mut clear, mut cells) = (0usize, 0usize, 0usize);
    for (k, &m) in mask.iter().enumerate() {
        let (x, y) = (
            (k % mw as usize) * ds + ds / 2,
            (k / mw as usize) * ds + ds / 2,
        );
        if m == 0 || x >= w as usize || y >= h as usize {
            continue;
        }
        let q = (y * w as usize + x) * 3;
        let lum = px[q..q + 3].iter().map(|&v| v as f64).sum::<f64>() / 3.0;
        n += 1;
        clear += (lum > glass_lum - 30.0) as usize;
        cells += (lum < glass_lum - 80.0) as usize;
    }
    eprintln!("cleft: {n} mask cells, {clear} clear, {cells} cells");
    assert!(n > 50, "{n}");
    // Mostly open space (the cleft), but not empty: acantholytic cells float in it.
    assert!(clear as f64 > 0.35 * n as f64, "{clear} of {n} clear");
    assert!(cells as f64 > 0.1 * n as f64, "{cells} of {n} cells");
}

/// sha256 of level 0's RGB bytes.
fn pixel_digest(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(pixels(path).0))
}

#[test]
fn generator_1_7_draws_the_implants_of_model_2s_training_sets_byte_for_byte() {
    // Digests of the implants drawn by the binary of the commit before synth 1.8
    // (decoded with tifffile), which drew model 2's implant sets.
    let Some(dir) = real_dir() else { return };
    let out = tempfile::tempdir().unwrap();
    let cmu = dir.join("CMU-1-Small-Region.svs");
    implant(
        &cmu,
        &["--class", "dira", "--seed", "3", "--generator", "1.7"],
        out.path(),
        "2",
    );
    assert_eq!(
        pixel_digest(&out.path().join("dira-implant-3.tiff")),
        "714c1273a518adf82f5b413cbc50326fa1b7e05b6279482c8d88f3490c8b1cd2"
    );
    let pd = dir.join("skin-normal-10x-public-domain.jpg");
    let args = [
        "--class",
        "psoriasis",
        "--seed",
        "901",
        "--mpp",
        "0.75",
        "--part",
        "test",
        "--generator",
        "1.7",
    ];
    implant(&pd, &args, out.path(), "2");
    assert_eq!(
        pixel_digest(&out.path().join("psoriasis-implant-901.tiff")),
        "6b7044bce67f10c9c222c311d4ceb9d37db97078fb04afde141ba79af264ceaf"
    );
    let truth = truth(out.path(), "psoriasis-implant-901");
    assert_eq!(truth["generator_version"], "1.7.0");
    assert_eq!(truth["implant"]["optics_um"].as_f64(), Some(0.0));
}

/// Mean squared step between neighbouring pixels (both directions, all channels)
/// over the pixels an implant changed.
fn sharpness(real: &[u8], drawn: &[u8], w: usize, h: usize) -> (f64, usize) {
    let (mut sum, mut n) = (0.0f64, 0usize);
    for y in 0..h - 1 {
        for x in 0..w - 1 {
            let q = (y * w + x) * 3;
            if real[q..q + 3] == drawn[q..q + 3] {
                continue;
            }
            for c in 0..3 {
                let v = drawn[q + c] as f64;
                sum += (v - drawn[q + 3 + c] as f64).powi(2)
                    + (v - drawn[q + w * 3 + c] as f64).powi(2);
            }
            n += 1;
        }
    }
    (sum / n.max(1) as f64, n)
}

#[test]
fn synth_1_8_sees_what_it_draws_through_the_optics_and_keeps_the_rest() {
    let Some(dir) = real_dir() else { return };
    let src = dir.join("CMU-1-Small-Region.svs");
    let args = ["--class", "dira", "--seed", "5", "--part", "test"];
    let mut runs = Vec::new();
    for optics in ["0", "0.5", "1.0"] {
        let out = tempfile::tempdir().unwrap();
        let mut a = args.to_vec();
        a.extend_from_slice(&["--optics-um", optics]);
        implant(&src, &a, out.path(), "2");
        let t = truth(out.path(), "dira-implant-5");
        assert_eq!(t["generator_version"], "1.15.0");
        assert_eq!(
            t["implant"]["optics_um"].as_f64(),
            Some(optics.parse().unwrap())
        );
        runs.push((out, t));
    }
    // Synth 1.9 to 1.16 changed the phantoms only (hair follicles, eccrine coils,
    // vessels, the cells round them, knife lines, hidradenitis by the tubules, the
    // coil's clear and dark cells, the stain's grain and colour): their implants are 1.8's.
    let out18 = tempfile::tempdir().unwrap();
    let mut a = args.to_vec();
    a.extend_from_slice(&["--optics-um", "0.5", "--generator", "1.8"]);
    implant(&src, &a, out18.path(), "2");
    assert_eq!(
        truth(out18.path(), "dira-implant-5")["generator_version"],
        "1.8.0"
    );
    assert_eq!(
        pixel_digest(&out18.path().join("dira-implant-5.tiff")),
        pixel_digest(&runs[1].0.path().join("dira-implant-5.tiff"))
    );
    let (real, w, h) = {
        let (all, w, h) = pixels(&src);
        // The test part: rows from 1484 on (training/real_split.toml).
        (
            all[1484 * w as usize * 3..].to_vec(),
            w as usize,
            h as usize - 1484,
        )
    };
    let mut previous = f64::INFINITY;
    for (out, t) in &runs {
        let (drawn, w2, h2) = pixels(&out.path().join("dira-implant-5.tiff"));
        assert_eq!((w2 as usize, h2 as usize), (w, h));
        let (s, n) = sharpness(&real, &drawn, w, h);
        eprintln!(
            "optics {}: {n} pixels drawn, mean squared step {s:.1}",
            t["implant"]["optics_um"]
        );
        assert!(n > 10_000, "{n}");
        assert!(
            s < previous,
            "blurrier optics, sharper pixels: {s} after {previous}"
        );
        previous = s;
        // Past each implant's reach (which counts the optics' 3 sigma) nothing changed.
        let reach = reaches(t, 1.0);
        for y in 0..h {
            for x in 0..w {
                let q = (y * w + x) * 3;
                if outside_all(&reach, x, y) {
                    assert_eq!(
                        real[q..q + 3],
                        drawn[q..q + 3],
                        "({x}, {y}) changed outside every implant"
                    );
                }
            }
        }
    }
    // The same lesions as generator 1.7 (masks and truth), drawn otherwise.
    let old = tempfile::tempdir().unwrap();
    let mut a = args.to_vec();
    a.extend_from_slice(&["--generator", "1.7"]);
    implant(&src, &a, old.path(), "2");
    let t17 = truth(old.path(), "dira-implant-5");
    assert_eq!(t17["findings"], runs[1].1["findings"]);
    assert_ne!(
        pixel_digest(&old.path().join("dira-implant-5.tiff")),
        pixel_digest(&runs[1].0.path().join("dira-implant-5.tiff"))
    );
}
