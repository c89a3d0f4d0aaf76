//! `report.json`: the slide report as pretty JSON, fields in schema order.
//!
//! It owns serialisation only; what goes in the report is decided by the pipeline.

use std::path::Path;

use super::{write_atomic, ReportError, SlideReport};

/// The report as pretty JSON with a trailing newline.
pub fn to_json(report: &SlideReport) -> Result<String, serde_json::Error> {
    let mut s = serde_json::to_string_pretty(report)?;
    s.push('\n');
    Ok(s)
}

/// The report as JSON without its `timings` object (for comparing runs).
pub fn to_json_without_timings(report: &SlideReport) -> Result<String, serde_json::Error> {
    let mut value = serde_json::to_value(report)?;
    if let Some(map) = value.as_object_mut() {
        map.remove("timings");
    }
    let mut s = serde_json::to_string_pretty(&value)?;
    s.push('\n');
    Ok(s)
}

pub fn write(path: &Path, report: &SlideReport) -> Result<(), ReportError> {
    let text = to_json(report).map_err(|e| ReportError::Encode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_atomic(path, text.as_bytes())
}
