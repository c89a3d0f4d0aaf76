//! `tiles.csv` and `OUT/summary.csv`: plain tables with fixed float formatting.
//!
//! It owns column order and number formatting (6 decimals) so the same inputs give
//! the same bytes. It never computes scores.

use std::path::Path;

use super::{sort_failures, write_atomic, FailedSlide, ReportError, SlideReport};
use crate::aggregate::TileScore;

/// The `tiles.csv` column of the out-of-distribution distance.
pub const OOD_COLUMN: &str = "ood";

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
/// grid col, row, tissue fraction, one probability column per class, and for a
/// model with an out-of-distribution output its distance (`ood`).
pub fn tiles_csv(classes: &[String], tiles: &[TileScore]) -> Result<Vec<u8>, String> {
    let mut header: Vec<String> = ["x", "y", "width", "height", "col", "row", "tissue_fraction"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    header.extend(classes.iter().cloned());
    let with_ood = tiles.iter().any(|t| t.ood.is_some());
    if with_ood {
        header.push(OOD_COLUMN.to_string());
    }
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
            if with_ood {
                r.push(t.ood.map(|d| f6(d as f64)).unwrap_or_default());
            }
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

/// One row per slide: id, call, (for a model with an out-of-distribution detector:
/// the fraction of tissue tiles over its threshold,) pattern scores, each finding's
/// slide score and positive area, tissue area, tiles, QC flags (`;`-joined), slide
/// path.
pub fn summary_csv(reports: &[SlideReport]) -> Result<Vec<u8>, String> {
    let with_ood = reports.iter().any(|r| r.result.ood.is_some());
    let mut header: Vec<String> = ["slide_id", "call"].iter().map(|s| s.to_string()).collect();
    if with_ood {
        header.push("ood_fraction".to_string());
    }
    header.extend(["dira_score", "psoriasiform_score"].map(String::from));
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
            let mut row = vec![r.slide.id.clone(), r.result.call.to_string()];
            if with_ood {
                row.push(
                    r.result
                        .ood
                        .as_ref()
                        .map(|o| f6(o.fraction))
                        .unwrap_or_default(),
                );
            }
            row.extend([f6(r.result.dira_score), f6(r.result.psoriasiform_score)]);
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

/// The header of `OUT/errors.csv`; [`read_errors`] refuses any other.
pub const ERRORS_HEADER: [&str; 5] = ["slide_id", "path", "stage", "kind", "message"];

/// `OUT/errors.csv`: one row per slide that failed, sorted by slide id.
pub fn errors_csv(failures: &[FailedSlide]) -> Result<Vec<u8>, String> {
    let header = ERRORS_HEADER.iter().map(|s| s.to_string()).collect();
    let mut sorted = failures.to_vec();
    sort_failures(&mut sorted);
    let rows = sorted
        .into_iter()
        .map(|f| {
            vec![
                f.slide_id,
                f.path,
                f.stage.as_str().to_string(),
                f.kind,
                f.message,
            ]
        })
        .collect();
    table(header, rows)
}

/// Reads an `errors.csv` written by [`errors_csv`] (for `merge`).
pub fn read_errors(path: &Path) -> Result<Vec<FailedSlide>, ReportError> {
    let err = |reason: String| ReportError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| err(e.to_string()))?;
    let header = reader.headers().map_err(|e| err(e.to_string()))?;
    if header.iter().ne(ERRORS_HEADER) {
        return Err(err(format!(
            "not a dirascope errors table: header is '{}', expected '{}'",
            header.iter().collect::<Vec<_>>().join(","),
            ERRORS_HEADER.join(",")
        )));
    }
    let mut failures = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let row = row.map_err(|e| err(format!("row {}: {e}", i + 2)))?;
        let field = |c: usize| row.get(c).unwrap_or("").to_string();
        let stage = field(2)
            .parse()
            .map_err(|e| err(format!("row {}: {e}", i + 2)))?;
        failures.push(FailedSlide {
            slide_id: field(0),
            path: field(1),
            stage,
            kind: field(3),
            message: field(4),
        });
    }
    Ok(failures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Stage;
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
            ood: None,
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
    fn errors_table_is_sorted_and_reads_back() {
        let failure = |id: &str, stage| FailedSlide {
            slide_id: id.to_string(),
            path: format!("in/{id}.svs"),
            stage,
            kind: "format".to_string(),
            message: format!("in/{id}.svs: malformed TIFF file: \"bad\", truncated"),
        };
        let failures = [failure("b", Stage::Tiling), failure("a", Stage::Open)];
        let bytes = errors_csv(&failures).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("slide_id,path,stage,kind,message\na,in/a.svs,open,format,"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("errors.csv");
        std::fs::write(&path, &bytes).unwrap();
        let back = read_errors(&path).unwrap();
        assert_eq!(back, [failures[1].clone(), failures[0].clone()]);
        std::fs::write(&path, "path,kind,reason\na,b,c\n").unwrap();
        assert!(read_errors(&path)
            .unwrap_err()
            .to_string()
            .contains("header"));
    }

    #[test]
    fn f6_has_no_negative_zero() {
        assert_eq!(f6(-0.0000001), "0.000000");
        assert_eq!(f6(0.1234567), "0.123457");
    }
}
