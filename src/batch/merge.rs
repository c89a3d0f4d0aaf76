//! `dirascope merge`: joins the OUT folders of shard runs (`score --shard K/N`, or
//! one slide per job of a workflow) into one OUT, as if one process had scored them.
//!
//! An input's slides are the rows of its `summary.csv` (each read back from
//! `<slide>/report.json`) and its failures the rows of its `errors.csv`; slide
//! folders left there by other, earlier runs are not taken. Each slide folder is
//! hard-linked (or copied) into OUT through a staged folder, then the summaries are
//! written by the same code a run uses, so they match a single run byte for byte.

use std::fs;
use std::path::{Path, PathBuf};

use super::run::{write_summaries, BatchOutcome};
use super::staging::{self, StagedFolder};
use crate::report::{self, FailedSlide, ReportError, SlideReport};

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{path}: not a dirascope output folder ({reason}); pass folders written by `dirascope score --out`")]
    NotAnOutput { path: PathBuf, reason: String },
    #[error("slide ids must be unique across the merged folders; duplicated: {0}")]
    Duplicates(String),
    #[error("{0}: --out is one of the inputs; merge into another folder")]
    OutIsInput(PathBuf),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Batch(#[from] super::BatchError),
}

impl MergeError {
    /// Errors in what the user asked for (exit code 2), rather than in the disk or
    /// another run holding OUT.
    pub fn is_usage(&self) -> bool {
        match self {
            MergeError::Report(_) => false,
            MergeError::Batch(e) => matches!(
                e,
                super::BatchError::SharedFolder(_) | super::BatchError::ReservedId(_)
            ),
            _ => true,
        }
    }
}

/// One input folder as read.
struct Input {
    dir: PathBuf,
    slides: Vec<SlideReport>,
    failures: Vec<FailedSlide>,
}

/// Merges `inputs` into `out_dir` and returns the merged slides and failures.
pub fn merge(inputs: &[PathBuf], out_dir: &Path) -> Result<BatchOutcome, MergeError> {
    refuse_out_among_inputs(inputs, out_dir)?;
    let inputs = inputs
        .iter()
        .map(|dir| read_input(dir))
        .collect::<Result<Vec<_>, _>>()?;
    refuse_duplicates(&inputs)?;
    let ids = inputs.iter().flat_map(|input| {
        let scored = input.slides.iter().map(|r| r.slide.id.as_str());
        scored.chain(input.failures.iter().map(|f| f.slide_id.as_str()))
    });
    super::check_folder_names(ids)?;
    let _lock = super::run::lock_out(out_dir)?;
    staging::remove_stale(out_dir)?;
    let mut outcome = BatchOutcome::default();
    for input in inputs {
        for r in &input.slides {
            let name = report::safe_name(&r.slide.id);
            let staged = StagedFolder::create(out_dir, &name)?;
            link_or_copy_tree(&input.dir.join(&name), staged.path())?;
            staged.commit()?;
        }
        outcome.reports.extend(input.slides);
        outcome.failures.extend(input.failures);
    }
    report::sort_failures(&mut outcome.failures);
    write_summaries(out_dir, &outcome.reports, &outcome.failures)?;
    Ok(outcome)
}

fn refuse_out_among_inputs(inputs: &[PathBuf], out_dir: &Path) -> Result<(), MergeError> {
    let Ok(out) = out_dir.canonicalize() else {
        return Ok(()); // OUT does not exist yet, so it is no input.
    };
    match inputs
        .iter()
        .find(|i| i.canonicalize().is_ok_and(|i| i == out))
    {
        Some(i) => Err(MergeError::OutIsInput(i.clone())),
        None => Ok(()),
    }
}

/// Reads an input's summary, its slides' reports and its errors table.
fn read_input(dir: &Path) -> Result<Input, MergeError> {
    let not_output = |reason: &str| MergeError::NotAnOutput {
        path: dir.to_path_buf(),
        reason: reason.to_string(),
    };
    if !dir.is_dir() {
        return Err(not_output("no such folder"));
    }
    let (summary, errors) = (dir.join("summary.csv"), dir.join("errors.csv"));
    if !summary.is_file() && !errors.is_file() {
        return Err(not_output("it has neither summary.csv nor errors.csv"));
    }
    let mut slides = Vec::new();
    if summary.is_file() {
        for id in summary_ids(&summary)? {
            let path = dir.join(report::safe_name(&id)).join("report.json");
            slides.push(report::json::read_report(&path)?);
        }
    }
    let failures = if errors.is_file() {
        report::csv::read_errors(&errors)?
    } else {
        Vec::new()
    };
    Ok(Input {
        dir: dir.to_path_buf(),
        slides,
        failures,
    })
}

/// The `slide_id` column of a `summary.csv`.
pub(crate) fn summary_ids(path: &Path) -> Result<Vec<String>, ReportError> {
    let err = |reason: String| ReportError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| err(e.to_string()))?;
    let header = reader.headers().map_err(|e| err(e.to_string()))?;
    if header.get(0) != Some("slide_id") {
        return Err(err(
            "not a dirascope summary: no slide_id column first".into()
        ));
    }
    reader
        .records()
        .map(|row| {
            row.map(|r| r.get(0).unwrap_or("").to_string())
                .map_err(|e| err(e.to_string()))
        })
        .collect()
}

/// Refuses a slide id that two inputs (or one input twice) hold, scored or failed.
fn refuse_duplicates(inputs: &[Input]) -> Result<(), MergeError> {
    let pairs = inputs.iter().flat_map(|input| {
        let scored = input.slides.iter().map(|r| r.slide.id.as_str());
        let failed = input.failures.iter().map(|f| f.slide_id.as_str());
        scored.chain(failed).map(|id| (id, input.dir.as_path()))
    });
    match super::duplicated_ids(pairs) {
        Some(list) => Err(MergeError::Duplicates(list)),
        None => Ok(()),
    }
}

/// Hard-links every file of `from` into `to` (copying where a link is refused, as
/// across file systems). Links are safe: every output is replaced by rename, never
/// rewritten in place, so a later run into an input never alters the merged copy.
fn link_or_copy_tree(from: &Path, to: &Path) -> Result<(), ReportError> {
    let entries = fs::read_dir(from).map_err(|e| ReportError::io(from, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ReportError::io(from, e))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let is_dir = entry
            .file_type()
            .map_err(|e| ReportError::io(&src, e))?
            .is_dir();
        if is_dir {
            fs::create_dir(&dst).map_err(|e| ReportError::io(&dst, e))?;
            link_or_copy_tree(&src, &dst)?;
        } else if fs::hard_link(&src, &dst).is_err() {
            fs::copy(&src, &dst).map_err(|e| ReportError::io(&dst, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_that_are_not_outputs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        let out = dir.path().join("out");
        let e = merge(std::slice::from_ref(&empty), &out).unwrap_err();
        assert!(
            e.is_usage() && e.to_string().contains("not a dirascope output"),
            "{e}"
        );
        let e = merge(&[dir.path().join("absent")], &out).unwrap_err();
        assert!(e.to_string().contains("no such folder"), "{e}");
        let e = merge(std::slice::from_ref(&empty), &empty).unwrap_err();
        assert!(matches!(e, MergeError::OutIsInput(_)), "{e}");
    }

    #[test]
    fn failures_merge_sorted_and_duplicates_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let errors = |name: &str, rows: &str| {
            let d = dir.path().join(name);
            fs::create_dir(&d).unwrap();
            fs::write(
                d.join("errors.csv"),
                format!("slide_id,path,stage,kind,message\n{rows}"),
            )
            .unwrap();
            d
        };
        let a = errors("a", "z,z.svs,open,format,z.svs: bad\n");
        let b = errors("b", "y,y.svs,discover,missing,y.svs: gone\n");
        let out = dir.path().join("out");
        let merged = merge(&[a.clone(), b], &out).unwrap();
        let ids: Vec<&str> = merged
            .failures
            .iter()
            .map(|f| f.slide_id.as_str())
            .collect();
        assert_eq!(ids, ["y", "z"]);
        let text = fs::read_to_string(out.join("errors.csv")).unwrap();
        assert!(text.contains("\ny,y.svs,discover,missing,"), "{text}");
        assert_eq!(
            fs::read_to_string(out.join("summary.csv"))
                .unwrap()
                .lines()
                .count(),
            1
        );
        let e = merge(&[a.clone(), a], &dir.path().join("out2")).unwrap_err();
        assert!(e.is_usage() && e.to_string().contains("'z'"), "{e}");
    }
}
