//! How much of a tile the annotations cover: exact along each scanline, sampled
//! across scanlines (a whole number per level-0 pixel row of the tile, at least
//! 64 rows, at most 2048), so a polygon's coverage is its clipped area to well
//! under 1% and a polygon traced from a mask gives that mask's coverage exactly.
//!
//! Polygons of one class may overlap: their union is measured, not their sum.
//! Inside a polygon is even-odd over its rings, so holes are cut out.

use super::mapping::{Mapping, Target};
use super::{Annotation, Polygon};

/// A union of polygons, ready for coverage queries.
#[derive(Debug, Clone, Default)]
pub struct Region {
    polygons: Vec<Edges>,
}

#[derive(Debug, Clone)]
struct Edges {
    bbox: [f64; 4],
    /// Non-horizontal edges as (x at y_lo, y_lo, x at y_hi, y_hi), y_lo < y_hi.
    edges: Vec<[f64; 4]>,
}

impl Region {
    pub fn new<'a>(polygons: impl IntoIterator<Item = &'a Polygon>) -> Region {
        let mut region = Region::default();
        for p in polygons {
            region.add(p);
        }
        region
    }

    pub fn add(&mut self, p: &Polygon) {
        let mut edges = Vec::new();
        for r in p.rings() {
            for k in 0..r.len() {
                let (a, b) = (r[k], r[(k + 1) % r.len()]);
                if a[1] < b[1] {
                    edges.push([a[0], a[1], b[0], b[1]]);
                } else if a[1] > b[1] {
                    edges.push([b[0], b[1], a[0], a[1]]);
                }
            }
        }
        self.polygons.push(Edges {
            bbox: p.bbox(),
            edges,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.polygons.is_empty()
    }

    /// Fraction of the rectangle `[x, y, w, h]` (level-0 px) inside the region.
    pub fn coverage(&self, rect: [f64; 4]) -> f64 {
        let [x0, y0, w, h] = rect;
        let (x1, y1) = (x0 + w, y0 + h);
        if w <= 0.0 || h <= 0.0 {
            return 0.0;
        }
        // Each candidate polygon with only the edges that reach the tile's band.
        let band: Vec<Vec<[f64; 4]>> = self
            .polygons
            .iter()
            .filter(|p| p.bbox[0] < x1 && p.bbox[2] > x0 && p.bbox[1] < y1 && p.bbox[3] > y0)
            .map(|p| {
                p.edges
                    .iter()
                    .filter(|e| e[3] > y0 && e[1] < y1)
                    .copied()
                    .collect()
            })
            .collect();
        if band.is_empty() {
            return 0.0;
        }
        // Whole rows per level-0 pixel where possible, so that edges on pixel
        // boundaries (traced masks) fall between sample rows.
        let base = h.round().max(1.0) as usize;
        let rows = (base * 64usize.div_ceil(base)).min(2048);
        let step = h / rows as f64;
        let mut covered = 0.0;
        let mut xs = Vec::new();
        let mut spans: Vec<(f64, f64)> = Vec::new();
        for k in 0..rows {
            let yc = y0 + (k as f64 + 0.5) * step;
            spans.clear();
            for edges in &band {
                xs.clear();
                for e in edges {
                    if e[1] <= yc && yc < e[3] {
                        xs.push(e[0] + (yc - e[1]) * (e[2] - e[0]) / (e[3] - e[1]));
                    }
                }
                xs.sort_by(f64::total_cmp);
                for pair in xs.chunks_exact(2) {
                    let (a, b) = (pair[0].max(x0), pair[1].min(x1));
                    if b > a {
                        spans.push((a, b));
                    }
                }
            }
            covered += union_length(&mut spans);
        }
        (covered * step / (w * h)).clamp(0.0, 1.0)
    }
}

/// Total length of a union of intervals (sorts them in place).
fn union_length(spans: &mut [(f64, f64)]) -> f64 {
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut total = 0.0;
    let mut current: Option<(f64, f64)> = None;
    for &(a, b) in spans.iter() {
        current = match current {
            Some((s, e)) if a <= e => Some((s, e.max(b))),
            Some((s, e)) => {
                total += e - s;
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    if let Some((s, e)) = current {
        total += e - s;
    }
    total
}

/// One slide's annotations as labels: a region per finding, and everything the
/// annotator said something about (findings and negative regions).
#[derive(Debug, Clone)]
pub struct SlideLabels {
    pub findings: [Region; 4],
    annotated: Region,
    exhaustive: bool,
    min_annotated: f64,
}

impl SlideLabels {
    /// Classes must all be in the mapping (see [`super::unknown_classes`]); a class
    /// that is not counts as ignored here.
    pub fn new(annotations: &[Annotation], mapping: &Mapping, exhaustive: bool) -> SlideLabels {
        let mut findings: [Region; 4] = Default::default();
        let mut annotated = Region::default();
        for a in annotations {
            match mapping.target(&a.class) {
                Some(Target::Finding(f)) => {
                    for p in &a.polygons {
                        findings[f.index()].add(p);
                        annotated.add(p);
                    }
                }
                Some(Target::Negative) => a.polygons.iter().for_each(|p| annotated.add(p)),
                Some(Target::Ignore) | None => {}
            }
        }
        SlideLabels {
            findings,
            annotated,
            exhaustive,
            min_annotated: mapping.min_annotated,
        }
    }

    /// The coverage of each finding over the tile (in `Finding::ALL` order), or
    /// `None` where the annotations do not say: a slide that is not exhaustive and
    /// a tile less than `min_annotated` inside its polygons.
    pub fn label(&self, rect: [f64; 4]) -> Option<[f64; 4]> {
        if !self.exhaustive && self.annotated.coverage(rect) < self.min_annotated {
            return None;
        }
        Some(std::array::from_fn(|k| self.findings[k].coverage(rect)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poly(exterior: &[[f64; 2]], holes: &[&[[f64; 2]]]) -> Polygon {
        Polygon {
            exterior: exterior.to_vec(),
            holes: holes.iter().map(|h| h.to_vec()).collect(),
        }
    }

    fn square(x: f64, y: f64, s: f64) -> Vec<[f64; 2]> {
        vec![[x, y], [x + s, y], [x + s, y + s], [x, y + s]]
    }

    #[test]
    fn matches_analytic_areas() {
        // Triangle: half the tile.
        let tri = Region::new([&poly(&[[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]], &[])]);
        assert!((tri.coverage([0.0, 0.0, 100.0, 100.0]) - 0.5).abs() < 1e-9);
        // Square with a square hole: 1 - 0.25.
        let holed = poly(&square(0.0, 0.0, 100.0), &[&square(25.0, 25.0, 50.0)]);
        let r = Region::new([&holed]);
        assert!((r.coverage([0.0, 0.0, 100.0, 100.0]) - 0.75).abs() < 1e-9);
        // The tile's left half: 50 x 100 of which the hole takes 25 x 50.
        assert!((r.coverage([0.0, 0.0, 50.0, 100.0]) - 0.75).abs() < 1e-9);
        // A disk of radius 40 (a 720-gon) in a 100 px tile: pi r^2 / 1e4.
        let disk: Vec<[f64; 2]> = (0..720)
            .map(|i| {
                let t = i as f64 * std::f64::consts::TAU / 720.0;
                [50.0 + 40.0 * t.cos(), 50.0 + 40.0 * t.sin()]
            })
            .collect();
        let d = Region::new([&poly(&disk, &[])]);
        let exact = std::f64::consts::PI * 1600.0 / 1e4;
        assert!((d.coverage([0.0, 0.0, 100.0, 100.0]) - exact).abs() < 1e-3);
        // A quarter of the disk in the tile [50, 50, 50, 50].
        assert!((d.coverage([50.0, 50.0, 50.0, 50.0]) - exact).abs() < 1e-3);
    }

    #[test]
    fn union_of_overlapping_polygons_and_clipping() {
        let a = poly(&square(0.0, 0.0, 60.0), &[]);
        let b = poly(&square(40.0, 40.0, 60.0), &[]);
        let r = Region::new([&a, &b]);
        // 3600 + 3600 - 400 overlap.
        assert!((r.coverage([0.0, 0.0, 100.0, 100.0]) - 0.68).abs() < 1e-9);
        // Clipped to a tile straddling the polygon edge; and a tile far away.
        assert!((r.coverage([-50.0, 0.0, 100.0, 60.0]) - 0.5).abs() < 1e-9);
        assert_eq!(r.coverage([500.0, 500.0, 10.0, 10.0]), 0.0);
    }

    #[test]
    fn labels_need_exhaustive_slides_or_annotated_tiles() {
        let mapping = Mapping::parse(
            "[classes]\nP = \"subcorneal_pustule\"\nN = \"negative\"\nR = \"ignore\"\n",
            std::path::Path::new("m.toml"),
        )
        .unwrap();
        let ann = |class: &str, p: Polygon| Annotation {
            index: 0,
            name: None,
            class: class.into(),
            polygons: vec![p],
        };
        let anns = vec![
            ann("N", poly(&square(0.0, 0.0, 200.0), &[])),
            ann("P", poly(&square(10.0, 10.0, 20.0), &[])),
            ann("R", poly(&square(0.0, 0.0, 1000.0), &[])),
        ];
        let labels = SlideLabels::new(&anns, &mapping, false);
        let l = labels.label([0.0, 0.0, 100.0, 100.0]).unwrap();
        assert!((l[0] - 0.04).abs() < 1e-9 && l[1] == 0.0);
        // Outside the negative region: not labelled (the ignored region does not count).
        assert_eq!(labels.label([300.0, 300.0, 100.0, 100.0]), None);
        assert_eq!(labels.label([150.0, 0.0, 100.0, 100.0]), None);
        let exhaustive = SlideLabels::new(&anns, &mapping, true);
        assert_eq!(
            exhaustive.label([300.0, 300.0, 100.0, 100.0]),
            Some([0.0; 4])
        );
    }
}
