//! `tiles.csv` and `OUT/summary.csv`: plain tables with fixed float formatting.
//!
//! It owns column order and number formatting (6 decimals) so the same inputs give
//! the same bytes. It never computes scores.

use std::path::Path;

use super::{write_atomic, ReportError, SlideReport};
use crate::aggregate::TileScore;

/// Formats a float with 6 decimals (`-0.000000` is written as `0.000000`).
pub fn f6(v: f64) -> String {
    let s = format!("{v:.6}");
    if s == "-0.000000" {
        "0.000000".to_string()
    } else {
        s
    }
}

fn table(header: Vec<String>, rows: Vec<Vec<String>>) -> Result<Vec<u8>, String> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    w.write_record(&header).map_err(|e| e.to_string())?;
    for r in rows {
        w.write_record(&r).map_err(|e| e.to_string())?;
    }
    w.into_inner().map_err(|e| e.to_string())
}

/// One row per scored tile, sorted by grid position: level-0 x, y, width, height,
/// grid col, row, tissue fraction, one probability column per class.
pub fn tiles_csv(classes: &[String], tiles: &[TileScore]) -> Result<Vec<u8>, String> {
    let mut header: Vec<String> = ["x", "y", "width", "height", "col", "row", "tissue_fraction"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    header.extend(classes.iter().cloned());
    let mut sorted: Vec<&TileScore> = tiles.iter().collect();
    sorted.sort_by(|a, b| {
        (a.row, a.col, a.level0.y, a.level0.x).cmp(&(b.row, b.col, b.level0.y, b.level0.x))
    });
    let rows = sorted
        .iter()
        .map(|t| {
            let mut r = vec![
                t.level0.x.to_string(),
                t.level0.y.to_string(),
                t.level0.width.to_string(),
                t.level0.height.to_string(),
                t.col.to_string(),
                t.row.to_string(),
                f6(t.tissue_fraction),
            ];
            r.extend(t.probabilities.iter().map(|&p| f6(p as f64)));
            r
        })
        .collect();
    table(header, rows)
}

pub fn write_tiles(
    path: &Path,
    classes: &[String],
    tiles: &[TileScore],
) -> Result<(), ReportError> {
    let bytes = tiles_csv(classes, tiles).map_err(|reason| ReportError::Encode {
        path: path.to_path_buf(),
        reason,
    })?;
    write_atomic(path, &bytes)
}

/// One row per slide: id, call, pattern scores, each finding's slide score and
/// positive area, tissue area, tiles, QC flags (`;`-joined), slide path.
pub fn summary_csv(reports: &[SlideReport]) -> Result<Vec<u8>, String> {
    let mut header: Vec<String> = ["slide_id", "call", "dira_score", "psoriasiform_score"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    // Columns follow the first report's classes; all slides share one model.
    let classes: Vec<String> = reports
        .first()
        .map(|r| r.model.classes.clone())
        .unwrap_or_else(|| {
            crate::aggregate::FINDINGS
                .iter()
                .map(|s| s.to_string())
                .collect()
        });
    for c in &classes {
        header.push(format!("{c}_score"));
        header.push(format!("{c}_positive_mm2"));
    }
    header.extend(
        ["tissue_mm2", "tiles", "qc_flags", "path"]
            .iter()
            .map(|s| s.to_string()),
    );
    let mut sorted: Vec<&SlideReport> = reports.iter().collect();
    sorted.sort_by(|a, b| {
        a.slide
            .id
            .cmp(&b.slide.id)
            .then(a.slide.path.cmp(&b.slide.path))
    });
    let rows = sorted
        .iter()
        .map(|r| {
            let mut row = vec![
                r.slide.id.clone(),
                r.result.call.to_string(),
                f6(r.result.dira_score),
                f6(r.result.psoriasiform_score),
            ];
            for c in &classes {
                match r.result.findings.iter().find(|f| &f.key == c) {
                    Some(f) => {
                        row.push(f6(f.score));
                        row.push(f6(f.positive_area_mm2));
                    }
                    None => row.extend([String::new(), String::new()]),
                }
            }
            row.push(r.tissue.area_mm2.map(f6).unwrap_or_default());
            row.push(r.tiles.scored.to_string());
            row.push(
                r.qc.flags
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
                    .join(";"),
            );
            row.push(r.slide.path.clone());
            row
        })
        .collect();
    table(header, rows)
}

/// `OUT/errors.csv`: one row per slide that failed.
pub fn errors_csv(errors: &[(String, String, String)]) -> Result<Vec<u8>, String> {
    let header = vec!["path".to_string(), "kind".to_string(), "reason".to_string()];
    let rows = errors
        .iter()
        .map(|(p, k, r)| vec![p.clone(), k.clone(), r.clone()])
        .collect();
    table(header, rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slide::Rect;

    #[test]
    fn tiles_table_is_sorted_and_fixed_width() {
        let classes = vec!["a".to_string(), "b,c".to_string()];
        let t = |col, row, p: [f32; 2]| TileScore {
            col,
            row,
            level0: Rect::new(col as i64 * 10, row as i64 * 10, 10, 10),
            tissue_fraction: 0.5,
            probabilities: p.to_vec(),
        };
        let bytes =
            tiles_csv(&classes, &[t(1, 0, [0.25, 1.0]), t(0, 0, [1.0 / 3.0, 0.0])]).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "x,y,width,height,col,row,tissue_fraction,a,\"b,c\"\n\
             0,0,10,10,0,0,0.500000,0.333333,0.000000\n\
             10,0,10,10,1,0,0.500000,0.250000,1.000000\n"
        );
    }

    #[test]
    fn f6_has_no_negative_zero() {
        assert_eq!(f6(-0.0000001), "0.000000");
        assert_eq!(f6(0.1234567), "0.123457");
    }
}
