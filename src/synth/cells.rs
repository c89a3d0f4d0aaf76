//! Lesion cells as synth 1.4 draws them: neutrophils, acantholytic keratinocytes
//! and the flat nuclei of parakeratosis, in synth 1.x's concentration scale.
//!
//! Until synth 1.3 these kept synth 0.3's drawing (near-black round lobes on a
//! flat disc, acantholytic cells as two concentric discs), the crops the realism
//! judge found most phantom-like after smooth collagen. A neutrophil here is a
//! cell of 9-12 µm with pale granular cytoplasm and an irregular outline whose
//! nucleus is 2-5 lobes of varied size on a curved arc, joined by thin chromatin
//! strands, as dark as dense chromatin and no darker; some cells are dying
//! (one small round pyknotic nucleus). Pure functions of µm coordinates and a salt.

use super::noise::{self, hash2, unit};
use super::render::{c, disc, ellipse, mixc, Conc};
use super::render_v1::nucleus;

/// Where the neutrophils of one field sit: one cell per jittered grid cell of
/// `spacing` µm, present with probability `occ`, `pyknotic` of them dying.
#[derive(Debug, Clone, Copy)]
pub(super) struct Crowd {
    pub spacing: f32,
    pub occ: f32,
    pub pyknotic: f32,
}

/// One cell's contribution at a point: how much of the point it covers, how much
/// of that is nucleus, and its concentrations there.
#[derive(Debug, Clone, Copy)]
pub(super) struct CellAt {
    pub cov: f32,
    pub nuc: f32,
    pub k: Conc,
}

impl CellAt {
    /// This cell drawn over `base`.
    pub fn over(self, base: Conc) -> Conc {
        mixc(base, self.k, self.cov)
    }

    /// `base` with `cell` drawn over it where there is one.
    pub fn maybe_over(cell: Option<CellAt>, base: Conc) -> Conc {
        cell.map_or(base, |c| c.over(base))
    }

    /// Of two overlapping cells, the one in front: the more nucleus, else the more cell.
    pub fn front(self, other: CellAt) -> CellAt {
        if (other.nuc, other.cov) > (self.nuc, self.cov) {
            other
        } else {
            self
        }
    }
}

/// Distance from (px, py) to the segment from a to b.
#[inline]
fn segment_distance(px: f32, py: f32, a: (f32, f32), b: (f32, f32)) -> f32 {
    let (vx, vy) = (b.0 - a.0, b.1 - a.1);
    let (wx, wy) = (px - a.0, py - a.1);
    let len2 = (vx * vx + vy * vy).max(1e-6);
    let t = ((wx * vx + wy * vy) / len2).clamp(0.0, 1.0);
    let (dx, dy) = (wx - t * vx, wy - t * vy);
    (dx * dx + dy * dy).sqrt()
}

/// The neutrophil of `crowd` (salted `salt`) at (x, y) µm, if one covers it;
/// `nuc_h` the slide's nuclear hematoxylin, `aa` the edge width.
pub(super) fn neutrophil(
    x: f32,
    y: f32,
    crowd: Crowd,
    salt: u64,
    nuc_h: f32,
    aa: f32,
) -> Option<CellAt> {
    let sp = crowd.spacing;
    let (gi, gj) = ((x / sp).floor() as i64, (y / sp).floor() as i64);
    let mut best: Option<CellAt> = None;
    for j in gj - 1..=gj + 1 {
        for i in gi - 1..=gi + 1 {
            let hsh = hash2(i, j, salt);
            if unit(hsh, 0) >= crowd.occ {
                continue;
            }
            let cx = (i as f32 + 0.1 + 0.8 * unit(hsh, 1)) * sp;
            let cy = (j as f32 + 0.1 + 0.8 * unit(hsh, 2)) * sp;
            let (dx, dy) = (x - cx, y - cy);
            let rc = 4.4 + 1.4 * unit(hsh, 3);
            let reach = rc * 1.1 + aa;
            if dx * dx + dy * dy > reach * reach {
                continue;
            }
            let shape = Shape {
                rc,
                hsh,
                pyknotic: crowd.pyknotic,
                nuc_h,
                aa,
            };
            if let Some(cell) = one_neutrophil(dx, dy, &shape, salt, x, y) {
                best = Some(match best {
                    Some(b) => b.front(cell),
                    None => cell,
                });
            }
        }
    }
    best
}

/// What one neutrophil of a crowd is: its radius, hash (which draws its shape),
/// the crowd's share of dying cells, the slide's nuclear tone and the edge width.
struct Shape {
    rc: f32,
    hsh: u64,
    pyknotic: f32,
    nuc_h: f32,
    aa: f32,
}

/// The neutrophil `s` at offset (dx, dy) from its centre, at (x, y) µm; `salt`
/// salts the fields of granules and chromatin.
#[inline]
fn one_neutrophil(dx: f32, dy: f32, s: &Shape, salt: u64, x: f32, y: f32) -> Option<CellAt> {
    let Shape {
        rc,
        hsh,
        pyknotic,
        nuc_h,
        aa,
    } = *s;
    let h2 = noise::mix(hsh ^ 0x4E75);
    let th = dy.atan2(dx);
    let wob = 1.0
        + 0.07 * (2.0 * th + std::f32::consts::TAU * unit(h2, 0)).sin()
        + 0.04 * (5.0 * th + std::f32::consts::TAU * unit(h2, 1)).sin();
    let d = (dx * dx + dy * dy).sqrt();
    let cov = ((rc * wob - d) / aa + 0.5).clamp(0.0, 1.0);
    if cov <= 0.0 {
        return None;
    }
    // Pale, finely granular cytoplasm (neutral to faintly pink).
    let gran = noise::value(x / 0.55, y / 0.55, salt ^ 0x6A);
    let rim = noise::smoothstep(rc * wob - 0.9, rc * wob - 0.2, d);
    let cyto = c(
        0.1 + 0.05 * gran + 0.03 * rim,
        0.2 + 0.1 * gran + 0.04 * rim,
    );
    let h3 = noise::mix(h2);
    let dark = nuc_h * (2.0 + 0.6 * unit(h3, 0));
    let (nuc, h) = if unit(h2, 2) < pyknotic {
        // Dying: one small round, dense nucleus, often off centre.
        let r = 1.5 + 0.6 * unit(h3, 1);
        let (ox, oy) = (
            0.3 * rc * (unit(h3, 2) - 0.5),
            0.3 * rc * (unit(h3, 3) - 0.5),
        );
        (disc(dx - ox, dy - oy, r, aa), dark * 1.25)
    } else {
        // 2-5 lobes on a curved arc, of varied size, joined by thin strands.
        let n = match unit(h2, 3) {
            u if u < 0.15 => 2,
            u if u < 0.6 => 3,
            u if u < 0.9 => 4,
            _ => 5,
        };
        let ring = 1.9 + 0.6 * unit(h3, 1) + 0.3 * (n as f32 - 3.0).max(0.0);
        // Fewer lobes, bigger ones: the nucleus keeps about its size.
        let small = match n {
            2 => 1.2,
            3 => 1.0,
            _ => 0.85,
        };
        let span = std::f32::consts::TAU * (0.35 + 0.12 * n as f32) * (0.8 + 0.3 * unit(h3, 2));
        let a0 = std::f32::consts::TAU * unit(h3, 3);
        let (ox, oy) = (
            0.25 * rc * (unit(hsh, 3) - 0.5),
            0.25 * rc * (unit(h2, 0) - 0.5),
        );
        let mut nuc = 0.0f32;
        let mut prev: Option<(f32, f32)> = None;
        let h4 = noise::mix(h3);
        for k in 0..n {
            let a = a0 + span * k as f32 / (n - 1) as f32;
            let rk = ring * (0.85 + 0.3 * unit(h4, k as u32 % 4));
            let lobe = (ox + rk * a.cos(), oy + rk * a.sin());
            // Each lobe a bean of its own size, long along the arc.
            let hl = noise::mix(h4 ^ k as u64);
            let rl = (1.15 + 0.45 * unit(hl, 0)) * small;
            let (sn, cs) = (a + std::f32::consts::FRAC_PI_2).sin_cos();
            let e = 1.1 + 0.2 * unit(hl, 1);
            nuc = nuc.max(ellipse(
                dx - lobe.0,
                dy - lobe.1,
                rl * e,
                rl / e,
                cs,
                sn,
                aa,
            ));
            if let Some(p) = prev {
                let strand = segment_distance(dx, dy, p, lobe);
                nuc = nuc.max(((0.3 - strand) / aa + 0.5).clamp(0.0, 1.0));
            }
            prev = Some(lobe);
        }
        (nuc, dark)
    };
    // Dense, slightly clumped chromatin that takes up a little eosin.
    let clump = 0.88 + 0.24 * noise::value(x / 0.6, y / 0.6, salt ^ 0x7C);
    let k = mixc(cyto, c(h * clump, 0.12), nuc);
    Some(CellAt { cov, nuc, k })
}

/// A field of neutrophils of two interleaved crowds (the packing of a pustule or
/// an abscess): the cell in front where both draw.
pub(super) fn packed_neutrophils(
    x: f32,
    y: f32,
    spacing: f32,
    pyknotic: f32,
    salt: u64,
    nuc_h: f32,
    aa: f32,
) -> Option<CellAt> {
    let a = neutrophil(
        x,
        y,
        Crowd {
            spacing,
            occ: 0.92,
            pyknotic,
        },
        salt,
        nuc_h,
        aa,
    );
    let half = 0.5 * spacing;
    let b = neutrophil(
        x + half,
        y + half,
        Crowd {
            spacing,
            occ: 0.6,
            pyknotic,
        },
        salt ^ 0x5B,
        nuc_h,
        aa,
    );
    match (a, b) {
        (Some(a), Some(b)) => Some(a.front(b)),
        (a, b) => a.or(b),
    }
}

/// Serum with fibrin strands, the ground of a pustule between its cells.
pub(super) fn serum(x: f32, y: f32, salt: u64) -> Conc {
    let fib = noise::value(x / 4.0, y / 4.0, salt ^ 0x5E);
    let strand = noise::smoothstep(0.55, 0.8, noise::value(x / 9.0, y / 2.5, salt ^ 0x5F));
    c(0.03 + 0.03 * fib, 0.14 + 0.16 * fib + 0.26 * strand)
}

/// An acantholytic cleft's content at (x, y) µm: an empty space with a little
/// serum and rounded acantholytic cells floating in it, one per 14 µm grid cell
/// in three of five, those whose centre `keep` accepts.
pub(super) fn acantholytic_field(
    x: f32,
    y: f32,
    salt: u64,
    aa: f32,
    keep: impl Fn(f32, f32) -> bool,
) -> Conc {
    let mut out = c(
        0.005,
        0.01 + 0.04 * noise::value(x / 6.0, y / 6.0, salt ^ 3),
    );
    let sp = 14.0;
    let (gi, gj) = ((x / sp).floor() as i64, (y / sp).floor() as i64);
    for j in gj - 1..=gj + 1 {
        for i in gi - 1..=gi + 1 {
            let hsh = hash2(i, j, salt ^ 4);
            if unit(hsh, 0) > 0.6 {
                continue;
            }
            let cx = (i as f32 + 0.2 + 0.6 * unit(hsh, 1)) * sp;
            let cy = (j as f32 + 0.2 + 0.6 * unit(hsh, 2)) * sp;
            if !keep(cx, cy) {
                continue;
            }
            if let Some((cell, k)) = acantholytic_cell(x - cx, y - cy, hsh, aa, salt, x, y) {
                out = mixc(out, k, cell);
            }
        }
    }
    out
}

/// An acantholytic keratinocyte at offset (ex, ey) from its centre, `hsh` its
/// hash: rounded, with dense eosinophilic cytoplasm and a large condensed
/// nucleus. Its coverage and concentrations, or `None` outside it.
#[allow(clippy::too_many_arguments)]
fn acantholytic_cell(
    ex: f32,
    ey: f32,
    hsh: u64,
    aa: f32,
    salt: u64,
    x: f32,
    y: f32,
) -> Option<(f32, Conc)> {
    let rc = 4.6 + 2.0 * unit(hsh, 3);
    let th = ey.atan2(ex);
    let wob = 1.0 + 0.08 * (3.0 * th + 6.3 * unit(hsh, 6)).sin();
    let cell = disc(ex, ey, rc * wob, aa);
    if cell <= 0.0 {
        return None;
    }
    let rn = rc * (0.38 + 0.12 * unit(hsh, 4));
    let (nx, ny) = (
        0.3 * rc * (unit(hsh, 7) - 0.5),
        0.3 * rc * (unit(hsh, 8) - 0.5),
    );
    let nu = nucleus(
        ex - nx,
        ey - ny,
        rn,
        rn * 0.9,
        0.0,
        0.15,
        0.0,
        hsh,
        aa,
        salt,
        x,
        y,
    );
    let grain = 0.9 + 0.2 * noise::value(x / 1.2, y / 1.2, salt ^ 5);
    let cyto = c(0.14, (0.5 + 0.2 * unit(hsh, 5)) * grain);
    Some((cell, mixc(cyto, c(nu.1 * 1.5, 0.17), nu.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The neutrophils of one crowd rasterised at `step` µm over a square of
    /// `side` µm: for each cell (by the grid cell holding its centre), its
    /// covered points and the nuclear points among them.
    struct Raster {
        step: f32,
        n: usize,
        cell: Vec<bool>,
        nucleus: Vec<bool>,
        h: Vec<f32>,
    }

    /// One cell alone (the only one present), drawn in its own neighbourhood.
    fn lone_cell(seed: u64, pyknotic: f32) -> Option<Raster> {
        // occupancy 1 at spacing 40: one cell per cell of the grid, far apart.
        let crowd = Crowd {
            spacing: 40.0,
            occ: 1.0,
            pyknotic,
        };
        let (step, side) = (0.1f32, 40.0f32);
        let n = (side / step) as usize;
        let (mut cell, mut nucleus, mut h) =
            (vec![false; n * n], vec![false; n * n], vec![0.0; n * n]);
        let mut any = false;
        for j in 0..n {
            for i in 0..n {
                let (x, y) = (i as f32 * step, j as f32 * step);
                if let Some(k) = neutrophil(x, y, crowd, seed, 0.45, 0.05) {
                    let at = j * n + i;
                    cell[at] = k.cov >= 0.5;
                    nucleus[at] = k.cov >= 0.5 && k.nuc >= 0.5;
                    h[at] = k.k.h;
                    any = true;
                }
            }
        }
        any.then_some(Raster {
            step,
            n,
            cell,
            nucleus,
            h,
        })
    }

    /// Connected groups of `mask` points (4-neighbours) of at least `min` points.
    fn components(mask: &[bool], n: usize, min: usize) -> usize {
        let mut seen = vec![false; mask.len()];
        let mut count = 0;
        for start in 0..mask.len() {
            if !mask[start] || seen[start] {
                continue;
            }
            let (mut stack, mut size) = (vec![start], 0);
            seen[start] = true;
            while let Some(p) = stack.pop() {
                size += 1;
                let (i, j) = (p % n, p / n);
                let mut push = |q: usize| {
                    if mask[q] && !seen[q] {
                        seen[q] = true;
                        stack.push(q);
                    }
                };
                if i > 0 {
                    push(p - 1);
                }
                if i + 1 < n {
                    push(p + 1);
                }
                if j > 0 {
                    push(p - n);
                }
                if j + 1 < n {
                    push(p + n);
                }
            }
            if size >= min {
                count += 1;
            }
        }
        count
    }

    /// Points of `mask` at least `r` points inside it (a square erosion).
    fn eroded(mask: &[bool], n: usize, r: usize) -> Vec<bool> {
        let mut out = vec![false; mask.len()];
        for j in r..n - r {
            for i in r..n - r {
                out[j * n + i] =
                    (j - r..=j + r).all(|jj| (i - r..=i + r).all(|ii| mask[jj * n + ii]));
            }
        }
        out
    }

    #[test]
    fn a_neutrophil_is_8_to_12_um_across_with_two_to_five_lobes_on_pale_cytoplasm() {
        let mut lobes_seen = [0usize; 8];
        let mut cells = 0;
        for seed in 0..60u64 {
            let Some(r) = lone_cell(seed, 0.0) else {
                continue;
            };
            cells += 1;
            let area = r.cell.iter().filter(|&&c| c).count() as f32 * r.step * r.step;
            let diameter = 2.0 * (area / std::f32::consts::PI).sqrt();
            assert!(
                (8.0..=12.5).contains(&diameter),
                "seed {seed}: {diameter} µm across"
            );
            // Lobes: the nucleus without its thin strands (eroded by 0.4 µm; a
            // strand is 0.6 µm wide, a lobe at least 2 µm).
            let lobes = components(&eroded(&r.nucleus, r.n, 4), r.n, 20);
            assert!((2..=5).contains(&lobes), "seed {seed}: {lobes} lobes");
            lobes_seen[lobes] += 1;
            // One nucleus, lobes joined: never scattered dots.
            assert_eq!(
                components(&r.nucleus, r.n, 20),
                1,
                "seed {seed}: nucleus in pieces"
            );
            let nuclear = r.nucleus.iter().filter(|&&c| c).count() as f32 * r.step * r.step;
            assert!(
                (0.1..0.5).contains(&(nuclear / area)),
                "seed {seed}: nucleus {nuclear} of {area} µm2"
            );
            // Pale cytoplasm, dense chromatin.
            let mean = |sel: &dyn Fn(usize) -> bool| {
                let v: Vec<f32> = (0..r.h.len()).filter(|&p| sel(p)).map(|p| r.h[p]).collect();
                v.iter().sum::<f32>() / v.len() as f32
            };
            let cyto = mean(&|p| r.cell[p] && !r.nucleus[p]);
            let nuc = mean(&|p| r.nucleus[p]);
            assert!(
                cyto < 0.2 && nuc > 3.0 * cyto,
                "seed {seed}: h {cyto} / {nuc}"
            );
        }
        assert!(cells >= 50, "{cells} cells");
        // Three lobes the commonest, every count from 2 to 5 drawn.
        assert!(lobes_seen[2..=5].iter().all(|&k| k > 0), "{lobes_seen:?}");
        assert!(
            lobes_seen[3] >= lobes_seen[2] && lobes_seen[3] >= lobes_seen[5],
            "{lobes_seen:?}"
        );
    }

    #[test]
    fn a_dying_neutrophil_has_one_small_round_dense_nucleus() {
        for seed in 0..20u64 {
            let Some(r) = lone_cell(seed, 1.0) else {
                continue;
            };
            assert_eq!(components(&r.nucleus, r.n, 20), 1, "seed {seed}");
            let nuclear = r.nucleus.iter().filter(|&&c| c).count() as f32 * r.step * r.step;
            // Radius 1.5-2.1 µm.
            assert!((6.0..15.0).contains(&nuclear), "seed {seed}: {nuclear} µm2");
        }
    }
}
