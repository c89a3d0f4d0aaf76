//! The tile stream and what it shares with the stages around it.
//!
//! [`TileStream`] reads, resamples, checks and scores a slide's tiles on a fixed
//! set of worker threads, each with its own model session; [`TileScorer`] is its
//! seam to the model and [`Stage`] names where a slide failed. It holds no model
//! code and writes no reports: `score` runs it per slide, `wiring` supplies the
//! model, and `report` and `batch` read [`Stage`] from here without a cycle.
//!
//! One knob sizes it: `--threads N` ([`resolve_threads`]) starts N workers and no
//! other thread; each worker reads its own batch of tiles (file read, decode,
//! resample, Laplacian) and scores it with its own session, so at most N threads
//! are busy. The default, the cores this process may use, never oversubscribes.

mod stream;

use image::RgbImage;

pub(crate) use stream::panic_message;
pub use stream::{
    GridSource, ReadTimes, StreamError, StreamTimes, Streamed, TileSource, TileStream,
};

/// Boxed error a scorer returns (the model stage keeps its own error type).
pub type ScorerError = Box<dyn std::error::Error + Send + Sync>;

/// One tile's scores: a probability per class (in `classes()` order), and the
/// model's out-of-distribution distance where it has that output.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TileOutput {
    pub probabilities: Vec<f32>,
    pub ood: Option<f32>,
}

impl From<Vec<f32>> for TileOutput {
    /// Probabilities without an OOD distance.
    fn from(probabilities: Vec<f32>) -> TileOutput {
        TileOutput {
            probabilities,
            ood: None,
        }
    }
}

/// The seam to the model: a batch of RGB tiles of `tile_px` × `tile_px` at `mpp`
/// µm/px in, one [`TileOutput`] per tile out.
pub trait TileScorer: Send + Sync {
    fn tile_px(&self) -> u32;
    fn mpp(&self) -> f64;
    fn classes(&self) -> &[String];
    /// Tiles per call to [`ScorerSession::score_batch`].
    fn batch_size(&self) -> usize {
        16
    }
    /// Scores one batch on its own (a one-off session where the scorer has state).
    fn score_batch(&self, tiles: &[RgbImage]) -> Result<Vec<TileOutput>, ScorerError>;
    /// One worker's scoring state, opened once per slide and reused for every batch
    /// the worker scores. Scorers without state need not override it: the default calls
    /// [`TileScorer::score_batch`].
    fn session(&self) -> Result<Box<dyn ScorerSession + '_>, ScorerError> {
        Ok(Box::new(Stateless(self)))
    }
}

/// One worker's scoring state (for a model: its inference state and buffers); it
/// stays on the thread that opened it.
pub trait ScorerSession {
    fn score_batch(&mut self, tiles: &[RgbImage]) -> Result<Vec<TileOutput>, ScorerError>;
}

/// The session of a scorer without state.
struct Stateless<'a, S: ?Sized>(&'a S);

impl<S: TileScorer + ?Sized> ScorerSession for Stateless<'_, S> {
    fn score_batch(&mut self, tiles: &[RgbImage]) -> Result<Vec<TileOutput>, ScorerError> {
        self.0.score_batch(tiles)
    }
}

/// The worker count `--threads` resolves to: the request, or else the number of
/// cores this process may use (`std::thread::available_parallelism`, which honours
/// CPU affinity and cgroup quotas), at least 1. Resolved once per command.
pub fn resolve_threads(requested: Option<usize>) -> usize {
    requested
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

/// The pipeline stage a slide failed in, as `errors.csv` names it. `Discover` is the
/// batch's: a listed slide that is not there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Discover,
    Open,
    Tissue,
    Qc,
    Tiling,
    Inference,
    Aggregate,
    Report,
}

impl Stage {
    pub const ALL: [Stage; 8] = [
        Stage::Discover,
        Stage::Open,
        Stage::Tissue,
        Stage::Qc,
        Stage::Tiling,
        Stage::Inference,
        Stage::Aggregate,
        Stage::Report,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Stage::Discover => "discover",
            Stage::Open => "open",
            Stage::Tissue => "tissue",
            Stage::Qc => "qc",
            Stage::Tiling => "tiling",
            Stage::Inference => "inference",
            Stage::Aggregate => "aggregate",
            Stage::Report => "report",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Stage {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stage::ALL
            .into_iter()
            .find(|stage| stage.as_str() == s)
            .ok_or_else(|| format!("unknown stage '{s}'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_parse_back_from_their_names() {
        for stage in Stage::ALL {
            assert_eq!(stage.as_str().parse::<Stage>(), Ok(stage));
        }
        assert!("decode".parse::<Stage>().is_err());
    }

    #[test]
    fn threads_resolve_to_the_request_or_the_usable_cores() {
        assert_eq!(resolve_threads(Some(3)), 3);
        assert_eq!(resolve_threads(Some(0)), 1);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(resolve_threads(None), cores);
    }
}
