//! `dirascope recall`: every slide's scores and call recomputed from its `tiles.csv`
//! under another model folder's slide rule, without running the model again.
//!
//! It owns reading a score run back (summary, reports, tile probabilities) and the
//! rewrite of `report.json`, `tiles.geojson`, `summary.csv` and `report.html` (each
//! through a temporary file and a rename). It refuses a model folder whose ONNX
//! sha256 differs from the one that scored the run, or whose tiling or QC settings
//! differ: then the tiles themselves would differ, and only `score` can say how.
//! Tile probabilities are taken as `tiles.csv` stores them (6 decimals), so a
//! recalled score can differ from the run's in the 7th decimal.

use std::path::{Path, PathBuf};

use crate::aggregate::{self, AggregateError, AggregateParams, TileScore};
use crate::batch::run::write_summaries;
use crate::model::manifest::Manifest;
use crate::model::ModelError;
use crate::report::{self, FailedSlide, ModelInfo, ReportError, SlideReport};
use crate::score::ScoreOptions;
use crate::slide::Rect;

#[derive(Debug, thiserror::Error)]
pub enum RecallError {
    #[error("{path}: not a dirascope output folder ({reason}); pass the --out folder of `dirascope score`")]
    NotAnOutput { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Tiles { path: PathBuf, reason: String },
    #[error("{model}: its ONNX file has sha256 {got}, but slide '{slide}' was scored by a model with {expected}; recall only changes the slide rule, so score the slides again with this model")]
    OtherWeights {
        model: PathBuf,
        slide: String,
        expected: String,
        got: String,
    },
    #[error("{model}: {what} differs from the run's ({run} there, {here} here), which changes which tiles are scored; score the slides again")]
    OtherTiling {
        model: PathBuf,
        what: &'static str,
        run: String,
        here: String,
    },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("{path}: {source}")]
    Aggregate {
        path: PathBuf,
        #[source]
        source: AggregateError,
    },
}

impl RecallError {
    /// Errors in the model folder given (exit code 4) rather than in OUT or the disk.
    pub fn is_model(&self) -> bool {
        matches!(
            self,
            RecallError::Model(_)
                | RecallError::OtherWeights { .. }
                | RecallError::OtherTiling { .. }
        )
    }
}

/// One scored slide read back: its report and its tiles.
pub struct ScoredSlide {
    pub report: SlideReport,
    pub tiles: Vec<TileScore>,
    pub dir: PathBuf,
}

/// A score run read back: its slides (in summary order) and its failures.
pub struct ScoredRun {
    pub slides: Vec<ScoredSlide>,
    pub failures: Vec<FailedSlide>,
}

/// Reads the slides `OUT/summary.csv` lists, with their `report.json` and `tiles.csv`,
/// and `OUT/errors.csv`.
pub fn read_run(out_dir: &Path) -> Result<ScoredRun, RecallError> {
    let summary = out_dir.join("summary.csv");
    if !summary.is_file() {
        return Err(RecallError::NotAnOutput {
            path: out_dir.to_path_buf(),
            reason: "no summary.csv".into(),
        });
    }
    let mut slides = Vec::new();
    for id in crate::batch::merge::summary_ids(&summary)? {
        let dir = out_dir.join(report::safe_name(&id));
        let report = report::json::read_report(&dir.join("report.json"))?;
        let tiles = read_tiles_csv(&dir.join("tiles.csv"), &report.model.classes)?;
        slides.push(ScoredSlide { report, tiles, dir });
    }
    let errors = out_dir.join("errors.csv");
    let failures = if errors.is_file() {
        report::csv::read_errors(&errors)?
    } else {
        Vec::new()
    };
    Ok(ScoredRun { slides, failures })
}

/// Reads a `tiles.csv` written by `score`: rectangle, grid cell, tissue fraction and
/// one probability column per class, in `classes`' order (by header name).
pub fn read_tiles_csv(path: &Path, classes: &[String]) -> Result<Vec<TileScore>, RecallError> {
    let err = |reason: String| RecallError::Tiles {
        path: path.to_path_buf(),
        reason,
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| err(e.to_string()))?;
    let headers = reader.headers().map_err(|e| err(e.to_string()))?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| err(format!("no column '{name}'")))
    };
    let fixed = ["x", "y", "width", "height", "col", "row", "tissue_fraction"]
        .map(&col)
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let class_cols = classes
        .iter()
        .map(|c| col(c))
        .collect::<Result<Vec<_>, _>>()?;
    let ood_col = headers
        .iter()
        .position(|h| h == crate::report::csv::OOD_COLUMN);
    let mut tiles = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| err(format!("row {}: {e}", i + 2)))?;
        let number = |c: usize| -> Result<f64, RecallError> {
            record
                .get(c)
                .and_then(|s| s.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    err(format!(
                        "row {}: column '{}' is not a number",
                        i + 2,
                        &headers[c]
                    ))
                })
        };
        let int = |c: usize| -> Result<i64, RecallError> {
            let v = number(c)?;
            if v.fract() != 0.0 || v.abs() > 1e15 {
                return Err(err(format!(
                    "row {}: column '{}' is not an integer",
                    i + 2,
                    &headers[c]
                )));
            }
            Ok(v as i64)
        };
        let unsigned = |c: usize| -> Result<u32, RecallError> {
            u32::try_from(int(c)?).map_err(|_| {
                err(format!(
                    "row {}: column '{}' is out of range",
                    i + 2,
                    &headers[c]
                ))
            })
        };
        let mut probabilities = Vec::with_capacity(classes.len());
        for &c in &class_cols {
            let p = number(c)?;
            if !(0.0..=1.0).contains(&p) {
                return Err(err(format!(
                    "row {}: probability {p} in column '{}' is outside 0..1",
                    i + 2,
                    &headers[c]
                )));
            }
            probabilities.push(p as f32);
        }
        tiles.push(TileScore {
            col: unsigned(fixed[4])?,
            row: unsigned(fixed[5])?,
            level0: Rect::new(
                int(fixed[0])?,
                int(fixed[1])?,
                unsigned(fixed[2])?,
                unsigned(fixed[3])?,
            ),
            tissue_fraction: number(fixed[6])?,
            probabilities,
            ood: ood_col.map(number).transpose()?.map(|d| d as f32),
        });
    }
    Ok(tiles)
}

/// A model folder's manifest and the ONNX file's sha256 as read from disk.
pub struct RuleSource {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub onnx_sha256: String,
}

impl RuleSource {
    pub fn load(dir: &Path) -> Result<RuleSource, RecallError> {
        let manifest = Manifest::from_file(&dir.join("model.toml"))?;
        let onnx = manifest.onnx_path(dir);
        let (onnx_sha256, _) =
            report::audit::sha256_file(&onnx).map_err(|source| ModelError::Io {
                path: onnx.clone(),
                source,
            })?;
        Ok(RuleSource {
            dir: dir.to_path_buf(),
            manifest,
            onnx_sha256,
        })
    }

    /// The model as reports name it.
    pub fn info(&self) -> ModelInfo {
        let m = &self.manifest;
        ModelInfo {
            name: m.name.clone(),
            version: m.version.clone(),
            sha256: self.onnx_sha256.clone(),
            classes: m.output.classes.clone(),
            tile_px: m.input.tile_px,
            mpp: m.input.mpp,
        }
    }

    /// Refuses a slide scored by other weights or with other tiling or QC settings.
    pub fn check(&self, r: &SlideReport) -> Result<(), RecallError> {
        self.check_except_overlap(r)?;
        let (run, here) = (
            r.audit.configuration.tiling.overlap_px,
            self.manifest.aggregation.overlap_px,
        );
        if run != here {
            return Err(RecallError::OtherTiling {
                model: self.dir.clone(),
                what: "aggregation.overlap_px (the tiling overlap its rule was fitted at)",
                run: format!("{run} px"),
                here: format!("{here} px"),
            });
        }
        Ok(())
    }

    /// `check` without the tiling overlap: `calibrate` fits a rule at the overlap
    /// the run was scored with and writes that overlap into the new folder.
    pub fn check_except_overlap(&self, r: &SlideReport) -> Result<(), RecallError> {
        if !r.model.sha256.eq_ignore_ascii_case(&self.onnx_sha256) {
            return Err(RecallError::OtherWeights {
                model: self.dir.clone(),
                slide: r.slide.id.clone(),
                expected: r.model.sha256.clone(),
                got: self.onnx_sha256.clone(),
            });
        }
        let m = &self.manifest;
        let run = &r.audit.configuration;
        let differs = |what: &'static str, run: String, here: String| {
            Err(RecallError::OtherTiling {
                model: self.dir.clone(),
                what,
                run,
                here,
            })
        };
        if run.qc.min_tiles != m.rule.min_tissue_tiles as usize {
            return differs(
                "rule.min_tissue_tiles",
                run.qc.min_tiles.to_string(),
                m.rule.min_tissue_tiles.to_string(),
            );
        }
        if run.tiling.tile_px != m.input.tile_px || run.tiling.model_mpp != m.input.mpp {
            return differs(
                "the tile size or MPP",
                format!("{} px at {}", run.tiling.tile_px, run.tiling.model_mpp),
                format!("{} px at {}", m.input.tile_px, m.input.mpp),
            );
        }
        Ok(())
    }

    /// The slide-rule parameters for one slide of the run: this manifest's
    /// aggregation and rule, the slide's tile area and evidence count.
    pub fn params(&self, r: &SlideReport) -> AggregateParams {
        let mut base = ScoreOptions::default();
        base.aggregate.evidence_per_finding = r.parameters.aggregate.evidence_per_finding;
        let mut params = crate::wiring::manifest_options(&self.manifest, base).aggregate;
        params.tile_area_um2 = r.parameters.aggregate.tile_area_um2;
        params
    }
}

/// The slide's result under `params`, with QC's gate as the run recorded it.
pub fn rescore(
    s: &ScoredSlide,
    params: &AggregateParams,
) -> Result<aggregate::SlideResult, RecallError> {
    aggregate::aggregate(
        &s.report.model.classes,
        &s.tiles,
        s.report.qc.gate(),
        params,
    )
    .map_err(|source| RecallError::Aggregate {
        path: s.dir.join("tiles.csv"),
        source,
    })
}

/// What `recall` changed.
pub struct RecallOutcome {
    pub slides: usize,
    /// (slide id, call before, call after) for every slide whose call changed.
    pub changed: Vec<(String, String, String)>,
}

/// Recomputes every slide of `out_dir` under the rule of the model folder `model_dir`
/// and rewrites its reports and the batch pages. Every slide is checked before any
/// file is written, so a refusal leaves OUT as it was.
pub fn recall(out_dir: &Path, model_dir: &Path) -> Result<RecallOutcome, RecallError> {
    let source = RuleSource::load(model_dir)?;
    let run = read_run(out_dir)?;
    for s in &run.slides {
        source.check(&s.report)?;
    }
    let info = source.info();
    let mut reports = Vec::with_capacity(run.slides.len());
    let mut changed = Vec::new();
    for s in &run.slides {
        let params = source.params(&s.report);
        let result = rescore(s, &params)?;
        let mut r = s.report.clone();
        if r.result.call != result.call {
            changed.push((
                r.slide.id.clone(),
                r.result.call.to_string(),
                result.call.to_string(),
            ));
        }
        let note = format!(
            "recalled from tiles.csv under {} {} (scored as {} {})",
            info.name, info.version, r.model.name, r.model.version
        );
        r.note =
            (result.call == aggregate::Call::DiraPattern).then(|| report::IL1RN_NOTE.to_string());
        r.result = result;
        r.model = info.clone();
        r.parameters.aggregate = params.clone();
        r.audit.model = info.clone();
        r.audit.configuration.aggregate = params.clone();
        r.audit.configuration.aggregate.tile_area_um2 =
            s.report.audit.configuration.aggregate.tile_area_um2;
        r.audit
            .warnings
            .retain(|w| !w.starts_with("recalled from tiles.csv"));
        r.audit.warnings.push(note);
        report::geojson::write(
            &s.dir.join("tiles.geojson"),
            &r.model.classes,
            &s.tiles,
            params.tile_threshold,
        )?;
        report::json::write(&s.dir.join("report.json"), &r)?;
        reports.push(r);
    }
    write_summaries(out_dir, &reports, &run.failures)?;
    Ok(RecallOutcome {
        slides: reports.len(),
        changed,
    })
}
