//! The committed fixture phantoms (`fixtures/phantoms/`): each opens in the slide
//! reader at the MPP it was made at, its masks match its size, its truth lists the
//! findings of its class, and its pustule mask covers darker (hematoxylin-rich)
//! pixels than the rest of its epidermis.

use std::path::{Path, PathBuf};

use dirascope::slide::{self, OpenOptions, Rect};
use dirascope::synth::StainMatrix;

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/phantoms");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures/phantoms")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tiff"))
        .collect();
    out.sort();
    out
}

fn truth(tiff: &Path) -> serde_json::Value {
    let p = tiff.with_extension("truth.json");
    serde_json::from_slice(&std::fs::read(&p).expect("truth")).expect("json")
}

#[test]
fn one_fixture_per_class_opens_at_its_mpp() {
    let all = fixtures();
    let mut classes: Vec<String> = all
        .iter()
        .map(|p| truth(p)["class"].as_str().expect("class").to_string())
        .collect();
    classes.sort();
    assert_eq!(
        classes,
        ["dira", "normal", "psoriasis", "pustular-psoriasis"]
    );
    for p in &all {
        let t = truth(p);
        let reader = slide::open(p, &OpenOptions::default()).expect("open");
        let info = reader.info();
        let mpp = info.mpp.expect("mpp");
        assert!(
            (mpp.x - t["mpp"].as_f64().expect("mpp")).abs() < 1e-4,
            "{}",
            p.display()
        );
        assert_eq!(info.width(), t["width"].as_u64().expect("width"));
        assert_eq!(info.height(), t["height"].as_u64().expect("height"));
        let stem = p.file_stem().expect("stem").to_string_lossy().to_string();
        let ds = t["mask_downsample"].as_u64().expect("ds");
        for f in t["findings"].as_array().expect("findings") {
            let mask = image::open(p.with_file_name(f["mask"].as_str().expect("mask")))
                .expect("mask png")
                .to_luma8();
            assert_eq!(mask.width() as u64, info.width().div_ceil(ds), "{stem}");
            let any = mask.pixels().any(|px| px[0] > 0);
            assert_eq!(
                any,
                f["present"].as_bool().expect("present"),
                "{stem} {}",
                f["key"]
            );
        }
        let present: Vec<&str> = t["findings_present"]
            .as_array()
            .expect("present")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        match t["class"].as_str().expect("class") {
            "dira" => assert!(
                present.contains(&"subcorneal_pustule")
                    && present.contains(&"acantholysis")
                    && present.contains(&"neutrophilic_eccrine_hidradenitis")
            ),
            "pustular-psoriasis" => assert_eq!(present, ["subcorneal_pustule", "psoriasiform"]),
            "psoriasis" => assert_eq!(present, ["psoriasiform"]),
            _ => assert!(present.is_empty()),
        }
    }
}

#[test]
fn pustule_masks_cover_hematoxylin_rich_pixels() {
    for p in fixtures() {
        let t = truth(&p);
        let pustule = t["findings"][0].clone();
        if !pustule["present"].as_bool().expect("present") {
            continue;
        }
        let stain: StainMatrix = StainMatrix {
            hematoxylin: serde_json::from_value(t["stain"]["hematoxylin"].clone()).expect("h"),
            eosin: serde_json::from_value(t["stain"]["eosin"].clone()).expect("e"),
            h_scale: t["stain"]["h_scale"].as_f64().expect("hs") as f32,
            e_scale: t["stain"]["e_scale"].as_f64().expect("es") as f32,
            background: serde_json::from_value(t["stain"]["background"].clone()).expect("bg"),
        };
        let ds = t["mask_downsample"].as_u64().expect("ds") as u32;
        let pm = image::open(p.with_file_name(pustule["mask"].as_str().expect("mask")))
            .expect("png")
            .to_luma8();
        let em = image::open(p.with_file_name(format!(
            "{}.masks/epidermis.png",
            p.file_stem().expect("stem").to_string_lossy()
        )))
        .expect("epidermis")
        .to_luma8();
        let reader = slide::open(&p, &OpenOptions::default()).expect("open");
        let (w, h) = (reader.info().width() as u32, reader.info().height() as u32);
        let level0 = reader.read_region(0, Rect::new(0, 0, w, h)).expect("read");
        // Mean H over the level-0 block of each mask pixel whose 3 x 3 neighbourhood
        // is all inside (pustule) or all epidermis outside any pustule.
        let (mut hp, mut np, mut he, mut ne) = (0.0f64, 0u32, 0.0f64, 0u32);
        for y in 1..pm.height() - 1 {
            for x in 1..pm.width() - 1 {
                let all = |m: &image::GrayImage, want: bool| {
                    (0..3)
                        .all(|j| (0..3).all(|i| (m.get_pixel(x + i - 1, y + j - 1)[0] > 0) == want))
                };
                let is_p = all(&pm, true);
                let is_e = all(&em, true) && all(&pm, false);
                if !is_p && !is_e {
                    continue;
                }
                let mut s = 0.0;
                for j in 0..ds {
                    for i in 0..ds {
                        let px = level0.get_pixel((x * ds + i).min(w - 1), (y * ds + j).min(h - 1));
                        s += stain.unmix([px[0], px[1], px[2]]).0 as f64;
                    }
                }
                let m = s / (ds * ds) as f64;
                if is_p {
                    hp += m;
                    np += 1;
                } else {
                    he += m;
                    ne += 1;
                }
            }
        }
        assert!(
            np > 5 && ne > 50,
            "{}: {np} pustule, {ne} epidermis blocks",
            p.display()
        );
        let (hp, he) = (hp / np as f64, he / ne as f64);
        assert!(
            hp > 1.25 * he,
            "{}: pustule H {hp:.3} vs epidermis H {he:.3}",
            p.display()
        );
    }
}
