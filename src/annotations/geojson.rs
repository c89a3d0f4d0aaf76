//! QuPath GeoJSON: reading the annotations a user exported, and writing polygons in
//! the same form (so a phantom's truth opens in QuPath).
//!
//! QuPath 0.4-0.6 writes a FeatureCollection, a single Feature, or (by default, for
//! "Export objects as GeoJSON" without the FeatureCollection box) a bare array of
//! Features, each with `properties.objectType` ("annotation", "detection", "cell",
//! ...) and `properties.classification.name`; 0.2/0.3 wrote `"id":
//! "PathAnnotationObject"` instead of an objectType. Coordinates are level-0 pixels.
//! Only annotation objects are read: detections and cells are the output of an
//! algorithm, not a pathologist's truth, and are counted and skipped.

use std::path::Path;

use serde_json::{json, Value};

use super::{feature_label, ring_area, Annotation, AnnotationError, Polygon, Ring};

/// Options of [`parse`].
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Level-0 width and height of the slide; `None` skips the bounds check.
    pub slide_size: Option<(u64, u64)>,
    /// Level-0 pixels a vertex may lie beyond the slide's edge (a brush stroke at the
    /// border) before it is refused (default 1).
    pub edge_tolerance: f64,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            slide_size: None,
            edge_tolerance: 1.0,
        }
    }
}

/// The annotations of one file, and what was skipped (with why, for the user).
#[derive(Debug, Clone, Default)]
pub struct AnnotationFile {
    pub annotations: Vec<Annotation>,
    /// Detections, cells, tiles and other non-annotation objects.
    pub skipped_objects: usize,
    /// Annotations without a classification, or with a point or line geometry.
    pub skipped_unclassified: usize,
    pub skipped_not_areas: usize,
}

/// Reads and checks the GeoJSON file at `path`.
pub fn read(path: &Path, options: &ReadOptions) -> Result<AnnotationFile, AnnotationError> {
    let text = std::fs::read_to_string(path).map_err(|source| AnnotationError::Io {
        path: path.to_path_buf(),
        what: "cannot read the annotations",
        source,
    })?;
    parse(&text, path, options)
}

/// Parses and checks GeoJSON text; `path` names the file in errors.
pub fn parse(
    text: &str,
    path: &Path,
    options: &ReadOptions,
) -> Result<AnnotationFile, AnnotationError> {
    let root: Value = serde_json::from_str(text).map_err(|e| AnnotationError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        reason: e.to_string(),
    })?;
    let file_error = |reason: String| AnnotationError::File {
        path: path.to_path_buf(),
        reason,
    };
    let features: Vec<&Value> = match &root {
        Value::Array(items) => items.iter().collect(),
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("FeatureCollection") => o
                .get("features")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    file_error("a FeatureCollection without a \"features\" array".into())
                })?
                .iter()
                .collect(),
            Some("Feature") => vec![&root],
            other => {
                return Err(file_error(format!(
                "expected a FeatureCollection, a Feature or an array of Features, found type {}",
                other.map_or("(none)".to_string(), |t| format!("\"{t}\""))
            )))
            }
        },
        _ => {
            return Err(file_error(
                "expected a FeatureCollection, a Feature or an array of Features".into(),
            ))
        }
    };
    let mut out = AnnotationFile::default();
    for (index, feature) in features.into_iter().enumerate() {
        let props = feature.get("properties");
        let name = props
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let fail = |reason: String| AnnotationError::Feature {
            path: path.to_path_buf(),
            feature: feature_label(index, name.as_deref()),
            reason,
        };
        if feature.get("type").and_then(Value::as_str) != Some("Feature") {
            return Err(fail(
                "not a GeoJSON Feature (no \"type\": \"Feature\")".into(),
            ));
        }
        if !is_annotation(feature) {
            out.skipped_objects += 1;
            continue;
        }
        let class = props
            .and_then(|p| p.get("classification"))
            .and_then(|c| c.get("name"))
            .and_then(Value::as_str);
        let Some(class) = class else {
            out.skipped_unclassified += 1;
            continue;
        };
        let geometry = feature
            .get("geometry")
            .filter(|g| !g.is_null())
            .ok_or_else(|| fail("no geometry".into()))?;
        let mut polygons = Vec::new();
        collect_polygons(geometry, &mut polygons).map_err(fail)?;
        if polygons.is_empty() {
            out.skipped_not_areas += 1;
            continue;
        }
        let annotation = Annotation {
            index,
            name: name.clone(),
            class: class.to_string(),
            polygons,
        };
        check(&annotation, path, options)?;
        out.annotations.push(annotation);
    }
    Ok(out)
}

/// True for annotation objects: objectType "annotation", or (QuPath 0.2/0.3) an id
/// of "PathAnnotationObject", or no object type at all (plain GeoJSON).
fn is_annotation(feature: &Value) -> bool {
    let props = feature.get("properties");
    match props
        .and_then(|p| p.get("objectType"))
        .and_then(Value::as_str)
    {
        Some(t) => t == "annotation",
        None => match feature.get("id").and_then(Value::as_str) {
            Some(id) if id.starts_with("Path") && id.ends_with("Object") => {
                id == "PathAnnotationObject"
            }
            _ => true,
        },
    }
}

/// Appends the polygons of a geometry; points and lines add none.
fn collect_polygons(geometry: &Value, out: &mut Vec<Polygon>) -> Result<(), String> {
    let kind = geometry
        .get("type")
        .and_then(Value::as_str)
        .ok_or("a geometry without a type")?;
    let coords = || {
        geometry
            .get("coordinates")
            .ok_or(format!("a {kind} without coordinates"))
    };
    match kind {
        "Polygon" => out.push(polygon(coords()?)?),
        "MultiPolygon" => {
            for (k, p) in coords()?
                .as_array()
                .ok_or("MultiPolygon coordinates are not an array")?
                .iter()
                .enumerate()
            {
                out.push(polygon(p).map_err(|e| format!("polygon {k} of the MultiPolygon: {e}"))?);
            }
        }
        "GeometryCollection" => {
            for g in geometry
                .get("geometries")
                .and_then(Value::as_array)
                .ok_or("a GeometryCollection without geometries")?
            {
                collect_polygons(g, out)?;
            }
        }
        "Point" | "MultiPoint" | "LineString" | "MultiLineString" => {}
        other => return Err(format!("unknown geometry type \"{other}\"")),
    }
    Ok(())
}

fn polygon(coords: &Value) -> Result<Polygon, String> {
    let rings = coords
        .as_array()
        .ok_or("Polygon coordinates are not an array of rings")?;
    let mut parsed = Vec::with_capacity(rings.len());
    for (k, r) in rings.iter().enumerate() {
        parsed.push(ring(r).map_err(|e| format!("ring {k}: {e}"))?);
    }
    let mut it = parsed.into_iter();
    let exterior = it.next().ok_or("a Polygon without rings")?;
    Ok(Polygon {
        exterior,
        holes: it.collect(),
    })
}

fn ring(value: &Value) -> Result<Ring, String> {
    let points = value.as_array().ok_or("not an array of positions")?;
    let mut ring = Vec::with_capacity(points.len());
    for (k, p) in points.iter().enumerate() {
        let xy = p
            .as_array()
            .filter(|a| a.len() >= 2)
            .ok_or(format!("position {k} is not an [x, y] pair"))?;
        match (xy[0].as_f64(), xy[1].as_f64()) {
            (Some(x), Some(y)) if x.is_finite() && y.is_finite() => ring.push([x, y]),
            _ => return Err(format!("position {k} is not a pair of numbers")),
        }
    }
    // GeoJSON closes rings by repeating the first position; tolerate its absence.
    if ring.len() > 1 && ring.first() == ring.last() {
        ring.pop();
    }
    ring.dedup();
    if ring.len() < 3 {
        return Err("fewer than 3 distinct positions".into());
    }
    Ok(ring)
}

/// Bounds and self-intersection checks of one annotation.
fn check(a: &Annotation, path: &Path, options: &ReadOptions) -> Result<(), AnnotationError> {
    if let Some((width, height)) = options.slide_size {
        let t = options.edge_tolerance;
        for p in a.polygons.iter().flat_map(|p| p.rings()).flatten() {
            let [x, y] = *p;
            if x < -t || y < -t || x > width as f64 + t || y > height as f64 + t {
                return Err(AnnotationError::OutsideSlide {
                    path: path.to_path_buf(),
                    feature: a.label(),
                    x,
                    y,
                    width,
                    height,
                });
            }
        }
    }
    for (k, p) in a.polygons.iter().enumerate() {
        if let Some([x, y]) = self_intersection(p) {
            return Err(AnnotationError::SelfIntersecting {
                path: path.to_path_buf(),
                feature: a.label(),
                x,
                y,
            });
        }
        // Checked after crossings: a symmetric bow-tie also has zero signed area.
        if p.rings().any(|r| ring_area(r) == 0.0) {
            return Err(AnnotationError::Feature {
                path: path.to_path_buf(),
                feature: a.label(),
                reason: format!("polygon {k}: a ring encloses no area"),
            });
        }
    }
    Ok(())
}

/// A point where two edges of the polygon's rings cross or overlap along a line, if
/// any. Rings touching at a shared vertex are allowed (QuPath writes holes that
/// touch their exterior that way). Sort-and-sweep on x, so large rings stay cheap.
pub fn self_intersection(p: &Polygon) -> Option<[f64; 2]> {
    struct Edge {
        a: [f64; 2],
        b: [f64; 2],
        ring: usize,
        k: usize,
        n: usize,
    }
    let mut edges = Vec::new();
    for (ring_index, r) in p.rings().enumerate() {
        for k in 0..r.len() {
            edges.push(Edge {
                a: r[k],
                b: r[(k + 1) % r.len()],
                ring: ring_index,
                k,
                n: r.len(),
            });
        }
    }
    edges.sort_by(|e, f| e.a[0].min(e.b[0]).total_cmp(&f.a[0].min(f.b[0])));
    for i in 0..edges.len() {
        let e = &edges[i];
        let e_max = e.a[0].max(e.b[0]);
        for f in &edges[i + 1..] {
            if f.a[0].min(f.b[0]) > e_max {
                break;
            }
            if e.ring == f.ring {
                let d = e.k.abs_diff(f.k);
                if d == 1 || d == e.n - 1 {
                    continue;
                }
            }
            if let Some(at) = crossing(e.a, e.b, f.a, f.b) {
                return Some(at);
            }
        }
    }
    None
}

fn orient(a: [f64; 2], b: [f64; 2], c: [f64; 2]) -> f64 {
    (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
}

/// Where segments ab and cd cross properly, or overlap along a stretch.
fn crossing(a: [f64; 2], b: [f64; 2], c: [f64; 2], d: [f64; 2]) -> Option<[f64; 2]> {
    let (o1, o2, o3, o4) = (
        orient(a, b, c),
        orient(a, b, d),
        orient(c, d, a),
        orient(c, d, b),
    );
    if o1 * o2 < 0.0 && o3 * o4 < 0.0 {
        let t = o3 / (o3 - o4);
        return Some([a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])]);
    }
    if o1 == 0.0 && o2 == 0.0 {
        // Collinear: overlapping by more than a point?
        let axis = if (b[0] - a[0]).abs() >= (b[1] - a[1]).abs() {
            0
        } else {
            1
        };
        let (lo1, hi1) = (a[axis].min(b[axis]), a[axis].max(b[axis]));
        let (lo2, hi2) = (c[axis].min(d[axis]), c[axis].max(d[axis]));
        let (lo, hi) = (lo1.max(lo2), hi1.min(hi2));
        if hi > lo {
            let pick = if a[axis] >= lo && a[axis] <= hi { a } else { b };
            return Some(if pick[axis] >= lo && pick[axis] <= hi {
                pick
            } else {
                c
            });
        }
    }
    None
}

/// One classified area for [`write`]: a QuPath class name, its colour, polygons.
pub struct ClassifiedArea<'a> {
    pub class: &'a str,
    pub color: [u8; 3],
    pub polygons: &'a [Polygon],
}

/// A FeatureCollection in QuPath's export form: one annotation Feature per area, a
/// Polygon for one polygon and a MultiPolygon for several; rings closed, exteriors
/// counter-clockwise and holes clockwise in the coordinates' own axes (RFC 7946).
pub fn to_geojson(areas: &[ClassifiedArea]) -> Value {
    let ring_json = |r: &Ring, exterior: bool| -> Value {
        // A positive shoelace area is counter-clockwise with x right and y up.
        let counter_clockwise = ring_area(r) > 0.0;
        let mut pts: Vec<[f64; 2]> = r.clone();
        if counter_clockwise != exterior {
            pts.reverse();
        }
        if let Some(first) = pts.first().copied() {
            pts.push(first);
        }
        Value::Array(pts.iter().map(|p| json!([p[0], p[1]])).collect())
    };
    let poly_json = |p: &Polygon| -> Value {
        let mut rings = vec![ring_json(&p.exterior, true)];
        rings.extend(p.holes.iter().map(|h| ring_json(h, false)));
        Value::Array(rings)
    };
    let features: Vec<Value> = areas
        .iter()
        .filter(|a| !a.polygons.is_empty())
        .map(|a| {
            let geometry = match a.polygons {
                [one] => json!({"type": "Polygon", "coordinates": poly_json(one)}),
                many => json!({
                    "type": "MultiPolygon",
                    "coordinates": many.iter().map(poly_json).collect::<Vec<_>>()
                }),
            };
            json!({
                "type": "Feature",
                "geometry": geometry,
                "properties": {
                    "objectType": "annotation",
                    "name": a.class,
                    "classification": {"name": a.class, "color": a.color},
                    "isLocked": false
                }
            })
        })
        .collect();
    json!({"type": "FeatureCollection", "features": features})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<AnnotationFile, AnnotationError> {
        parse(
            text,
            Path::new("s1.geojson"),
            &ReadOptions {
                slide_size: Some((1000, 800)),
                ..ReadOptions::default()
            },
        )
    }

    const SQUARE: &str =
        r#"{"type":"Polygon","coordinates":[[[0,0],[100,0],[100,100],[0,100],[0,0]]]}"#;

    fn feature(geometry: &str, props: &str) -> String {
        format!(r#"{{"type":"Feature","geometry":{geometry},"properties":{props}}}"#)
    }

    #[test]
    fn reads_collection_single_feature_and_bare_array() {
        let f = feature(
            SQUARE,
            r#"{"objectType":"annotation","classification":{"name":"Pustule","color":[1,2,3]}}"#,
        );
        for text in [
            format!(r#"{{"type":"FeatureCollection","features":[{f}]}}"#),
            f.clone(),
            format!("[{f}]"),
        ] {
            let file = parse_str(&text).unwrap();
            assert_eq!(file.annotations.len(), 1);
            assert_eq!(file.annotations[0].class, "Pustule");
            assert_eq!(file.annotations[0].polygons[0].area(), 10_000.0);
        }
    }

    #[test]
    fn skips_detections_cells_and_unclassified_annotations() {
        let det = feature(
            SQUARE,
            r#"{"objectType":"detection","classification":{"name":"X"}}"#,
        );
        let cell = feature(
            SQUARE,
            r#"{"objectType":"cell","classification":{"name":"X"}}"#,
        );
        let old = format!(
            r#"{{"type":"Feature","id":"PathDetectionObject","geometry":{SQUARE},"properties":{{"classification":{{"name":"X"}}}}}}"#
        );
        let plain = feature(SQUARE, r#"{"objectType":"annotation"}"#);
        let line = feature(
            r#"{"type":"LineString","coordinates":[[0,0],[5,5]]}"#,
            r#"{"objectType":"annotation","classification":{"name":"X"}}"#,
        );
        let file = parse_str(&format!("[{det},{cell},{old},{plain},{line}]")).unwrap();
        assert!(file.annotations.is_empty());
        assert_eq!(
            (
                file.skipped_objects,
                file.skipped_unclassified,
                file.skipped_not_areas
            ),
            (3, 1, 1)
        );
    }

    #[test]
    fn refuses_outside_geometry_naming_the_feature() {
        let f = feature(
            r#"{"type":"Polygon","coordinates":[[[900,700],[1200,700],[1200,790],[900,700]]]}"#,
            r#"{"objectType":"annotation","name":"big one","classification":{"name":"P"}}"#,
        );
        let e = parse_str(&format!("[{f}]")).unwrap_err().to_string();
        assert!(
            e.contains("s1.geojson") && e.contains("feature 0 (\"big one\")"),
            "{e}"
        );
        assert!(e.contains("outside the slide"), "{e}");
    }

    #[test]
    fn refuses_a_bowtie_and_a_hole_crossing_its_exterior() {
        let bowtie = feature(
            r#"{"type":"Polygon","coordinates":[[[0,0],[100,100],[100,0],[0,100],[0,0]]]}"#,
            r#"{"objectType":"annotation","classification":{"name":"P"}}"#,
        );
        let e = parse_str(&format!(
            "[{SQ},{bowtie}]",
            SQ = feature(SQUARE, r#"{"classification":{"name":"P"}}"#)
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("feature 1") && e.contains("intersects itself near (50.0, 50.0)"),
            "{e}"
        );
        let hole_out = feature(
            r#"{"type":"Polygon","coordinates":[[[0,0],[100,0],[100,100],[0,100],[0,0]],[[50,50],[150,50],[150,60],[50,60],[50,50]]]}"#,
            r#"{"classification":{"name":"P"}}"#,
        );
        assert!(matches!(
            parse_str(&hole_out),
            Err(AnnotationError::SelfIntersecting { .. })
        ));
        // A hole touching its exterior at one vertex is valid.
        let touching = feature(
            r#"{"type":"Polygon","coordinates":[[[0,0],[100,0],[100,100],[0,100],[0,0]],[[0,0],[40,20],[20,40],[0,0]]]}"#,
            r#"{"classification":{"name":"P"}}"#,
        );
        assert_eq!(parse_str(&touching).unwrap().annotations.len(), 1);
    }

    #[test]
    fn malformed_json_names_file_and_position() {
        let e = parse_str("{\"type\": \"FeatureCollection\", \"features\": [\n{]")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("s1.geojson: not valid JSON at line 2"), "{e}");
        let e = parse_str(r#"{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[0,0],[1,"a"],[0,1]]]},"properties":{"classification":{"name":"P"}}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("feature 0: ring 0: position 1 is not a pair of numbers"),
            "{e}"
        );
    }

    #[test]
    fn written_geojson_reads_back() {
        let p = Polygon {
            exterior: vec![[0.0, 0.0], [100.0, 0.0], [100.0, 100.0], [0.0, 100.0]],
            holes: vec![vec![[20.0, 20.0], [20.0, 40.0], [40.0, 40.0], [40.0, 20.0]]],
        };
        let q = Polygon {
            exterior: vec![[200.0, 0.0], [300.0, 0.0], [300.0, 50.0]],
            holes: vec![],
        };
        let polys = [p.clone(), q];
        let text = to_geojson(&[ClassifiedArea {
            class: "Pustule",
            color: [255, 0, 0],
            polygons: &polys,
        }])
        .to_string();
        let file = parse_str(&text).unwrap();
        let a = &file.annotations[0];
        assert_eq!(a.polygons.len(), 2);
        assert_eq!(a.polygons[0].area(), 10_000.0 - 400.0);
        assert_eq!(a.polygons[1].area(), 2_500.0);
        // Exteriors counter-clockwise, holes clockwise.
        assert!(ring_area(&a.polygons[0].exterior) > 0.0);
        assert!(ring_area(&a.polygons[0].holes[0]) < 0.0);
    }
}
