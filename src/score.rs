//! The score pipeline: one slide from file to reports.
//!
//! It wires the stages (slide -> tissue -> qc -> tiling -> model -> aggregate ->
//! report); the tiles themselves go through the run's [`TileStream`] (`pipeline`),
//! built once from the resolved thread count. It holds no model code: the model is
//! reached only through [`TileScorer`]. Many slides, resume and the errors table are
//! the `batch` stage's.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use image::RgbImage;

use crate::aggregate::{self, AggregateError, AggregateParams, TileScore};
use crate::pipeline::{panic_message, GridSource, StreamError, TileSource, TileStream};
use crate::qc::{QcOptions, QcReport, StainNormalisation};
use crate::report::{
    self, Configuration, FileDigest, ModelInfo, ReportError, SlideMeta, SlideReport, Timings,
};
use crate::slide::{self, OpenOptions, SlideError, SlideInfo, SlideReader};
use crate::stain::{StainNormaliser, StainProfile, PROFILE_TILES};
use crate::tiling::{TileGrid, TilingError, TilingOptions};
use crate::tissue::{self, TissueError, TissueMask, TissueOptions};

pub use crate::pipeline::{ScorerError, ScorerSession, Stage, TileOutput, TileScorer};

/// Options of one scoring run. `Default`: detected tissue mask, default stage
/// options, one tile stream worker per usable core, a 1024 px thumbnail for heatmaps, slide
/// files hashed with sha256, evidence crops written.
#[derive(Debug, Clone)]
pub struct ScoreOptions {
    pub open: OpenOptions,
    pub tissue: TissueOptions,
    /// `--tissue-mask`: use this mask instead of detecting one.
    pub tissue_mask: Option<PathBuf>,
    pub qc: QcOptions,
    /// `--min-tissue`, `--overlap`; tile size and MPP come from the scorer.
    pub min_tissue: f64,
    pub overlap_px: u32,
    pub aggregate: AggregateParams,
    /// Tile stream workers (`--threads`), each reading and scoring its own tiles;
    /// `None`: [`crate::pipeline::resolve_threads`]'s default, the usable cores.
    pub threads: Option<usize>,
    pub thumbnail_side: u32,
    pub hash_slides: bool,
    pub evidence_crops: bool,
    /// `--normalise-stain`: map every slide's stains onto this profile (the
    /// model's `[stain]`) before the model sees its tiles.
    pub normalise_stain: Option<StainProfile>,
    /// The tiling the model's rule was fitted at (its manifest's overlap and minimum
    /// tissue), where a manifest set the options; a run that tiles otherwise gets a
    /// warning in every audit, since its calls are off the rule's calibration.
    pub rule_fitted_at: Option<RuleTiling>,
}

/// How every warning of [`ScoreOptions::off_rule`] ends (the report pages look for it).
pub const OFF_RULE: &str = "the call is off the rule's calibration";

/// The tiling a model's rule thresholds were fitted at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleTiling {
    pub overlap_px: u32,
    pub min_tissue: f64,
}

impl ScoreOptions {
    /// What in these options differs from how the model's rule was fitted, one
    /// sentence each (empty where nothing does, or no manifest set the options).
    pub fn off_rule(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(fit) = self.rule_fitted_at {
            if self.overlap_px != fit.overlap_px {
                out.push(format!(
                    "tiles overlap by {} px, the model's rule was fitted at {} px: \
                     finding scores read more (or fewer) tiles, so {OFF_RULE}",
                    self.overlap_px, fit.overlap_px
                ));
            }
            if self.min_tissue != fit.min_tissue {
                out.push(format!(
                    "tiles kept from {} tissue, the model's rule was fitted at {}: {OFF_RULE}",
                    self.min_tissue, fit.min_tissue
                ));
            }
            if self.normalise_stain.is_some() {
                out.push(format!(
                    "stain normalised (--normalise-stain), the model's rule was fitted on slides \
                     as scanned: {OFF_RULE}"
                ));
            }
        }
        out
    }
}

impl Default for ScoreOptions {
    fn default() -> Self {
        ScoreOptions {
            open: OpenOptions::default(),
            tissue: TissueOptions::default(),
            tissue_mask: None,
            qc: QcOptions::default(),
            min_tissue: TilingOptions::default().min_tissue,
            overlap_px: 0,
            aggregate: AggregateParams::default(),
            threads: None,
            thumbnail_side: 1024,
            hash_slides: true,
            evidence_crops: true,
            normalise_stain: None,
            rule_fitted_at: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error(transparent)]
    Slide(#[from] SlideError),
    #[error(transparent)]
    Tissue(#[from] TissueError),
    #[error(transparent)]
    Tiling(#[from] TilingError),
    #[error("{path}: the model failed on a batch of tiles: {source}")]
    Model {
        path: PathBuf,
        #[source]
        source: ScorerError,
    },
    #[error("{path}: the model returned {got} results for a batch of {expected} tiles")]
    ModelOutput {
        path: PathBuf,
        got: usize,
        expected: usize,
    },
    #[error("{path}: {source}")]
    Aggregate {
        path: PathBuf,
        #[source]
        source: AggregateError,
    },
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("{path}: internal error (a bug in dirascope, please report it): {message}")]
    Panic { path: PathBuf, message: String },
}

impl ScoreError {
    /// A short kind for `errors.csv`.
    pub fn kind(&self) -> &'static str {
        match self {
            ScoreError::Slide(e) => e.kind(),
            ScoreError::Tissue(_) => "tissue-mask",
            ScoreError::Tiling(TilingError::NoMpp { .. }) => "no-mpp",
            ScoreError::Tiling(_) => "tiling",
            ScoreError::Model { .. } | ScoreError::ModelOutput { .. } => "model",
            ScoreError::Aggregate { .. } => "model",
            ScoreError::Report(_) => "io",
            ScoreError::Panic { .. } => "panic",
        }
    }
}

/// A slide's failure and the stage it happened in.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct StageError {
    pub stage: Stage,
    pub error: ScoreError,
}

impl StageError {
    pub fn kind(&self) -> &'static str {
        self.error.kind()
    }
}

/// Runs one stage of a slide: records it in `current` first, so a panic inside can
/// be reported against it, and tags its error with it.
fn step<T>(
    current: &Cell<Stage>,
    stage: Stage,
    run: impl FnOnce() -> Result<T, ScoreError>,
) -> Result<T, StageError> {
    current.set(stage);
    run().map_err(|error| StageError { stage, error })
}

/// `run()`'s result and the seconds it took.
fn timed<T>(run: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let out = run();
    (out, t.elapsed().as_secs_f64())
}

/// What every slide of one run shares: the scorer, its model, the options, the
/// configuration they resolve to (echoed in each audit, compared on resume), and the
/// tile stream, sized once from the resolved thread count.
pub struct Scoring<'a> {
    pub scorer: &'a dyn TileScorer,
    pub model: ModelInfo,
    pub options: ScoreOptions,
    pub configuration: Configuration,
    stream: TileStream<'a>,
}

/// What the stages from tissue to aggregate found on one slide.
struct Measured {
    mask: TissueMask,
    tiling: TilingOptions,
    grid: TileGrid,
    tiles: Vec<TileScore>,
    qc: QcReport,
    /// The run's aggregation parameters with this slide's tile area.
    aggregate: AggregateParams,
    result: aggregate::SlideResult,
}

/// A slide opened, with its file's digest.
struct Opened {
    reader: Box<dyn SlideReader>,
    info: SlideInfo,
    sha256: Option<String>,
    size_bytes: u64,
}

impl<'a> Scoring<'a> {
    /// Resolves the configuration; hashes `--tissue-mask` once for the whole run.
    pub fn new(
        scorer: &'a dyn TileScorer,
        model: ModelInfo,
        options: ScoreOptions,
    ) -> Result<Scoring<'a>, ScoreError> {
        let tissue_mask = match &options.tissue_mask {
            Some(p) => Some(FileDigest::of(p).map_err(|e| TissueError::Read {
                path: p.clone(),
                reason: e.to_string(),
            })?),
            None => None,
        };
        let configuration = Configuration {
            mpp_override: options.open.mpp_override,
            tissue: options.tissue.clone(),
            tissue_mask,
            qc: options.qc.clone(),
            tiling: (&tiling_options(scorer, &options)).into(),
            aggregate: options.aggregate.clone(),
            thumbnail_side: options.thumbnail_side,
            evidence_crops: options.evidence_crops,
            stain_reference: options.normalise_stain.clone(),
        };
        let stream = TileStream::new(scorer, crate::pipeline::resolve_threads(options.threads));
        Ok(Scoring {
            scorer,
            model,
            options,
            configuration,
            stream,
        })
    }

    /// Scores the slide at `path` as `id` and writes its outputs into `dir` (the
    /// caller's folder for this slide; the batch stages it). A panic inside becomes
    /// an error of the stage it happened in, so one bad slide never ends a batch.
    pub fn score_slide(
        &self,
        id: &str,
        path: &Path,
        dir: &Path,
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<SlideReport, StageError> {
        let current = Cell::new(Stage::Open);
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.run_stages(id, path, dir, progress, &current)
        }));
        run.unwrap_or_else(|payload| {
            Err(StageError {
                stage: current.get(),
                error: ScoreError::Panic {
                    path: path.to_path_buf(),
                    message: panic_message(payload.as_ref()),
                },
            })
        })
    }

    fn run_stages(
        &self,
        id: &str,
        path: &Path,
        dir: &Path,
        progress: Option<&indicatif::ProgressBar>,
        current: &Cell<Stage>,
    ) -> Result<SlideReport, StageError> {
        let started_at = SystemTime::now();
        let t_total = Instant::now();
        let mut timings = Timings::default();
        let mut slide = step(current, Stage::Open, || self.open(path, &mut timings))?;
        let measured = self.measure(path, &mut slide, progress, current, &mut timings)?;
        let t = Instant::now();
        let mut slide_report = self.slide_report(id, path, &slide, &measured, started_at);
        step(current, Stage::Report, || {
            write_slide_outputs(
                dir,
                slide.reader.as_ref(),
                self.scorer.classes(),
                &measured,
                &slide_report,
                &self.options,
            )
        })?;
        slide_report.files = step(current, Stage::Report, || Ok(report::outputs::list(dir)?))?;
        timings.reports_s = t.elapsed().as_secs_f64();
        timings.total_s = t_total.elapsed().as_secs_f64();
        slide_report.timings = timings;
        slide_report.audit.finished_at = report::audit::rfc3339(SystemTime::now());
        // report.json last: its presence marks the slide as done.
        step(current, Stage::Report, || {
            Ok(report::json::write(
                &dir.join("report.json"),
                &slide_report,
            )?)
        })?;
        Ok(slide_report)
    }

    /// The stages from tissue to aggregate: everything the slide's report states.
    /// Where the file is hashed beside the tissue step, its digest lands in `slide`.
    fn measure(
        &self,
        path: &Path,
        slide: &mut Opened,
        progress: Option<&indicatif::ProgressBar>,
        current: &Cell<Stage>,
        timings: &mut Timings,
    ) -> Result<Measured, StageError> {
        let options = &self.options;
        // Tiling needs the MPP; refuse before spending time on pixels.
        step(current, Stage::Tiling, || match slide.info.mpp {
            Some(_) => Ok(()),
            None => Err(TilingError::NoMpp {
                path: path.to_path_buf(),
            }
            .into()),
        })?;
        let t = Instant::now();
        // The tissue step runs on one thread; with a second one to spare, the file is
        // hashed beside it (the stream's workers start after both).
        let (mask, digest) = std::thread::scope(|scope| {
            let hashing = self
                .hash_beside_tissue()
                .then(|| scope.spawn(|| timed(|| report::audit::sha256_file(path))));
            let mask = step(current, Stage::Tissue, || self.tissue_mask(slide));
            let digest = hashing.map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
            (mask, digest)
        });
        let mask = mask?;
        if let Some((digest, seconds)) = digest {
            let (sha256, _) = step(current, Stage::Open, || {
                digest.map_err(|source| {
                    SlideError::Io {
                        path: path.to_path_buf(),
                        source,
                    }
                    .into()
                })
            })?;
            slide.sha256 = Some(sha256);
            timings.hash_s = seconds;
        }
        let slide = &*slide;
        let mut qc = step(current, Stage::Qc, || {
            Ok(QcReport::check_slide(
                slide.info.mpp,
                mask.tissue_area_mm2(),
                // Pen is measured on the detected mask only; a user mask carries none.
                mask.pen_area_mm2(),
                &options.qc,
            ))
        })?;
        timings.tissue_s = t.elapsed().as_secs_f64();
        let tiling = tiling_options(self.scorer, options);
        let grid = step(current, Stage::Tiling, || {
            Ok(TileGrid::build(path, &slide.info, Some(&mask), &tiling)?)
        })?;
        if let Some(bar) = progress {
            bar.set_length(grid.tiles.len() as u64);
            bar.set_position(0);
        }

        current.set(Stage::Inference);
        let t = Instant::now();
        let source = GridSource {
            reader: slide.reader.as_ref(),
            grid: &grid,
        };
        let (normaliser, normalisation) = match &options.normalise_stain {
            Some(reference) => {
                let t_profile = Instant::now();
                let (n, record) = stain_normaliser(&source, reference, mask.glass)
                    .map_err(|e| stream_error(path, StreamError::Read(e)))?;
                timings.normalise_s = t_profile.elapsed().as_secs_f64();
                (n, Some(record))
            }
            None => (None, None),
        };
        let streamed = self
            .stream
            .run_normalised(&source, normaliser.as_ref(), progress)
            .map_err(|e| stream_error(path, e))?;
        timings.stream_s = t.elapsed().as_secs_f64();
        let times = &streamed.times;
        timings.decode_s = times.read.decode.as_secs_f64();
        timings.resample_s = times.read.resample.as_secs_f64();
        timings.tile_qc_s = times.tile_qc.as_secs_f64();
        // The profile above plus mapping the tiles (zero without the option).
        timings.normalise_s += times.normalise.as_secs_f64();
        timings.inference_s = times.inference.as_secs_f64();
        let tiles: Vec<TileScore> = grid
            .tiles
            .iter()
            .zip(streamed.probabilities)
            .zip(streamed.ood)
            .map(|((tile, probabilities), ood)| TileScore {
                col: tile.col,
                row: tile.row,
                level0: tile.level0,
                tissue_fraction: tile.tissue_fraction,
                probabilities,
                ood,
            })
            .collect();
        current.set(Stage::Qc);
        qc.check_tiles(tiles.len(), &streamed.laplacians, &options.qc);
        qc.check_stain(streamed.stain.estimate(), &options.qc);
        qc.stain_normalisation = normalisation;

        let t = Instant::now();
        let mut aggregate = options.aggregate.clone();
        if let Some(mpp) = slide.info.mpp {
            aggregate.tile_area_um2 = grid.stride_area_um2(mpp);
        }
        let classes = self.scorer.classes();
        let result = step(current, Stage::Aggregate, || {
            aggregate::aggregate(classes, &tiles, qc.gate(), &aggregate).map_err(|source| {
                ScoreError::Aggregate {
                    path: path.to_path_buf(),
                    source,
                }
            })
        })?;
        timings.aggregate_s = t.elapsed().as_secs_f64();
        Ok(Measured {
            mask,
            tiling,
            grid,
            tiles,
            qc,
            aggregate,
            result,
        })
    }

    /// The report of a measured slide, without timings and end time (stamped last).
    fn slide_report(
        &self,
        id: &str,
        path: &Path,
        slide: &Opened,
        m: &Measured,
        started_at: SystemTime,
    ) -> SlideReport {
        let options = &self.options;
        let note =
            (m.result.call == aggregate::Call::DiraPattern).then(|| report::IL1RN_NOTE.to_string());
        SlideReport {
            schema_version: report::SCHEMA_VERSION,
            notice: report::RESEARCH_NOTICE.to_string(),
            tool: report::ToolInfo::default(),
            model: self.model.clone(),
            slide: SlideMeta {
                id: id.to_string(),
                path: path.display().to_string(),
                sha256: slide.sha256.clone(),
                size_bytes: slide.size_bytes,
                format: slide.info.format,
                width: slide.info.width(),
                height: slide.info.height(),
                levels: slide.info.levels.clone(),
                mpp: slide.info.mpp,
                mpp_source: slide.info.mpp_source,
            },
            parameters: report::Parameters {
                tissue: report::TissueParams::new(
                    &options.tissue,
                    m.mask.source,
                    options.tissue_mask.as_deref(),
                ),
                tiling: (&m.tiling).into(),
                qc: options.qc.clone(),
                aggregate: m.aggregate.clone(),
            },
            qc: m.qc.clone(),
            tissue: report::TissueSummary {
                area_mm2: m.mask.tissue_area_mm2(),
                pen_area_mm2: m.mask.pen_area_mm2(),
                mask_width: m.mask.width,
                mask_height: m.mask.height,
                um_per_mask_px: m.mask.um_per_px,
            },
            tiles: report::TileCounts {
                grid: m.grid.cols as u64 * m.grid.rows as u64,
                cols: m.grid.cols,
                rows: m.grid.rows,
                scored: m.tiles.len(),
                level: m.grid.level,
                level_downsample: (m.grid.level_downsample_x + m.grid.level_downsample_y) / 2.0,
            },
            result: m.result.clone(),
            note,
            files: Vec::new(),
            audit: self.audit(path, slide, &m.qc, started_at),
            timings: Timings::default(),
        }
    }

    /// The tiles a slide's stain profile is measured on (see [`stain_sample`]),
    /// read as the stream reads them: detected or given tissue mask, the model's
    /// tile size and MPP. `dirascope model stain` measures a model's stain on them.
    pub fn stain_sample(&self, path: &Path) -> Result<Vec<RgbImage>, ScoreError> {
        let slide = self.open(path, &mut Timings::default())?;
        let mask = self.tissue_mask(&slide)?;
        let tiling = tiling_options(self.scorer, &self.options);
        let grid = TileGrid::build(path, &slide.info, Some(&mask), &tiling)?;
        let source = GridSource {
            reader: slide.reader.as_ref(),
            grid: &grid,
        };
        Ok(stain_sample(&source)?)
    }

    /// Opens the slide and hashes its file (or just sizes it, without hashing).
    fn open(&self, path: &Path, timings: &mut Timings) -> Result<Opened, ScoreError> {
        let t = Instant::now();
        let reader = slide::open(path, &self.options.open)?;
        let info = reader.info().clone();
        timings.open_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let io = |source| SlideError::Io {
            path: path.to_path_buf(),
            source,
        };
        let (sha256, size_bytes) = if self.options.hash_slides && !self.hash_beside_tissue() {
            let (h, n) = report::audit::sha256_file(path).map_err(io)?;
            (Some(h), n)
        } else {
            (None, std::fs::metadata(path).map_err(io)?.len())
        };
        timings.hash_s = t.elapsed().as_secs_f64();
        Ok(Opened {
            reader,
            info,
            sha256,
            size_bytes,
        })
    }

    /// Whether the slide file is hashed on a second thread beside the tissue step
    /// (`measure`) rather than after opening: where it is hashed at all and the run
    /// has two threads or more, so `--threads 1` keeps one thread busy.
    fn hash_beside_tissue(&self) -> bool {
        self.options.hash_slides && self.stream.workers() >= 2
    }

    /// The user's mask when one was given, else one detected on a thumbnail.
    fn tissue_mask(&self, slide: &Opened) -> Result<TissueMask, ScoreError> {
        let (info, options) = (&slide.info, &self.options);
        Ok(match &options.tissue_mask {
            Some(p) => tissue::load_user_mask(
                p,
                info.width(),
                info.height(),
                info.mpp,
                options.open.limits.max_whole_image_pixels,
            )?,
            None => {
                let thumb = slide
                    .reader
                    .thumbnail(tissue::mask_side(info, &options.tissue))?;
                tissue::detect(
                    &thumb,
                    info.width(),
                    info.height(),
                    info.mpp,
                    &options.tissue,
                )
            }
        })
    }

    /// The audit record; `finished_at` is stamped just before report.json is written.
    fn audit(
        &self,
        path: &Path,
        slide: &Opened,
        qc: &QcReport,
        started_at: SystemTime,
    ) -> report::Audit {
        let mut warnings: Vec<String> = qc.flags.iter().map(|f| format!("QC {f}")).collect();
        if self.options.open.mpp_override.is_some() {
            warnings.push("microns per pixel set by --mpp, not read from the slide".into());
        }
        if self.options.tissue_mask.is_some() {
            warnings.push("tissue mask given by --tissue-mask, not detected".into());
        }
        if slide.sha256.is_none() {
            warnings.push("slide not hashed: a rerun cannot reuse this report".into());
        }
        warnings.extend(self.options.off_rule());
        report::Audit {
            tool_version: report::ToolInfo::default().version,
            model: self.model.clone(),
            configuration: self.configuration.clone(),
            slide: FileDigest {
                path: path.display().to_string(),
                sha256: slide.sha256.clone(),
            },
            started_at: report::audit::rfc3339(started_at),
            finished_at: String::new(),
            warnings,
        }
    }
}

/// Tile size and MPP from the scorer; overlap and minimum tissue from the options.
fn tiling_options(scorer: &dyn TileScorer, options: &ScoreOptions) -> TilingOptions {
    TilingOptions {
        tile_px: scorer.tile_px(),
        model_mpp: scorer.mpp(),
        overlap_px: options.overlap_px,
        min_tissue: options.min_tissue,
        ..TilingOptions::default()
    }
}

/// Up to [`PROFILE_TILES`] tiles evenly spaced over `source`: the same tiles
/// however many workers run. A slide's stain profile is measured on them.
fn stain_sample(source: &dyn TileSource) -> Result<Vec<RgbImage>, SlideError> {
    let n = source.len();
    let picks = n.min(PROFILE_TILES);
    let mut times = crate::pipeline::ReadTimes::default();
    (0..picks)
        .map(|k| source.read(k * n / picks, &mut times))
        .collect()
}

/// The normaliser from a slide's stains (measured on [`stain_sample`]) to
/// `reference`'s against the slide's `glass` (from the tissue step), and what the
/// report says of it. No normaliser where the sample
/// holds too few stained pixels: the slide is scored as scanned.
fn stain_normaliser(
    source: &dyn TileSource,
    reference: &StainProfile,
    glass: Option<[u8; 3]>,
) -> Result<(Option<StainNormaliser>, StainNormalisation), SlideError> {
    let tiles = stain_sample(source)?;
    let slide = StainProfile::measure_against(&tiles, glass);
    let normaliser = slide
        .as_ref()
        .and_then(|s| StainNormaliser::new(s, reference));
    let record = StainNormalisation {
        applied: normaliser.is_some(),
        sampled_tiles: tiles.len(),
        slide,
        reference: reference.clone(),
    };
    Ok((normaliser, record))
}

/// A tile stream's failure as the error of its stage, naming the slide.
fn stream_error(path: &Path, e: StreamError) -> StageError {
    let stage = e.stage();
    let path = path.to_path_buf();
    let error = match e {
        StreamError::Read(e) => ScoreError::Slide(e),
        StreamError::Model(source) => ScoreError::Model { path, source },
        StreamError::ModelOutput { got, expected } => ScoreError::ModelOutput {
            path,
            got,
            expected,
        },
        StreamError::Panic { what, message, .. } => ScoreError::Panic {
            path,
            message: format!("{what} panicked: {message}"),
        },
    };
    StageError { stage, error }
}

fn write_slide_outputs(
    dir: &Path,
    reader: &dyn SlideReader,
    classes: &[String],
    m: &Measured,
    r: &SlideReport,
    options: &ScoreOptions,
) -> Result<(), ScoreError> {
    let (tiles, grid) = (&m.tiles, &m.grid);
    report::csv::write_tiles(&dir.join("tiles.csv"), classes, tiles)?;
    report::geojson::write(
        &dir.join("tiles.geojson"),
        classes,
        tiles,
        r.parameters.aggregate.tile_threshold,
    )?;
    let thumb = reader.thumbnail(options.thumbnail_side)?;
    report::write_png(&dir.join("thumbnail.png"), &thumb)?;
    report::html::write_index_thumbnail(dir, &thumb)?;
    for (c, key) in classes.iter().enumerate() {
        let heat = report::heatmap::render(&thumb, r.slide.width, r.slide.height, tiles, c, 0.55);
        report::write_png(
            &dir.join(format!("heatmap_{}.png", report::safe_name(key))),
            &heat,
        )?;
    }
    if options.evidence_crops {
        for e in &r.result.evidence {
            let tile = crate::tiling::Tile {
                col: e.col,
                row: e.row,
                level0: crate::slide::Rect::new(e.x, e.y, e.width, e.height),
                tissue_fraction: 1.0,
            };
            let crop = grid.read_tile(reader, &tile)?;
            let name = report::html::evidence_file_name(&e.finding, e.rank, e.x, e.y);
            report::write_png(&dir.join("evidence").join(name), &crop)?;
        }
    }
    // The page last, so it links the images that were written.
    report::html::write_slide(dir, r)?;
    Ok(())
}

/// The first slide whose MPP is unknown (after `--mpp`), checked from headers only.
/// Slides that fail to open are left for the batch to report as errors.
pub fn first_without_mpp(paths: &[PathBuf], open: &OpenOptions) -> Option<PathBuf> {
    paths.iter().find_map(|p| match slide::open(p, open) {
        Ok(reader) if reader.info().mpp.is_none() => Some(p.clone()),
        _ => None,
    })
}

/// Test doubles for unit tests of the pipeline and the batch (never product code).
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::aggregate::FINDINGS;
    use crate::slide::writer::{PyramidWriter, TileCompression, WriterOptions};
    use crate::slide::Mpp;
    use image::RgbImage;

    /// Probabilities from mean tile colour. Blue-ish tissue (B > R) reads as pustule
    /// + acantholysis; red-ish tissue as psoriasiform; glass scores 0 everywhere.
    pub struct ColourScorer {
        pub classes: Vec<String>,
        pub tile_px: u32,
        pub mpp: f64,
        pub batch: usize,
    }

    impl ColourScorer {
        pub fn new(batch: usize) -> Self {
            ColourScorer {
                classes: FINDINGS.iter().map(|s| s.to_string()).collect(),
                tile_px: 32,
                mpp: 2.0,
                batch,
            }
        }
    }

    impl TileScorer for ColourScorer {
        fn tile_px(&self) -> u32 {
            self.tile_px
        }
        fn mpp(&self) -> f64 {
            self.mpp
        }
        fn classes(&self) -> &[String] {
            &self.classes
        }
        fn batch_size(&self) -> usize {
            self.batch
        }
        fn score_batch(&self, tiles: &[RgbImage]) -> Result<Vec<TileOutput>, ScorerError> {
            Ok(tiles
                .iter()
                .map(|t| {
                    let n = (t.width() * t.height()) as f64;
                    let mut m = [0.0f64; 3];
                    for p in t.pixels() {
                        for (acc, &v) in m.iter_mut().zip(&p.0) {
                            *acc += v as f64 / n;
                        }
                    }
                    let blue = ((m[2] - m[0]) / 100.0).clamp(0.0, 1.0) as f32;
                    let red = ((m[0] - m[2]) / 60.0).clamp(0.0, 1.0) as f32;
                    vec![blue, blue, 0.0, red].into()
                })
                .collect())
        }
    }

    pub fn model() -> ModelInfo {
        ModelInfo {
            name: "colour-test-double".into(),
            version: "0".into(),
            sha256: "0".repeat(64),
            classes: FINDINGS.iter().map(|s| s.to_string()).collect(),
            tile_px: 32,
            mpp: 2.0,
        }
    }

    /// A 1024 × 768 slide at 0.5 µm/px: glass with a block of `colour` tissue with texture.
    pub fn write_slide(path: &Path, colour: Option<[u8; 3]>) {
        let (w, h) = (1024u32, 768u32);
        let mut writer = PyramidWriter::create(
            path,
            w,
            h,
            WriterOptions {
                compression: TileCompression::Deflate,
                mpp: Mpp::square(0.5),
                min_level_side: 128,
                ..WriterOptions::default()
            },
        )
        .unwrap();
        let mut rows = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                let inside = (128..896).contains(&x) && (128..640).contains(&y);
                let p = match (colour, inside) {
                    (Some(c), true) => {
                        // Texture so tiles are sharp: a checker of ±30 grey levels.
                        let d: i16 = if (x / 8 + y / 8) % 2 == 0 { 30 } else { -30 };
                        c.map(|v| (v as i16 + d).clamp(0, 255) as u8)
                    }
                    _ => [243, 243, 245],
                };
                rows.extend_from_slice(&p);
            }
        }
        writer.push_rows(&rows).unwrap();
        writer.finish().unwrap();
    }

    /// Options sized for the small test slides.
    pub fn options(threads: usize) -> ScoreOptions {
        ScoreOptions {
            threads: Some(threads),
            tissue: TissueOptions {
                min_component_mm2: 0.001,
                ..TissueOptions::default()
            },
            qc: QcOptions {
                min_tissue_mm2: 0.01,
                ..QcOptions::default()
            },
            aggregate: AggregateParams {
                top_k_min: 2,
                ..AggregateParams::default()
            },
            ..ScoreOptions::default()
        }
    }

    /// Scores one slide into `dir` with the colour double.
    pub fn score_into(
        slide: &Path,
        dir: &Path,
        scorer: &ColourScorer,
        options: ScoreOptions,
    ) -> Result<SlideReport, StageError> {
        let scoring = Scoring::new(scorer, model(), options).unwrap();
        let id = slide.file_stem().unwrap().to_string_lossy();
        scoring.score_slide(&id, slide, dir, None)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::aggregate::Call;
    use image::RgbImage;

    #[test]
    fn pipeline_writes_every_output_and_is_thread_count_independent() {
        let dir = tempfile::tempdir().unwrap();
        let slide = dir.path().join("blue.tif");
        write_slide(&slide, Some([120, 80, 220]));
        let (out1, out2) = (dir.path().join("out1"), dir.path().join("out2"));
        let ra = score_into(&slide, &out1, &ColourScorer::new(3), options(1)).unwrap();
        let rb = score_into(&slide, &out2, &ColourScorer::new(3), options(2)).unwrap();
        // Tissue block 768 x 512 level-0 px at 0.5 µm = 384 x 256 µm; tiles are 64 µm
        // (128 level-0 px): 6 x 4 tissue tiles of an 8 x 6 grid.
        assert_eq!((ra.tiles.cols, ra.tiles.rows), (8, 6));
        assert_eq!(ra.tiles.scored, 24);
        assert_eq!(ra.tiles.level, 2);
        assert!(ra.qc.flags.is_empty(), "{:?}", ra.qc.flags);
        assert_eq!(ra.result.call, Call::DiraPattern);
        assert!(ra.note.is_some());
        // One thread hashes the file after opening it; two hash it beside the tissue step.
        let (digest, _) = report::audit::sha256_file(&slide).unwrap();
        assert_eq!(ra.slide.sha256.as_deref(), Some(digest.as_str()));
        assert_eq!(rb.slide.sha256.as_deref(), Some(digest.as_str()));
        assert!(rb.timings.hash_s > 0.0);
        let ja = report::json::to_json_without_times(&ra).unwrap();
        let jb = report::json::to_json_without_times(&rb).unwrap();
        assert_eq!(ja, jb);
        let read = |d: &Path, f: &str| std::fs::read(d.join(f)).unwrap();
        assert_eq!(read(&out1, "tiles.csv"), read(&out2, "tiles.csv"));
        for f in [
            "report.json",
            "tiles.geojson",
            "thumbnail.png",
            "thumbnail_small.jpg",
            "report.html",
            "heatmap_subcorneal_pustule.png",
            "heatmap_psoriasiform.png",
        ] {
            assert!(out1.join(f).is_file(), "{f}");
        }
        let evidence = std::fs::read_dir(out1.join("evidence")).unwrap().count();
        assert_eq!(evidence, 4 * 8);
    }

    #[test]
    fn tiling_off_the_rule_is_named_and_the_rule_s_own_is_not() {
        let fit = RuleTiling {
            overlap_px: 0,
            min_tissue: 0.1,
        };
        let at_fit = ScoreOptions {
            overlap_px: 0,
            min_tissue: 0.1,
            rule_fitted_at: Some(fit),
            ..ScoreOptions::default()
        };
        assert!(at_fit.off_rule().is_empty());
        // Without a manifest there is no rule to be off.
        let no_manifest = ScoreOptions {
            overlap_px: 56,
            ..ScoreOptions::default()
        };
        assert!(no_manifest.off_rule().is_empty());
        let off = ScoreOptions {
            overlap_px: 168,
            min_tissue: 0.5,
            normalise_stain: Some(StainProfile {
                hematoxylin: [0.65, 0.70, 0.29],
                eosin: [0.07, 0.99, 0.11],
                max_concentration: [1.0, 1.0],
                glass: [255.0; 3],
            }),
            ..at_fit.clone()
        };
        let w = off.off_rule();
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("168 px") && w[0].contains("fitted at 0 px"));
        assert!(w[1].contains("from 0.5 tissue") && w[1].contains("fitted at 0.1"));
        assert!(w[2].contains("--normalise-stain"));
    }

    #[test]
    fn the_audit_records_inputs_configuration_and_times() {
        let dir = tempfile::tempdir().unwrap();
        let slide = dir.path().join("blue.tif");
        write_slide(&slide, Some([120, 80, 220]));
        let out = dir.path().join("out");
        let r = score_into(&slide, &out, &ColourScorer::new(4), options(1)).unwrap();
        let a = &r.audit;
        assert_eq!(a.tool_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(a.model, model());
        assert_eq!(a.slide.path, slide.display().to_string());
        assert_eq!(a.slide.sha256, r.slide.sha256);
        assert_eq!(a.configuration.qc.min_tissue_mm2, 0.01);
        assert_eq!(a.configuration.tiling.tile_px, 32);
        for t in [&a.started_at, &a.finished_at] {
            assert_eq!(t.len(), "2026-01-01T00:00:00Z".len(), "{t}");
            assert!(t.ends_with('Z'), "{t}");
        }
        assert!(a.started_at <= a.finished_at);
        let back = report::json::read_report(&out.join("report.json")).unwrap();
        assert_eq!(back, r);
        let masked = report::json::to_json_without_times(&r).unwrap();
        assert!(!masked.contains("started_at") && !masked.contains("\"timings\""));
    }

    #[test]
    fn red_tissue_is_psoriasiform_and_glass_is_insufficient() {
        let dir = tempfile::tempdir().unwrap();
        let red = dir.path().join("red.tif");
        let glass = dir.path().join("glass.tif");
        write_slide(&red, Some([230, 120, 160]));
        write_slide(&glass, None);
        let scorer = ColourScorer::new(4);
        let r = score_into(&red, &dir.path().join("r"), &scorer, options(2)).unwrap();
        let g = score_into(&glass, &dir.path().join("g"), &scorer, options(2)).unwrap();
        assert_eq!(r.result.call, Call::PsoriasiformPattern);
        assert_eq!(g.result.call, Call::InsufficientTissue);
        assert_eq!(g.tiles.scored, 0);
    }

    #[test]
    fn a_png_without_mpp_fails_at_tiling_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("export.png");
        RgbImage::from_pixel(64, 64, image::Rgb([200, 100, 150]))
            .save(&png)
            .unwrap();
        let e = score_into(&png, dir.path(), &ColourScorer::new(4), options(1)).unwrap_err();
        assert_eq!((e.stage, e.kind()), (Stage::Tiling, "no-mpp"));
        assert!(e.to_string().contains("--mpp"));
    }

    /// A scorer that panics: the panic becomes an inference error, not a crash.
    struct PanickingScorer(ColourScorer);

    impl TileScorer for PanickingScorer {
        fn tile_px(&self) -> u32 {
            self.0.tile_px
        }
        fn mpp(&self) -> f64 {
            self.0.mpp
        }
        fn classes(&self) -> &[String] {
            &self.0.classes
        }
        fn score_batch(&self, _: &[RgbImage]) -> Result<Vec<TileOutput>, ScorerError> {
            panic!("scorer double panics on purpose")
        }
    }

    #[test]
    fn a_panic_inside_a_stage_is_an_error_of_that_stage() {
        let dir = tempfile::tempdir().unwrap();
        let slide = dir.path().join("blue.tif");
        write_slide(&slide, Some([120, 80, 220]));
        let scorer = PanickingScorer(ColourScorer::new(4));
        let scoring = Scoring::new(&scorer, model(), options(1)).unwrap();
        let e = scoring
            .score_slide("blue", &slide, &dir.path().join("out"), None)
            .unwrap_err();
        assert_eq!(e.stage, Stage::Inference, "{e}");
        assert!(e.to_string().contains("blue.tif"), "{e}");
    }

    #[test]
    fn real_normal_skin_passes_qc_and_is_tiled_at_the_model_scale() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures/real/CMU-1-Small-Region.svs");
        if !path.is_file() {
            eprintln!("skipped: {} is absent", path.display());
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let scorer = ColourScorer {
            tile_px: 224,
            mpp: 0.5,
            ..ColourScorer::new(8)
        };
        let options = ScoreOptions {
            threads: Some(2),
            ..ScoreOptions::default()
        };
        let r = score_into(&path, dir.path(), &scorer, options).unwrap();
        assert!(r.qc.flags.is_empty(), "{:?}", r.qc.flags);
        assert!(r.qc.laplacian_variance.unwrap() > 100.0);
        // 2220 x 2967 px at 0.499 µm: 1.108 x 1.481 mm = 1.64 mm²; a quarter to a half is tissue.
        let area = r.tissue.area_mm2.unwrap();
        assert!((0.4..=0.9).contains(&area), "tissue {area} mm²");
        // 224 px at 0.5 µm = 224.4 level-0 px: a 10 x 14 grid.
        assert_eq!((r.tiles.cols, r.tiles.rows), (10, 14));
        assert!(r.tiles.scored >= 30, "{} tiles", r.tiles.scored);
        assert_eq!(
            r.slide.sha256.as_deref(),
            Some("ed92d5a9f2e86df67640d6f92ce3e231419ce127131697fbbce42ad5e002c8a7")
        );
    }
}
