//! Pixels from geometry: per-point stain concentrations (cells, fibres, neutrophils),
//! then focus blur, Beer–Lambert colour and sensor noise for a rectangle of pixels.
//!
//! A rectangle's pixels depend only on the slide geometry, the MPP and the
//! rectangle's place in the global pixel grid, never on which band, tile or thread
//! asked for it. It never writes files.

use super::anatomy::{ColumnAt, Geometry, InkColumn, Region, RowAt, Site};
use super::noise::{self, hash2, unit};

/// Synth 1.3's per-channel colour noise, in units of the slide's noise sigma
/// (uniform, so its sd is 1.7 sigma; the shared luminance noise is about 1 sigma).
/// JPEG's subsampled chroma and the area resampling to 1 um/px take most of it
/// away again (docs/realism.md, synth 1.3).
const CHROMA_NOISE: f32 = 6.0;

/// Synth 1.16's stain grain: both dyes' concentrations vary pixel to pixel as real
/// stain does (granules, fibrils, uneven uptake), by value noise of this length
/// (µm), a share of it common to both dyes (a darker or paler speck) and a share
/// each dye's own (a bluer or pinker one). Multiplicative, so glass stays glass.
/// With [`COLOUR_NOISE_DN`] fitted by eye to the real TRAIN parts' colour features
/// (`training/realism/colour_cues.py features DIR --part train`: distinct colours, red-
/// green and grey steps, hue spread; docs/realism.md "Synth 1.16").
const GRAIN_UM: f32 = 0.7;
const GRAIN_SHARED: f32 = 0.55;
const GRAIN_OWN: f32 = 0.35;
/// Synth 1.16's colour noise a few microns across, per channel: a camera's
/// demosaicking and JPEG's subsampled chroma leave real colour noise correlated over
/// a few pixels, where synth 1.3's per-pixel noise is averaged away by the
/// resampling to 1 µm/px. Amplitude (levels at a value-noise extreme) and length (µm).
const COLOUR_NOISE_DN: f32 = 8.0;
const COLOUR_NOISE_UM: f32 = 2.5;

/// Optical density of melanin per RGB channel at unit concentration (synth 1.6):
/// its absorption falls with wavelength as about lambda^-3.48 (Jacques' power law for
/// the absorption of melanosomes), read at 610, 540 and 460 nm and scaled to unit
/// length: brown, darkest in blue, close to DAB's vector.
pub(super) const MELANIN_OD: [f32; 3] = [0.309, 0.472, 0.826];

/// Hematoxylin and eosin concentrations at one point, and melanin (synth 1.6;
/// zero in every earlier generator and wherever a shader does not set it).
#[derive(Debug, Clone, Copy, Default)]
pub struct Conc {
    pub h: f32,
    pub e: f32,
    pub m: f32,
}

pub(super) const fn c(h: f32, e: f32) -> Conc {
    Conc { h, e, m: 0.0 }
}

/// Coverage of an ellipse (semi-axes a, b, rotated by cos/sin) at offset (dx, dy),
/// with an anti-aliased edge `aa` µm wide.
#[inline]
pub(super) fn ellipse(dx: f32, dy: f32, a: f32, b: f32, cs: f32, sn: f32, aa: f32) -> f32 {
    let u = dx * cs + dy * sn;
    let v = -dx * sn + dy * cs;
    let q = (u / a) * (u / a) + (v / b) * (v / b);
    if q > 2.25 {
        return 0.0;
    }
    let r = q.sqrt();
    ((1.0 - r) * b.min(a) / aa + 0.5).clamp(0.0, 1.0)
}

#[inline]
pub(super) fn disc(dx: f32, dy: f32, r: f32, aa: f32) -> f32 {
    let d2 = dx * dx + dy * dy;
    if d2 > (r + aa) * (r + aa) {
        return 0.0;
    }
    ((r - d2.sqrt()) / aa + 0.5).clamp(0.0, 1.0)
}

#[inline]
pub(super) fn mixc(base: Conc, over: Conc, t: f32) -> Conc {
    Conc {
        h: base.h + (over.h - base.h) * t,
        e: base.e + (over.e - base.e) * t,
        m: base.m + (over.m - base.m) * t,
    }
}

/// Renders concentrations; holds what is fixed per slide and resolution.
pub struct Shader<'a> {
    pub geom: &'a Geometry,
    /// Half a (sub)pixel in µm: the anti-aliasing width of edges.
    pub aa: f32,
}

/// A neutrophil field: cells on a jittered grid of `spacing` µm, present with
/// probability `occ`; each a pale disc with 3–5 small dark lobes; `aa` the edge width.
#[inline]
pub(super) fn neutrophil_at(
    x: f32,
    y: f32,
    spacing: f32,
    occ: f32,
    salt: u64,
    aa: f32,
) -> Option<Conc> {
    let (gi, gj) = ((x / spacing).floor() as i64, (y / spacing).floor() as i64);
    let mut best: Option<Conc> = None;
    for j in gj - 1..=gj + 1 {
        for i in gi - 1..=gi + 1 {
            let hsh = hash2(i, j, salt);
            if unit(hsh, 0) >= occ {
                continue;
            }
            let cx = (i as f32 + 0.15 + 0.7 * unit(hsh, 1)) * spacing;
            let cy = (j as f32 + 0.15 + 0.7 * unit(hsh, 2)) * spacing;
            let (dx, dy) = (x - cx, y - cy);
            let rc = 4.2 + 1.0 * unit(hsh, 3);
            if dx * dx + dy * dy > rc * rc {
                continue;
            }
            let h2 = noise::mix(hsh);
            let n = 3 + (h2 % 3) as usize;
            let a0 = unit(h2, 1) * std::f32::consts::TAU;
            let ring = 1.6 + 0.6 * unit(h2, 2);
            let mut lobe = 0.0f32;
            for k in 0..n {
                let a = a0 + k as f32 * (std::f32::consts::TAU * 0.78 / n as f32);
                let (lx, ly) = (cx + ring * a.cos(), cy + ring * a.sin());
                let rl = 1.4 + 0.4 * unit(h2, 3);
                lobe = lobe.max(disc(x - lx, y - ly, rl, aa));
            }
            let cell = mixc(c(0.12, 0.22), c(1.55, 0.25), lobe);
            best = Some(match best {
                Some(b) if b.h > cell.h => b,
                _ => cell,
            });
        }
    }
    best
}

impl<'a> Shader<'a> {
    /// [`neutrophil_at`] with this shader's edge width.
    #[inline]
    pub(super) fn neutrophil(
        &self,
        x: f32,
        y: f32,
        spacing: f32,
        occ: f32,
        salt: u64,
    ) -> Option<Conc> {
        neutrophil_at(x, y, spacing, occ, salt, self.aa)
    }

    /// Keratinocytes on a jittered grid in (x, v): returns cytoplasm/border/nucleus.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn keratinocytes(
        &self,
        x: f32,
        v: f32,
        sx: f32,
        sy: f32,
        nucleus: (f32, f32),
        cyto: Conc,
        nuc_h: f32,
        border_um: f32,
        salt: u64,
    ) -> Conc {
        let (gi, gj) = ((x / sx).floor() as i64, (v / sy).floor() as i64);
        let (mut d1, mut d2) = (f32::MAX, f32::MAX);
        let mut nuc = 0.0f32;
        let mut own = 0u64;
        for j in gj - 1..=gj + 1 {
            for i in gi - 1..=gi + 1 {
                let hsh = hash2(i, j, salt);
                let cx = (i as f32 + 0.2 + 0.6 * unit(hsh, 0)) * sx;
                let cy = (j as f32 + 0.2 + 0.6 * unit(hsh, 1)) * sy;
                let (dx, dy) = (x - cx, v - cy);
                let d = (dx * dx + dy * dy).sqrt();
                if d < d1 {
                    d2 = d1;
                    d1 = d;
                    own = hsh;
                } else if d < d2 {
                    d2 = d;
                }
                let a = nucleus.0 * (0.85 + 0.3 * unit(hsh, 2)) * self.geom.cell_scale;
                let b = a * nucleus.1 * (0.85 + 0.25 * unit(hsh, 3));
                let ang = unit(noise::mix(hsh), 0) * std::f32::consts::PI;
                let (sn, cs) = ang.sin_cos();
                nuc = nuc.max(ellipse(dx, dy, a, b, cs, sn, self.aa));
            }
        }
        let tone = 0.85 + 0.3 * unit(own, 2);
        let mut out = c(cyto.h * tone, cyto.e * tone);
        // Intercellular spaces (the "prickles" between spinous cells).
        if d2 - d1 < border_um {
            let k = 0.7 + 0.2 * (d2 - d1) / border_um;
            out = c(out.h * k, out.e * k);
        }
        if nuc > 0.0 {
            let chrom = 0.7 + 0.6 * noise::value(x / 1.1, v / 1.1, self.geom.salt ^ 0x77);
            out = mixc(out, c(nuc_h * chrom, 0.22), nuc);
        }
        out
    }

    /// Concentrations at (x, y) µm (tests; renderers use [`Self::shade_in`]).
    #[cfg(test)]
    pub fn shade(&self, x: f32, y: f32) -> Conc {
        self.shade_in(&self.geom.column_at(x), &self.geom.row_at(y))
    }

    /// Concentrations at (`column.x`, `row.y`) µm, with the column's and the row's parts of the
    /// anatomy computed by the caller once for many points
    /// ([`Geometry::column_at`], [`Geometry::row_at`], [`Geometry::locate_in`]).
    pub fn shade_in(&self, column: &ColumnAt, row: &RowAt) -> Conc {
        let (g, x, y) = (self.geom, column.x, row.y);
        let site = g.locate_in(column, row);
        if g.generator.is_v1() {
            return self.shade_v1(&site, x, y);
        }
        let mut k = self.shade_site(&site, x, y);
        // Calibration to the real scanner fixture (CMU-1): its collagen and
        // cytoplasm are light, its nuclei about 0.9 hematoxylin.
        k.h *= 0.8;
        k.e *= 0.55;
        if site.region != Region::Glass {
            let f = g.fold_factor(x, y);
            k.h *= f;
            k.e *= f;
        }
        k
    }

    pub(super) fn shade_site(&self, s: &Site, x: f32, y: f32) -> Conc {
        let g = self.geom;
        let salt = g.salt;
        match s.region {
            Region::Glass => c(0.0, 0.0),
            Region::Corneum | Region::Munro => {
                let t = s.dc;
                // Loose basket-weave above, compact in the lowest few µm.
                let phase = (t + 5.0 * noise::fbm2(x / 30.0, t / 6.0, salt ^ 1)) / 3.6;
                let stripe = 0.5 + 0.5 * (phase * std::f32::consts::TAU).sin();
                // Lamellae break up and fray (basket-weave), never perfect lines.
                let breaks =
                    noise::smoothstep(0.3, 0.6, noise::value(x / 14.0, t / 3.0, salt ^ 0x1F));
                let weave = 0.08 + 0.45 * noise::smoothstep(0.45, 0.85, stripe) * breaks;
                let compact = noise::smoothstep(s.corneum - 5.0, s.corneum - 1.5, t);
                let para = s.pk;
                let e = weave * (1.0 - para)
                    + (0.5 + 0.12 * noise::value(x / 6.0, y / 3.0, salt ^ 2)) * para;
                let mut out = mixc(c(0.04, e), c(0.08, 1.0), compact * (1.0 - 0.5 * para));
                if para > 0.05 {
                    // Parakeratosis: flat nuclei kept in the corneum.
                    let (sx, sy) = (13.0, 4.5);
                    let (gi, gj) = ((x / sx).floor() as i64, (t / sy).floor() as i64);
                    for j in gj - 1..=gj + 1 {
                        for i in gi - 1..=gi + 1 {
                            let hsh = hash2(i, j, salt ^ 3);
                            if unit(hsh, 0) > para * 0.75 {
                                continue;
                            }
                            let cx = (i as f32 + 0.5 + 0.4 * (unit(hsh, 1) - 0.5)) * sx;
                            let cy = (j as f32 + 0.5 + 0.4 * (unit(hsh, 2) - 0.5)) * sy;
                            let cov = ellipse(
                                x - cx,
                                t - cy,
                                3.8,
                                1.1,
                                1.0,
                                0.12 * (unit(hsh, 3) - 0.5),
                                self.aa,
                            );
                            if cov > 0.0 {
                                out = mixc(out, c(1.05, 0.35), cov);
                            }
                        }
                    }
                }
                if s.region == Region::Munro {
                    out = c(out.h * 0.5, out.e * 0.5);
                    if let Some(n) = self.neutrophil(x, y, 8.0, 0.9, salt ^ 4) {
                        out = n;
                    }
                } else if s.neutro > 0.3 {
                    if let Some(n) = self.neutrophil(x, y, 11.0, 0.35 * s.neutro, salt ^ 5) {
                        out = mixc(out, n, 0.9);
                    }
                }
                out
            }
            Region::Pustule => {
                let fluid = c(0.03, 0.1 + 0.05 * noise::value(x / 8.0, y / 8.0, salt ^ 6));
                // Two interleaved grids give the dense packing of a pustule.
                let a = self.neutrophil(x, y, 9.0, 0.92, salt ^ 7);
                let b = self.neutrophil(x + 4.5, y + 4.5, 9.0, 0.6, salt ^ 8);
                match (a, b) {
                    (Some(a), Some(b)) => {
                        if a.h >= b.h {
                            a
                        } else {
                            b
                        }
                    }
                    (Some(a), None) => a,
                    (None, Some(b)) => b,
                    (None, None) => fluid,
                }
            }
            Region::Granular => {
                let mut out = self.keratinocytes(
                    x,
                    s.v,
                    13.0,
                    4.5,
                    (4.6, 0.34),
                    c(0.32, 0.42),
                    1.1,
                    0.5,
                    salt ^ 9,
                );
                let gran = noise::value(x / 0.9, y / 0.9, salt ^ 10);
                if gran > 0.66 {
                    out.h += 1.1 * noise::smoothstep(0.66, 0.8, gran);
                }
                out
            }
            Region::Spinous | Region::Kogoj => {
                let border = if s.region == Region::Kogoj { 3.0 } else { 0.6 };
                let mut out = self.keratinocytes(
                    x,
                    s.v,
                    14.0,
                    12.5,
                    (3.7, 0.78),
                    c(0.2, 0.5),
                    1.1,
                    border,
                    salt ^ 11,
                );
                if s.region == Region::Kogoj {
                    out = c(out.h * 0.5, out.e * 0.5);
                    if let Some(n) = self.neutrophil(x, y, 10.0, 0.7, salt ^ 12) {
                        out = n;
                    }
                }
                out
            }
            Region::Basal => {
                // Palisaded nuclei, long axis across the junction.
                let eps = 1.5;
                let col_v = s.v;
                let gx = s.sdf - self.sdf_at(x + eps, y);
                let gy = s.sdf - self.sdf_at_v(x, col_v + eps, y + eps);
                let n = (gx * gx + gy * gy).sqrt().max(1e-3);
                let (cs, sn) = (gx / n, gy / n);
                let (sx, sy) = (7.5, 7.5);
                let (gi, gj) = ((x / sx).floor() as i64, (y / sy).floor() as i64);
                let mut nuc = 0.0f32;
                for j in gj - 1..=gj + 1 {
                    for i in gi - 1..=gi + 1 {
                        let hsh = hash2(i, j, salt ^ 13);
                        if unit(hsh, 0) > 0.85 {
                            continue;
                        }
                        let cx = (i as f32 + 0.25 + 0.5 * unit(hsh, 1)) * sx;
                        let cy = (j as f32 + 0.25 + 0.5 * unit(hsh, 2)) * sy;
                        let a = 4.4 * g.cell_scale * (0.9 + 0.2 * unit(hsh, 3));
                        nuc = nuc.max(ellipse(x - cx, y - cy, a, 2.5, cs, sn, self.aa));
                    }
                }
                let chrom = 0.75 + 0.5 * noise::value(x / 1.1, y / 1.1, salt ^ 0x77);
                mixc(c(0.3, 0.36), c(1.4 * chrom, 0.2), nuc)
            }
            Region::Cleft => {
                let mut out = c(0.01, 0.04);
                let (sp, occ) = (15.0, 0.55);
                let (gi, gj) = ((x / sp).floor() as i64, (y / sp).floor() as i64);
                for j in gj - 1..=gj + 1 {
                    for i in gi - 1..=gi + 1 {
                        let hsh = hash2(i, j, salt ^ 14);
                        if unit(hsh, 0) > occ {
                            continue;
                        }
                        let cx = (i as f32 + 0.2 + 0.6 * unit(hsh, 1)) * sp;
                        let cy = (j as f32 + 0.2 + 0.6 * unit(hsh, 2)) * sp;
                        let rc = 4.8 + 1.8 * unit(hsh, 3);
                        let cell = disc(x - cx, y - cy, rc, self.aa);
                        if cell > 0.0 {
                            // Rounded cell, condensed eosinophilic cytoplasm, dark nucleus.
                            let nucl = disc(x - cx, y - cy, rc * 0.45, self.aa);
                            let k = mixc(c(0.18, 0.95), c(1.75, 0.3), nucl);
                            out = mixc(out, k, cell);
                        }
                    }
                }
                if let Some(n) = self.neutrophil(x, y, 17.0, 0.2, salt ^ 15) {
                    out = n;
                }
                out
            }
            Region::Papillary | Region::Reticular | Region::Fat => {
                let mut out = if s.region == Region::Fat {
                    self.fat(x, y)
                } else if s.region == Region::Papillary {
                    // Loose, fine, wavy fibres in all directions.
                    let fib = noise::fbm2(x / 5.0 + 0.8 * (y / 7.0).sin(), y / 2.5, salt ^ 16);
                    c(0.03, 0.12 + 0.38 * noise::smoothstep(0.45, 0.75, fib))
                } else {
                    self.collagen(x, y)
                };
                if s.region != Region::Fat {
                    if let Some(n) = self.fibroblast(x, y, s.region == Region::Papillary) {
                        out = mixc(out, c(1.25, 0.2), n);
                    }
                    // Sparse lymphocytes in the superficial dermis, more under lesions.
                    if s.region == Region::Papillary {
                        let occ = 0.04 + 0.25 * s.pk;
                        let (sp, salt2) = (22.0, salt ^ 17);
                        let (gi, gj) = ((x / sp).floor() as i64, (y / sp).floor() as i64);
                        let hsh = hash2(gi, gj, salt2);
                        if unit(hsh, 0) < occ {
                            let cx = (gi as f32 + 0.3 + 0.4 * unit(hsh, 1)) * sp;
                            let cy = (gj as f32 + 0.3 + 0.4 * unit(hsh, 2)) * sp;
                            let cov = disc(x - cx, y - cy, 3.0, self.aa);
                            out = mixc(out, c(1.5, 0.15), cov);
                        }
                        if s.neutro > 0.2 {
                            if let Some(n) = self.neutrophil(x, y, 16.0, 0.25 * s.neutro, salt ^ 18)
                            {
                                out = n;
                            }
                        }
                    }
                }
                if s.neh {
                    let occ = 0.6 * (1.0 - noise::smoothstep(4.0, 45.0, s.tubule_dist)) + 0.06;
                    if let Some(n) = self.neutrophil(x, y, 11.0, occ, salt ^ 19) {
                        out = n;
                    }
                }
                out
            }
            Region::VesselWall => {
                let v = &g.vessels[s.item as usize];
                let ang = (y - v.y).atan2(x - v.x);
                let sectors = ((v.rx + v.ry) * std::f32::consts::PI / 9.0).max(4.0);
                let sec = ((ang / std::f32::consts::TAU + 0.5) * sectors).floor();
                let hsh = hash2(s.item as i64, sec as i64, salt ^ 20);
                let frac = (ang / std::f32::consts::TAU + 0.5) * sectors - sec;
                let mut out = c(0.08, 0.55 + 0.15 * unit(hsh, 1));
                if unit(hsh, 0) < 0.5 && (frac - 0.5).abs() < 0.3 {
                    out = c(1.2, 0.25);
                }
                out
            }
            Region::VesselLumen => {
                let v = &g.vessels[s.item as usize];
                let occ = if v.tortuous { 0.8 } else { 0.45 };
                let sp = 7.0;
                let (gi, gj) = ((x / sp).floor() as i64, (y / sp).floor() as i64);
                let mut out = c(0.0, 0.03);
                for j in gj - 1..=gj + 1 {
                    for i in gi - 1..=gi + 1 {
                        let hsh = hash2(i, j, salt ^ 21);
                        if unit(hsh, 0) > occ {
                            continue;
                        }
                        let cx = (i as f32 + 0.2 + 0.6 * unit(hsh, 1)) * sp;
                        let cy = (j as f32 + 0.2 + 0.6 * unit(hsh, 2)) * sp;
                        let d = noise::hypot(x - cx, y - cy);
                        let cov = disc(x - cx, y - cy, 3.6, self.aa);
                        if cov > 0.0 {
                            let pale = if d < 1.6 { 0.75 } else { 1.0 };
                            out = mixc(out, c(0.02, 1.25 * pale), cov);
                        }
                    }
                }
                out
            }
            Region::CoilStroma => {
                let coil = &g.coils[s.item as usize];
                let mut out = c(
                    0.03,
                    0.18 + 0.12 * noise::value(x / 6.0, y / 6.0, salt ^ 22),
                );
                // Basement membranes: a thin pink rim around each tubule.
                for t in &coil.tubules {
                    let d = noise::hypot(x - t.x, y - t.y) - t.r;
                    if (0.0..2.0).contains(&d) {
                        out = c(0.06, 0.55);
                    }
                }
                if coil.inflamed {
                    if let Some(n) = self.neutrophil(x, y, 10.0, 0.6, salt ^ 23) {
                        out = n;
                    }
                }
                out
            }
            // Synth 0.3 draws no follicles (synth 1.9's): never reached.
            Region::HairShaft | Region::RootSheath | Region::FollicleSheath | Region::Sebaceous => {
                self.collagen(x, y)
            }
            Region::TubuleCells | Region::TubuleLumen => {
                let coil = &g.coils[s.item as usize];
                let t = &coil.tubules[s.sub as usize];
                let (dx, dy) = (x - t.x, y - t.y);
                if s.region == Region::TubuleLumen {
                    let mut out = c(0.0, 0.02);
                    if coil.inflamed {
                        if let Some(n) = self.neutrophil(x, y, 9.0, 0.35, salt ^ 24) {
                            out = n;
                        }
                    }
                    return out;
                }
                let mut out = if t.duct { c(0.3, 0.45) } else { c(0.14, 0.36) };
                // Nuclei sit towards the basal side of the cuboidal cells.
                let rm = t.lumen + 0.62 * (t.r - t.lumen);
                let ang = dy.atan2(dx);
                let n = ((std::f32::consts::TAU * rm) / 8.0).round().max(5.0);
                let sec = ((ang / std::f32::consts::TAU + 0.5) * n).floor();
                let hsh = hash2(s.item as i64 * 1000 + s.sub as i64, sec as i64, salt ^ 25);
                let ac = (sec + 0.5) / n * std::f32::consts::TAU - std::f32::consts::PI;
                let (nx, ny) = (t.x + rm * ac.cos(), t.y + rm * ac.sin());
                // Each cell its own shade; a faint border between neighbours.
                let tone = 0.8 + 0.4 * unit(hsh, 1);
                out = c(out.h * tone, out.e * tone);
                let frac = (ang / std::f32::consts::TAU + 0.5) * n - sec;
                if !(0.06..0.94).contains(&frac) {
                    out = c(out.h * 0.7, out.e * 0.7);
                }
                let pyk = coil.inflamed && unit(hsh, 0) < 0.3;
                let nr = if pyk { 1.9 } else { 2.7 };
                if coil.inflamed {
                    // Vacuolar change of the coil epithelium.
                    let vac = noise::value(x / 2.2, y / 2.2, salt ^ 26);
                    if vac > 0.6 {
                        out = c(out.h * 0.25, out.e * 0.25);
                    }
                }
                let cov = disc(x - nx, y - ny, nr, self.aa);
                if cov > 0.0 {
                    out = mixc(out, c(if pyk { 1.9 } else { 1.25 }, 0.25), cov);
                }
                if coil.inflamed {
                    if let Some(nn) = self.neutrophil(x, y, 13.0, 0.25, salt ^ 27) {
                        out = nn;
                    }
                }
                out
            }
        }
    }

    fn sdf_at(&self, x: f32, y: f32) -> f32 {
        let s = self.geom.locate(x, y);
        s.sdf
    }

    fn sdf_at_v(&self, x: f32, _v: f32, y: f32) -> f32 {
        self.sdf_at(x, y)
    }

    /// Reticular collagen: wavy eosinophilic bundles with clefts between them.
    #[inline]
    fn collagen(&self, x: f32, y: f32) -> Conc {
        let salt = self.geom.salt;
        let warp = 14.0 * (noise::value(x / 160.0, y / 160.0, salt ^ 30) - 0.5)
            + 5.0 * (x / 45.0 + 3.0 * noise::value(x / 90.0, y / 70.0, salt ^ 31)).sin();
        let n = noise::fbm2(x / 55.0, (y + warp) / 10.0, salt ^ 32);
        let bundle = noise::smoothstep(0.36, 0.5, n);
        let tone = 0.6 + 0.35 * noise::value(x / 25.0, (y + warp) / 5.0, salt ^ 33);
        c(0.04 * bundle + 0.01, 0.04 + 0.85 * tone * bundle)
    }

    /// Subcutaneous fat: large empty cells with thin membranes.
    #[inline]
    fn fat(&self, x: f32, y: f32) -> Conc {
        let sp = self.geom.adipocyte_um;
        let salt = self.geom.salt ^ 34;
        let (gi, gj) = ((x / sp).floor() as i64, (y / sp).floor() as i64);
        let (mut d1, mut d2) = (f32::MAX, f32::MAX);
        for j in gj - 1..=gj + 1 {
            for i in gi - 1..=gi + 1 {
                let hsh = hash2(i, j, salt);
                let cx = (i as f32 + 0.15 + 0.7 * unit(hsh, 0)) * sp;
                let cy = (j as f32 + 0.15 + 0.7 * unit(hsh, 1)) * sp;
                let d = noise::hypot(x - cx, y - cy);
                if d < d1 {
                    d2 = d1;
                    d1 = d;
                } else if d < d2 {
                    d2 = d;
                }
            }
        }
        let m = 1.0 - noise::smoothstep(0.6, 1.8, (d2 - d1) * 0.5);
        c(0.03 * m, 0.5 * m)
    }

    /// Spindle fibroblast nuclei lying along the collagen.
    #[inline]
    fn fibroblast(&self, x: f32, y: f32, papillary: bool) -> Option<f32> {
        let (sx, sy, occ) = if papillary {
            (24.0, 18.0, 0.45)
        } else {
            (34.0, 24.0, 0.55)
        };
        let salt = self.geom.salt ^ 35;
        let (gi, gj) = ((x / sx).floor() as i64, (y / sy).floor() as i64);
        let mut best = 0.0f32;
        for j in gj - 1..=gj + 1 {
            for i in gi - 1..=gi + 1 {
                let hsh = hash2(i, j, salt);
                if unit(hsh, 0) > occ {
                    continue;
                }
                let cx = (i as f32 + 0.5 * unit(hsh, 1) + 0.25) * sx;
                let cy = (j as f32 + 0.5 * unit(hsh, 2) + 0.25) * sy;
                let ang = (unit(hsh, 3) - 0.5) * if papillary { 2.0 } else { 0.6 };
                let (sn, cs) = ang.sin_cos();
                let a = 6.0 + 3.0 * unit(noise::mix(hsh), 0);
                best = best.max(ellipse(x - cx, y - cy, a, 1.3, cs, sn, self.aa));
            }
        }
        (best > 0.0).then_some(best)
    }
}

/// Per-slide rendering settings fixed by the MPP.
#[derive(Debug, Clone, Copy)]
pub struct Raster {
    pub mpp: f64,
    /// Sub-samples per pixel side (anti-aliasing at coarse MPP).
    pub ss: u32,
}

impl Raster {
    pub fn new(mpp: f64) -> Raster {
        Raster {
            mpp,
            ss: ((mpp / 0.6).ceil() as u32).clamp(1, 3),
        }
    }
}

fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    if sigma < 0.3 {
        return vec![1.0];
    }
    let r = (3.0 * sigma).ceil() as i32;
    let mut k: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= s);
    k
}

fn blur_plane(src: &[f32], w: usize, h: usize, k: &[f32], tmp: &mut Vec<f32>, dst: &mut Vec<f32>) {
    let r = k.len() / 2;
    tmp.clear();
    tmp.resize(w * h, 0.0);
    // Tap by tap along the row, so the loop over x vectorises; each output still
    // sums its taps from the first to the last, as a loop per output would.
    let inner = w.saturating_sub(2 * r);
    for y in 0..h {
        let row = &src[y * w..(y + 1) * w];
        let out = &mut tmp[y * w + r..][..inner];
        for (i, kv) in k.iter().enumerate() {
            for (o, v) in out.iter_mut().zip(&row[i..i + inner]) {
                *o += v * kv;
            }
        }
    }
    dst.clear();
    dst.resize(w * h, 0.0);
    for y in r..h.saturating_sub(r) {
        for (i, kv) in k.iter().enumerate() {
            let srow = &tmp[(y + i - r) * w..(y + i - r + 1) * w];
            let drow = &mut dst[y * w..(y + 1) * w];
            for x in 0..w {
                drow[x] += srow[x] * kv;
            }
        }
    }
}

/// Renders the `w × h` pixels whose top-left is global pixel (`x0`, `y0`) of the
/// grid at `raster.mpp`, as RGB8 rows.
pub fn render_rgb(
    geom: &Geometry,
    raster: Raster,
    x0: i64,
    y0: i64,
    w: usize,
    h: usize,
) -> Vec<u8> {
    let mpp = raster.mpp as f32;
    let sigma = (geom.blur_um / mpp).max(0.0);
    let kernel = gaussian_kernel(sigma);
    let band = geom.blur_band.as_ref();
    let wide = band.map(|b| gaussian_kernel(b.sigma_um / mpp));
    let margin = kernel.len().max(wide.as_ref().map_or(0, |k| k.len())) / 2;
    let (bw, bh) = (w + 2 * margin, h + 2 * margin);
    let ss = raster.ss as usize;
    let sub = mpp / ss as f32;
    let shader = Shader {
        geom,
        aa: (sub * 0.5).max(0.1),
    };
    let mut ch = vec![0.0f32; bw * bh];
    let mut ce = vec![0.0f32; bw * bh];
    // Melanin only where the slide has any (synth 1.6): earlier generators and
    // unpigmented slides skip its plane, and their pixels stay as they were. Synth
    // 1.11 draws red cells' own blue-green absorption on that plane too.
    let pigmented = geom.melanin > 0.0 || geom.generator >= super::Generator::V1_11;
    let mut cm = vec![0.0f32; if pigmented { bw * bh } else { 0 }];
    let norm = 1.0 / (ss * ss) as f32;
    // Every row shades the same sample columns: their share of the anatomy once.
    let columns: Vec<ColumnAt> = (0..bw)
        .flat_map(|i| {
            let px = x0 + i as i64 - margin as i64;
            (0..ss).map(move |si| px as f32 * mpp + (si as f32 + 0.5) * sub)
        })
        .map(|x| geom.column_at(x))
        .collect();
    for j in 0..bh {
        let py = y0 + j as i64 - margin as i64;
        let rows: Vec<RowAt> = (0..ss)
            .map(|sj| geom.row_at(py as f32 * mpp + (sj as f32 + 0.5) * sub))
            .collect();
        for i in 0..bw {
            let (mut sh, mut se, mut sm) = (0.0, 0.0, 0.0);
            for row in &rows {
                for column in &columns[i * ss..][..ss] {
                    let k = shader.shade_in(column, row);
                    sh += k.h;
                    se += k.e;
                    sm += k.m;
                }
            }
            ch[j * bw + i] = sh * norm;
            ce[j * bw + i] = se * norm;
            if pigmented {
                cm[j * bw + i] = sm * norm;
            }
        }
    }
    let (mut tmp, mut bh_buf, mut be_buf, mut bm_buf) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (ph, pe, pm) = if kernel.len() > 1 {
        blur_plane(&ch, bw, bh, &kernel, &mut tmp, &mut bh_buf);
        blur_plane(&ce, bw, bh, &kernel, &mut tmp, &mut be_buf);
        if pigmented {
            blur_plane(&cm, bw, bh, &kernel, &mut tmp, &mut bm_buf);
        }
        (&bh_buf, &be_buf, &bm_buf)
    } else {
        (&ch, &ce, &cm)
    };
    // Out-of-focus band: blend towards a heavily blurred copy where it applies.
    let mut wide_planes = None;
    if let (Some(b), Some(k)) = (band, wide.as_ref()) {
        let x_lo = x0 as f32 * mpp;
        let x_hi = (x0 as f32 + w as f32) * mpp;
        if x_hi > b.x0 - 50.0 && x_lo < b.x1 + 50.0 && k.len() > 1 {
            let (mut wh, mut we, mut wm) = (Vec::new(), Vec::new(), Vec::new());
            blur_plane(&ch, bw, bh, k, &mut tmp, &mut wh);
            blur_plane(&ce, bw, bh, k, &mut tmp, &mut we);
            if pigmented {
                blur_plane(&cm, bw, bh, k, &mut tmp, &mut wm);
            }
            wide_planes = Some((wh, we, wm));
        }
    }
    let stain = &geom.stain;
    let v1 = geom.generator.is_v1();
    let mut out = vec![0u8; w * h * 3];
    let nsalt = geom.salt ^ 0xA5A5;
    let mut field = None;
    // Synth 1.16's grain and colour noise; not over a real slide's own texture.
    let grain = geom.generator.has_stain_grain() && geom.texture.is_none();
    // Their lattices over this rectangle (pixel centres), hashed once.
    let lattice = |um: f32, salt: u64| {
        let (lo_x, lo_y) = ((x0 as f32 + 0.5) * mpp / um, (y0 as f32 + 0.5) * mpp / um);
        let hi_x = ((x0 + w as i64) as f32 - 0.5) * mpp / um;
        let hi_y = ((y0 + h as i64) as f32 - 0.5) * mpp / um;
        noise::Lattice3::covering(lo_x, hi_x, lo_y, hi_y, geom.salt ^ salt)
    };
    let (grain_noise, colour_noise) = if grain {
        (
            Some(lattice(GRAIN_UM, 0x6A11)),
            Some(lattice(COLOUR_NOISE_UM, 0x6B00)),
        )
    } else {
        (None, None)
    };
    let ink_columns: Vec<Option<InkColumn>> = (0..w)
        .map(|i| geom.ink_column(((x0 + i as i64) as f32 + 0.5) * mpp))
        .collect();
    let inked = ink_columns.first().is_some_and(Option::is_some);
    for j in 0..h {
        let py = y0 + j as i64;
        let y = (py as f32 + 0.5) * mpp;
        let grain_row = grain_noise.as_ref().map(|n| n.row(y / GRAIN_UM));
        let colour_row = colour_noise.as_ref().map(|n| n.row(y / COLOUR_NOISE_UM));
        let marked = geom.section_marks_row(y);
        let row = inked.then(|| geom.row_at(y));
        for i in 0..w {
            let px = x0 + i as i64;
            let x = (px as f32 + 0.5) * mpp;
            let at = (j + margin) * bw + i + margin;
            let (mut hc, mut ec) = (ph[at], pe[at]);
            let mut mc = if pigmented { pm[at] } else { 0.0 };
            if let (Some((wh, we, wm)), Some(b)) = (&wide_planes, band) {
                let t = noise::smoothstep(b.x0 - 50.0, b.x0 + 50.0, x)
                    * (1.0 - noise::smoothstep(b.x1 - 50.0, b.x1 + 50.0, x));
                hc += (wh[at] - hc) * t;
                ec += (we[at] - ec) * t;
                if pigmented {
                    mc += (wm[at] - mc) * t;
                }
            }
            // (Glass, where both are 0, has no grain to read.)
            let stained = hc > 0.0 || ec > 0.0;
            if let (Some(n), Some(row), true) = (&grain_noise, &grain_row, stained) {
                let [shared, own_h, own_e] = n.at(row, x / GRAIN_UM).map(|v| v - 0.5);
                let shared = GRAIN_SHARED * shared;
                hc *= (1.0 + 2.0 * (shared + GRAIN_OWN * own_h)).max(0.0);
                ec *= (1.0 + 2.0 * (shared + GRAIN_OWN * own_e)).max(0.0);
            }
            let ink = match (&ink_columns[i], &row) {
                (Some(c), Some(r)) => geom.ink_od_in(x, y, c, r),
                _ => [0.0; 3],
            };
            let pen = geom.pen_od(x, y);
            let thick = if marked {
                geom.chatter_gain(x, y) * geom.section_kept(x, y)
            } else {
                1.0
            };
            let mut extra = [pen[0] + ink[0], pen[1] + ink[1], pen[2] + ink[2]];
            if pigmented {
                for (v, m) in extra.iter_mut().zip(MELANIN_OD) {
                    *v += mc * thick * m;
                }
            }
            let mut rgb = stain.rgb(hc * thick, ec * thick, extra);
            if let Some(fields) = &geom.scan {
                // `Geometry::scan_gain`, with the field's gains kept while the row
                // stays in it.
                let (cell, fu, fv) = fields.locate(x, y);
                let gains = match field {
                    Some((at, g)) if at == cell => g,
                    _ => {
                        let g = fields.gains(cell, geom.salt);
                        field = Some((cell, g));
                        g
                    }
                };
                for (v, l) in rgb.iter_mut().zip(fields.light(gains, fu, fv)) {
                    *v *= l;
                }
            }
            let hsh = hash2(px, py, nsalt);
            let lum = (unit(hsh, 0) + unit(hsh, 1) - 1.0) * geom.noise_sigma * 2.4;
            if v1 {
                // Each channel its own colour noise (synth 1.3): a camera's three
                // colour planes are read out and demosaiced apart.
                let hc = noise::mix(hsh);
                let colour = match (&colour_noise, &colour_row) {
                    (Some(n), Some(row)) => n
                        .at(row, x / COLOUR_NOISE_UM)
                        .map(|v| 2.0 * COLOUR_NOISE_DN * (v - 0.5)),
                    _ => [0.0; 3],
                };
                for c in 0..3 {
                    let n = lum
                        + (unit(hc, c as u32) - 0.5) * geom.noise_sigma * CHROMA_NOISE
                        + colour[c];
                    out[(j * w + i) * 3 + c] = (rgb[c] + n).round().clamp(0.0, 255.0) as u8;
                }
                continue;
            }
            for c in 0..3 {
                let n = lum + (unit(hsh, 2 + (c as u32 % 2)) - 0.5) * geom.noise_sigma;
                out[(j * w + i) * 3 + c] = (rgb[c] + n).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{Artefacts, SlideClass};

    #[test]
    fn a_region_renders_the_same_whole_or_in_pieces() {
        let artefacts = Artefacts {
            pen: false,
            fold: true,
            blur: true,
        };
        let g = Geometry::build(SlideClass::PustularPsoriasis, 2, 1500.0, 1200.0, &artefacts);
        let raster = Raster::new(1.0);
        let whole = render_rgb(&g, raster, 100, 80, 64, 48);
        let top = render_rgb(&g, raster, 100, 80, 64, 20);
        let bottom = render_rgb(&g, raster, 100, 100, 64, 28);
        assert_eq!(&whole[..64 * 20 * 3], &top[..]);
        assert_eq!(&whole[64 * 20 * 3..], &bottom[..]);
        let left = render_rgb(&g, raster, 100, 80, 30, 48);
        for r in 0..48 {
            assert_eq!(
                &whole[r * 64 * 3..r * 64 * 3 + 90],
                &left[r * 90..(r + 1) * 90]
            );
        }
    }
}
