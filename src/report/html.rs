//! `OUT/report.html`: one self-contained page for the batch.
//!
//! It owns the page layout, HTML escaping and the inlining of every image as a
//! base64 `data:` URI, so the page needs no other file and no network. It reads the
//! PNGs the slide reports left in `OUT/<slide_id>/`; it never scores anything.

use std::fmt::Write;
use std::path::Path;

use base64::Engine;

use super::{
    safe_name, sort_failures, write_atomic, FailedSlide, ReportError, SlideReport, IL1RN_NOTE,
    RESEARCH_NOTICE,
};
use crate::aggregate::Call;

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn data_uri(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    Some(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

fn img(path: &Path, alt: &str, class: &str) -> String {
    match data_uri(path) {
        Some(uri) => format!(
            "<img class=\"{class}\" src=\"{uri}\" alt=\"{}\">",
            escape(alt)
        ),
        None => format!("<span class=\"missing\">({} missing)</span>", escape(alt)),
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
.notice{background:#fff3cd;border:1px solid #e0c060;padding:.6em 1em;border-radius:4px}\
.il1rn{background:#e8f0ff;border:1px solid #7090d0;padding:.6em 1em;border-radius:4px}\
section{border-top:2px solid #ccc;margin-top:2em;padding-top:1em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}\
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}\
.call{font-size:1.3em;font-weight:bold}.thumb{max-width:480px;border:1px solid #999}\
.heat{max-width:300px;border:1px solid #999;margin:2px}.ev{width:128px;height:128px;margin:2px;border:1px solid #999}\
.flag{color:#a00}.missing{color:#999}figure{display:inline-block;margin:4px;text-align:center;font-size:.8em}";

/// The page for `reports` and `failures` (both in slide id order), with images
/// taken from `out_dir/<slide_id>/`.
pub fn render(out_dir: &Path, reports: &[SlideReport], failures: &[FailedSlide]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>dirascope report</title><style>{STYLE}</style></head><body>\n\
         <h1>dirascope report</h1>\n<p class=\"notice\"><strong>{}</strong></p>\n",
        escape(RESEARCH_NOTICE)
    );
    let mut sorted: Vec<&SlideReport> = reports.iter().collect();
    sorted.sort_by(|a, b| a.slide.id.cmp(&b.slide.id));
    if let Some(first) = sorted.first() {
        let _ = writeln!(
            h,
            "<p>Model {} {} (sha256 {}), {} {}.</p>",
            escape(&first.model.name),
            escape(&first.model.version),
            escape(&first.model.sha256),
            escape(&first.tool.name),
            escape(&first.tool.version)
        );
    }
    h.push_str("<table><tr><th>slide</th><th>call</th><th>DIRA score</th><th>psoriasiform score</th><th>QC</th></tr>\n");
    for r in &sorted {
        let _ = writeln!(
            h,
            "<tr><td><a href=\"#{id}\">{}</a></td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td></tr>",
            escape(&r.slide.id),
            r.result.call,
            r.result.dira_score,
            r.result.psoriasiform_score,
            escape(&flags(r)),
            id = escape(&safe_name(&r.slide.id)),
        );
    }
    h.push_str("</table>\n");
    for r in &sorted {
        slide_section(&mut h, out_dir, r);
    }
    failures_section(&mut h, failures);
    h.push_str("</body></html>\n");
    h
}

fn failures_section(h: &mut String, failures: &[FailedSlide]) {
    if failures.is_empty() {
        return;
    }
    let mut sorted = failures.to_vec();
    sort_failures(&mut sorted);
    h.push_str("<section><h2>Slides that failed</h2><table><tr><th>slide</th><th>path</th><th>stage</th><th>kind</th><th>message</th></tr>\n");
    for f in &sorted {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&f.slide_id),
            escape(&f.path),
            f.stage,
            escape(&f.kind),
            escape(&f.message)
        );
    }
    h.push_str("</table></section>\n");
}

fn flags(r: &SlideReport) -> String {
    if r.qc.flags.is_empty() {
        "ok".to_string()
    } else {
        r.qc.flags
            .iter()
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn slide_section(h: &mut String, out_dir: &Path, r: &SlideReport) {
    let id = safe_name(&r.slide.id);
    let dir = out_dir.join(&id);
    let _ = writeln!(
        h,
        "<section id=\"{id}\"><h2>{}</h2><p class=\"call\">Call: {}</p><p>{}</p>",
        escape(&r.slide.id),
        r.result.call,
        escape(&r.result.call_reason)
    );
    if r.result.call == Call::DiraPattern {
        let _ = writeln!(h, "<p class=\"il1rn\">{}</p>", escape(IL1RN_NOTE));
    }
    let mpp = r
        .slide
        .mpp
        .map_or("unknown".to_string(), |m| format!("{:.4} µm/px", m.mean()));
    let _ = writeln!(
        h,
        "<p>{} × {} px, {} ({}); tissue {} mm²; {} tiles scored. QC: <span class=\"{}\">{}</span></p>",
        r.slide.width,
        r.slide.height,
        mpp,
        r.slide.mpp_source,
        r.tissue.area_mm2.map_or("?".to_string(), |a| format!("{a:.2}")),
        r.tiles.scored,
        // Red only when something was flagged.
        if r.qc.flags.is_empty() { "ok" } else { "flag" },
        escape(&flags(r))
    );
    let _ = writeln!(
        h,
        "<p>DIRA-pattern score {:.3} ({:?}); psoriasiform score {:.3} ({:?}).</p>",
        r.result.dira_score,
        r.result.dira_band,
        r.result.psoriasiform_score,
        r.result.psoriasiform_band
    );
    h.push_str("<table><tr><th>finding</th><th>slide score (top tiles)</th><th>top-k mean</th><th>max</th><th>positive tiles</th><th>positive mm²</th><th>largest cluster (tiles)</th></tr>\n");
    for f in &r.result.findings {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{:.3} ({})</td><td>{:.3}</td><td>{:.3}</td><td>{}</td><td>{:.3}</td><td>{}</td></tr>",
            escape(&f.key),
            f.score,
            f.score_tiles,
            f.top_k_mean,
            f.max,
            f.positive_tiles,
            f.positive_area_mm2,
            f.largest_cluster_tiles
        );
    }
    h.push_str("</table>\n");
    h.push_str(&img(&dir.join("thumbnail.png"), "thumbnail", "thumb"));
    h.push_str("<h3>Heatmaps</h3>\n");
    for f in &r.result.findings {
        let name = format!("heatmap_{}.png", safe_name(&f.key));
        let _ = write!(
            h,
            "<figure>{}<figcaption>{}</figcaption></figure>",
            img(&dir.join(&name), &f.key, "heat"),
            escape(&f.key)
        );
    }
    h.push_str("\n<h3>Evidence</h3>\n");
    for f in &r.result.findings {
        let _ = write!(h, "<h4>{}</h4>", escape(&f.key));
        for e in r.result.evidence.iter().filter(|e| e.finding == f.key) {
            let name = evidence_file_name(&e.finding, e.rank, e.x, e.y);
            let caption = format!("#{} p={:.3} at ({}, {})", e.rank, e.probability, e.x, e.y);
            let _ = write!(
                h,
                "<figure>{}<figcaption>{}</figcaption></figure>",
                img(&dir.join("evidence").join(&name), &caption, "ev"),
                escape(&caption)
            );
        }
        h.push('\n');
    }
    h.push_str("</section>\n");
}

/// The file name of an evidence crop inside `OUT/<slide_id>/evidence/`.
pub fn evidence_file_name(finding: &str, rank: usize, x: i64, y: i64) -> String {
    format!("{}_{rank:02}_x{x}_y{y}.png", safe_name(finding))
}

pub fn write(
    path: &Path,
    out_dir: &Path,
    reports: &[SlideReport],
    failures: &[FailedSlide],
) -> Result<(), ReportError> {
    write_atomic(path, render(out_dir, reports, failures).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn empty_batch_page_has_the_notice_and_no_external_refs() {
        let page = render(
            Path::new("/nonexistent"),
            &[],
            &[FailedSlide {
                slide_id: "a".into(),
                path: "a.svs".into(),
                stage: crate::pipeline::Stage::Open,
                kind: "format".into(),
                message: "bad <tag>".into(),
            }],
        );
        assert!(page.contains("Research use only, not a diagnostic device"));
        assert!(page.contains("<td>a.svs</td><td>open</td><td>format</td><td>bad &lt;tag&gt;</td>"));
        assert!(!page.contains("http://") && !page.contains("https://"));
    }
}
