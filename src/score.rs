//! The score pipeline: one slide from file to reports, and a batch of slides.
//!
//! It wires the stages (slide -> tissue -> qc -> tiling -> model -> aggregate ->
//! report) and owns the tile stream: tiles are read and resampled in parallel on a
//! rayon pool, in fixed batches, through a bounded channel into the scorer, so a
//! slide is never held whole and batch composition never depends on thread count.
//! It holds no model code: the model is reached only through [`TileScorer`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use image::RgbImage;

use crate::aggregate::{self, AggregateError, AggregateParams, TileScore};
use crate::qc::{self, QcOptions, QcReport};
use crate::report::{self, ModelInfo, ReportError, SlideMeta, SlideReport};
use crate::slide::{self, OpenOptions, SlideError, SlideReader};
use crate::tiling::{TileGrid, TilingError, TilingOptions};
use crate::tissue::{self, TissueError, TissueMask, TissueOptions};

/// Boxed error a scorer returns (the model stage keeps its own error type).
pub type ScorerError = Box<dyn std::error::Error + Send + Sync>;

/// The seam to the model: a batch of RGB tiles of `tile_px` × `tile_px` at `mpp`
/// µm/px in, one probability per class per tile out (in `classes()` order).
pub trait TileScorer: Send + Sync {
    fn tile_px(&self) -> u32;
    fn mpp(&self) -> f64;
    fn classes(&self) -> &[String];
    /// Tiles per call to [`TileScorer::score_batch`].
    fn batch_size(&self) -> usize {
        16
    }
    fn score_batch(&self, tiles: &[RgbImage]) -> Result<Vec<Vec<f32>>, ScorerError>;
}

/// Options of one scoring run. `Default`: detected tissue mask, default stage
/// options, 2 × threads batches in flight, a 1024 px thumbnail for heatmaps, slide
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
    /// Worker threads for reading and resampling (`--threads`); `None`: all cores.
    pub threads: Option<usize>,
    /// Batches allowed in the queue between readers and the scorer.
    pub queue_batches: usize,
    pub thumbnail_side: u32,
    pub hash_slides: bool,
    pub evidence_crops: bool,
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
            queue_batches: 4,
            thumbnail_side: 1024,
            hash_slides: true,
            evidence_crops: true,
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
    #[error("cannot start {threads} worker threads: {reason}")]
    Threads { threads: usize, reason: String },
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
            ScoreError::Threads { .. } => "io",
        }
    }
}

/// A slide's id: its file name without the extension.
pub fn slide_id(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "slide".to_string());
    // Strip compound extensions of slide formats too (.ome.tif).
    let lower = name.to_ascii_lowercase();
    for ext in [".ome.tiff", ".ome.tif"] {
        if lower.ends_with(ext) {
            return name[..name.len() - ext.len()].to_string();
        }
    }
    match name.rfind('.') {
        Some(i) if i > 0 => name[..i].to_string(),
        _ => name,
    }
}

fn sha256_file(path: &Path) -> Result<(String, u64), SlideError> {
    use sha2::Digest;
    use std::io::Read;
    let io = |source| SlideError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// Where the tile stream spent its time, in nanoseconds summed over worker threads.
#[derive(Debug, Default)]
struct StreamTimes {
    decode_ns: AtomicU64,
    resample_ns: AtomicU64,
    tile_qc_ns: AtomicU64,
    infer_ns: AtomicU64,
}

impl StreamTimes {
    fn add(counter: &AtomicU64, elapsed: Duration) {
        counter.fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    fn seconds(counter: &AtomicU64) -> f64 {
        counter.load(Ordering::Relaxed) as f64 / 1e9
    }
}

/// Reads, resamples and scores every tile of `grid`, in fixed batches, and returns
/// one [`TileScore`] per tile (grid order) and each tile's Laplacian variance.
fn stream_tiles(
    path: &Path,
    reader: &dyn SlideReader,
    grid: &TileGrid,
    scorer: &dyn TileScorer,
    options: &ScoreOptions,
    progress: Option<&indicatif::ProgressBar>,
    times: &StreamTimes,
) -> Result<(Vec<TileScore>, Vec<f64>), ScoreError> {
    use rayon::prelude::*;
    let batch = scorer.batch_size().max(1);
    let chunks: Vec<&[crate::tiling::Tile]> = grid.tiles.chunks(batch).collect();
    let threads = options.threads.unwrap_or(0);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| ScoreError::Threads {
            threads,
            reason: e.to_string(),
        })?;
    type Batch = (usize, Vec<RgbImage>, Vec<f64>);
    let (tx, rx) = crossbeam_channel::bounded::<Batch>(options.queue_batches.max(1));
    let mut probabilities: Vec<Option<Vec<Vec<f32>>>> = vec![None; chunks.len()];
    let mut laplacians: Vec<Vec<f64>> = vec![Vec::new(); chunks.len()];
    let result: Result<(), ScoreError> = std::thread::scope(|scope| {
        let producer = scope.spawn(|| {
            // Owned here so the queue closes when the last batch is sent.
            let tx = tx;
            pool.install(|| {
                chunks
                    .par_iter()
                    .enumerate()
                    .try_for_each(|(i, chunk)| -> Result<(), ScoreError> {
                        let (mut decode, mut resample) = (Duration::ZERO, Duration::ZERO);
                        let mut images = Vec::with_capacity(chunk.len());
                        for tile in chunk.iter() {
                            let start = Instant::now();
                            let region = grid.read_tile_region(reader, tile)?;
                            let decoded = Instant::now();
                            images.push(grid.resample_tile(&region, tile));
                            decode += decoded - start;
                            resample += decoded.elapsed();
                        }
                        let start = Instant::now();
                        let lap = images.iter().map(qc::laplacian_variance).collect();
                        StreamTimes::add(&times.tile_qc_ns, start.elapsed());
                        StreamTimes::add(&times.decode_ns, decode);
                        StreamTimes::add(&times.resample_ns, resample);
                        // The receiver hangs up only after an error of its own.
                        let _ = tx.send((i, images, lap));
                        Ok(())
                    })
            })
        });
        // Inference workers, one per thread, each with its own model session (tract runs
        // one plan single-threaded, so parallel inference comes from workers). Results
        // land by batch index, so they never depend on which worker scored a batch.
        let slots = std::sync::Mutex::new((&mut probabilities, &mut laplacians));
        let workers = options
            .threads
            .unwrap_or_else(rayon::current_num_threads)
            .max(1);
        let consumed: Result<(), ScoreError> = std::thread::scope(|inner| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    let rx = rx.clone();
                    let slots = &slots;
                    inner.spawn(move || -> Result<(), ScoreError> {
                        for (i, images, lap) in rx.iter() {
                            let start = Instant::now();
                            let out = scorer.score_batch(&images).map_err(|source| {
                                ScoreError::Model {
                                    path: path.to_path_buf(),
                                    source,
                                }
                            })?;
                            StreamTimes::add(&times.infer_ns, start.elapsed());
                            if out.len() != images.len() {
                                return Err(ScoreError::ModelOutput {
                                    path: path.to_path_buf(),
                                    got: out.len(),
                                    expected: images.len(),
                                });
                            }
                            if let Some(bar) = progress {
                                bar.inc(images.len() as u64);
                            }
                            let mut guard = slots.lock().unwrap_or_else(|e| e.into_inner());
                            guard.0[i] = Some(out);
                            guard.1[i] = lap;
                        }
                        Ok(())
                    })
                })
                .collect();
            let mut first_error = Ok(());
            for h in handles {
                let r = h.join().unwrap_or_else(|_| {
                    Err(ScoreError::Threads {
                        threads,
                        reason: "an inference worker panicked".into(),
                    })
                });
                if first_error.is_ok() {
                    first_error = r;
                }
            }
            first_error
        });
        drop(rx);
        let produced = producer.join().unwrap_or_else(|_| {
            Err(ScoreError::Threads {
                threads,
                reason: "a tile reader panicked".into(),
            })
        });
        consumed.and(produced)
    });
    result?;
    let mut scores = Vec::with_capacity(grid.tiles.len());
    for (chunk, probs) in chunks.iter().zip(probabilities) {
        let probs = probs.unwrap_or_default();
        for (tile, p) in chunk.iter().zip(probs) {
            scores.push(TileScore {
                col: tile.col,
                row: tile.row,
                level0: tile.level0,
                tissue_fraction: tile.tissue_fraction,
                probabilities: p,
            });
        }
    }
    Ok((scores, laplacians.into_iter().flatten().collect()))
}

/// Scores one slide and writes its reports into `out_dir/<slide_id>/`.
pub fn score_slide(
    path: &Path,
    out_dir: &Path,
    scorer: &dyn TileScorer,
    model: &ModelInfo,
    options: &ScoreOptions,
    progress: Option<&indicatif::ProgressBar>,
) -> Result<SlideReport, ScoreError> {
    let t_total = Instant::now();
    let mut timings = report::Timings::default();
    let id = slide_id(path);
    let slide_dir = out_dir.join(report::safe_name(&id));

    let t = Instant::now();
    let reader = slide::open(path, &options.open)?;
    let info = reader.info().clone();
    timings.open_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let (sha256, size_bytes) = if options.hash_slides {
        let (h, n) = sha256_file(path)?;
        (Some(h), n)
    } else {
        let n = std::fs::metadata(path)
            .map_err(|source| SlideError::Io {
                path: path.to_path_buf(),
                source,
            })?
            .len();
        (None, n)
    };
    timings.hash_s = t.elapsed().as_secs_f64();

    // Tiling needs the MPP; refuse before spending time on pixels.
    let tiling_options = TilingOptions {
        tile_px: scorer.tile_px(),
        model_mpp: scorer.mpp(),
        overlap_px: options.overlap_px,
        min_tissue: options.min_tissue,
        ..TilingOptions::default()
    };
    if info.mpp.is_none() {
        return Err(TilingError::NoMpp {
            path: path.to_path_buf(),
        }
        .into());
    }

    let t = Instant::now();
    let mask_thumb = reader.thumbnail(tissue::mask_side(&info, &options.tissue))?;
    let mask: TissueMask = match &options.tissue_mask {
        Some(p) => tissue::load_user_mask(
            p,
            info.width(),
            info.height(),
            info.mpp,
            options.open.limits.max_whole_image_pixels,
        )?,
        None => tissue::detect(
            &mask_thumb,
            info.width(),
            info.height(),
            info.mpp,
            &options.tissue,
        ),
    };
    let mut qc_report = QcReport::check_slide(
        info.mpp,
        mask.tissue_area_mm2(),
        // Pen is measured on the detected mask only; a user mask carries none.
        mask.pen_area_mm2(),
        &options.qc,
    );
    timings.tissue_s = t.elapsed().as_secs_f64();

    let grid = TileGrid::build(path, &info, Some(&mask), &tiling_options)?;
    if let Some(bar) = progress {
        bar.set_length(grid.tiles.len() as u64);
        bar.set_position(0);
    }

    let t = Instant::now();
    let times = StreamTimes::default();
    let (tiles, laplacians) = stream_tiles(
        path,
        reader.as_ref(),
        &grid,
        scorer,
        options,
        progress,
        &times,
    )?;
    timings.stream_s = t.elapsed().as_secs_f64();
    timings.decode_s = StreamTimes::seconds(&times.decode_ns);
    timings.resample_s = StreamTimes::seconds(&times.resample_ns);
    timings.tile_qc_s = StreamTimes::seconds(&times.tile_qc_ns);
    timings.inference_s = StreamTimes::seconds(&times.infer_ns);
    qc_report.check_tiles(tiles.len(), &laplacians, &options.qc);

    let t = Instant::now();
    let mut params = options.aggregate.clone();
    if let Some(mpp) = info.mpp {
        params.tile_area_um2 = grid.stride_area_um2(mpp);
    }
    let classes = scorer.classes().to_vec();
    let result =
        aggregate::aggregate(&classes, &tiles, qc_report.gate(), &params).map_err(|source| {
            ScoreError::Aggregate {
                path: path.to_path_buf(),
                source,
            }
        })?;
    timings.aggregate_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let note =
        (result.call == aggregate::Call::DiraPattern).then(|| report::IL1RN_NOTE.to_string());
    let mut slide_report = SlideReport {
        schema_version: report::SCHEMA_VERSION,
        notice: report::RESEARCH_NOTICE.to_string(),
        tool: report::ToolInfo::default(),
        model: model.clone(),
        slide: SlideMeta {
            id: id.clone(),
            path: path.display().to_string(),
            sha256,
            size_bytes,
            format: info.format,
            width: info.width(),
            height: info.height(),
            levels: info.levels.clone(),
            mpp: info.mpp,
            mpp_source: info.mpp_source,
        },
        parameters: report::Parameters {
            tissue: report::TissueParams::new(
                &options.tissue,
                mask.source,
                options.tissue_mask.as_deref(),
            ),
            tiling: (&tiling_options).into(),
            qc: options.qc.clone(),
            aggregate: params.clone(),
        },
        qc: qc_report,
        tissue: report::TissueSummary {
            area_mm2: mask.tissue_area_mm2(),
            pen_area_mm2: mask.pen_area_mm2(),
            mask_width: mask.width,
            mask_height: mask.height,
            um_per_mask_px: mask.um_per_px,
        },
        tiles: report::TileCounts {
            grid: grid.cols as u64 * grid.rows as u64,
            cols: grid.cols,
            rows: grid.rows,
            scored: tiles.len(),
            level: grid.level,
            level_downsample: (grid.level_downsample_x + grid.level_downsample_y) / 2.0,
        },
        result,
        note,
        timings: report::Timings::default(),
    };
    write_slide_outputs(
        &slide_dir,
        reader.as_ref(),
        &grid,
        &classes,
        &tiles,
        &slide_report,
        options,
    )?;
    timings.reports_s = t.elapsed().as_secs_f64();
    timings.total_s = t_total.elapsed().as_secs_f64();
    slide_report.timings = timings;
    // report.json last: its presence marks the slide as done.
    report::json::write(&slide_dir.join("report.json"), &slide_report)?;
    Ok(slide_report)
}

fn write_slide_outputs(
    dir: &Path,
    reader: &dyn SlideReader,
    grid: &TileGrid,
    classes: &[String],
    tiles: &[TileScore],
    r: &SlideReport,
    options: &ScoreOptions,
) -> Result<(), ScoreError> {
    report::csv::write_tiles(&dir.join("tiles.csv"), classes, tiles)?;
    report::geojson::write(
        &dir.join("tiles.geojson"),
        classes,
        tiles,
        r.parameters.aggregate.tile_threshold,
    )?;
    let thumb = reader.thumbnail(options.thumbnail_side)?;
    report::write_png(&dir.join("thumbnail.png"), &thumb)?;
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

/// What a batch produced.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub reports: Vec<SlideReport>,
    /// (path, kind, reason) per slide that failed.
    pub errors: Vec<(String, String, String)>,
}

/// Scores every slide (one after another; tiles within a slide in parallel), then
/// writes `OUT/summary.csv`, `OUT/errors.csv` (when any failed) and `OUT/report.html`.
pub fn score_batch(
    paths: &[PathBuf],
    out_dir: &Path,
    scorer: &dyn TileScorer,
    model: &ModelInfo,
    options: &ScoreOptions,
    progress: bool,
) -> Result<BatchOutcome, ReportError> {
    let bars = progress.then(|| {
        let multi = indicatif::MultiProgress::new();
        let slides = multi.add(indicatif::ProgressBar::new(paths.len() as u64));
        slides.set_style(
            indicatif::ProgressStyle::with_template("slides {bar:30} {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let tiles = multi.add(indicatif::ProgressBar::new(0));
        tiles.set_style(
            indicatif::ProgressStyle::with_template("tiles  {bar:30} {pos}/{len} {per_sec}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        (multi, slides, tiles)
    });
    let mut outcome = BatchOutcome::default();
    for path in paths {
        if let Some((_, slides, _)) = &bars {
            slides.set_message(slide_id(path));
        }
        match score_slide(
            path,
            out_dir,
            scorer,
            model,
            options,
            bars.as_ref().map(|b| &b.2),
        ) {
            Ok(r) => outcome.reports.push(r),
            Err(e) => {
                let line = format!("{e}");
                match &bars {
                    Some((multi, _, _)) => {
                        let _ = multi.println(format!("dirascope: error: {line}"));
                    }
                    None => eprintln!("dirascope: error: {line}"),
                }
                outcome
                    .errors
                    .push((path.display().to_string(), e.kind().to_string(), line));
            }
        }
        if let Some((_, slides, _)) = &bars {
            slides.inc(1);
        }
    }
    if let Some((_, slides, tiles)) = &bars {
        tiles.finish_and_clear();
        slides.finish_and_clear();
    }
    let encode = |path: &Path, r: Result<Vec<u8>, String>| {
        r.map_err(|reason| ReportError::Encode {
            path: path.to_path_buf(),
            reason,
        })
    };
    let summary = out_dir.join("summary.csv");
    report::write_atomic(
        &summary,
        &encode(&summary, report::csv::summary_csv(&outcome.reports))?,
    )?;
    let errors = out_dir.join("errors.csv");
    if !outcome.errors.is_empty() {
        report::write_atomic(
            &errors,
            &encode(&errors, report::csv::errors_csv(&outcome.errors))?,
        )?;
    }
    report::html::write(
        &out_dir.join("report.html"),
        out_dir,
        &outcome.reports,
        &outcome.errors,
    )?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{Call, FINDINGS};
    use crate::slide::writer::{PyramidWriter, TileCompression, WriterOptions};
    use crate::slide::Mpp;

    /// Unit-test double, never product behaviour: probabilities from mean tile
    /// colour. Blue-ish tissue (B > R) reads as pustule + acantholysis; red-ish
    /// tissue as psoriasiform; glass scores 0 everywhere.
    struct ColourScorer {
        classes: Vec<String>,
        tile_px: u32,
        mpp: f64,
        batch: usize,
    }

    impl ColourScorer {
        fn new(batch: usize) -> Self {
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
        fn score_batch(&self, tiles: &[RgbImage]) -> Result<Vec<Vec<f32>>, ScorerError> {
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
                    vec![blue, blue, 0.0, red]
                })
                .collect())
        }
    }

    fn model() -> ModelInfo {
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
    fn write_slide(path: &Path, colour: Option<[u8; 3]>) {
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

    fn options(threads: usize) -> ScoreOptions {
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

    #[test]
    fn slide_ids_drop_the_extension() {
        assert_eq!(slide_id(Path::new("/a/b/CMU-1.svs")), "CMU-1");
        assert_eq!(slide_id(Path::new("x.ome.tif")), "x");
        assert_eq!(slide_id(Path::new("noext")), "noext");
    }

    #[test]
    fn pipeline_writes_every_output_and_is_thread_count_independent() {
        let dir = tempfile::tempdir().unwrap();
        let slide = dir.path().join("blue.tif");
        write_slide(&slide, Some([120, 80, 220]));
        let out1 = dir.path().join("out1");
        let out2 = dir.path().join("out2");
        let a = score_batch(
            std::slice::from_ref(&slide),
            &out1,
            &ColourScorer::new(3),
            &model(),
            &options(1),
            false,
        )
        .unwrap();
        let b = score_batch(
            std::slice::from_ref(&slide),
            &out2,
            &ColourScorer::new(3),
            &model(),
            &options(2),
            false,
        )
        .unwrap();
        assert!(a.errors.is_empty(), "{:?}", a.errors);
        let (ra, rb) = (&a.reports[0], &b.reports[0]);
        // Tissue block 768 x 512 level-0 px at 0.5 µm = 384 x 256 µm; tiles are 64 µm
        // (128 level-0 px): 6 x 4 tissue tiles of an 8 x 6 grid.
        assert_eq!((ra.tiles.cols, ra.tiles.rows), (8, 6));
        assert_eq!(ra.tiles.scored, 24);
        assert_eq!(ra.tiles.level, 2);
        assert!(ra.qc.flags.is_empty(), "{:?}", ra.qc.flags);
        assert_eq!(ra.result.call, Call::DiraPattern);
        assert!(ra.note.is_some());
        let ja = report::json::to_json_without_timings(ra).unwrap();
        let jb = report::json::to_json_without_timings(rb).unwrap();
        assert_eq!(ja.replace("out1", "outX"), jb.replace("out2", "outX"));
        let read = |d: &Path, f: &str| std::fs::read(d.join("blue").join(f)).unwrap();
        assert_eq!(read(&out1, "tiles.csv"), read(&out2, "tiles.csv"));
        for f in [
            "report.json",
            "tiles.geojson",
            "thumbnail.png",
            "heatmap_subcorneal_pustule.png",
            "heatmap_psoriasiform.png",
        ] {
            assert!(out1.join("blue").join(f).is_file(), "{f}");
        }
        let evidence = std::fs::read_dir(out1.join("blue").join("evidence"))
            .unwrap()
            .count();
        assert_eq!(evidence, 4 * 8);
        let html = std::fs::read_to_string(out1.join("report.html")).unwrap();
        assert!(html.contains("data:image/png;base64,"));
        assert!(html.contains("IL1RN"));
        assert!(html.contains("Research use only"));
        let summary = std::fs::read_to_string(out1.join("summary.csv")).unwrap();
        assert!(summary
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("blue,dira-pattern,"));
    }

    #[test]
    fn red_tissue_is_psoriasiform_and_glass_is_insufficient() {
        let dir = tempfile::tempdir().unwrap();
        let red = dir.path().join("red.tif");
        let glass = dir.path().join("glass.tif");
        write_slide(&red, Some([230, 120, 160]));
        write_slide(&glass, None);
        let out = dir.path().join("out");
        let o = score_batch(
            &[red, glass],
            &out,
            &ColourScorer::new(4),
            &model(),
            &options(2),
            false,
        )
        .unwrap();
        assert!(o.errors.is_empty(), "{:?}", o.errors);
        assert_eq!(o.reports[0].result.call, Call::PsoriasiformPattern);
        assert_eq!(o.reports[1].result.call, Call::InsufficientTissue);
        assert_eq!(o.reports[1].tiles.scored, 0);
    }

    #[test]
    fn a_png_without_mpp_is_refused_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("export.png");
        RgbImage::from_pixel(64, 64, image::Rgb([200, 100, 150]))
            .save(&png)
            .unwrap();
        let out = dir.path().join("out");
        let o = score_batch(
            &[png],
            &out,
            &ColourScorer::new(4),
            &model(),
            &options(1),
            false,
        )
        .unwrap();
        assert_eq!(o.errors.len(), 1);
        assert_eq!(o.errors[0].1, "no-mpp");
        assert!(o.errors[0].2.contains("--mpp"));
        assert!(out.join("errors.csv").is_file());
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
        let r = score_slide(
            &path,
            dir.path(),
            &scorer,
            &model(),
            &ScoreOptions {
                threads: Some(2),
                ..ScoreOptions::default()
            },
            None,
        )
        .unwrap();
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
