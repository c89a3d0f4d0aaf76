//! Pixel parity with reference decodes of a real Aperio slide (libjpeg-turbo via
//! tifffile), from `../shared/fixtures/real/`. Skips with a printed reason where
//! that folder is absent (a user's fresh clone has no `../shared`).

mod common;

use std::path::PathBuf;

use dirascope::slide::{self, MppSource, OpenOptions, Rect, SlideFormat};

fn real_dir() -> Option<PathBuf> {
    common::real_dir("CMU-1-Small-Region.svs")
}

#[test]
fn svs_metadata_matches_the_aperio_header() {
    let Some(dir) = real_dir() else { return };
    let reader = slide::open(&dir.join("CMU-1-Small-Region.svs"), &OpenOptions::default()).unwrap();
    let info = reader.info();
    assert_eq!(info.format, SlideFormat::Aperio);
    assert_eq!((info.width(), info.height()), (2220, 2967));
    assert_eq!(info.levels.len(), 1);
    let mpp = info.mpp.expect("MPP from the Aperio description");
    assert!((mpp.x - 0.499).abs() < 1e-9 && (mpp.y - 0.499).abs() < 1e-9);
    assert_eq!(info.mpp_source, MppSource::AperioDescription);
    assert_eq!(info.objective_power, Some(20.0));
    let names: Vec<_> = info
        .associated
        .iter()
        .map(|a| (a.name.as_str(), a.width, a.height))
        .collect();
    assert_eq!(
        names,
        [
            ("thumbnail", 574, 768),
            ("label", 387, 463),
            ("macro", 1280, 431)
        ]
    );
}

#[test]
fn every_240px_tile_mean_matches_the_reference_decode() {
    let Some(dir) = real_dir() else { return };
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("CMU-1-Small-Region.reference.json")).unwrap(),
    )
    .unwrap();
    let reader = slide::open(&dir.join("CMU-1-Small-Region.svs"), &OpenOptions::default()).unwrap();
    let tiles = reference["tiles_mean_rgb"].as_array().unwrap();
    assert!(tiles.len() > 100);
    let mut worst = 0.0f64;
    for t in tiles {
        let get = |k: &str| t[k].as_i64().unwrap();
        let rect = Rect::new(get("x"), get("y"), get("w") as u32, get("h") as u32);
        let img = reader.read_region(0, rect).unwrap();
        let mut sum = [0f64; 3];
        for p in img.pixels() {
            for c in 0..3 {
                sum[c] += p[c] as f64;
            }
        }
        let n = (rect.width * rect.height) as f64;
        for c in 0..3 {
            let want = t["mean_rgb"][c].as_f64().unwrap();
            let diff = (sum[c] / n - want).abs();
            worst = worst.max(diff);
            // The reference means are rounded to three decimals.
            assert!(
                diff <= 0.001,
                "tile at ({}, {}) channel {c}: ours {:.3}, reference {want:.3}",
                rect.x,
                rect.y,
                sum[c] / n
            );
        }
    }
    eprintln!(
        "{} tiles, worst channel-mean difference {worst:.4}",
        tiles.len()
    );
}

#[test]
fn region_crossing_tile_edges_matches_the_reference_png() {
    let Some(dir) = real_dir() else { return };
    let reader = slide::open(&dir.join("CMU-1-Small-Region.svs"), &OpenOptions::default()).unwrap();
    let ours = reader
        .read_region(0, Rect::new(800, 1200, 512, 512))
        .unwrap();
    let reference = image::open(dir.join("CMU-1-Small-Region.region-x800-y1200-512.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(ours.dimensions(), reference.dimensions());
    // dirascope's JPEG decoder reproduces libjpeg-turbo, so the pixels are identical.
    let differing = ours
        .as_raw()
        .iter()
        .zip(reference.as_raw())
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(
        differing, 0,
        "{differing} samples differ from libjpeg-turbo's decode"
    );
}

#[test]
fn svs_thumbnail_page_matches_its_reference_decode() {
    let Some(dir) = real_dir() else { return };
    let reader = slide::open(&dir.join("CMU-1-Small-Region.svs"), &OpenOptions::default()).unwrap();
    let ours = reader.read_associated("thumbnail").unwrap();
    let reference = image::open(dir.join("CMU-1-Small-Region.thumbnail.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(ours.dimensions(), reference.dimensions());
    let total: f64 = ours
        .as_raw()
        .iter()
        .zip(reference.as_raw())
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .sum();
    let mad = total / ours.as_raw().len() as f64;
    assert!(mad == 0.0, "thumbnail mean absolute difference {mad:.4}");
    // Label (LZW) and macro decode too.
    assert_eq!(
        reader.read_associated("label").unwrap().dimensions(),
        (387, 463)
    );
    assert_eq!(
        reader.read_associated("macro").unwrap().dimensions(),
        (1280, 431)
    );
}

#[test]
fn region_outside_the_slide_is_padded_with_background() {
    let Some(dir) = real_dir() else { return };
    let reader = slide::open(&dir.join("CMU-1-Small-Region.svs"), &OpenOptions::default()).unwrap();
    let inside = reader
        .read_region(0, Rect::new(2100, 2900, 120, 67))
        .unwrap();
    let img = reader
        .read_region(0, Rect::new(2100, 2900, 200, 200))
        .unwrap();
    assert_eq!(img.get_pixel(199, 199).0, reader.info().background);
    assert_eq!(img.get_pixel(119, 66), inside.get_pixel(119, 66));
    let far = reader
        .read_region(0, Rect::new(-500, -500, 10, 10))
        .unwrap();
    assert!(far.pixels().all(|p| p.0 == reader.info().background));
}
