//! `synth --implant-into`: lesions drawn into the real CMU-1 slide from
//! `../shared/fixtures/real/` (skipped with a printed reason where that folder is
//! absent). The masks must line up with what was drawn, the real pixels outside the
//! implants must be the slide's own bytes, the stain must be the slide's, and the
//! same seed must give the same file at any thread count.

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
    let reach: Vec<(f64, f64, f64)> = implants
        .iter()
        .map(|i| {
            let c = i["centre_um"].as_array().unwrap();
            (
                c[0].as_f64().unwrap() / mpp,
                c[1].as_f64().unwrap() / mpp,
                i["reach_um"].as_f64().unwrap() / mpp + 2.0,
            )
        })
        .collect();
    // Outside every implant's reach the bytes are the slide's own (lossless output).
    let (mut outside, mut changed_outside) = (0usize, 0usize);
    for y in 0..h as usize {
        for x in 0..w as usize {
            let (fx, fy) = (x as f64 + 0.5, y as f64 + 0.5);
            if reach
                .iter()
                .all(|&(cx, cy, r)| (fx - cx).hypot(fy - cy) > r)
            {
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
