//! `tiles.geojson`: positive tiles as a FeatureCollection QuPath imports.
//!
//! It owns QuPath's field names (`objectType`, `classification.name`,
//! `classification.color`, `measurements`). Coordinates are level-0 pixels.
//! It never decides which tiles are positive beyond comparing to the threshold.

use std::path::Path;

use serde_json::{json, Map, Value};

use super::{class_color, write_atomic, ReportError};
use crate::aggregate::TileScore;

/// One Polygon per tile with any class at or above `threshold`, classified as its
/// highest-probability class (ties: the earlier class), in grid order.
pub fn feature_collection(classes: &[String], tiles: &[TileScore], threshold: f64) -> Value {
    let mut sorted: Vec<&TileScore> = tiles.iter().collect();
    sorted.sort_by(|a, b| {
        (a.row, a.col, a.level0.y, a.level0.x).cmp(&(b.row, b.col, b.level0.y, b.level0.x))
    });
    let features: Vec<Value> = sorted
        .iter()
        .filter_map(|t| {
            let mut best: Option<(usize, f32)> = None;
            for (i, &p) in t.probabilities.iter().enumerate() {
                if p as f64 >= threshold && best.is_none_or(|(_, b)| p > b) {
                    best = Some((i, p));
                }
            }
            let (class, _) = best?;
            let name = classes.get(class).cloned().unwrap_or_default();
            let (x0, y0) = (t.level0.x, t.level0.y);
            let (x1, y1) = (x0 + t.level0.width as i64, y0 + t.level0.height as i64);
            // serde_json's Map is sorted by key: stable output.
            let mut measurements = Map::new();
            for (c, &p) in classes.iter().zip(&t.probabilities) {
                let rounded = (p as f64 * 1e6).round() / 1e6;
                measurements.insert(c.clone(), json!(rounded));
            }
            Some(json!({
                "type": "Feature",
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]],
                },
                "properties": {
                    "objectType": "tile",
                    "classification": { "name": name, "color": class_color(&name) },
                    "measurements": measurements,
                },
            }))
        })
        .collect();
    json!({ "type": "FeatureCollection", "features": features })
}

pub fn write(
    path: &Path,
    classes: &[String],
    tiles: &[TileScore],
    threshold: f64,
) -> Result<(), ReportError> {
    let value = feature_collection(classes, tiles, threshold);
    let mut text = serde_json::to_string(&value).map_err(|e| ReportError::Encode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slide::Rect;

    #[test]
    fn only_positive_tiles_become_qupath_features() {
        let classes: Vec<String> = crate::aggregate::FINDINGS
            .iter()
            .map(|s| s.to_string())
            .collect();
        let t = |col: u32, p: [f32; 4]| TileScore {
            col,
            row: 0,
            level0: Rect::new(col as i64 * 100, 0, 100, 100),
            tissue_fraction: 1.0,
            probabilities: p.to_vec(),
            ood: None,
        };
        let v = feature_collection(
            &classes,
            &[t(0, [0.1, 0.2, 0.3, 0.4]), t(1, [0.6, 0.9, 0.0, 0.0])],
            0.5,
        );
        assert_eq!(v["type"], "FeatureCollection");
        let f = v["features"].as_array().unwrap();
        assert_eq!(f.len(), 1);
        let p = &f[0]["properties"];
        assert_eq!(p["objectType"], "tile");
        assert_eq!(p["classification"]["name"], "acantholysis");
        assert_eq!(p["classification"]["color"], json!([220, 50, 50]));
        assert_eq!(p["measurements"]["subcorneal_pustule"], json!(0.6));
        assert_eq!(
            f[0]["geometry"]["coordinates"],
            json!([[[100, 0], [200, 0], [200, 100], [100, 100], [100, 0]]])
        );
    }
}
