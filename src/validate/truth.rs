//! Tile-level truth for `validate --truth`: each scored tile of a phantom slide
//! against the finding masks `dirascope synth` wrote for it.
//!
//! A tile is positive for a finding when the finding's mask covers at least
//! `min_fraction` of it, negative when it covers none of it, and left out in
//! between — the same definition the bundled model was trained and measured with.
//! Probabilities come from the score run's `tiles.csv`, so this measures the whole
//! pipeline (reading, resampling, model) rather than the model on ideal tiles.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::metrics::{self, Case, Interval, Resampling};
use super::ValidateError;

/// Options of the tile-level truth comparison.
#[derive(Debug, Clone, Serialize)]
pub struct TruthOptions {
    /// Mask coverage at which a tile is positive (default 0.01, as in training).
    pub min_fraction: f64,
    /// Per-finding exceptions to `min_fraction` (a model may label a finding that
    /// fills a region, such as hidradenitis around a coil, at a higher coverage).
    pub min_fraction_for: BTreeMap<String, f64>,
    pub resamples: usize,
    pub seed: u64,
}

impl TruthOptions {
    /// The coverage at which a tile is positive for `finding`.
    pub fn min_fraction_for(&self, finding: &str) -> f64 {
        self.min_fraction_for
            .get(finding)
            .copied()
            .unwrap_or(self.min_fraction)
    }
}

/// Tile-level results for one finding, pooled over slides.
#[derive(Debug, Clone, Serialize)]
pub struct TileMetrics {
    pub finding: String,
    /// Mask coverage at which a tile of this finding counted as positive.
    pub min_fraction: f64,
    pub positives: usize,
    pub negatives: usize,
    /// Tiles with some coverage below `min_fraction`, or where the truth does not
    /// say (outside a pathologist's annotations): in neither class.
    pub excluded: usize,
    pub auroc: Option<f64>,
    /// Bootstrap over whole slides (tiles of one slide are not independent).
    pub auroc_ci95: Option<Interval>,
}

/// Everything `--truth` adds to a validation.
#[derive(Debug, Clone, Serialize)]
pub struct TileTruth {
    /// What the truth is, for the report's heading: "truth masks" (phantoms) or
    /// "annotations (mapping)" (GeoJSON). Not in metrics.json, whose figures it
    /// does not change.
    #[serde(skip)]
    pub source: String,
    pub options: TruthOptions,
    pub slides: usize,
    pub tiles: usize,
    /// Scored slides with no `<id>.truth.json` in the truth folder.
    pub slides_without_truth: Vec<String>,
    pub findings: Vec<TileMetrics>,
}

/// What one slide's truth says about a tile: a phantom's masks or a pathologist's
/// polygons.
pub trait TileTruthSource {
    /// The finding keys this truth covers.
    fn findings(&self) -> Vec<String>;
    /// Fraction of the level-0 rectangle `[x, y, w, h]` covered by `finding`, or
    /// `None` where the truth does not say (the tile is left out).
    fn coverage(&self, finding: &str, rect: [f64; 4]) -> Option<f64>;
}

/// The masks of one phantom slide, as `synth` wrote them.
struct SlideTruth {
    /// Level-0 pixels per mask pixel.
    downsample: f64,
    /// Finding key -> mask (true where the finding is).
    masks: BTreeMap<String, Mask>,
}

struct Mask {
    width: usize,
    height: usize,
    on: Vec<bool>,
}

impl Mask {
    /// Fraction of the level-0 rectangle covered, weighting mask pixels by overlap.
    fn coverage(&self, downsample: f64, x: f64, y: f64, w: f64, h: f64) -> f64 {
        let (x0, y0, x1, y1) = (
            x / downsample,
            y / downsample,
            (x + w) / downsample,
            (y + h) / downsample,
        );
        let mut covered = 0.0;
        let clamp = |v: f64, n: usize| (v.max(0.0) as usize).min(n);
        for my in clamp(y0.floor(), self.height)..clamp(y1.ceil(), self.height) {
            let dy = (y1.min(my as f64 + 1.0) - y0.max(my as f64)).max(0.0);
            for mx in clamp(x0.floor(), self.width)..clamp(x1.ceil(), self.width) {
                if self.on[my * self.width + mx] {
                    let dx = (x1.min(mx as f64 + 1.0) - x0.max(mx as f64)).max(0.0);
                    covered += dx * dy;
                }
            }
        }
        let area = (x1 - x0) * (y1 - y0);
        if area > 0.0 {
            covered / area
        } else {
            0.0
        }
    }
}

impl TileTruthSource for SlideTruth {
    fn findings(&self) -> Vec<String> {
        self.masks.keys().cloned().collect()
    }

    fn coverage(&self, finding: &str, rect: [f64; 4]) -> Option<f64> {
        let [x, y, w, h] = rect;
        Some(
            self.masks
                .get(finding)?
                .coverage(self.downsample, x, y, w, h),
        )
    }
}

pub(super) fn input_error(path: &Path, reason: impl Into<String>) -> ValidateError {
    ValidateError::Input {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads `<truth_dir>/<id>.truth.json` and the masks it names; `None` when absent.
fn read_slide_truth(truth_dir: &Path, id: &str) -> Result<Option<SlideTruth>, ValidateError> {
    let path = truth_dir.join(format!("{id}.truth.json"));
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| input_error(&path, e.to_string()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| input_error(&path, format!("not JSON: {e}")))?;
    let downsample = v["mask_downsample"]
        .as_f64()
        .filter(|d| *d > 0.0)
        .ok_or_else(|| input_error(&path, "no positive mask_downsample"))?;
    let mut masks = BTreeMap::new();
    for f in v["findings"].as_array().into_iter().flatten() {
        let (Some(key), Some(rel)) = (f["key"].as_str(), f["mask"].as_str()) else {
            return Err(input_error(&path, "a finding without key or mask"));
        };
        let mask_path = truth_dir.join(rel);
        let img = image::open(&mask_path)
            .map_err(|e| input_error(&mask_path, format!("cannot read the mask: {e}")))?
            .into_luma8();
        masks.insert(
            key.to_string(),
            Mask {
                width: img.width() as usize,
                height: img.height() as usize,
                on: img.pixels().map(|p| p.0[0] >= 128).collect(),
            },
        );
    }
    Ok(Some(SlideTruth { downsample, masks }))
}

/// One row of a score run's `tiles.csv`: the level-0 rectangle and probabilities.
struct TileRow {
    rect: [f64; 4],
    probabilities: BTreeMap<String, f64>,
}

fn read_tiles(path: &Path) -> Result<Vec<TileRow>, ValidateError> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| input_error(path, e.to_string()))?;
    let headers = reader
        .headers()
        .map_err(|e| input_error(path, e.to_string()))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let rect_cols: Vec<usize> = ["x", "y", "width", "height"]
        .iter()
        .filter_map(|n| col(n))
        .collect();
    if rect_cols.len() != 4 {
        return Err(input_error(path, "needs columns x, y, width, height"));
    }
    let first_class = col("tissue_fraction").map_or(headers.len(), |c| c + 1);
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| input_error(path, format!("row {}: {e}", i + 2)))?;
        let number = |c: usize| -> Result<f64, ValidateError> {
            record
                .get(c)
                .and_then(|s| s.parse::<f64>().ok())
                .ok_or_else(|| {
                    input_error(
                        path,
                        format!("row {}: column {} is not a number", i + 2, c + 1),
                    )
                })
        };
        let mut rect = [0.0; 4];
        for (slot, &c) in rect.iter_mut().zip(&rect_cols) {
            *slot = number(c)?;
        }
        let mut probabilities = BTreeMap::new();
        for c in first_class..headers.len() {
            probabilities.insert(headers[c].to_string(), number(c)?);
        }
        rows.push(TileRow {
            rect,
            probabilities,
        });
    }
    Ok(rows)
}

/// Compares every scored tile of `slide_ids` (folders of `results_dir`) with the
/// phantom masks in `truth_dir` and returns per-finding tile AUROC.
pub fn tile_truth(
    results_dir: &Path,
    truth_dir: &Path,
    slide_ids: &[String],
    options: &TruthOptions,
) -> Result<TileTruth, ValidateError> {
    if !truth_dir.is_dir() {
        return Err(input_error(
            truth_dir,
            "not a folder (pass the --out folder of `dirascope synth`)",
        ));
    }
    tile_truth_from(
        results_dir,
        truth_dir,
        "truth masks",
        slide_ids,
        options,
        |id| Ok(read_slide_truth(truth_dir, id)?.map(|t| Box::new(t) as Box<dyn TileTruthSource>)),
    )
}

/// The tile-level comparison for any truth: `load` gives a slide's truth, or `None`
/// when it has none (listed in `slides_without_truth`); `truth_dir` names the
/// truth in the error when no slide has any, `source` says what it is in reports.
pub fn tile_truth_from(
    results_dir: &Path,
    truth_dir: &Path,
    source: &str,
    slide_ids: &[String],
    options: &TruthOptions,
    mut load: impl FnMut(&str) -> Result<Option<Box<dyn TileTruthSource>>, ValidateError>,
) -> Result<TileTruth, ValidateError> {
    let mut cases: BTreeMap<String, (Vec<Case>, usize)> = BTreeMap::new();
    let mut slides_without_truth = Vec::new();
    let (mut slides, mut tiles) = (0, 0);
    for (index, id) in slide_ids.iter().enumerate() {
        let Some(truth) = load(id)? else {
            slides_without_truth.push(id.clone());
            continue;
        };
        let tiles_path: PathBuf = results_dir.join(id).join("tiles.csv");
        let rows = read_tiles(&tiles_path)?;
        slides += 1;
        tiles += rows.len();
        for finding in truth.findings() {
            let min_fraction = options.min_fraction_for(&finding);
            let entry = cases.entry(finding.clone()).or_default();
            for row in &rows {
                let Some(&score) = row.probabilities.get(&finding) else {
                    continue;
                };
                let Some(covered) = truth.coverage(&finding, row.rect) else {
                    entry.1 += 1;
                    continue;
                };
                if covered >= min_fraction {
                    entry.0.push(Case {
                        score,
                        positive: true,
                        cluster: index,
                    });
                } else if covered == 0.0 {
                    entry.0.push(Case {
                        score,
                        positive: false,
                        cluster: index,
                    });
                } else {
                    entry.1 += 1;
                }
            }
        }
    }
    if slides == 0 {
        return Err(input_error(
            truth_dir,
            format!(
                "no {source} for any of the {} scored slides (no <slide_id>{} there)",
                slide_ids.len(),
                if source.starts_with("annotations") {
                    ".geojson"
                } else {
                    ".truth.json"
                }
            ),
        ));
    }
    let findings = cases
        .into_iter()
        .enumerate()
        .map(|(k, (finding, (cases, excluded)))| TileMetrics {
            min_fraction: options.min_fraction_for(&finding),
            positives: cases.iter().filter(|c| c.positive).count(),
            negatives: cases.iter().filter(|c| !c.positive).count(),
            excluded,
            auroc: metrics::auroc(&cases),
            auroc_ci95: metrics::bootstrap(
                &cases,
                Resampling::ClusteredByPatient,
                options.resamples,
                options.seed.wrapping_add(1000 + k as u64),
                metrics::auroc,
            ),
            finding,
        })
        .collect();
    Ok(TileTruth {
        source: source.to_string(),
        options: options.clone(),
        slides,
        tiles,
        slides_without_truth,
        findings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_weights_partial_mask_pixels() {
        // A 4 x 4 mask (8 level-0 px per mask px) with its left half on.
        let mask = Mask {
            width: 4,
            height: 4,
            on: (0..16).map(|i| i % 4 < 2).collect(),
        };
        assert_eq!(mask.coverage(8.0, 0.0, 0.0, 32.0, 32.0), 0.5);
        assert_eq!(mask.coverage(8.0, 0.0, 0.0, 16.0, 16.0), 1.0);
        assert_eq!(mask.coverage(8.0, 16.0, 0.0, 16.0, 32.0), 0.0);
        // From x = 12 to 20: 4 px on (12..16), 4 px off.
        assert_eq!(mask.coverage(8.0, 12.0, 0.0, 8.0, 8.0), 0.5);
        // Beyond the mask counts as uncovered.
        assert_eq!(mask.coverage(8.0, -32.0, 0.0, 64.0, 32.0), 0.25);
    }

    #[test]
    fn tiles_are_labelled_from_masks_and_ranked() {
        let dir = tempfile::tempdir().unwrap();
        let (results, truth) = (dir.path().join("out"), dir.path().join("set"));
        std::fs::create_dir_all(results.join("s1")).unwrap();
        std::fs::create_dir_all(truth.join("s1.masks")).unwrap();
        // Mask 4 x 2 at downsample 8: the left mask column on.
        let mut img = image::GrayImage::new(4, 2);
        for y in 0..2 {
            img.put_pixel(0, y, image::Luma([255]));
        }
        img.save(truth.join("s1.masks/acantholysis.png")).unwrap();
        std::fs::write(
            truth.join("s1.truth.json"),
            r#"{"mask_downsample": 8, "findings": [{"key": "acantholysis", "mask": "s1.masks/acantholysis.png"}]}"#,
        )
        .unwrap();
        // Tiles of 8 x 16 level-0 px: tile 0 covers the on column, tile 1 is half on
        // (4 of 8 px), tile 2 and 3 are off. Tile 1 at 0.5 >= 0.01 is positive.
        std::fs::write(
            results.join("s1/tiles.csv"),
            "x,y,width,height,col,row,tissue_fraction,acantholysis\n\
             0,0,8,16,0,0,1.0,0.9\n4,0,8,16,1,0,1.0,0.3\n16,0,8,16,2,0,1.0,0.4\n24,0,8,16,3,0,1.0,0.1\n",
        )
        .unwrap();
        let options = TruthOptions {
            min_fraction: 0.6,
            min_fraction_for: BTreeMap::new(),
            resamples: 100,
            seed: 1,
        };
        let t = tile_truth(
            &results,
            &truth,
            &["s1".to_string(), "s2".to_string()],
            &options,
        )
        .unwrap();
        assert_eq!(t.slides_without_truth, vec!["s2"]);
        let m = &t.findings[0];
        // With min_fraction 0.6 the half-covered tile is excluded.
        assert_eq!((m.positives, m.negatives, m.excluded), (1, 2, 1));
        assert_eq!(m.auroc, Some(1.0));
        // A per-finding exception overrides the general fraction.
        let t = tile_truth(
            &results,
            &truth,
            &["s1".to_string()],
            &TruthOptions {
                min_fraction_for: BTreeMap::from([("acantholysis".to_string(), 0.01)]),
                ..options
            },
        )
        .unwrap();
        let m = &t.findings[0];
        assert_eq!((m.positives, m.negatives, m.excluded), (2, 2, 0));
        assert_eq!(m.min_fraction, 0.01);
        // Positives 0.9, 0.3; negatives 0.4, 0.1: 3 of 4 pairs ordered.
        assert_eq!(m.auroc, Some(0.75));
    }
}
