//! The `batch` stage: many slides through the score pipeline, surviving anything.
//!
//! It owns discovery, shards, the errors table, atomic per-slide outputs, resume and
//! the merging of shard outputs; it never decodes pixels or runs the model itself.

pub mod discover;
pub mod lock;
pub mod merge;
pub mod resume;
pub mod run;
pub mod staging;

pub use self::discover::{discover, read_manifest, Discovered, Shard, Skipped, SlideJob};
pub use self::lock::{LockError, OutLock};
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
    #[error("slide ids {0} would share one folder in OUT (letters, digits, '-', '_' and '.' are kept, anything else becomes '_', and case is ignored, as on case-insensitive disks); give them ids that differ in those characters")]
    SharedFolder(String),
    #[error(
        "slide id {0} names a file the run writes into OUT itself; give that slide another id"
    )]
    ReservedId(String),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
}

/// Names a run writes into OUT beside the slide folders (compared case-insensitively).
/// Hidden names (the lock, staged and set-aside folders, temporary files) are the
/// run's too: no slide id may map to a name starting with '.'.
pub const RUN_FILES: [&str; 3] = ["summary.csv", "errors.csv", "report.html"];

/// Refuses ids whose folders in OUT would be one folder (after
/// [`crate::report::safe_name`], ignoring case) or a file the run writes itself.
/// Refusing keeps folder names as readable as the ids; an injective encoding would
/// rename every folder and still not solve case-insensitive disks.
pub fn check_folder_names<'a>(ids: impl IntoIterator<Item = &'a str>) -> Result<(), BatchError> {
    let mut folders: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
    for id in ids {
        let folder = crate::report::safe_name(id);
        let key = folder.to_lowercase();
        if folder.starts_with('.') || RUN_FILES.contains(&key.as_str()) {
            return Err(BatchError::ReservedId(format!("'{id}' (OUT/{folder})")));
        }
        let ids = folders.entry(key).or_default();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let shared: Vec<String> = folders
        .values()
        .filter(|ids| ids.len() > 1)
        .map(|ids| {
            let named: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
            format!(
                "{} (OUT/{})",
                named.join(" and "),
                crate::report::safe_name(ids[0])
            )
        })
        .collect();
    match shared.is_empty() {
        true => Ok(()),
        false => Err(BatchError::SharedFolder(shared.join("; "))),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sharing_a_folder_or_naming_a_run_file_are_refused() {
        assert!(check_folder_names(["a", "b", "a-b", "A.1"]).is_ok());
        for pair in [["日本", "中国"], ["a;b", "a:b"], ["Case", "case"]] {
            let e = check_folder_names(pair).unwrap_err().to_string();
            assert!(
                e.contains(&format!("'{}' and '{}'", pair[0], pair[1])),
                "{e}"
            );
        }
        for id in [
            "summary.csv",
            "ERRORS.CSV",
            "report.html",
            ".dirascope.lock",
            "..",
        ] {
            let e = check_folder_names(["fine", id]).unwrap_err();
            assert!(matches!(e, BatchError::ReservedId(_)), "{id}: {e}");
        }
    }
}
