//! `<slide_id>.geojson`: a phantom's finding masks as QuPath annotations, so a
//! phantom opens in QuPath with its truth drawn, and the annotation path
//! (`dirascope tiles`, `validate --truth-geojson`) is testable without real data.
//!
//! One annotation per finding present, classified by the finding key, traced from
//! the mask at its own resolution (pixel-exact, holes kept) and scaled to level-0
//! pixels. It renders nothing and writes no masks.

use std::path::Path;

use super::output::write_atomic;
use super::truth::MaskGrid;
use super::{mask_bit, Finding, SynthError};
use crate::annotations::geojson::{to_geojson, ClassifiedArea};
use crate::annotations::{contour, Polygon};

/// The polygons of each finding present in `masks`, in level-0 pixels of a
/// `width` × `height` slide (mask cells reaching past the edge are clipped to it).
pub fn finding_polygons(
    masks: &MaskGrid,
    downsample: u32,
    width: u32,
    height: u32,
) -> Vec<(Finding, Vec<Polygon>)> {
    let (w, h) = (masks.width as usize, masks.height as usize);
    let scale = |p: &mut [f64; 2]| {
        p[0] = (p[0] * downsample as f64).min(width as f64);
        p[1] = (p[1] * downsample as f64).min(height as f64);
    };
    Finding::ALL
        .iter()
        .filter_map(|&f| {
            let bit = mask_bit(f);
            let on: Vec<bool> = masks.bits.iter().map(|b| b & bit != 0).collect();
            let mut polygons = contour::trace(&on, w, h);
            for p in &mut polygons {
                p.exterior.iter_mut().for_each(scale);
                p.holes.iter_mut().flatten().for_each(scale);
            }
            (!polygons.is_empty()).then_some((f, polygons))
        })
        .collect()
}

/// Writes the QuPath FeatureCollection of a phantom's findings to `path`.
pub fn write_geojson(
    path: &Path,
    masks: &MaskGrid,
    downsample: u32,
    width: u32,
    height: u32,
) -> Result<(), SynthError> {
    let found = finding_polygons(masks, downsample, width, height);
    let areas: Vec<ClassifiedArea> = found
        .iter()
        .map(|(f, polygons)| ClassifiedArea {
            class: f.key(),
            color: crate::report::class_color(f.key()),
            polygons,
        })
        .collect();
    let text = to_geojson(&areas).to_string();
    write_atomic(path, (text + "\n").as_bytes())
}
