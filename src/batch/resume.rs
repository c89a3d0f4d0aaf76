//! Resume: whether a slide's earlier report in OUT still stands for this run.
//!
//! A report is reused only when its audit shows the same tool version, model,
//! resolved configuration, slide path and slide bytes (sha256) that this run would
//! record, and its folder still holds every file the report lists, unchanged.
//! Anything else, or a report that cannot be read, means scoring again: never a
//! silent reuse of a result made from other inputs or of a damaged folder.

use std::path::Path;

use super::SlideJob;
use crate::report::{self, SlideReport, ToolInfo};
use crate::score::Scoring;

/// The earlier report in the slide folder `dir`, when it was made from exactly the
/// inputs this run would use for `job`.
pub fn reusable(dir: &Path, job: &SlideJob, scoring: &Scoring) -> Option<SlideReport> {
    let report = report::json::read_report(&dir.join("report.json")).ok()?;
    // Every file of the folder, the slide page and index thumbnail included, as
    // report.json lists it; an older report lists none and is never reused.
    report::outputs::check(dir, &report.files).ok()?;
    let audit = &report.audit;
    let same_run = report.slide.id == job.slide_id
        && audit.tool_version == ToolInfo::default().version
        && audit.model == scoring.model
        && audit.configuration == scoring.configuration
        && audit.slide.path == job.path.display().to_string();
    // Without a recorded (and a freshly computed) hash the bytes cannot be compared.
    if !same_run || !scoring.options.hash_slides {
        return None;
    }
    let recorded = audit.slide.sha256.as_deref()?;
    // Hashed last, only when all else matches: it reads the whole slide.
    let (current, _) = report::audit::sha256_file(&job.path).ok()?;
    (current == recorded).then_some(report)
}
