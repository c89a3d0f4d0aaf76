//! Phantom ground truth against the rendered pixels, through the library: each class
//! has exactly the findings its truth lists, masks line up with the pixels.

use dirascope::synth::{
    mask_bit, render_rgb, Artefacts, Finding, Geometry, MaskGrid, Raster, Region, SlideClass,
    Truth, EPIDERMIS_BIT, TISSUE_BIT,
};

fn build(class: SlideClass, seed: u64, w_mm: f32, h_mm: f32) -> Geometry {
    Geometry::build(
        class,
        seed,
        w_mm * 1000.0,
        h_mm * 1000.0,
        &Artefacts::default(),
    )
}

fn truth(geom: &Geometry, mpp: f64, ds: u32) -> (Truth, MaskGrid) {
    let (w, h) = (
        (geom.width_um as f64 / mpp) as u32,
        (geom.height_um as f64 / mpp) as u32,
    );
    let masks = MaskGrid::sample(geom, w.div_ceil(ds), h.div_ceil(ds), ds as f64 * mpp);
    let t = Truth::new(geom, "t", mpp, w, h, ds, &masks, 85, Artefacts::default());
    (t, masks)
}

fn present(t: &Truth, key: &str) -> bool {
    t.findings_present.contains(&key)
}

#[test]
fn each_class_has_exactly_its_findings_with_plausible_areas() {
    for seed in 0..12u64 {
        for class in SlideClass::ALL {
            let geom = build(class, seed, 3.0, 2.0);
            let (t, masks) = truth(&geom, 0.5, 8);
            let pustule = present(&t, "subcorneal_pustule");
            let acan = present(&t, "acantholysis");
            let neh = present(&t, "neutrophilic_eccrine_hidradenitis");
            let psf = present(&t, "psoriasiform");
            match class {
                SlideClass::Normal => assert!(
                    t.findings_present.is_empty(),
                    "normal {seed}: {:?}",
                    t.findings_present
                ),
                SlideClass::Psoriasis => {
                    assert!(
                        psf && !pustule && !acan && !neh,
                        "psoriasis {seed}: {:?}",
                        t.findings_present
                    )
                }
                SlideClass::PustularPsoriasis => {
                    assert!(
                        psf && pustule && !acan && !neh,
                        "pustular {seed}: {:?}",
                        t.findings_present
                    )
                }
                SlideClass::Dira => {
                    let n = [pustule, acan, neh].iter().filter(|&&b| b).count();
                    assert!(
                        n >= 2,
                        "dira {seed} shows fewer than two DIRA features: {:?}",
                        t.findings_present
                    );
                }
            }
            // Every finding listed has area in its mask and a plausible size; every
            // finding not listed has an empty mask.
            for f in &t.findings {
                let area = masks.area_mm2(
                    Finding::ALL
                        .iter()
                        .find(|g| g.key() == f.key)
                        .map_or(0, |g| mask_bit(*g)),
                );
                if f.present {
                    let (lo, hi) = match f.key {
                        "subcorneal_pustule" => (0.0005, 0.5),
                        "acantholysis" => (0.0003, 0.3),
                        "neutrophilic_eccrine_hidradenitis" => (0.02, 1.5),
                        _ => (0.05, 2.0),
                    };
                    assert!(
                        area >= lo && area <= hi,
                        "{class} {seed} {}: area {area} mm²",
                        f.key
                    );
                } else {
                    assert_eq!(area, 0.0, "{class} {seed} {}: mask not empty", f.key);
                }
            }
            assert!(
                t.tissue_area_mm2 > 2.5 && t.tissue_area_mm2 < 6.0,
                "tissue {}",
                t.tissue_area_mm2
            );
            assert!(
                t.epidermis_area_mm2 > 0.1,
                "epidermis {}",
                t.epidermis_area_mm2
            );
        }
    }
}

#[test]
fn dira_sets_include_partial_pictures() {
    let mut variants = std::collections::BTreeSet::new();
    for seed in 0..40 {
        let geom = build(SlideClass::Dira, seed, 3.0, 2.0);
        variants.insert(format!("{:?}", geom.variant));
    }
    assert!(variants.len() >= 3, "{variants:?}");
}

#[test]
fn epidermis_mask_lies_on_the_tissue_surface() {
    for class in SlideClass::ALL {
        let geom = build(class, 5, 3.0, 2.0);
        let (_, masks) = truth(&geom, 0.5, 4);
        let (w, h) = (masks.width as usize, masks.height as usize);
        let mut checked = 0;
        for i in w / 10..w * 9 / 10 {
            if let Some(j) = (0..h).find(|&j| masks.bits[j * w + i] & TISSUE_BIT != 0) {
                assert!(
                    masks.bits[j * w + i] & EPIDERMIS_BIT != 0,
                    "{class}: column {i}, top tissue pixel not epidermis"
                );
                checked += 1;
            }
        }
        assert!(checked > w / 2);
    }
}

/// Mean hematoxylin concentration (by colour deconvolution of the rendered RGB)
/// over the pixels of a region where `pick` holds.
fn mean_h(
    geom: &Geometry,
    x0: f32,
    y0: f32,
    side: usize,
    mpp: f64,
    pick: impl Fn(f32, f32) -> bool,
) -> Option<f32> {
    let raster = Raster::new(mpp);
    let (px0, py0) = ((x0 as f64 / mpp) as i64, (y0 as f64 / mpp) as i64);
    let rgb = render_rgb(geom, raster, px0, py0, side, side);
    let (mut sum, mut n) = (0.0, 0);
    for j in 0..side {
        for i in 0..side {
            let x = ((px0 + i as i64) as f64 + 0.5) * mpp;
            let y = ((py0 + j as i64) as f64 + 0.5) * mpp;
            if pick(x as f32, y as f32) {
                let k = (j * side + i) * 3;
                sum += geom.stain.unmix([rgb[k], rgb[k + 1], rgb[k + 2]]).0;
                n += 1;
            }
        }
    }
    (n > 50).then(|| sum / n as f32)
}

#[test]
fn pustule_mask_is_much_more_hematoxylin_than_spinous_layer() {
    let mut checked = 0;
    for seed in 0..8 {
        let geom = build(SlideClass::PustularPsoriasis, seed, 3.0, 2.0);
        let Some(p) = geom
            .pustules
            .iter()
            .max_by(|a, b| a.hw.total_cmp(&b.hw))
            .cloned()
        else {
            continue;
        };
        let mpp = 0.5;
        let side = 400usize;
        let (x0, y0) = (p.x - 100.0, geom.surface.at(p.x) - 80.0);
        let in_pustule =
            |x: f32, y: f32| geom.locate(x, y).flags & mask_bit(Finding::SubcornealPustule) != 0;
        let in_spinous = |x: f32, y: f32| geom.locate(x, y).region == Region::Spinous;
        let (Some(hp), Some(hs)) = (
            mean_h(&geom, x0, y0, side, mpp, in_pustule),
            mean_h(&geom, x0, y0, side, mpp, in_spinous),
        ) else {
            continue;
        };
        assert!(
            hp > 1.4 * hs,
            "seed {seed}: pustule H {hp:.3} vs spinous H {hs:.3}"
        );
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} pustules checked");
}
