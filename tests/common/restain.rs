//! Slides in stains that are not H&E, made from H&E ones: pixels unmixed into
//! haematoxylin and eosin with the Ruifrok-Johnston vectors, then mixed again
//! with two other stains' vectors (training/ood_cases.py does the same to tiles).

use std::path::Path;

use dirascope::slide::{self, OpenOptions, Rect};
use image::RgbImage;

/// Ruifrok-Johnston haematoxylin and eosin (optical density per RGB channel).
pub const HEMATOXYLIN: [f64; 3] = [0.650, 0.704, 0.286];
pub const EOSIN: [f64; 3] = [0.072, 0.990, 0.105];
/// Masson trichrome's collagen blue.
pub const METHYL_BLUE: [f64; 3] = [0.7995, 0.5914, 0.1053];
/// Diaminobenzidine, the brown of immunostains.
pub const DAB: [f64; 3] = [0.268, 0.570, 0.776];
/// Giemsa's blue and its eosin.
pub const GIEMSA_BLUE: [f64; 3] = [0.8348, 0.5136, 0.1963];
pub const GIEMSA_EOSIN: [f64; 3] = [0.0928, 0.9541, 0.2831];

/// `image` with its haematoxylin drawn in `stains[0]` and its eosin in `stains[1]`.
pub fn restain(image: &RgbImage, stains: [[f64; 3]; 2]) -> RgbImage {
    let he = [HEMATOXYLIN, EOSIN];
    let dot = |a: &[f64; 3], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    // Least squares on the two vectors (2 x 2 normal equations).
    let (a11, a12, a22) = (
        dot(&he[0], &he[0]),
        dot(&he[0], &he[1]),
        dot(&he[1], &he[1]),
    );
    let det = a11 * a22 - a12 * a12;
    let mut out = image.clone();
    for p in out.pixels_mut() {
        let od: Vec<f64> =
            p.0.iter()
                .map(|&v| -((v.max(1) as f64) / 255.0).ln())
                .collect();
        let (b1, b2) = (dot(&he[0], &od), dot(&he[1], &od));
        let h = ((a22 * b1 - a12 * b2) / det).max(0.0);
        let e = ((a11 * b2 - a12 * b1) / det).max(0.0);
        for (c, px) in p.0.iter_mut().enumerate() {
            let v = h * stains[0][c] + e * stains[1][c];
            *px = (255.0 * (-v).exp()).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// A normal phantom of the current synth never trained on (`seed` in model 2's
/// held-out range), 3 x 3 mm at 1.0 um/px: big enough for the slide's tissue gate.
pub fn held_out_normal_at_1um(dir: &Path, seed: u32) -> RgbImage {
    held_out_phantom_at_1um(dir, "normal", seed)
}

/// As [`held_out_normal_at_1um`] for any class (`dira`, `psoriasis`, ...).
pub fn held_out_phantom_at_1um(dir: &Path, class: &str, seed: u32) -> RgbImage {
    let seed = seed.to_string();
    let status = super::dirascope(&["synth", "--class", class, "--seed", &seed])
        .args([
            "--width-mm",
            "3",
            "--height-mm",
            "3",
            "--mpp",
            "1.0",
            "--out",
        ])
        .arg(dir)
        .status()
        .expect("synth");
    assert!(status.success());
    let path = dir.join(format!("{class}-{seed}.tiff"));
    let reader = slide::open(&path, &OpenOptions::default()).expect("open phantom");
    let info = reader.info();
    reader
        .read_region(
            0,
            Rect::new(0, 0, info.width() as u32, info.height() as u32),
        )
        .expect("read level 0")
}
