//! Tile-level truth from a pathologist's QuPath GeoJSON (`validate --truth-geojson`):
//! the same comparison as `--truth` against phantom masks, with each finding's
//! coverage measured on the polygons its class names map to.
//!
//! A tile of a slide that is not declared exhaustive counts only where the
//! annotations cover it (findings or negative regions, `min_annotated` of it);
//! elsewhere it is left out, never taken as negative. Reading and checking the
//! files is the annotations module's; this file only joins them to the results.

use std::path::Path;

use super::truth::{input_error, tile_truth_from, TileTruth, TileTruthSource, TruthOptions};
use super::ValidateError;
use crate::annotations::export::{annotation_files, check_classes};
use crate::annotations::geojson::{self, AnnotationFile, ReadOptions};
use crate::annotations::mapping::Mapping;
use crate::annotations::raster::SlideLabels;
use crate::finding::Finding;

impl TileTruthSource for SlideLabels {
    fn findings(&self) -> Vec<String> {
        Finding::ALL.iter().map(|f| f.key().to_string()).collect()
    }

    fn coverage(&self, finding: &str, rect: [f64; 4]) -> Option<f64> {
        let f: Finding = finding.parse().ok()?;
        self.label(rect).map(|c| c[f.index()])
    }
}

/// Compares every scored tile of `slide_ids` with the polygons of
/// `<annotations>/<slide_id>.geojson`; an exhaustive slide without a file is all
/// negative, any other slide without one is listed in `slides_without_truth`.
pub fn tile_truth_geojson(
    results_dir: &Path,
    annotations: &Path,
    mapping: &Mapping,
    slide_ids: &[String],
    options: &TruthOptions,
) -> Result<TileTruth, ValidateError> {
    let annotation_error = |e: crate::annotations::AnnotationError| match e {
        crate::annotations::AnnotationError::Io { path, .. } if path == annotations => {
            input_error(annotations, "not a folder of <slide_id>.geojson files")
        }
        other => input_error(annotations, other.to_string()),
    };
    let files = annotation_files(annotations).map_err(annotation_error)?;
    // Read and check every file first, so unknown classes are listed all at once.
    let mut read: Vec<(String, std::path::PathBuf, AnnotationFile)> = Vec::new();
    for id in slide_ids {
        let Some(path) = files.get(id) else { continue };
        let report_path = results_dir.join(id).join("report.json");
        let report = crate::report::json::read_report(&report_path)
            .map_err(|e| input_error(&report_path, e.to_string()))?;
        let opts = ReadOptions {
            slide_size: Some((report.slide.width, report.slide.height)),
            ..ReadOptions::default()
        };
        let file = geojson::read(path, &opts).map_err(annotation_error)?;
        read.push((id.clone(), path.clone(), file));
    }
    let refs: Vec<(&Path, &AnnotationFile)> =
        read.iter().map(|(_, p, f)| (p.as_path(), f)).collect();
    check_classes(mapping, &refs).map_err(annotation_error)?;
    let source = format!("annotations ({})", mapping.path.display());
    tile_truth_from(
        results_dir,
        annotations,
        &source,
        slide_ids,
        options,
        |id| {
            let exhaustive = mapping.is_exhaustive(id);
            let labels = match read.iter().find(|(i, _, _)| i == id) {
                Some((_, _, f)) => SlideLabels::new(&f.annotations, mapping, exhaustive),
                None if exhaustive => SlideLabels::new(&[], mapping, true),
                None => return Ok(None),
            };
            Ok(Some(Box::new(labels) as Box<dyn TileTruthSource>))
        },
    )
}
