//! `report.json`: the slide report as pretty JSON, fields in schema order, and the
//! reading back of one (resume and `merge` build summaries from reports on disk).
//!
//! It owns serialisation only; what goes in the report is decided by the pipeline.

use std::path::Path;

use super::{write_atomic, FailedSlide, ReportError, SlideReport};

/// The report as pretty JSON with a trailing newline.
pub fn to_json(report: &SlideReport) -> Result<String, serde_json::Error> {
    let mut s = serde_json::to_string_pretty(report)?;
    s.push('\n');
    Ok(s)
}

/// The report as JSON without what changes from run to run on the same inputs:
/// the `timings` object and the audit's start and end times (for comparing runs).
pub fn to_json_without_times(report: &SlideReport) -> Result<String, serde_json::Error> {
    let mut value = serde_json::to_value(report)?;
    if let Some(map) = value.as_object_mut() {
        map.remove("timings");
    }
    if let Some(audit) = value.get_mut("audit").and_then(|a| a.as_object_mut()) {
        audit.remove("started_at");
        audit.remove("finished_at");
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

/// Reads a `report.json` this version wrote. Another schema version, or a file that
/// is not a report, is an error naming the file.
pub fn read_report(path: &Path) -> Result<SlideReport, ReportError> {
    let err = |reason: String| ReportError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| err(format!("not JSON: {e}")))?;
    let version = value.get("schema_version").and_then(|v| v.as_u64());
    if version != Some(super::SCHEMA_VERSION as u64) {
        return Err(err(format!(
            "report schema version {}, this tool reads {}; score the slide again",
            version.map_or("missing".to_string(), |v| v.to_string()),
            super::SCHEMA_VERSION
        )));
    }
    serde_json::from_str(&text).map_err(|e| err(format!("not a dirascope report: {e}")))
}

/// The batch summary `score --json` and `merge --json` print: one object per slide
/// (id, call, scores), one per failed slide, the ids of reused slides, and the files
/// found but not scored on their own (`(path, reason)`).
pub fn batch_summary(
    reports: &[SlideReport],
    failures: &[FailedSlide],
    reused: &[String],
    skipped: &[(String, String)],
) -> Result<String, serde_json::Error> {
    let slides: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| {
            let findings: serde_json::Map<String, serde_json::Value> = r
                .result
                .findings
                .iter()
                .map(|f| (f.key.clone(), serde_json::json!(f.score)))
                .collect();
            let mut slide = serde_json::json!({
                "slide_id": r.slide.id,
                "path": r.slide.path,
                "call": r.result.call.as_str(),
                "dira_score": r.result.dira_score,
                "psoriasiform_score": r.result.psoriasiform_score,
                "findings": findings,
                "qc_flags": r.qc,
            });
            if let Some(ood) = &r.result.ood {
                slide["ood_fraction"] = serde_json::json!(ood.fraction);
            }
            slide
        })
        .collect();
    let errors: Vec<serde_json::Value> = failures
        .iter()
        .map(|f| {
            serde_json::json!({
                "slide_id": f.slide_id,
                "path": f.path,
                "stage": f.stage.as_str(),
                "kind": f.kind,
                "message": f.message,
            })
        })
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({
        "slides": slides,
        "errors": errors,
        "reused": reused,
        "skipped": skipped
            .iter()
            .map(|(path, reason)| serde_json::json!({ "path": path, "reason": reason }))
            .collect::<Vec<_>>(),
    }))
}
