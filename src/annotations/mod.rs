//! Annotations drawn by a pathologist (QuPath GeoJSON exports) and what they say
//! about each tile: reading and checking the polygons, mapping their class names
//! to finding keys, measuring how much of a tile each finding covers, and turning
//! a phantom's truth masks into the same polygons.
//!
//! It reads and writes annotation files only; slides, tissue and tiles belong to
//! their own stages, and [`export`] wires them for `dirascope tiles`.

pub mod contour;
pub mod export;
pub mod geojson;
pub mod mapping;
pub mod raster;

use std::path::PathBuf;

/// A closed ring of level-0 pixel coordinates; the closing point is not repeated.
pub type Ring = Vec<[f64; 2]>;

/// One polygon: an exterior ring and the holes cut out of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Polygon {
    pub exterior: Ring,
    pub holes: Vec<Ring>,
}

impl Polygon {
    /// Every ring, exterior first.
    pub fn rings(&self) -> impl Iterator<Item = &Ring> {
        std::iter::once(&self.exterior).chain(self.holes.iter())
    }

    /// Area in square level-0 pixels: the exterior's less its holes'.
    pub fn area(&self) -> f64 {
        ring_area(&self.exterior).abs() - self.holes.iter().map(|h| ring_area(h).abs()).sum::<f64>()
    }

    /// Bounding box `[x0, y0, x1, y1]` of the exterior.
    pub fn bbox(&self) -> [f64; 4] {
        let mut b = [
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ];
        for p in &self.exterior {
            b = [
                b[0].min(p[0]),
                b[1].min(p[1]),
                b[2].max(p[0]),
                b[3].max(p[1]),
            ];
        }
        b
    }
}

/// Signed shoelace area of a ring (positive when counter-clockwise with y up, that
/// is clockwise on screen where y runs down).
pub fn ring_area(ring: &[[f64; 2]]) -> f64 {
    let n = ring.len();
    (0..n)
        .map(|i| {
            let (a, b) = (ring[i], ring[(i + 1) % n]);
            a[0] * b[1] - b[0] * a[1]
        })
        .sum::<f64>()
        / 2.0
}

/// One annotation object of a GeoJSON file, as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    /// Position of the feature in the file (0-based), for error messages.
    pub index: usize,
    /// `properties.name`, when the annotation was named in QuPath.
    pub name: Option<String>,
    /// `properties.classification.name`.
    pub class: String,
    pub polygons: Vec<Polygon>,
}

impl Annotation {
    /// How an error message names this feature: its index and, if any, its name.
    pub fn label(&self) -> String {
        feature_label(self.index, self.name.as_deref())
    }
}

/// `feature 3` or `feature 3 ("Pustule 1")`.
pub fn feature_label(index: usize, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("feature {index} (\"{n}\")"),
        None => format!("feature {index}"),
    }
}

/// Everything that goes wrong with annotation input, by whose fault it is.
#[derive(Debug, thiserror::Error)]
pub enum AnnotationError {
    #[error("{path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not valid JSON at line {line}, column {column}: {reason}")]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("{path}: {feature}: {reason}")]
    Feature {
        path: PathBuf,
        feature: String,
        reason: String,
    },
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error(
        "{path}: {feature}: point ({x}, {y}) lies outside the slide ({width} x {height} level-0 px); \
         the annotations must be exported in level-0 pixels of this slide"
    )]
    OutsideSlide {
        path: PathBuf,
        feature: String,
        x: f64,
        y: f64,
        width: u64,
        height: u64,
    },
    #[error(
        "{path}: {feature}: the polygon intersects itself near ({x:.1}, {y:.1}); fix it in QuPath \
         (Objects > Annotations... > Fix invalid geometries, or redraw it)"
    )]
    SelfIntersecting {
        path: PathBuf,
        feature: String,
        x: f64,
        y: f64,
    },
    #[error(
        "{mapping}: class names used by the annotations but missing from [classes]: {}; map each to \
         a finding key, \"negative\" or \"ignore\" (first seen in {})",
        names.join(", "),
        files.join(", ")
    )]
    UnknownClasses {
        mapping: PathBuf,
        names: Vec<String>,
        files: Vec<String>,
    },
    #[error("{path}: {reason}")]
    Mapping { path: PathBuf, reason: String },
}
