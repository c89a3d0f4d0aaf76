//! The HTML pages: `OUT/report.html`, a light index of the batch (one table row and
//! one small thumbnail per slide, failures listed), and `OUT/<id>/report.html`, one
//! page per slide with its heatmaps and evidence.
//!
//! It owns the page layout, HTML escaping and the small index thumbnail. Pages link
//! their images by relative path (never inline, never a network address), so the
//! index stays small whatever the batch size and a copied OUT opens offline. The
//! pages hold no timings and no absolute output paths, so a merge writes the same
//! bytes as one run. It never scores anything.

use std::fmt::Write;
use std::path::Path;

use image::RgbImage;

use super::{
    safe_name, sort_failures, write_atomic, FailedSlide, ReportError, SlideReport, IL1RN_NOTE,
    RESEARCH_NOTICE,
};
use crate::aggregate::Call;

/// A slide's own page, inside its folder.
pub const SLIDE_PAGE: &str = "report.html";

/// The small thumbnail the index shows, inside a slide's folder.
pub const INDEX_THUMBNAIL: &str = "thumbnail_small.jpg";

/// Longest side of [`INDEX_THUMBNAIL`] in pixels: a few kB as JPEG, so an index of
/// 500 slides loads its images in well under a second.
pub const INDEX_THUMBNAIL_SIDE: u32 = 160;

/// JPEG quality of [`INDEX_THUMBNAIL`].
const INDEX_THUMBNAIL_QUALITY: u8 = 80;

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

/// A relative URL path from file-system name segments: every byte outside the
/// unreserved set percent-encoded, so any folder name makes a working link.
fn href(segments: &[&str]) -> String {
    let mut out = String::new();
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        for b in segment.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                out.push(b as char);
            } else {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
.notice{background:#fff3cd;border:1px solid #e0c060;padding:.6em 1em;border-radius:4px}\
.il1rn{background:#e8f0ff;border:1px solid #7090d0;padding:.6em 1em;border-radius:4px}\
section{border-top:2px solid #ccc;margin-top:2em;padding-top:1em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}\
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}td.l{text-align:left}\
.call{font-size:1.3em;font-weight:bold}.thumb{max-width:480px;border:1px solid #999}\
.small{max-width:160px;max-height:160px;border:1px solid #999;vertical-align:middle}\
.heat{max-width:300px;border:1px solid #999;margin:2px}.ev{width:128px;height:128px;margin:2px;border:1px solid #999}\
.flag{color:#a00}.missing{color:#999}figure{display:inline-block;margin:4px;text-align:center;font-size:.8em}";

fn head(h: &mut String, title: &str) {
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n",
        escape(title)
    );
}

/// `<img>` of `dir/file` linked by `src`, or a grey note where the file is absent
/// (evidence crops turned off, or a folder from an older run).
fn img(dir: &Path, file: &[&str], alt: &str, class: &str) -> String {
    let path = file.iter().fold(dir.to_path_buf(), |p, s| p.join(s));
    if path.is_file() {
        format!(
            "<img class=\"{class}\" src=\"{}\" alt=\"{}\" loading=\"lazy\">",
            href(file),
            escape(alt)
        )
    } else {
        format!("<span class=\"missing\">({} missing)</span>", escape(alt))
    }
}

/// Model and tool of the first report, as one line.
fn model_line(h: &mut String, r: &SlideReport) {
    let _ = writeln!(
        h,
        "<p>Model {} {} (sha256 {}), {} {}.</p>",
        escape(&r.model.name),
        escape(&r.model.version),
        escape(&r.model.sha256),
        escape(&r.tool.name),
        escape(&r.tool.version)
    );
}

/// The index for `reports` and `failures`: one row per slide (call, scores, QC, a
/// small thumbnail and a link to the slide's page, all relative to OUT), then the
/// failures. It reads no file, so it is the same for a run and a merge.
pub fn render_index(reports: &[SlideReport], failures: &[FailedSlide]) -> String {
    let mut h = String::new();
    head(&mut h, "dirascope report");
    let _ = writeln!(
        h,
        "<h1>dirascope report</h1>\n<p class=\"notice\"><strong>{}</strong></p>",
        escape(RESEARCH_NOTICE)
    );
    let mut sorted: Vec<&SlideReport> = reports.iter().collect();
    sorted.sort_by(|a, b| a.slide.id.cmp(&b.slide.id));
    if let Some(first) = sorted.first() {
        model_line(&mut h, first);
    }
    let dira = sorted
        .iter()
        .filter(|r| r.result.call == Call::DiraPattern)
        .count();
    let _ = writeln!(
        h,
        "<p>{} slides scored, {} with a DIRA-pattern call, {} failed. Each slide's page holds its heatmaps and evidence tiles.</p>",
        sorted.len(),
        dira,
        failures.len()
    );
    // A run scored off the tiling or stain its rule was fitted at says so on top:
    // every call below is off the rule's calibration (each slide's page repeats it).
    let mut off_rule: Vec<&str> = sorted
        .iter()
        .flat_map(|r| r.audit.warnings.iter())
        .filter(|w| w.contains(crate::score::OFF_RULE))
        .map(|w| w.as_str())
        .collect();
    off_rule.sort_unstable();
    off_rule.dedup();
    for w in off_rule {
        let _ = writeln!(
            h,
            "<p class=\"flag\"><strong>Warning: {}.</strong></p>",
            escape(w)
        );
    }
    let abstained: Vec<&str> = sorted
        .iter()
        .filter(|r| r.result.call == Call::OutOfDistribution)
        .map(|r| r.slide.id.as_str())
        .collect();
    if !abstained.is_empty() {
        let _ = writeln!(
            h,
            "<p class=\"flag\"><strong>{} of {} slides are unlike the model's training data; it abstained on them (call out-of-distribution): {}.</strong></p>",
            abstained.len(),
            sorted.len(),
            escape(&abstained.join(", "))
        );
    }
    if dira > 0 {
        let _ = writeln!(h, "<p class=\"il1rn\">{}</p>", escape(IL1RN_NOTE));
    }
    h.push_str("<table><tr><th>slide</th><th>thumbnail</th><th>call</th><th>DIRA score</th><th>psoriasiform score</th><th>tissue mm²</th><th>tiles</th><th>QC</th></tr>\n");
    for r in &sorted {
        let folder = safe_name(&r.slide.id);
        let page = href(&[&folder, SLIDE_PAGE]);
        let qc_class = if r.qc.flags.is_empty() { "ok" } else { "flag" };
        let _ = writeln!(
            h,
            "<tr><td class=\"l\"><a href=\"{page}\">{id}</a></td>\
             <td><a href=\"{page}\"><img class=\"small\" src=\"{thumb}\" alt=\"{id}\" loading=\"lazy\"></a></td>\
             <td class=\"l\">{}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td><td>{}</td><td class=\"l {qc_class}\">{}</td></tr>",
            call_cell(r),
            r.result.dira_score,
            r.result.psoriasiform_score,
            area(r),
            r.tiles.scored,
            escape(&flags(r)),
            id = escape(&r.slide.id),
            thumb = href(&[&folder, INDEX_THUMBNAIL]),
        );
    }
    h.push_str("</table>\n");
    failures_section(&mut h, failures);
    h.push_str("</body></html>\n");
    h
}

/// The call, and for a model with an OOD detector the share of tiles unlike its
/// training data (red when the slide is out of distribution).
fn call_cell(r: &SlideReport) -> String {
    match &r.result.ood {
        Some(o) => format!(
            "{}<br><small class=\"{}\">{:.0}% of tiles unlike training data</small>",
            r.result.call,
            if o.out_of_distribution { "flag" } else { "ok" },
            100.0 * o.fraction
        ),
        None => r.result.call.to_string(),
    }
}

fn area(r: &SlideReport) -> String {
    r.tissue
        .area_mm2
        .map_or("?".to_string(), |a| format!("{a:.2}"))
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

/// The page of one slide whose folder is `dir`: call, scores, findings, thumbnail,
/// heatmaps and evidence crops, each image linked from the folder by relative path.
pub fn render_slide(dir: &Path, r: &SlideReport) -> String {
    let mut h = String::new();
    head(&mut h, &format!("dirascope: {}", r.slide.id));
    let _ = writeln!(
        h,
        "<p><a href=\"../report.html\">&larr; all slides</a></p>\n<h1>{}</h1>\n\
         <p class=\"notice\"><strong>{}</strong></p>",
        escape(&r.slide.id),
        escape(RESEARCH_NOTICE)
    );
    model_line(&mut h, r);
    let _ = writeln!(
        h,
        "<p class=\"call\">Call: {}</p><p>{}</p>",
        r.result.call,
        escape(&r.result.call_reason)
    );
    for reason in &r.result.other_reasons {
        let _ = writeln!(h, "<p>Also: {}</p>", escape(reason));
    }
    if let Some(o) = &r.result.ood {
        let _ = writeln!(
            h,
            "<p class=\"{}\">Out-of-distribution check: {} of {} tissue tiles ({:.1}%) are over the distance threshold {} (median distance {:.2}); the model abstains above {:.0}%.</p>",
            if o.out_of_distribution { "flag" } else { "ok" },
            o.tiles_over,
            r.tiles.scored,
            100.0 * o.fraction,
            o.threshold,
            o.median_distance,
            100.0 * o.max_fraction
        );
    }
    if r.result.call == Call::DiraPattern {
        let _ = writeln!(h, "<p class=\"il1rn\">{}</p>", escape(IL1RN_NOTE));
    }
    // QC flags have their own line below; the rest of the audit's warnings here.
    for w in r.audit.warnings.iter().filter(|w| !w.starts_with("QC ")) {
        let _ = writeln!(h, "<p class=\"flag\">Warning: {}</p>", escape(w));
    }
    let mpp = r
        .slide
        .mpp
        .map_or("unknown".to_string(), |m| format!("{:.4} µm/px", m.mean()));
    let _ = writeln!(
        h,
        "<p>{}: {} × {} px, {} ({}); tissue {} mm²; {} tiles scored. QC: <span class=\"{}\">{}</span></p>",
        escape(&r.slide.path),
        r.slide.width,
        r.slide.height,
        mpp,
        r.slide.mpp_source,
        area(r),
        r.tiles.scored,
        // Red only when something was flagged.
        if r.qc.flags.is_empty() { "ok" } else { "flag" },
        escape(&flags(r))
    );
    if let Some(n) = &r.qc.stain_normalisation {
        let _ = writeln!(
            h,
            "<p>{}</p>",
            escape(&if n.applied {
                format!(
                    "Stain normalised (--normalise-stain): the slide's stains, measured on {} of its tiles, were mapped onto the model's training stain before scoring; QC judged the slide as scanned.",
                    n.sampled_tiles
                )
            } else {
                format!(
                    "Stain not normalised although asked (--normalise-stain): {} sampled tiles held too few stained pixels to measure the slide's stain; its tiles were scored as scanned.",
                    n.sampled_tiles
                )
            })
        );
    }
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
    h.push_str(&img(dir, &["thumbnail.png"], "thumbnail", "thumb"));
    h.push_str("\n<h2>Heatmaps</h2>\n");
    for f in &r.result.findings {
        let name = format!("heatmap_{}.png", safe_name(&f.key));
        let _ = write!(
            h,
            "<figure>{}<figcaption>{}</figcaption></figure>",
            img(dir, &[&name], &f.key, "heat"),
            escape(&f.key)
        );
    }
    h.push_str("\n<h2>Evidence</h2>\n");
    for f in &r.result.findings {
        let _ = write!(h, "<h3>{}</h3>", escape(&f.key));
        for e in r.result.evidence.iter().filter(|e| e.finding == f.key) {
            let name = evidence_file_name(&e.finding, e.rank, e.x, e.y);
            let caption = format!("#{} p={:.3} at ({}, {})", e.rank, e.probability, e.x, e.y);
            let _ = write!(
                h,
                "<figure>{}<figcaption>{}</figcaption></figure>",
                img(dir, &["evidence", &name], &caption, "ev"),
                escape(&caption)
            );
        }
        h.push('\n');
    }
    h.push_str("</body></html>\n");
    h
}

/// The file name of an evidence crop inside `OUT/<slide_id>/evidence/`.
pub fn evidence_file_name(finding: &str, rank: usize, x: i64, y: i64) -> String {
    format!("{}_{rank:02}_x{x}_y{y}.png", safe_name(finding))
}

/// `thumb` shrunk to fit [`INDEX_THUMBNAIL_SIDE`] (never enlarged).
pub fn index_thumbnail(thumb: &RgbImage) -> RgbImage {
    let (w, h) = thumb.dimensions();
    let longest = w.max(h).max(1);
    if longest <= INDEX_THUMBNAIL_SIDE {
        return thumb.clone();
    }
    let scale = |side: u32| {
        ((side as u64 * INDEX_THUMBNAIL_SIDE as u64).div_ceil(longest as u64) as u32).max(1)
    };
    image::imageops::thumbnail(thumb, scale(w), scale(h))
}

/// Writes [`INDEX_THUMBNAIL`] into the slide folder `dir` from the slide's thumbnail.
pub fn write_index_thumbnail(dir: &Path, thumb: &RgbImage) -> Result<(), ReportError> {
    let path = dir.join(INDEX_THUMBNAIL);
    let small = index_thumbnail(thumb);
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, INDEX_THUMBNAIL_QUALITY)
        .encode_image(&small)
        .map_err(|e| ReportError::Encode {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    write_atomic(&path, &bytes)
}

/// Writes the slide's page into its folder `dir` (after its images).
pub fn write_slide(dir: &Path, r: &SlideReport) -> Result<(), ReportError> {
    write_atomic(&dir.join(SLIDE_PAGE), render_slide(dir, r).as_bytes())
}

/// Writes the batch index `path` (`OUT/report.html`).
pub fn write_index(
    path: &Path,
    reports: &[SlideReport],
    failures: &[FailedSlide],
) -> Result<(), ReportError> {
    write_atomic(path, render_index(reports, failures).as_bytes())
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
    fn links_are_relative_and_percent_encoded() {
        assert_eq!(href(&["a-b_c.d", "report.html"]), "a-b_c.d/report.html");
        assert_eq!(href(&["a b", "é#?"]), "a%20b/%C3%A9%23%3F");
    }

    #[test]
    fn empty_batch_page_has_the_notice_and_no_external_refs() {
        let page = render_index(
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

    #[test]
    fn index_thumbnails_fit_the_side_and_keep_the_aspect() {
        let big = RgbImage::new(1024, 512);
        assert_eq!(index_thumbnail(&big).dimensions(), (160, 80));
        let tall = RgbImage::new(300, 1000);
        assert_eq!(index_thumbnail(&tall).dimensions(), (48, 160));
        let small = RgbImage::new(90, 40);
        assert_eq!(index_thumbnail(&small).dimensions(), (90, 40));
        let dir = tempfile::tempdir().unwrap();
        write_index_thumbnail(dir.path(), &big).unwrap();
        let bytes = std::fs::read(dir.path().join(INDEX_THUMBNAIL)).unwrap();
        assert!(bytes.starts_with(&[0xFF, 0xD8]), "a JPEG");
    }
}
