//! [`TileStream`]: a slide's tiles read and scored on N worker threads.
//!
//! Tiles are cut into batches of the scorer's batch size by tile index. Each worker
//! takes the next batch, reads it from the [`TileSource`], measures each tile's
//! Laplacian variance and scores the batch with its own [`ScorerSession`], then takes
//! the next. Results land by batch index, so they never depend on the number of
//! workers or on which worker scored a batch. A worker opens its session (for a
//! model: its inference state) once per slide and scores every batch it takes with
//! it; sessions are not shared between threads.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use image::RgbImage;

use super::{ScorerError, ScorerSession, Stage, TileOutput, TileScorer};
use crate::qc;
use crate::slide::{SlideError, SlideReader};
use crate::stain::{StainNormaliser, StainStats};
use crate::tiling::TileGrid;

/// Where the time of one tile read went.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadTimes {
    /// File reads, tile decoding and copying into the region.
    pub decode: Duration,
    /// Resampling the region to the model's tile size and scale.
    pub resample: Duration,
}

/// The tiles a stream scores, readable from many threads at once.
pub trait TileSource: Sync {
    /// Number of tiles.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Tile `i` as the model takes it; adds the time it took to `times`.
    fn read(&self, i: usize, times: &mut ReadTimes) -> Result<RgbImage, SlideError>;
}

/// A slide's tile grid, read and resampled from the slide.
pub struct GridSource<'a> {
    pub reader: &'a dyn SlideReader,
    pub grid: &'a TileGrid,
}

impl TileSource for GridSource<'_> {
    fn len(&self) -> usize {
        self.grid.tiles.len()
    }

    fn read(&self, i: usize, times: &mut ReadTimes) -> Result<RgbImage, SlideError> {
        let tile = &self.grid.tiles[i];
        let start = Instant::now();
        let region = self.grid.read_tile_region(self.reader, tile)?;
        let decoded = Instant::now();
        let image = self.grid.resample_tile(&region, tile);
        times.decode += decoded - start;
        times.resample += decoded.elapsed();
        Ok(image)
    }
}

/// Tiles already in memory (benchmarks of the model through the product's stream).
impl TileSource for Vec<RgbImage> {
    fn len(&self) -> usize {
        Vec::len(self)
    }

    fn read(&self, i: usize, _: &mut ReadTimes) -> Result<RgbImage, SlideError> {
        Ok(self[i].clone())
    }
}

/// Time spent in each part of the stream, summed over its workers.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamTimes {
    pub read: ReadTimes,
    /// Per-tile QC (the Laplacian variance).
    pub tile_qc: Duration,
    /// Stain normalisation (`--normalise-stain`; zero without it).
    pub normalise: Duration,
    /// Preprocessing and the model.
    pub inference: Duration,
}

impl StreamTimes {
    fn add(&mut self, other: &StreamTimes) {
        self.read.decode += other.read.decode;
        self.read.resample += other.read.resample;
        self.tile_qc += other.tile_qc;
        self.normalise += other.normalise;
        self.inference += other.inference;
    }
}

/// What a stream returns: per tile (source order) its probabilities, OOD distance
/// (where the model has one) and Laplacian variance; the stained pixels of all
/// tiles (for the stain check); and where the time went.
#[derive(Debug, Default)]
pub struct Streamed {
    pub probabilities: Vec<Vec<f32>>,
    pub ood: Vec<Option<f32>>,
    pub laplacians: Vec<f64>,
    pub stain: StainStats,
    pub times: StreamTimes,
}

/// Why a stream stopped. [`StreamError::stage`] says which stage it belongs to.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Read(#[from] SlideError),
    #[error("the model failed on a batch of tiles: {0}")]
    Model(#[source] ScorerError),
    #[error("the model returned {got} results for a batch of {expected} tiles")]
    ModelOutput { got: usize, expected: usize },
    #[error("{what} panicked: {message}")]
    Panic {
        stage: Stage,
        what: &'static str,
        message: String,
    },
}

impl StreamError {
    /// Reading tiles is the tiling stage's; scoring them, inference's.
    pub fn stage(&self) -> Stage {
        match self {
            StreamError::Read(_) => Stage::Tiling,
            StreamError::Model(_) | StreamError::ModelOutput { .. } => Stage::Inference,
            StreamError::Panic { stage, .. } => *stage,
        }
    }
}

/// The tile stream of one run: a scorer and a worker count.
pub struct TileStream<'a> {
    scorer: &'a dyn TileScorer,
    workers: usize,
}

/// One batch's probabilities and Laplacian variances.
type BatchOutput = (Vec<TileOutput>, Vec<f64>);
/// What one worker scored: (batch index, its output), the stained pixels of its
/// tiles and its times.
type WorkerOutput = (Vec<(usize, BatchOutput)>, StainStats, StreamTimes);

impl<'a> TileStream<'a> {
    /// A stream of `workers` threads (at least 1; see [`super::resolve_threads`]).
    pub fn new(scorer: &'a dyn TileScorer, workers: usize) -> TileStream<'a> {
        TileStream {
            scorer,
            workers: workers.max(1),
        }
    }

    /// Worker threads a stream starts (fewer on a slide with fewer batches).
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Reads and scores every tile of `source`; `progress` advances per batch.
    pub fn run(
        &self,
        source: &dyn TileSource,
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<Streamed, StreamError> {
        self.run_normalised(source, None, progress)
    }

    /// As [`TileStream::run`], each tile mapped by `normaliser` (where given) after
    /// its QC measurements (Laplacian variance, stained pixels: those describe the
    /// slide as scanned) and before the model sees it.
    pub fn run_normalised(
        &self,
        source: &dyn TileSource,
        normaliser: Option<&StainNormaliser>,
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<Streamed, StreamError> {
        let batch = self.scorer.batch_size().max(1);
        let n = source.len();
        let batches = n.div_ceil(batch);
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let workers = self.workers.min(batches);
        let outputs: Vec<Result<WorkerOutput, StreamError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let r = self.work(source, normaliser, batch, (&next, &stop), progress);
                        if r.is_err() {
                            stop.store(true, Ordering::Relaxed);
                        }
                        r
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|payload| {
                        Err(panicked(Stage::Inference, "a tile stream worker", payload))
                    })
                })
                .collect()
        });
        let mut by_batch: Vec<Option<BatchOutput>> = (0..batches).map(|_| None).collect();
        let mut times = StreamTimes::default();
        let mut stain = StainStats::new();
        for output in outputs {
            let (done, s, t) = output?;
            times.add(&t);
            // Exact integer sums: the same bits however the tiles were shared out.
            stain.merge(&s);
            for (i, output) in done {
                by_batch[i] = Some(output);
            }
        }
        let mut streamed = Streamed {
            probabilities: Vec::with_capacity(n),
            ood: Vec::with_capacity(n),
            laplacians: Vec::with_capacity(n),
            stain,
            times,
        };
        for (outputs, laps) in by_batch.into_iter().flatten() {
            for output in outputs {
                streamed.probabilities.push(output.probabilities);
                streamed.ood.push(output.ood);
            }
            streamed.laplacians.extend(laps);
        }
        Ok(streamed)
    }

    /// One worker: opens its session, then takes batches until none is left or a
    /// worker failed (`next`: the next batch index, and the flag a failing worker
    /// raises).
    fn work(
        &self,
        source: &dyn TileSource,
        normaliser: Option<&StainNormaliser>,
        batch: usize,
        next: (&AtomicUsize, &AtomicBool),
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<WorkerOutput, StreamError> {
        let mut session = self.scorer.session().map_err(StreamError::Model)?;
        self.score_batches(session.as_mut(), source, normaliser, batch, next, progress)
    }

    fn score_batches(
        &self,
        session: &mut (dyn ScorerSession + 'a),
        source: &dyn TileSource,
        normaliser: Option<&StainNormaliser>,
        batch: usize,
        (next, stop): (&AtomicUsize, &AtomicBool),
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<WorkerOutput, StreamError> {
        let n = source.len();
        let mut done = Vec::new();
        let mut stain = StainStats::new();
        let mut times = StreamTimes::default();
        while !stop.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let start = i.saturating_mul(batch);
            if start >= n {
                break;
            }
            let end = (start + batch).min(n);
            let mut images = catch_unwind(AssertUnwindSafe(|| {
                (start..end)
                    .map(|t| source.read(t, &mut times.read))
                    .collect::<Result<Vec<_>, _>>()
            }))
            .map_err(|p| panicked(Stage::Tiling, "a tile reader", p))??;
            let t = Instant::now();
            let laps: Vec<f64> = images.iter().map(qc::laplacian_variance).collect();
            images.iter().for_each(|image| stain.add_tile(image));
            times.tile_qc += t.elapsed();
            if let Some(n) = normaliser {
                let t = Instant::now();
                images.iter_mut().for_each(|image| n.apply(image));
                times.normalise += t.elapsed();
            }
            let t = Instant::now();
            let probs = catch_unwind(AssertUnwindSafe(|| session.score_batch(&images)))
                .map_err(|p| panicked(Stage::Inference, "an inference worker", p))?
                .map_err(StreamError::Model)?;
            times.inference += t.elapsed();
            if probs.len() != images.len() {
                return Err(StreamError::ModelOutput {
                    got: probs.len(),
                    expected: images.len(),
                });
            }
            if let Some(bar) = progress {
                bar.inc(images.len() as u64);
            }
            done.push((i, (probs, laps)));
        }
        Ok((done, stain, times))
    }
}

fn panicked(stage: Stage, what: &'static str, payload: Box<dyn Any + Send>) -> StreamError {
    StreamError::Panic {
        stage,
        what,
        message: panic_message(payload.as_ref()),
    }
}

/// The text a panic carried (`panic!("...")` gives a `&str` or a `String`).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic without a message".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Scores a tile by its first pixel; counts sessions opened and batches scored.
    struct Counting {
        classes: Vec<String>,
        sessions: AtomicUsize,
        batches: AtomicUsize,
        short: bool,
    }

    impl Counting {
        fn new(short: bool) -> Counting {
            Counting {
                classes: vec!["a".into()],
                sessions: AtomicUsize::new(0),
                batches: AtomicUsize::new(0),
                short,
            }
        }
    }

    struct CountingSession<'a>(&'a Counting);

    impl ScorerSession for CountingSession<'_> {
        fn score_batch(&mut self, tiles: &[RgbImage]) -> Result<Vec<TileOutput>, ScorerError> {
            self.0.batches.fetch_add(1, Ordering::Relaxed);
            let keep = tiles.len() - usize::from(self.0.short);
            Ok(tiles[..keep]
                .iter()
                .map(|t| vec![t.get_pixel(0, 0).0[0] as f32].into())
                .collect())
        }
    }

    impl TileScorer for Counting {
        fn tile_px(&self) -> u32 {
            4
        }
        fn mpp(&self) -> f64 {
            1.0
        }
        fn classes(&self) -> &[String] {
            &self.classes
        }
        fn batch_size(&self) -> usize {
            3
        }
        fn score_batch(&self, tiles: &[RgbImage]) -> Result<Vec<TileOutput>, ScorerError> {
            CountingSession(self).score_batch(tiles)
        }
        fn session(&self) -> Result<Box<dyn ScorerSession + '_>, ScorerError> {
            self.sessions.fetch_add(1, Ordering::Relaxed);
            Ok(Box::new(CountingSession(self)))
        }
    }

    fn tiles(n: u8) -> Vec<RgbImage> {
        (0..n)
            .map(|i| RgbImage::from_pixel(4, 4, image::Rgb([i, 0, 0])))
            .collect()
    }

    #[test]
    fn each_worker_opens_one_session_and_results_keep_tile_order() {
        let source = tiles(20);
        for workers in [1, 2, 3] {
            let scorer = Counting::new(false);
            let out = TileStream::new(&scorer, workers)
                .run(&source, None)
                .unwrap();
            let firsts: Vec<f32> = out.probabilities.iter().map(|p| p[0]).collect();
            assert_eq!(firsts, (0..20).map(|i| i as f32).collect::<Vec<_>>());
            assert_eq!(out.laplacians, vec![0.0; 20]);
            // 20 tiles in batches of 3: 7 batches, one session per worker.
            assert_eq!(scorer.batches.load(Ordering::Relaxed), 7);
            assert_eq!(scorer.sessions.load(Ordering::Relaxed), workers);
        }
        // More workers than batches: only as many start as there are batches.
        let scorer = Counting::new(false);
        TileStream::new(&scorer, 8).run(&tiles(5), None).unwrap();
        assert_eq!(scorer.sessions.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_short_answer_from_the_model_is_an_inference_error() {
        let scorer = Counting::new(true);
        let e = TileStream::new(&scorer, 2)
            .run(&tiles(6), None)
            .unwrap_err();
        assert_eq!(e.stage(), Stage::Inference);
        assert!(e.to_string().contains("2 results for a batch of 3"), "{e}");
    }

    /// A source whose reads fail from tile 4 on, or panic.
    struct Broken {
        panic: bool,
    }

    impl TileSource for Broken {
        fn len(&self) -> usize {
            9
        }
        fn read(&self, i: usize, _: &mut ReadTimes) -> Result<RgbImage, SlideError> {
            if i < 4 {
                return Ok(RgbImage::new(4, 4));
            }
            if self.panic {
                panic!("reader double panics on purpose");
            }
            Err(SlideError::Io {
                path: "broken.tif".into(),
                source: std::io::Error::other("truncated"),
            })
        }
    }

    #[test]
    fn read_failures_and_panics_are_the_tiling_stage_s() {
        let scorer = Counting::new(false);
        let e = TileStream::new(&scorer, 2)
            .run(&Broken { panic: false }, None)
            .unwrap_err();
        assert_eq!(e.stage(), Stage::Tiling);
        assert!(e.to_string().contains("broken.tif"), "{e}");
        let e = TileStream::new(&scorer, 2)
            .run(&Broken { panic: true }, None)
            .unwrap_err();
        assert_eq!(e.stage(), Stage::Tiling);
        assert!(e.to_string().contains("on purpose"), "{e}");
    }
}
