//! The `batch` stage: many slides through the score pipeline, surviving anything.
//!
//! It owns discovery, shards, the errors table, atomic per-slide outputs and resume;
//! it never decodes pixels or runs the model itself.

pub mod discover;
pub mod resume;
pub mod run;
pub mod staging;

pub use self::discover::{discover, read_manifest, Shard, SlideJob};
pub use self::run::{run, BatchOptions, BatchOutcome};

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("{path}: {reason}")]
    Input {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("slide ids must be unique; duplicated: {0} (give each its own id in a manifest)")]
    DuplicateIds(String),
}
