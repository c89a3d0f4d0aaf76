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

/// The batch summary `score --json` prints: one object per slide (id, call, scores)
/// and one per failed slide.
pub fn batch_summary(outcome: &crate::score::BatchOutcome) -> Result<String, serde_json::Error> {
    let slides: Vec<serde_json::Value> = outcome
        .reports
        .iter()
        .map(|r| {
            let findings: serde_json::Map<String, serde_json::Value> = r
                .result
                .findings
                .iter()
                .map(|f| (f.key.clone(), serde_json::json!(f.score)))
                .collect();
            serde_json::json!({
                "slide_id": r.slide.id,
                "path": r.slide.path,
                "call": r.result.call.as_str(),
                "dira_score": r.result.dira_score,
                "psoriasiform_score": r.result.psoriasiform_score,
                "findings": findings,
                "qc_flags": r.qc,
            })
        })
        .collect();
    let errors: Vec<serde_json::Value> = outcome
        .errors
        .iter()
        .map(|(path, kind, message)| serde_json::json!({"path": path, "kind": kind, "message": message}))
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({"slides": slides, "errors": errors}))
}
