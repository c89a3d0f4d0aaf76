//! Binary mask -> polygons with holes, by tracing the pixel edges between "on" and
//! "off" cells. The polygons cover exactly the on cells (as unit squares), so the
//! coverage of a tile by the polygons equals its coverage by the mask.
//!
//! Diagonal on cells are not joined (4-connectivity): at a saddle vertex the trace
//! turns to keep hugging the cell it came along, so rings touch there but never
//! cross. Nothing here knows where the mask came from.

use std::collections::HashMap;

use super::{ring_area, Polygon, Ring};

/// Polygons (in mask-cell units) covering the on cells of a `width` × `height`
/// row-major mask: outer rings with a positive shoelace area, holes negative.
pub fn trace(on: &[bool], width: usize, height: usize) -> Vec<Polygon> {
    let at = |x: i64, y: i64| -> bool {
        x >= 0
            && y >= 0
            && (x as usize) < width
            && (y as usize) < height
            && on[y as usize * width + x as usize]
    };
    // Directed edges with the on cell on the walker's right (screen, y down):
    // top edges run +x, right edges +y, bottom -x, left -y.
    let mut edges: Vec<([i64; 2], [i64; 2])> = Vec::new();
    for y in 0..height as i64 {
        for x in 0..width as i64 {
            if !at(x, y) {
                continue;
            }
            if !at(x, y - 1) {
                edges.push(([x, y], [x + 1, y]));
            }
            if !at(x + 1, y) {
                edges.push(([x + 1, y], [x + 1, y + 1]));
            }
            if !at(x, y + 1) {
                edges.push(([x + 1, y + 1], [x, y + 1]));
            }
            if !at(x - 1, y) {
                edges.push(([x, y + 1], [x, y]));
            }
        }
    }
    let mut from: HashMap<[i64; 2], Vec<usize>> = HashMap::new();
    for (i, e) in edges.iter().enumerate() {
        from.entry(e.0).or_default().push(i);
    }
    let mut used = vec![false; edges.len()];
    let mut rings: Vec<Ring> = Vec::new();
    for start in 0..edges.len() {
        if used[start] {
            continue;
        }
        let mut ring: Vec<[i64; 2]> = Vec::new();
        let mut e = start;
        loop {
            used[e] = true;
            let (a, b) = edges[e];
            ring.push(a);
            let dir = [b[0] - a[0], b[1] - a[1]];
            let next = from.get(&b).and_then(|outs| {
                // The start edge stays a candidate, so a ring closes where it began
                // even when that vertex is a saddle.
                let free: Vec<usize> = outs
                    .iter()
                    .copied()
                    .filter(|&o| !used[o] || o == start)
                    .collect();
                match free.len() {
                    0 => None,
                    1 => Some(free[0]),
                    // Saddle: take the right turn (on screen), which keeps the cell.
                    _ => free.iter().copied().find(|&o| {
                        let (c, d) = edges[o];
                        let nd = [d[0] - c[0], d[1] - c[1]];
                        dir[0] * nd[1] - dir[1] * nd[0] > 0
                    }),
                }
            });
            match next {
                Some(n) if n != start => e = n,
                _ => break,
            }
        }
        rings.push(simplify(&ring));
    }
    assemble(rings)
}

/// Drops vertices in the middle of straight runs.
fn simplify(ring: &[[i64; 2]]) -> Ring {
    let n = ring.len();
    (0..n)
        .filter(|&i| {
            let (p, c, q) = (ring[(i + n - 1) % n], ring[i], ring[(i + 1) % n]);
            (c[0] - p[0]) * (q[1] - c[1]) - (c[1] - p[1]) * (q[0] - c[0]) != 0
        })
        .map(|i| [ring[i][0] as f64, ring[i][1] as f64])
        .collect()
}

/// Outer rings (positive area) become polygons; each hole goes to the smallest
/// outer ring that contains a point just inside its edge.
fn assemble(rings: Vec<Ring>) -> Vec<Polygon> {
    let (outer, holes): (Vec<Ring>, Vec<Ring>) =
        rings.into_iter().partition(|r| ring_area(r) > 0.0);
    let mut polygons: Vec<Polygon> = outer
        .into_iter()
        .map(|exterior| Polygon {
            exterior,
            holes: Vec::new(),
        })
        .collect();
    let areas: Vec<f64> = polygons.iter().map(|p| ring_area(&p.exterior)).collect();
    let boxes: Vec<[f64; 4]> = polygons.iter().map(Polygon::bbox).collect();
    for hole in holes {
        // The hole's first edge has the on cell on its right (screen): step a
        // quarter cell that way from its midpoint to land inside the polygon.
        let (a, b) = (hole[0], hole[1 % hole.len()]);
        let (dx, dy) = ((b[0] - a[0]).signum(), (b[1] - a[1]).signum());
        let probe = [
            (a[0] + b[0]) / 2.0 - dy * 0.25,
            (a[1] + b[1]) / 2.0 + dx * 0.25,
        ];
        let owner = (0..polygons.len())
            .filter(|&k| {
                let bb = boxes[k];
                probe[0] > bb[0] && probe[0] < bb[2] && probe[1] > bb[1] && probe[1] < bb[3]
            })
            .filter(|&k| inside(&polygons[k].exterior, probe))
            .min_by(|&i, &j| areas[i].total_cmp(&areas[j]));
        if let Some(k) = owner {
            polygons[k].holes.push(hole);
        }
    }
    polygons
}

/// Even-odd point in ring.
fn inside(ring: &[[f64; 2]], p: [f64; 2]) -> bool {
    let mut odd = false;
    let n = ring.len();
    for i in 0..n {
        let (a, b) = (ring[i], ring[(i + 1) % n]);
        if (a[1] > p[1]) != (b[1] > p[1]) {
            let x = a[0] + (p[1] - a[1]) * (b[0] - a[0]) / (b[1] - a[1]);
            if x > p[0] {
                odd = !odd;
            }
        }
    }
    odd
}

#[cfg(test)]
mod tests {
    use super::super::geojson::self_intersection;
    use super::super::raster::Region;
    use super::*;

    fn mask(rows: &[&str]) -> (Vec<bool>, usize, usize) {
        let on = rows
            .iter()
            .flat_map(|r| r.chars().map(|c| c == '#'))
            .collect();
        (on, rows[0].len(), rows.len())
    }

    #[test]
    fn a_ring_with_a_hole_and_an_island_inside_it() {
        let (on, w, h) = mask(&[
            "#######", "#.....#", "#.###.#", "#.#.#.#", "#.###.#", "#.....#", "#######",
        ]);
        let polys = trace(&on, w, h);
        assert_eq!(polys.len(), 2);
        let mut areas: Vec<f64> = polys.iter().map(Polygon::area).collect();
        areas.sort_by(f64::total_cmp);
        // The island: 3x3 less its 1-cell hole; the frame: 49 - 25.
        assert_eq!(areas, vec![8.0, 24.0]);
        assert!(polys.iter().all(|p| p.holes.len() == 1));
        assert_eq!(polys[0].exterior.len(), 4, "straight runs merged");
    }

    #[test]
    fn diagonal_cells_touch_without_crossing() {
        let (on, w, h) = mask(&["##.", "#.#", ".##"]);
        let polys = trace(&on, w, h);
        assert!(polys.iter().all(|p| self_intersection(p).is_none()));
        let total: f64 = polys.iter().map(Polygon::area).sum();
        assert_eq!(total, 6.0);
    }

    #[test]
    fn polygon_coverage_equals_mask_coverage() {
        // A pseudo-random blob mask; every 5x5-cell window's coverage must match.
        let (w, h) = (40, 30);
        let on: Vec<bool> = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f64, (i / w) as f64);
                let r = ((x - 20.0).powi(2) + (y - 15.0).powi(2)).sqrt();
                r < 12.0 + 3.0 * (x * 0.7).sin() * (y * 0.9).cos() && (i * 7919) % 13 != 0
            })
            .collect();
        let polys = trace(&on, w, h);
        let region = Region::new(polys.iter());
        for wy in (0..h).step_by(5) {
            for wx in (0..w).step_by(5) {
                let want = (wy..wy + 5)
                    .flat_map(|y| (wx..wx + 5).map(move |x| (x, y)))
                    .filter(|&(x, y)| on[y * w + x])
                    .count() as f64
                    / 25.0;
                let got = region.coverage([wx as f64, wy as f64, 5.0, 5.0]);
                assert!(
                    (got - want).abs() < 1e-9,
                    "window ({wx}, {wy}): {got} vs {want}"
                );
            }
        }
    }
}
