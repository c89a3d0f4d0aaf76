//! The `batch` stage: many slides through the score pipeline, surviving anything.
//!
//! It owns discovery, shards, the errors table, atomic per-slide outputs, resume and
//! the merging of shard outputs; it never decodes pixels or runs the model itself.

pub mod discover;
pub mod merge;
pub mod resume;
pub mod run;
pub mod staging;

pub use self::discover::{discover, read_manifest, Shard, SlideJob};
pub use self::merge::{merge, MergeError};
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

/// The ids that occur more than once among `(id, place)` pairs, each with every
/// place it occurs (`'a' (x.svs, y.svs); ...`), or `None` when all are unique.
fn duplicated_ids<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a std::path::Path)>,
) -> Option<String> {
    let mut seen: std::collections::BTreeMap<&str, Vec<&std::path::Path>> = Default::default();
    for (id, place) in pairs {
        seen.entry(id).or_default().push(place);
    }
    let duplicated: Vec<String> = seen
        .iter()
        .filter(|(_, places)| places.len() > 1)
        .map(|(id, places)| {
            let list: Vec<String> = places.iter().map(|p| p.display().to_string()).collect();
            format!("'{id}' ({})", list.join(", "))
        })
        .collect();
    (!duplicated.is_empty()).then(|| duplicated.join("; "))
}
