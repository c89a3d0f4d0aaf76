//! `synth --implant-into SLIDE`: lesions drawn into a real normal-skin slide.
//!
//! The slide's level 0 is read through the product's reader, its stain measured
//! (Macenko on its tissue pixels), and its anatomy found on a 2 µm grid: tissue
//! (the product's tissue mask), epidermis (the hematoxylin-dense tissue, by Otsu on
//! the smoothed hematoxylin concentration), distances to the glass and to the
//! epidermis, and the inward normal of the surface. Lesions go where that anatomy
//! fits: subcorneal pustules just under the surface of the epidermis, acantholytic
//! clefts in the upper epidermis, inflamed eccrine coils in the dermis, psoriasiform
//! change (elongated rete, papillary capillaries, parakeratosis) along a stretch of
//! epidermis. Sham structures (normal coils, lymphocyte clusters, patches of
//! drawn keratinocytes) are implanted on every slide, so a drawn look never means
//! a lesion. Drawing is in optical density with the slide's own stain vectors and
//! concentration range; pixels no implant touches are the slide's own bytes (the
//! default output is lossless Deflate). Masks, truth.json and the QuPath GeoJSON
//! follow `synth`'s layout; the slide id is `<class>-implant-<seed>`.
//!
//! Synth 1.8 (the default generator) draws the implants' neutrophils as synth 1.4
//! draws its own (`cells`: 2-5 lobes of varied size, pale granular cytoplasm, some
//! dying), coils with irregular cells, and sees everything drawn through the
//! scanner's optics (a Gaussian of `optics_um`) before it is blended in. Earlier
//! generators (`--generator 1.4` to `1.7`) draw the implants of model 2's training
//! sets, byte for byte.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use super::anatomy::{EPIDERMIS, TISSUE};
use super::cells::{self, acantholytic_field, CellAt, Crowd};
use super::noise::{self, hash2, unit};
use super::output::{prepare_dir, write_manifest, SlideFiles};
use super::render::{c, disc, ellipse, mixc, neutrophil_at, Conc};
use super::render_v1::nucleus;
use super::truth::{finding_records, round6, MaskGrid, Structures, Truth};
use super::{
    Artefacts, Finding, Generator, SlideClass, SlideOutput, StainMatrix, SynthError, Variant,
};
use crate::real_split::{Part, RealSplit};
use crate::slide::writer::{PyramidWriter, TileCompression, WriterOptions};
use crate::slide::{self, Mpp, OpenOptions, Rect};
use crate::tissue::{self, TissueOptions};

/// Most level-0 pixels read into memory (the implanted region is held whole).
pub const MAX_PIXELS: u64 = 100_000_000;
/// Side of the anatomy grid, µm.
const CELL_UM: f64 = 2.0;
/// Concentration scale the drawing functions use (synth 1.0's: CMU-1's p95).
pub(super) const DRAW_H95: f32 = 0.82;
pub(super) const DRAW_E95: f32 = 0.98;
/// Synth 1.8: the nuclear hematoxylin the implants' neutrophils are drawn with
/// (`cells::neutrophil` draws chromatin 2.0-2.6 times it, 1.2-1.6 on the drawing's
/// scale, where the slide's 95th hematoxylin percentile is 0.82: neutrophils are
/// the darkest nuclei of a section).
const NEUTROPHIL_NUC_H: f32 = 0.62;
/// Synth 1.8: the default sigma of the optics the drawn layer is seen through, µm.
pub const OPTICS_UM: f32 = 0.5;

/// What `synth --implant-into` needs.
#[derive(Debug, Clone)]
pub struct ImplantOptions {
    pub slide: PathBuf,
    /// One class for every slide, or the mixed proportions of [`SlideClass::for_seed`].
    pub class: Option<SlideClass>,
    pub seed: u64,
    pub count: u64,
    /// Overrides (or supplies) the slide's MPP.
    pub mpp: Option<f64>,
    /// Implant into this part of the real split only (the output is that crop).
    pub part: Option<Part>,
    pub out: PathBuf,
    pub mask_downsample: u32,
    /// JPEG at this quality instead of lossless Deflate.
    pub jpeg_quality: Option<u8>,
    /// 1.8 (the default) draws synth 1.4's lesion cells through the optics;
    /// 1.4-1.7 the implants of model 2's training sets.
    pub generator: Generator,
    /// Synth 1.8: sigma of the Gaussian the drawn layer is blurred by, µm (0: none).
    pub optics_um: f32,
}

/// The slide's stain, measured by Macenko's method on its tissue pixels.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MeasuredStain {
    pub hematoxylin: [f32; 3],
    pub eosin: [f32; 3],
    /// Light through the glass, RGB.
    pub glass: [f32; 3],
    /// Concentration percentiles on tissue (50th, 95th).
    pub h_p50_p95: [f32; 2],
    pub e_p50_p95: [f32; 2],
}

/// One implanted structure, as written into truth.json.
#[derive(Debug, Clone, Serialize)]
pub struct ImplantRecord {
    pub kind: &'static str,
    /// Which finding's mask it draws, or none for a sham.
    pub finding: Option<&'static str>,
    /// Centre in level-0 µm of the written slide.
    pub centre_um: [f32; 2],
    /// Half-extent along and across the local surface, µm.
    pub semi_axes_um: [f32; 2],
    /// Direction of the surface at the centre, degrees.
    pub angle_deg: f32,
    /// Nothing outside this radius (µm) from the centre is drawn.
    pub reach_um: f32,
}

/// The `implant` block of truth.json.
#[derive(Debug, Clone, Serialize)]
pub struct ImplantTruth {
    /// The real slide's file name and the region of it written (level-0 pixels).
    pub source: String,
    pub source_region: [u32; 4],
    pub part: Option<&'static str>,
    pub compression: String,
    pub stain: MeasuredStain,
    pub epidermis_threshold: f32,
    /// Sigma of the optics the drawn layer was blurred by, µm (0 before synth 1.8).
    pub optics_um: f32,
    pub implants: Vec<ImplantRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Pustule,
    Cleft,
    Coil { inflamed: bool },
    Psoriasiform { munro: bool },
    ShamEpidermis,
    ShamNuclei,
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Pustule => "subcorneal-pustule",
            Kind::Cleft => "acantholytic-cleft",
            Kind::Coil { inflamed: true } => "inflamed-eccrine-coil",
            Kind::Coil { inflamed: false } => "sham-eccrine-coil",
            Kind::Psoriasiform { .. } => "psoriasiform-change",
            Kind::ShamEpidermis => "sham-epidermis",
            Kind::ShamNuclei => "sham-lymphocytes",
        }
    }

    fn finding(&self) -> Option<Finding> {
        match self {
            Kind::Pustule => Some(Finding::SubcornealPustule),
            Kind::Cleft => Some(Finding::Acantholysis),
            Kind::Coil { inflamed: true } => Some(Finding::NeutrophilicEccrineHidradenitis),
            Kind::Psoriasiform { .. } => Some(Finding::Psoriasiform),
            _ => None,
        }
    }
}

/// A tubule of an implanted coil: centre, outer and lumen radius, cell state.
#[derive(Debug, Clone, Copy)]
struct Tubule {
    x: f32,
    y: f32,
    ro: f32,
    rl: f32,
    /// Elongation (>= 1) along `ang` of an oblique section.
    e: f32,
    ang: f32,
    /// 0 normal, 1 vacuolated, 2 necrotic.
    state: u8,
}

#[derive(Debug, Clone)]
struct Implant {
    kind: Kind,
    x: f32,
    y: f32,
    /// Semi-axes along (a) and across (b) the surface.
    a: f32,
    b: f32,
    /// Surface direction (radians); the inward normal is +90°.
    ang: f32,
    reach: f32,
    salt: u64,
    tubules: Vec<Tubule>,
    /// Psoriasiform: rete period, width and lengths.
    period: f32,
    width: f32,
}

/// The slide's anatomy on a grid of `cell` µm.
pub(super) struct Anatomy {
    pub cell: f32,
    pub w: usize,
    pub h: usize,
    pub tissue: Vec<bool>,
    pub epi: Vec<bool>,
    d_glass: Vec<f32>,
    pub d_epi: Vec<f32>,
    /// Distance into the epidermis from its surface side (glass or corneum).
    d_top: Vec<f32>,
    /// Tissue between the glass and the epidermis: the corneum.
    pub corneum: Vec<bool>,
    /// Median hematoxylin and eosin of the real epidermis, in drawing units.
    epi_conc: Conc,
    threshold: f32,
}

impl Anatomy {
    #[inline]
    fn idx(&self, x: f32, y: f32) -> usize {
        let i = ((x / self.cell) as isize).clamp(0, self.w as isize - 1) as usize;
        let j = ((y / self.cell) as isize).clamp(0, self.h as isize - 1) as usize;
        j * self.w + i
    }

    fn tissue_at(&self, x: f32, y: f32) -> bool {
        self.tissue[self.idx(x, y)]
    }

    fn epi_at(&self, x: f32, y: f32) -> bool {
        self.epi[self.idx(x, y)]
    }

    fn d_top_at(&self, x: f32, y: f32) -> f32 {
        self.d_top[self.idx(x, y)]
    }

    fn corneum_at(&self, x: f32, y: f32) -> bool {
        self.corneum[self.idx(x, y)]
    }

    fn d_glass_at(&self, x: f32, y: f32) -> f32 {
        self.d_glass[self.idx(x, y)]
    }

    fn d_epi_at(&self, x: f32, y: f32) -> f32 {
        self.d_epi[self.idx(x, y)]
    }

    /// Direction of the surface at (x, y) in the epidermis: perpendicular to the
    /// gradient of the depth below its surface, over ±4 cells.
    fn surface_angle(&self, x: f32, y: f32) -> f32 {
        let s = 4.0 * self.cell;
        let at = |x: f32, y: f32| self.d_top[self.idx(x, y)];
        let gx = at(x + s, y) - at(x - s, y);
        let gy = at(x, y + s) - at(x, y - s);
        if gx.abs() + gy.abs() < 1e-3 {
            return 0.0;
        }
        gy.atan2(gx) - std::f32::consts::FRAC_PI_2
    }
}

/// Chamfer distance (µm) to the nearest `true` cell.
fn distance_to(mask: &[bool], w: usize, h: usize, cell: f32) -> Vec<f32> {
    let big = f32::MAX / 4.0;
    let mut d: Vec<f32> = mask.iter().map(|&m| if m { 0.0 } else { big }).collect();
    let (a, b) = (cell, cell * std::f32::consts::SQRT_2);
    for j in 0..h {
        for i in 0..w {
            let k = j * w + i;
            let mut v = d[k];
            if i > 0 {
                v = v.min(d[k - 1] + a);
            }
            if j > 0 {
                v = v.min(d[k - w] + a);
                if i > 0 {
                    v = v.min(d[k - w - 1] + b);
                }
                if i + 1 < w {
                    v = v.min(d[k - w + 1] + b);
                }
            }
            d[k] = v;
        }
    }
    for j in (0..h).rev() {
        for i in (0..w).rev() {
            let k = j * w + i;
            let mut v = d[k];
            if i + 1 < w {
                v = v.min(d[k + 1] + a);
            }
            if j + 1 < h {
                v = v.min(d[k + w] + a);
                if i + 1 < w {
                    v = v.min(d[k + w + 1] + b);
                }
                if i > 0 {
                    v = v.min(d[k + w - 1] + b);
                }
            }
            d[k] = v;
        }
    }
    d
}

/// Eigenvectors of a symmetric 3x3 matrix by Jacobi rotations, largest eigenvalue first.
#[allow(clippy::needless_range_loop)]
fn eigen3(mut m: [[f64; 3]; 3]) -> [([f64; 3], f64); 3] {
    let mut v = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for _ in 0..50 {
        let (mut p, mut q, mut off) = (0, 1, 0.0f64);
        for i in 0..3 {
            for j in i + 1..3 {
                if m[i][j].abs() > off {
                    (p, q, off) = (i, j, m[i][j].abs());
                }
            }
        }
        if off < 1e-14 {
            break;
        }
        let theta = 0.5 * (2.0 * m[p][q]).atan2(m[q][q] - m[p][p]);
        let (s, co) = theta.sin_cos();
        for k in 0..3 {
            let (mkp, mkq) = (m[k][p], m[k][q]);
            m[k][p] = co * mkp - s * mkq;
            m[k][q] = s * mkp + co * mkq;
        }
        for k in 0..3 {
            let (mpk, mqk) = (m[p][k], m[q][k]);
            m[p][k] = co * mpk - s * mqk;
            m[q][k] = s * mpk + co * mqk;
        }
        for row in v.iter_mut() {
            let (vp, vq) = (row[p], row[q]);
            row[p] = co * vp - s * vq;
            row[q] = s * vp + co * vq;
        }
    }
    let mut out: Vec<([f64; 3], f64)> = (0..3)
        .map(|k| ([v[0][k], v[1][k], v[2][k]], m[k][k]))
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    [out[0], out[1], out[2]]
}

fn percentile(v: &mut [f32], p: f64) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    let k = ((v.len() - 1) as f64 * p).round() as usize;
    let (_, x, _) = v.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
    *x
}

pub(super) fn od(i: u8, glass: f32) -> f32 {
    -((i as f32).max(1.0) / glass).log10()
}

pub(super) fn unmix(hv: [f32; 3], ev: [f32; 3], o: [f32; 3]) -> (f32, f32) {
    let dot = |a: [f32; 3], b: [f32; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    let (hh, ee, he) = (dot(hv, hv), dot(ev, ev), dot(hv, ev));
    let (ho, eo) = (dot(hv, o), dot(ev, o));
    let det = hh * ee - he * he;
    ((ho * ee - eo * he) / det, (eo * hh - ho * he) / det)
}

/// Macenko's stain estimate on the tissue pixels of `rgb`, as
/// training/realism/stain_ranges.py measures it (OD sum above 0.15, 1st/99th
/// angle percentiles, hematoxylin the vector with the larger red share, the
/// glass the median of the brightest 5% of pixels); concentration percentiles
/// over the tissue pixels.
fn measure_stain(
    rgb: &[u8],
    w: usize,
    h: usize,
    is_tissue: impl Fn(usize, usize) -> bool,
) -> Option<MeasuredStain> {
    let stride = ((w * h) as f64 / 400_000.0).sqrt().ceil().max(1.0) as usize;
    let (mut glass_px, mut tissue_px) = (Vec::new(), Vec::new());
    for y in (0..h).step_by(stride) {
        for x in (0..w).step_by(stride) {
            let k = (y * w + x) * 3;
            let p = [rgb[k], rgb[k + 1], rgb[k + 2]];
            if is_tissue(x, y) {
                tissue_px.push(p);
            } else {
                glass_px.push(p);
            }
        }
    }
    if tissue_px.len() < 500 {
        return None;
    }
    // The glass: the median of the brightest 5% of all pixels.
    let mut all: Vec<[u8; 3]> = glass_px.iter().chain(&tissue_px).copied().collect();
    all.sort_by_key(|p| p[0] as u32 + p[1] as u32 + p[2] as u32);
    let bright = &all[all.len() * 95 / 100..];
    let mut glass = [0.0f32; 3];
    for (ch, g) in glass.iter_mut().enumerate() {
        let mut v: Vec<f32> = bright.iter().map(|p| p[ch] as f32).collect();
        *g = percentile(&mut v, 0.5).max(100.0);
    }
    let ods: Vec<[f32; 3]> = all
        .iter()
        .map(|p| [0, 1, 2].map(|ch| od(p[ch], glass[ch]).max(0.0)))
        .filter(|o| o[0] + o[1] + o[2] > 0.15)
        .collect();
    if ods.len() < 200 {
        return None;
    }
    let n = ods.len() as f64;
    let mean: Vec<f64> = (0..3)
        .map(|c| ods.iter().map(|o| o[c] as f64).sum::<f64>() / n)
        .collect();
    let mut cov = [[0.0f64; 3]; 3];
    for o in &ods {
        for i in 0..3 {
            for j in 0..3 {
                cov[i][j] += (o[i] as f64 - mean[i]) * (o[j] as f64 - mean[j]) / n;
            }
        }
    }
    let e = eigen3(cov);
    let sign = |v: [f64; 3]| {
        if v.iter().sum::<f64>() < 0.0 {
            [-v[0], -v[1], -v[2]]
        } else {
            v
        }
    };
    let (v1, v2) = (sign(e[0].0), sign(e[1].0));
    let proj = |o: &[f32; 3], v: [f64; 3]| (0..3).map(|c| o[c] as f64 * v[c]).sum::<f64>();
    let mut phi: Vec<f32> = ods
        .iter()
        .map(|o| proj(o, v2).atan2(proj(o, v1)) as f32)
        .collect();
    let (lo, hi) = (percentile(&mut phi, 0.01), percentile(&mut phi, 0.99));
    let dir = |a: f32| {
        let (s, co) = (a as f64).sin_cos();
        let v = [
            v1[0] * co + v2[0] * s,
            v1[1] * co + v2[1] * s,
            v1[2] * co + v2[2] * s,
        ];
        let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt().max(1e-9);
        [
            (v[0] / n).abs() as f32,
            (v[1] / n).abs() as f32,
            (v[2] / n).abs() as f32,
        ]
    };
    let (a, b) = (dir(lo), dir(hi));
    // Hematoxylin's share of red is the larger.
    let share = |v: [f32; 3]| v[0] / (v[0] + v[1] + v[2]).max(1e-9);
    let (hv, ev) = if share(a) > share(b) { (a, b) } else { (b, a) };
    let (mut hs, mut es): (Vec<f32>, Vec<f32>) = tissue_px
        .iter()
        .map(|p| {
            unmix(
                hv,
                ev,
                [od(p[0], glass[0]), od(p[1], glass[1]), od(p[2], glass[2])],
            )
        })
        .unzip();
    Some(MeasuredStain {
        hematoxylin: hv,
        eosin: ev,
        glass,
        h_p50_p95: [percentile(&mut hs, 0.5), percentile(&mut hs, 0.95)],
        e_p50_p95: [percentile(&mut es, 0.5), percentile(&mut es, 0.95)],
    })
}

/// Finds tissue, epidermis and the distances on a grid of about 2 µm.
pub(super) fn find_anatomy(
    rgb: &[u8],
    w: usize,
    h: usize,
    mpp: f64,
    path: &Path,
) -> Result<(Anatomy, MeasuredStain), SynthError> {
    let k = (CELL_UM / mpp).round().max(1.0) as usize;
    let (gw, gh) = (w.div_ceil(k), h.div_ceil(k));
    let mut thumb = image::RgbImage::new(gw as u32, gh as u32);
    for gj in 0..gh {
        for gi in 0..gw {
            let (mut s, mut n) = ([0u32; 3], 0u32);
            for y in gj * k..((gj + 1) * k).min(h) {
                for x in gi * k..((gi + 1) * k).min(w) {
                    let q = (y * w + x) * 3;
                    for ch in 0..3 {
                        s[ch] += rgb[q + ch] as u32;
                    }
                    n += 1;
                }
            }
            let px = [(s[0] / n) as u8, (s[1] / n) as u8, (s[2] / n) as u8];
            thumb.put_pixel(gi as u32, gj as u32, image::Rgb(px));
        }
    }
    let cell = (k as f64 * mpp) as f32;
    let mask = tissue::detect(
        &thumb,
        w as u64,
        h as u64,
        Mpp::square(mpp),
        &TissueOptions::default(),
    );
    let refuse = |what: String| SynthError::Usage(format!("{}: {what}", path.display()));
    let stain = measure_stain(rgb, w, h, |x, y| mask.tissue[(y / k) * gw + x / k])
        .ok_or_else(|| refuse("too little stained tissue to measure its stain".into()))?;
    // The product's mask (saturation) misses pale tissue: a basket-weave corneum,
    // pale papillary dermis. Here tissue is also whatever absorbs (OD sum above
    // 0.15 over about 8 µm), closed over 10 µm, with holes under 0.05 mm² filled
    // (retraction spaces, vessel lumens), so distances measure the section.
    let od_sum: Vec<f32> = thumb
        .pixels()
        .map(|p| (0..3).map(|ch| od(p.0[ch], stain.glass[ch]).max(0.0)).sum())
        .collect();
    let absorbs = box_mean(&od_sum, gw, gh, (4.0 / cell).round().max(1.0) as isize);
    let either: Vec<bool> = (0..gw * gh)
        .map(|q| mask.tissue[q] || absorbs[q] > 0.15)
        .collect();
    let mut tissue_cells = tissue::close(
        &either,
        gw as u32,
        gh as u32,
        (10.0 / cell).round().max(1.0) as u32,
    );
    let holes: Vec<bool> = tissue_cells.iter().map(|&t| !t).collect();
    let max_hole = (0.05e6 / (cell * cell) as f64) as usize;
    for comp in components(&holes, gw, gh) {
        if comp.len() < max_hole {
            for q in comp {
                tissue_cells[q] = true;
            }
        }
    }
    let hc: Vec<f32> = thumb
        .pixels()
        .map(|p| {
            let o = [0, 1, 2].map(|ch| od(p.0[ch], stain.glass[ch]));
            unmix(stain.hematoxylin, stain.eosin, o).0
        })
        .collect();
    // Smooth over about 10 µm, then Otsu on the tissue cells.
    let smooth = box_mean(&hc, gw, gh, (10.0 / cell).round().max(1.0) as isize);
    let lim = stain.h_p50_p95[1].max(1e-3) * 1.5;
    let threshold = tissue::otsu(
        smooth
            .iter()
            .zip(&tissue_cells)
            .filter(|(_, &t)| t)
            .map(|(&v, _)| (v / lim).clamp(0.0, 1.0) as f64),
    ) as f32
        * lim;
    // A basket-weave corneum can be as basophilic, but it is mostly clear space:
    // the epidermis is solid (under a fifth of its pixels near the glass).
    let mut clear = vec![0.0f32; gw * gh];
    for y in 0..h {
        for x in 0..w {
            let q = (y * w + x) * 3;
            let o: f32 = (0..3)
                .map(|ch| od(rgb[q + ch], stain.glass[ch]).max(0.0))
                .sum();
            if o < 0.12 {
                clear[(y / k) * gw + x / k] += 1.0;
            }
        }
    }
    for (q, v) in clear.iter_mut().enumerate() {
        let (i, j) = (q % gw, q / gw);
        let n = ((((i + 1) * k).min(w) - i * k) * (((j + 1) * k).min(h) - j * k)) as f32;
        *v /= n;
    }
    let clear = box_mean(&clear, gw, gh, (6.0 / cell).round().max(1.0) as isize);
    let mut epi: Vec<bool> = (0..gw * gh)
        .map(|q| tissue_cells[q] && smooth[q] > threshold && clear[q] < 0.2)
        .collect();
    epi = tissue::open(&epi, gw as u32, gh as u32, 2);
    epi = tissue::close(&epi, gw as u32, gh as u32, 2);
    let min_cells = (0.004e6 / (cell * cell) as f64) as usize;
    tissue::remove_small_components(&mut epi, gw as u32, gh as u32, min_cells);
    let glass: Vec<bool> = tissue_cells.iter().map(|&t| !t).collect();
    let d_glass = distance_to(&glass, gw, gh, cell);
    // The epidermis is at the surface and is the largest dense band: drop bands
    // that never come within 120 µm of the glass and those under a quarter of the
    // largest (inflammatory or adnexal clusters in the dermis).
    let comps = components(&epi, gw, gh);
    let largest = comps.iter().map(Vec::len).max().unwrap_or(0);
    for comp in comps {
        let near = comp.iter().any(|&k| d_glass[k] <= 120.0);
        if !near || comp.len() * 4 < largest {
            for k in comp {
                epi[k] = false;
            }
        }
    }
    let d_epi = distance_to(&epi, gw, gh, cell);
    // Corneum: tissue outside the epidermis, within 80 µm of glass and epidermis,
    // from which a step inwards (down the distance from the glass) by its distance
    // to the epidermis lands in the epidermis. Dermis under the epidermis fails
    // the step: inwards from it is deeper dermis.
    let corneum: Vec<bool> = (0..gw * gh)
        .map(|k| {
            if !tissue_cells[k] || epi[k] || d_glass[k] > 80.0 || d_epi[k] > 80.0 {
                return false;
            }
            let (i, j) = ((k % gw) as isize, (k / gw) as isize);
            let at = |i: isize, j: isize| {
                d_glass[(j.clamp(0, gh as isize - 1) as usize) * gw
                    + i.clamp(0, gw as isize - 1) as usize]
            };
            let (gx, gy) = (at(i + 2, j) - at(i - 2, j), at(i, j + 2) - at(i, j - 2));
            let n = (gx * gx + gy * gy).sqrt();
            if n < 1e-3 {
                return false;
            }
            let step = (d_epi[k] + 4.0) / cell;
            let (ti, tj) = (
                i as f32 + 0.5 + gx / n * step,
                j as f32 + 0.5 + gy / n * step,
            );
            let q = (tj.clamp(0.0, gh as f32 - 1.0) as usize) * gw
                + ti.clamp(0.0, gw as f32 - 1.0) as usize;
            epi[q]
        })
        .collect();
    let surface: Vec<bool> = (0..gw * gh)
        .map(|k| !tissue_cells[k] || corneum[k])
        .collect();
    let (mut eh, mut ee): (Vec<f32>, Vec<f32>) = thumb
        .pixels()
        .zip(&epi)
        .filter(|(_, &e)| e)
        .map(|(p, _)| {
            let o = [0, 1, 2].map(|ch| od(p.0[ch], stain.glass[ch]).max(0.0));
            unmix(stain.hematoxylin, stain.eosin, o)
        })
        .unzip();
    let epi_conc = c(
        percentile(&mut eh, 0.5) / stain.h_p50_p95[1].max(0.05) * DRAW_H95,
        percentile(&mut ee, 0.5) / stain.e_p50_p95[1].max(0.05) * DRAW_E95,
    );
    let d_top = distance_to(&surface, gw, gh, cell);
    Ok((
        Anatomy {
            cell,
            w: gw,
            h: gh,
            tissue: tissue_cells,
            epi,
            d_glass,
            d_epi,
            d_top,
            corneum,
            epi_conc,
            threshold,
        },
        stain,
    ))
}

/// Mean of `v` over a square of radius `r` cells round each cell.
fn box_mean(v: &[f32], w: usize, h: usize, r: isize) -> Vec<f32> {
    let mut out = vec![0.0f32; w * h];
    for j in 0..h as isize {
        for i in 0..w as isize {
            let (mut s, mut n) = (0.0f32, 0.0f32);
            for y in (j - r).max(0)..=(j + r).min(h as isize - 1) {
                for x in (i - r).max(0)..=(i + r).min(w as isize - 1) {
                    s += v[y as usize * w + x as usize];
                    n += 1.0;
                }
            }
            out[j as usize * w + i as usize] = s / n;
        }
    }
    out
}

/// The 8-connected components of `m`, as lists of cell indices.
fn components(m: &[bool], w: usize, h: usize) -> Vec<Vec<usize>> {
    let mut seen = vec![false; m.len()];
    let (mut out, mut stack) = (Vec::new(), Vec::new());
    for start in 0..m.len() {
        if !m[start] || seen[start] {
            continue;
        }
        let mut comp = Vec::new();
        seen[start] = true;
        stack.push(start);
        while let Some(k) = stack.pop() {
            comp.push(k);
            let (i, j) = ((k % w) as isize, (k / w) as isize);
            for dj in -1..=1 {
                for di in -1..=1 {
                    let (x, y) = (i + di, j + dj);
                    if x < 0 || y < 0 || x >= w as isize || y >= h as isize {
                        continue;
                    }
                    let q = y as usize * w + x as usize;
                    if m[q] && !seen[q] {
                        seen[q] = true;
                        stack.push(q);
                    }
                }
            }
        }
        out.push(comp);
    }
    out
}

/// Cells of the anatomy grid (centres, µm) that satisfy `ok`.
fn candidates(an: &Anatomy, ok: impl Fn(usize, f32, f32) -> bool) -> Vec<(f32, f32)> {
    let mut out = Vec::new();
    for j in 0..an.h {
        for i in 0..an.w {
            let (x, y) = ((i as f32 + 0.5) * an.cell, (j as f32 + 0.5) * an.cell);
            if ok(j * an.w + i, x, y) {
                out.push((x, y));
            }
        }
    }
    out
}

/// Draws a place among `cands` whose disc of `r` µm misses every placed implant.
fn place(
    rng: &mut ChaCha8Rng,
    cands: &[(f32, f32)],
    r: f32,
    placed: &[Implant],
) -> Option<(f32, f32)> {
    if cands.is_empty() {
        return None;
    }
    for _ in 0..400 {
        let (x, y) = cands[rng.gen_range(0..cands.len())];
        if placed
            .iter()
            .all(|p| noise::hypot(p.x - x, p.y - y) > p.reach + r)
        {
            return Some((x, y));
        }
    }
    None
}

#[allow(clippy::too_many_arguments)]
fn implant(kind: Kind, x: f32, y: f32, a: f32, b: f32, ang: f32, reach: f32, salt: u64) -> Implant {
    Implant {
        kind,
        x,
        y,
        a,
        b,
        ang,
        reach,
        salt,
        tubules: Vec::new(),
        period: 0.0,
        width: 0.0,
    }
}

/// What an epidermal lesion must keep clear of: everything but the psoriasiform
/// zones, which pustules and clefts may lie in.
fn outside_zones(placed: &[Implant]) -> Vec<Implant> {
    placed
        .iter()
        .filter(|p| !matches!(p.kind, Kind::Psoriasiform { .. }))
        .cloned()
        .collect()
}

/// Tubules of a coil of radius `r`, packed at random without overlap.
fn tubules(rng: &mut ChaCha8Rng, x: f32, y: f32, r: f32, inflamed: bool) -> Vec<Tubule> {
    let mut out: Vec<Tubule> = Vec::new();
    for _ in 0..300 {
        let ro = rng.gen_range(10.0..15.0);
        let e = rng.gen_range(1.0..1.9);
        let ang = rng.gen_range(0.0..std::f32::consts::PI);
        let (t, d) = (
            rng.gen_range(0.0..std::f32::consts::TAU),
            r * rng.gen::<f32>().sqrt(),
        );
        let (tx, ty) = (x + d * t.cos(), y + d * t.sin());
        if noise::hypot(tx - x, ty - y) + ro * e > r {
            continue;
        }
        if out
            .iter()
            .all(|u| noise::hypot(u.x - tx, u.y - ty) > u.ro * u.e + ro * e + 1.0)
        {
            let state = if inflamed {
                match rng.gen_range(0..10) {
                    0..=2 => 1,
                    3..=4 => 2,
                    _ => 0,
                }
            } else {
                0
            };
            out.push(Tubule {
                x: tx,
                y: ty,
                e,
                ang,
                ro,
                rl: rng.gen_range(2.5..6.5),
                state,
            });
        }
        if out.len() >= 14 {
            break;
        }
    }
    out
}

/// The class's lesions and the shams, placed where the anatomy fits.
fn plan(
    an: &Anatomy,
    class: SlideClass,
    seed: u64,
    path: &Path,
) -> Result<(Vec<Implant>, Variant), SynthError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x1A9_1A47 ^ class.salt());
    let refuse = |what: &str| {
        SynthError::Usage(format!(
            "{}: no place for {what} ({} slide, seed {seed}); implant into a slide with \
             epidermis at its surface and dermis beneath",
            path.display(),
            class
        ))
    };
    let variant = Variant::draw(class, &mut rng);
    let dira = class == SlideClass::Dira;
    let mut placed: Vec<Implant> = Vec::new();

    // Psoriasiform change first: it needs the longest stretch of epidermis.
    let zones = match class {
        SlideClass::Psoriasis => rng.gen_range(1..=2),
        SlideClass::PustularPsoriasis => 1,
        SlideClass::Dira if rng.gen_bool(0.3) => 1,
        _ => 0,
    };
    let surface_epi = candidates(an, |k, _, _| an.epi[k] && an.d_top[k] <= 30.0);
    for _ in 0..zones {
        let rz = rng.gen_range(220.0..380.0);
        let (x, y) = place(&mut rng, &surface_epi, rz, &placed)
            .ok_or_else(|| refuse("psoriasiform change"))?;
        let mut z = implant(
            Kind::Psoriasiform {
                munro: class == SlideClass::Psoriasis,
            },
            x,
            y,
            rz,
            rz,
            an.surface_angle(x, y),
            rz,
            rng.gen(),
        );
        z.period = rng.gen_range(70.0..105.0);
        z.width = rng.gen_range(24.0..36.0);
        placed.push(z);
    }

    let pustules = match class {
        SlideClass::Dira if variant != Variant::NoPustules => rng.gen_range(1..=3),
        SlideClass::PustularPsoriasis => rng.gen_range(1..=3),
        _ => 0,
    };
    let zone = placed.first().map(|z| (z.x, z.y, z.reach));
    for _ in 0..pustules {
        let (a, b) = (rng.gen_range(35.0..110.0), rng.gen_range(14.0..38.0));
        // Pustular psoriasis: the pustules sit in the psoriasiform stretch.
        let in_zone = class == SlideClass::PustularPsoriasis;
        let fits = |k: usize| an.epi[k] && an.d_top[k] >= b * 0.6 && an.d_top[k] <= b + 10.0;
        let mut cands = candidates(an, |k, x, y| {
            fits(k)
                && (!in_zone || zone.is_some_and(|(zx, zy, zr)| noise::hypot(x - zx, y - zy) < zr))
        });
        if cands.is_empty() {
            // No room in the psoriasiform stretch: beside it, as pustules also lie.
            cands = candidates(an, |k, _, _| fits(k));
        }
        let (x, y) = place(&mut rng, &cands, a, &outside_zones(&placed))
            .ok_or_else(|| refuse("a subcorneal pustule"))?;
        let ang = an.surface_angle(x, y);
        placed.push(implant(Kind::Pustule, x, y, a, b, ang, a + 6.0, rng.gen()));
    }

    let clefts = if dira && variant != Variant::NoAcantholysis {
        rng.gen_range(1..=2)
    } else {
        0
    };
    for _ in 0..clefts {
        let (a, b) = (rng.gen_range(30.0..80.0), rng.gen_range(10.0..22.0));
        let cands = candidates(an, |k, _, _| {
            an.epi[k] && an.d_top[k] >= b + 8.0 && an.d_top[k] <= b + 40.0
        });
        let (x, y) = place(&mut rng, &cands, a, &outside_zones(&placed))
            .ok_or_else(|| refuse("an acantholytic cleft"))?;
        let ang = an.surface_angle(x, y);
        placed.push(implant(Kind::Cleft, x, y, a, b, ang, a + 6.0, rng.gen()));
    }

    let inflamed = if dira && variant != Variant::NoHidradenitis {
        rng.gen_range(1..=2)
    } else {
        0
    };
    let shams_coils = rng.gen_range(1..=2);
    for n in 0..inflamed + shams_coils {
        let is_inflamed = n < inflamed;
        let mut spot = None;
        for r in [90.0f32, 75.0, 60.0, 48.0] {
            let halo = if is_inflamed { 30.0 } else { 8.0 };
            let cands = candidates(an, |k, _, _| {
                an.tissue[k] && !an.epi[k] && an.d_glass[k] >= r + halo && an.d_epi[k] >= r + 25.0
            });
            if let Some(p) = place(&mut rng, &cands, r + halo, &placed) {
                spot = Some((p, r, halo));
                break;
            }
        }
        let Some(((x, y), r, halo)) = spot else {
            if is_inflamed {
                return Err(refuse("an inflamed eccrine coil"));
            }
            continue;
        };
        let mut coil = implant(
            Kind::Coil {
                inflamed: is_inflamed,
            },
            x,
            y,
            r,
            r,
            0.0,
            r + halo,
            rng.gen(),
        );
        coil.tubules = tubules(&mut rng, x, y, r, is_inflamed);
        placed.push(coil);
    }

    // Shams: lymphocyte clusters in the dermis and patches of drawn epidermis.
    for _ in 0..rng.gen_range(1..=3) {
        let r = rng.gen_range(18.0..40.0);
        let cands = candidates(an, |k, _, _| {
            an.tissue[k] && !an.epi[k] && an.d_glass[k] >= r + 10.0 && an.d_epi[k] >= 30.0
        });
        if let Some((x, y)) = place(&mut rng, &cands, r, &placed) {
            placed.push(implant(Kind::ShamNuclei, x, y, r, r, 0.0, r, rng.gen()));
        }
    }
    for _ in 0..rng.gen_range(1..=2) {
        let (a, b) = (rng.gen_range(30.0..65.0), rng.gen_range(10.0..20.0));
        let cands = candidates(an, |k, _, _| {
            an.epi[k] && an.d_top[k] >= b + 5.0 && an.d_top[k] <= b + 45.0
        });
        if let Some((x, y)) = place(&mut rng, &cands, a, &placed) {
            let ang = an.surface_angle(x, y);
            placed.push(implant(
                Kind::ShamEpidermis,
                x,
                y,
                a,
                b,
                ang,
                a + 4.0,
                rng.gen(),
            ));
        }
    }
    Ok((placed, variant))
}

/// Keratinocytes on a jittered grid with cytoplasm of the real epidermis' colour
/// `base` and open nuclei.
fn keratinocyte(x: f32, y: f32, spacing: f32, salt: u64, aa: f32, base: Conc) -> Conc {
    let (gi, gj) = ((x / spacing).floor() as i64, (y / spacing).floor() as i64);
    let mut best = (0.0f32, 0.0f32);
    for j in gj - 1..=gj + 1 {
        for i in gi - 1..=gi + 1 {
            let hsh = hash2(i, j, salt);
            let cx = (i as f32 + 0.2 + 0.6 * unit(hsh, 1)) * spacing;
            let cy = (j as f32 + 0.2 + 0.6 * unit(hsh, 2)) * spacing;
            let (na, nb) = (3.0 + 1.2 * unit(hsh, 3), 2.4 + 0.8 * unit(hsh, 4));
            let nu = nucleus(
                x - cx,
                y - cy,
                na,
                nb,
                unit(hsh, 5) * 3.1,
                0.12,
                0.8,
                hsh,
                aa,
                salt,
                x,
                y,
            );
            if nu.0 > best.0 {
                best = nu;
            }
        }
    }
    let grain = 0.85 + 0.3 * noise::value(x / 1.5, y / 1.5, salt ^ 0x33);
    let cyto = c(0.75 * base.h * grain, base.e * grain);
    mixc(cyto, c(best.1 * 0.95, 0.5 * base.e), best.0)
}

/// A neutrophil of synth's field ([`neutrophil_at`]) in the real slide's tone:
/// lobes at about the real nuclei's hematoxylin with some eosin (purple, not
/// the navy of pure hematoxylin), cytoplasm a little pinker.
fn neutrophil(x: f32, y: f32, spacing: f32, occ: f32, salt: u64, aa: f32) -> Option<Conc> {
    neutrophil_at(x, y, spacing, occ, salt, aa).map(|k| c(0.72 * k.h, k.e + 0.08 + 0.12 * k.h))
}

/// Synth 1.8: a neutrophil of synth 1.4's crowds ([`cells::neutrophil`]) in the
/// real slide's tone: eosin taken up with the hematoxylin, 0.35 a unit, as synth 1.3
/// draws it over all tissue (purple, not the navy of pure hematoxylin in a
/// scanner's stain).
fn neutrophil_v18(x: f32, y: f32, crowd: Crowd, salt: u64, aa: f32) -> Option<CellAt> {
    cells::neutrophil(x, y, crowd, salt, NEUTROPHIL_NUC_H, aa).map(tone)
}

/// The real slide's tone of a drawn cell (see [`neutrophil_v18`]).
fn tone(cell: CellAt) -> CellAt {
    CellAt {
        k: c(cell.k.h, cell.k.e + 0.35 * cell.k.h),
        ..cell
    }
}

/// `cell` in front of what an implant draws at a point (`k`, covering `cover` of
/// the real tissue): the coverage and concentrations of the two together.
fn in_front(cell: CellAt, cover: f32, k: Conc) -> (f32, Conc) {
    let total = cell.cov + (1.0 - cell.cov) * cover;
    if total <= 0.0 {
        return (0.0, k);
    }
    let t = cell.cov / total;
    (total, mixc(k, cell.k, t))
}

/// Local coordinates: along the surface (u) and along the inward normal (v).
#[inline]
fn local(p: &Implant, x: f32, y: f32) -> (f32, f32) {
    let (s, co) = p.ang.sin_cos();
    let (dx, dy) = (x - p.x, y - p.y);
    (dx * co + dy * s, -dx * s + dy * co)
}

/// Coverage (0-1) and concentrations of implant `p` at (x, y) µm, or `None`
/// where it draws nothing.
/// `v18`: synth 1.8's cells (else the implants of generators 1.4-1.7).
fn shade(p: &Implant, an: &Anatomy, x: f32, y: f32, aa: f32, v18: bool) -> Option<(f32, Conc)> {
    let (dx, dy) = (x - p.x, y - p.y);
    if dx * dx + dy * dy > p.reach * p.reach || !an.tissue_at(x, y) {
        return None;
    }
    let salt = p.salt;
    match p.kind {
        Kind::Pustule => {
            let (u, v) = local(p, x, y);
            let wob = 1.0 + 0.12 * (2.0 * noise::value(u / 25.0, 0.5, salt) - 1.0);
            let cov = ellipse(u, v, p.a * wob, p.b, 1.0, 0.0, 2.5);
            if cov <= 0.0 {
                return None;
            }
            // Serum with fibrin strands, packed with neutrophils, thinning to the rim.
            let fib = noise::value(x / 4.0, y / 4.0, salt ^ 1);
            let strand = noise::smoothstep(0.55, 0.8, noise::value(x / 9.0, y / 2.5, salt ^ 3));
            let serum = c(0.06 + 0.05 * fib, 0.28 + 0.22 * fib + 0.3 * strand);
            let r2 = (u / p.a).powi(2) + (v / p.b).powi(2);
            let occ = 0.97 - 0.3 * r2.min(1.0);
            let k = if v18 {
                // Two interleaved crowds in the middle, one thinning to the rim.
                let front = Crowd {
                    spacing: 9.0,
                    occ: occ - 0.05,
                    pyknotic: 0.12,
                };
                let back = Crowd {
                    spacing: 9.0,
                    occ: (0.6 - 0.6 * r2).max(0.0),
                    pyknotic: 0.12,
                };
                let a = neutrophil_v18(x, y, front, salt ^ 2, aa);
                let b = neutrophil_v18(x + 4.5, y + 4.5, back, salt ^ 0x5B, aa);
                let cell = match (a, b) {
                    (Some(a), Some(b)) => Some(a.front(b)),
                    (a, b) => a.or(b),
                };
                CellAt::maybe_over(cell, serum)
            } else {
                neutrophil(x, y, 7.0, occ, salt ^ 2, aa).unwrap_or(serum)
            };
            // A little of the real tissue shows through, as in a section of finite thickness.
            Some((0.9 * cov, k))
        }
        Kind::Cleft => {
            let (u, v) = local(p, x, y);
            // A torn, irregular border, not a drawn ellipse.
            let wob = 1.0
                + 0.22 * (2.0 * noise::value(u / 18.0, 0.5, salt) - 1.0)
                + 0.12 * (2.0 * noise::value(u / 5.0, v / 5.0, salt ^ 6) - 1.0);
            let cov = ellipse(u, v, p.a * wob, p.b * wob, 1.0, 0.0, aa);
            if cov <= 0.0 {
                return None;
            }
            // The cleft is an empty space (a little serum) with acantholytic cells
            // floating in it, drawn as synth 1.0 draws them: rounded, dense
            // eosinophilic cytoplasm, a large condensed nucleus, some neutrophils.
            let mut out = acantholytic_field(x, y, salt, aa, |cx, cy| {
                let (cu, cv) = local(p, cx, cy);
                (cu / p.a).powi(2) + (cv / p.b).powi(2) <= 0.85
            });
            if v18 {
                let crowd = Crowd {
                    spacing: 17.0,
                    occ: 0.2,
                    pyknotic: 0.1,
                };
                out = CellAt::maybe_over(neutrophil_v18(x, y, crowd, salt ^ 9, aa), out);
            } else if let Some(n) = neutrophil(x, y, 17.0, 0.2, salt ^ 9, aa) {
                out = n;
            }
            Some((cov, out))
        }
        Kind::Coil { inflamed } => {
            let d = (dx * dx + dy * dy).sqrt();
            let body = ((p.a + 6.0 - d) / aa + 0.5).clamp(0.0, 1.0);
            if body <= 0.0 {
                // The inflamed halo: neutrophils over the real dermis.
                if inflamed {
                    let occ = 0.3 * (1.0 - (d - p.a - 6.0) / (p.reach - p.a - 6.0)).max(0.0);
                    if v18 {
                        let crowd = Crowd {
                            spacing: 10.0,
                            occ,
                            pyknotic: 0.15,
                        };
                        return neutrophil_v18(x, y, crowd, salt ^ 5, aa).map(|n| (n.cov, n.k));
                    }
                    return neutrophil(x, y, 10.0, occ, salt ^ 5, aa).map(|k| (1.0, k));
                }
                return None;
            }
            let stroma = c(0.05, 0.22 + 0.15 * noise::value(x / 6.0, y / 6.0, salt ^ 6));
            let mut k = stroma;
            let mut in_tubule = false;
            for t in &p.tubules {
                // A section through a coiled tube: an ellipse of elongation t.e.
                let (sn, co) = t.ang.sin_cos();
                let (ox, oy) = (x - t.x, y - t.y);
                let (tx, ty) = ((ox * co + oy * sn) / t.e, -ox * sn + oy * co);
                let r = (tx * tx + ty * ty).sqrt();
                if r > t.ro + aa {
                    continue;
                }
                in_tubule = true;
                let edge = ((t.ro - r) / aa + 0.5).clamp(0.0, 1.0);
                if r < t.rl {
                    k = mixc(stroma, c(0.02, 0.08), edge);
                    break;
                }
                // Cuboidal cells round the lumen; each cell's state from the tubule.
                let n = ((std::f32::consts::TAU * (t.rl + t.ro) * 0.5) / 7.0).max(5.0);
                let th = ty.atan2(tx) + std::f32::consts::PI;
                let ci = (th / std::f32::consts::TAU * n).floor();
                let hsh = hash2(ci as i64, (t.x * 10.0) as i64, salt ^ 7);
                // Synth 1.8: each nucleus off its cell's middle, at its own height
                // and size (a ring of evenly spaced beads reads as drawn).
                let (jit, height, size) = if v18 {
                    (
                        0.6 * (unit(hsh, 10) - 0.5),
                        0.4 + 0.35 * unit(hsh, 11),
                        0.8 + 0.4 * unit(hsh, 12),
                    )
                } else {
                    (0.0, 0.6, 1.0)
                };
                let ca = (ci + 0.5 + jit) / n * std::f32::consts::TAU - std::f32::consts::PI;
                let rr = t.rl + height * (t.ro - t.rl);
                let (nx, ny) = (rr * ca.cos(), rr * ca.sin());
                let grain = 0.85 + 0.3 * noise::value(x / 1.4, y / 1.4, salt ^ 8);
                let (cyto, nuc) = match t.state {
                    1 => (c(0.05, 0.1 * grain), 2.3),
                    2 => (c(0.1, 0.95 * grain), 1.5),
                    _ => (c(0.2, 0.42 * grain), 2.5),
                };
                let nu = nucleus(
                    tx - nx,
                    ty - ny,
                    nuc * size,
                    nuc * size * 0.85,
                    ca,
                    0.1,
                    if t.state == 2 { 0.0 } else { 0.6 },
                    hsh,
                    aa,
                    salt,
                    x,
                    y,
                );
                let mut cell = mixc(cyto, c(nu.1, 0.2), nu.0);
                // Myoepithelium: a thin dark rim (synth 1.8: broken, as its flat
                // nuclei are spaced along the tubule).
                let rim = !v18 || noise::value(x / 6.0, y / 6.0, salt ^ 0x3E) > 0.45;
                if r > t.ro - 1.5 && rim {
                    cell = mixc(cell, c(0.55, 0.3), 0.6);
                }
                if t.state == 1 && noise::value(x / 2.5, y / 2.5, salt ^ 9) > 0.62 {
                    cell = c(0.02, 0.05);
                }
                k = mixc(stroma, cell, edge);
                break;
            }
            // The loose stroma between tubules lets the real dermis through.
            let cover = if in_tubule { body } else { 0.5 * body };
            if inflamed {
                let occ = if in_tubule { 0.15 } else { 0.45 };
                if v18 {
                    let crowd = Crowd {
                        spacing: 9.0,
                        occ,
                        pyknotic: 0.15,
                    };
                    if let Some(n) = neutrophil_v18(x, y, crowd, salt ^ 10, aa) {
                        let (cv, k) = in_front(n, cover, k);
                        return Some((cv * body, k));
                    }
                } else if let Some(n) = neutrophil(x, y, 9.0, occ, salt ^ 10, aa) {
                    return Some((body, n));
                }
            }
            Some((cover, k))
        }
        Kind::Psoriasiform { munro } => {
            let (u, _) = local(p, x, y);
            let de = an.d_epi_at(x, y);
            let dg = an.d_glass_at(x, y);
            let fade = ((p.reach - (dx * dx + dy * dy).sqrt()) / 20.0).clamp(0.0, 1.0);
            if an.epi_at(x, y) {
                return None;
            }
            // Corneum (between glass and epidermis): confluent parakeratosis and
            // Munro microabscesses.
            if an.corneum_at(x, y) {
                if munro {
                    let mi = (u / 120.0).round();
                    let hsh = hash2(mi as i64, 0, salt ^ 11);
                    let mu = u - mi * 120.0;
                    let (ma, mb) = (14.0 + 10.0 * unit(hsh, 1), 5.0 + 3.0 * unit(hsh, 2));
                    let mv = 0.5 * (dg - de);
                    if unit(hsh, 0) < 0.7 && (mu / ma).powi(2) + (mv / mb).powi(2) < 1.0 {
                        if v18 {
                            let crowd = Crowd {
                                spacing: 7.5,
                                occ: 0.85,
                                pyknotic: 0.4,
                            };
                            if let Some(n) = neutrophil_v18(x, y, crowd, salt ^ 12, aa) {
                                return Some((fade * n.cov, n.k));
                            }
                        } else if let Some(n) = neutrophil(x, y, 7.5, 0.85, salt ^ 12, aa) {
                            return Some((fade, n));
                        }
                    }
                }
                let sp = 8.0;
                let (gi, gj) = ((x / sp).floor() as i64, (y / sp).floor() as i64);
                for j in gj - 1..=gj + 1 {
                    for i in gi - 1..=gi + 1 {
                        let hsh = hash2(i, j, salt ^ 13);
                        if unit(hsh, 0) > 0.4 {
                            continue;
                        }
                        let cx = (i as f32 + 0.5 * unit(hsh, 1) + 0.25) * sp;
                        let cy = (j as f32 + 0.5 * unit(hsh, 2) + 0.25) * sp;
                        let (s, co) = (p.ang + 0.4 * (unit(hsh, 3) - 0.5)).sin_cos();
                        let len = 2.4 + 1.4 * unit(hsh, 4);
                        let cov = ellipse(x - cx, y - cy, len, 0.9, co, s, aa);
                        if cov > 0.0 {
                            return Some((0.85 * cov * fade, c(1.0, 0.4)));
                        }
                    }
                }
                return None;
            }
            // Dermis next to the epidermis: elongated, clubbed rete ridges with
            // papillae between them holding dilated capillaries.
            // Only on the dermal side: deeper below the surface than the
            // epidermis is thick.
            if an.d_top_at(x, y) < de + 25.0 || an.corneum_at(x, y) {
                return None;
            }
            // Ridges lean and wave a little, each zone its own way.
            let lean = 0.5 * (unit(salt, 10) - 0.5);
            let u = u - lean * de + 9.0 * (de / 27.0 + 7.0 * unit(salt, 9)).sin();
            let n = (u / p.period).round();
            let hsh = hash2(n as i64, 1, salt ^ 14);
            let len = 90.0 + 110.0 * unit(hsh, 0);
            let off = u - n * p.period;
            let half = 0.5 * p.width * (1.0 + 0.35 * (de / len)) * (0.85 + 0.3 * unit(hsh, 1));
            let finger = ((half - off.abs()) / aa + 0.5).clamp(0.0, 1.0)
                * ((len - de) / aa + 0.5).clamp(0.0, 1.0);
            if finger > 0.0 {
                return Some((
                    finger * fade,
                    keratinocyte(x, y, 10.0, salt ^ 15, aa, an.epi_conc),
                ));
            }
            // A capillary up the middle of the papilla.
            let pu = u - (n + 0.5 * off.signum()) * p.period;
            let plen = 0.75 * len;
            if de < plen && de > 8.0 {
                let wig = 3.0 * (de / 9.0 + unit(hsh, 2) * 6.0).sin();
                let w = 5.0 + 3.0 * unit(hsh, 3);
                let r = (pu - wig).abs();
                if r < w + 1.2 {
                    let wall = ((w + 1.2 - r) / aa + 0.5).clamp(0.0, 1.0);
                    let lumen = ((w - r) / aa + 0.5).clamp(0.0, 1.0);
                    let (gi, gj) = ((x / 6.0).floor() as i64, (y / 6.0).floor() as i64);
                    let mut rbc = 0.0f32;
                    for j in gj - 1..=gj + 1 {
                        for i in gi - 1..=gi + 1 {
                            let hh = hash2(i, j, salt ^ 16);
                            if unit(hh, 0) < 0.75 {
                                let cx = (i as f32 + 0.2 + 0.6 * unit(hh, 1)) * 6.0;
                                let cy = (j as f32 + 0.2 + 0.6 * unit(hh, 2)) * 6.0;
                                rbc = rbc.max(disc(x - cx, y - cy, 3.3, aa));
                            }
                        }
                    }
                    let inside = mixc(c(0.02, 0.3), c(0.03, 1.3), rbc);
                    let k = mixc(c(0.6, 0.35), inside, lumen);
                    return Some((wall * fade, k));
                }
            }
            None
        }
        Kind::ShamEpidermis => {
            let (u, v) = local(p, x, y);
            let cov = ellipse(u, v, p.a, p.b, 1.0, 0.0, 3.0);
            if cov <= 0.0 {
                return None;
            }
            Some((0.85 * cov, keratinocyte(x, y, 11.0, salt, aa, an.epi_conc)))
        }
        Kind::ShamNuclei => {
            let d = (dx * dx + dy * dy).sqrt();
            let sp = 7.0;
            let (gi, gj) = ((x / sp).floor() as i64, (y / sp).floor() as i64);
            let occ = 0.6 * (1.0 - (d / p.a).powi(2)).max(0.0);
            for j in gj - 1..=gj + 1 {
                for i in gi - 1..=gi + 1 {
                    let hsh = hash2(i, j, salt);
                    if unit(hsh, 0) >= occ {
                        continue;
                    }
                    let cx = (i as f32 + 0.2 + 0.6 * unit(hsh, 1)) * sp;
                    let cy = (j as f32 + 0.2 + 0.6 * unit(hsh, 2)) * sp;
                    let r = 2.4 + 0.7 * unit(hsh, 3);
                    let nu = nucleus(
                        x - cx,
                        y - cy,
                        r,
                        r * 0.9,
                        0.0,
                        0.08,
                        0.1,
                        hsh,
                        aa,
                        salt,
                        x,
                        y,
                    );
                    if nu.0 > 0.0 {
                        return Some((nu.0, c(nu.1 * 1.1, 0.2)));
                    }
                }
            }
            None
        }
    }
}

/// Mask bits implant `p` sets at (x, y): where its finding's structure is.
fn mask_bits(p: &Implant, an: &Anatomy, x: f32, y: f32) -> u8 {
    let Some(f) = p.kind.finding() else { return 0 };
    let (dx, dy) = (x - p.x, y - p.y);
    if dx * dx + dy * dy > p.reach * p.reach || !an.tissue_at(x, y) {
        return 0;
    }
    let inside = match p.kind {
        Kind::Pustule | Kind::Cleft => {
            let (u, v) = local(p, x, y);
            (u / p.a).powi(2) + (v / p.b).powi(2) <= 1.0
        }
        Kind::Coil { .. } => (dx * dx + dy * dy).sqrt() <= p.a + 10.0,
        // What was drawn: the elongated rete, the papillary capillaries, the
        // parakeratosis and Munro microabscesses. The stretch's own epidermis is
        // the real, normal one and is not marked, so a tile of real epidermis
        // alone never teaches "psoriasiform".
        // The zone of every generator (synth 1.8 draws other cells in the same one).
        Kind::Psoriasiform { .. } => shade(p, an, x, y, 1.0, false).is_some_and(|(a, _)| a > 0.25),
        _ => false,
    };
    if inside {
        super::mask_bit(f)
    } else {
        0
    }
}

/// What a slide's implants are drawn with: level 0's width and MPP, the anatomy,
/// the implants, the slide's stain and the noise's salt.
struct Drawing<'a> {
    w: usize,
    mpp: f64,
    an: &'a Anatomy,
    implants: &'a [Implant],
    stain: &'a MeasuredStain,
    salt: u64,
}

impl Drawing<'_> {
    /// Composites every implant into `rgb` (row-major, level 0): synth 1.8 through
    /// the optics ([`Self::composite_v18`]), earlier generators as drawn.
    fn composite(&self, rgb: &mut [u8], options: &ImplantOptions) {
        if options.generator >= Generator::V1_8 {
            self.composite_v18(rgb, options.optics_um);
        } else {
            self.composite_v17(rgb);
        }
    }

    /// The point (x, y) µm of level-0 pixel (i, j).
    fn at(&self, i: usize, j: usize) -> (f32, f32) {
        (
            ((i as f64 + 0.5) * self.mpp) as f32,
            ((j as f64 + 0.5) * self.mpp) as f32,
        )
    }

    /// The implants near row `y` µm.
    fn near_row(&self, y: f32) -> Vec<&Implant> {
        self.implants
            .iter()
            .filter(|p| (p.y - y).abs() <= p.reach)
            .collect()
    }

    /// What the implants `near` draw at (x, y): optical density per channel and
    /// coverage, or `None`; `v18` synth 1.8's cells.
    fn drawn_at(&self, near: &[&Implant], x: f32, y: f32, v18: bool) -> Option<([f32; 3], f32)> {
        let st = self.stain;
        let aa = (0.75 * self.mpp) as f32;
        let hs = st.h_p50_p95[1].max(0.05) / DRAW_H95;
        let es = st.e_p50_p95[1].max(0.05) / DRAW_E95;
        let mut cov = 0.0f32;
        let mut drawn = [0.0f32; 3];
        for p in near {
            if (p.x - x).abs() > p.reach {
                continue;
            }
            let Some((a, k)) = shade(p, self.an, x, y, aa, v18) else {
                continue;
            };
            if a <= 0.0 {
                continue;
            }
            let o = [0, 1, 2].map(|ch| k.h * hs * st.hematoxylin[ch] + k.e * es * st.eosin[ch]);
            let t = if cov == 0.0 { 1.0 } else { a };
            for ch in 0..3 {
                drawn[ch] += (o[ch] - drawn[ch]) * t;
            }
            cov = cov.max(a);
        }
        (cov > 0.0).then_some((drawn, cov))
    }

    /// Generators 1.4-1.7: each drawn point blended at once, as sharp as drawn.
    fn composite_v17(&self, rgb: &mut [u8]) {
        let g = self.stain.glass;
        rgb.par_chunks_mut(self.w * 3)
            .enumerate()
            .for_each(|(j, row)| {
                let near = self.near_row(self.at(0, j).1);
                if near.is_empty() {
                    return;
                }
                for i in 0..self.w {
                    let (x, y) = self.at(i, j);
                    let Some((drawn, cov)) = self.drawn_at(&near, x, y, false) else {
                        continue;
                    };
                    let px = &mut row[i * 3..i * 3 + 3];
                    let hsh = hash2(i as i64, j as i64, self.salt);
                    for ch in 0..3 {
                        let real = od(px[ch], g[ch]);
                        let o = real + (drawn[ch] - real) * cov;
                        let noise = 1.6 * (unit(hsh, ch as u32) + unit(hsh, ch as u32 + 3) - 1.0);
                        let v = g[ch] * 10f32.powf(-o) + noise * cov;
                        px[ch] = v.round().clamp(0.0, 255.0) as u8;
                    }
                }
            });
    }

    /// Synth 1.8: the implants drawn into a layer (optical density times coverage,
    /// and coverage), the layer blurred by the optics (a Gaussian of `optics_um`),
    /// then blended into the real pixels. The slide's own optics blurred its real
    /// structures; drawn ones were sharp to the pixel, a give-away
    /// (docs/realism.md). Pixels beyond the kernel (3 sigma along each axis) from
    /// anything drawn keep their bytes. The layer is held a band of rows at a time
    /// (with the kernel's reach above and below), so memory stays that of the slide.
    fn composite_v18(&self, rgb: &mut [u8], optics_um: f32) {
        const BAND: usize = 256;
        let w = self.w;
        let h = rgb.len() / (w * 3);
        let sigma = optics_um / self.mpp as f32;
        let r = if sigma > 0.0 {
            (3.0 * sigma).ceil() as usize
        } else {
            0
        };
        let g = self.stain.glass;
        for j0 in (0..h).step_by(BAND) {
            let j1 = (j0 + BAND).min(h);
            let (l0, l1) = (j0.saturating_sub(r), (j1 + r).min(h));
            let mut layer = vec![0.0f32; (l1 - l0) * w * 4];
            layer
                .par_chunks_mut(w * 4)
                .enumerate()
                .for_each(|(k, row)| {
                    let j = l0 + k;
                    let near = self.near_row(self.at(0, j).1);
                    if near.is_empty() {
                        return;
                    }
                    for i in 0..w {
                        let (x, y) = self.at(i, j);
                        if let Some((d, cov)) = self.drawn_at(&near, x, y, true) {
                            row[i * 4..i * 4 + 4].copy_from_slice(&[
                                d[0] * cov,
                                d[1] * cov,
                                d[2] * cov,
                                cov,
                            ]);
                        }
                    }
                });
            if layer.iter().all(|&v| v == 0.0) {
                continue;
            }
            // Clamped at the band's ends as at the slide's: inside the slide the band
            // holds every row within the kernel's reach of its own rows.
            gaussian_blur(&mut layer, w, l1 - l0, 4, sigma);
            rgb[j0 * w * 3..j1 * w * 3]
                .par_chunks_mut(w * 3)
                .zip(layer[(j0 - l0) * w * 4..(j1 - l0) * w * 4].par_chunks(w * 4))
                .enumerate()
                .for_each(|(k, (row, lay))| {
                    let j = j0 + k;
                    for i in 0..w {
                        let cov = lay[i * 4 + 3].min(1.0);
                        if cov <= 0.0 {
                            continue;
                        }
                        let hsh = hash2(i as i64, j as i64, self.salt);
                        for ch in 0..3 {
                            let px = &mut row[i * 3 + ch];
                            let o = od(*px, g[ch]) * (1.0 - cov) + lay[i * 4 + ch];
                            let noise =
                                1.6 * (unit(hsh, ch as u32) + unit(hsh, ch as u32 + 3) - 1.0);
                            let v = g[ch] * 10f32.powf(-o) + noise * cov;
                            *px = v.round().clamp(0.0, 255.0) as u8;
                        }
                    }
                });
        }
    }
}

/// Blurs `buf` (`w` × `h` pixels of `planes` interleaved channels) by a Gaussian of
/// `sigma` pixels, truncated at 3 sigma (separable: rows, then columns). Where
/// every pixel within 3 sigma is zero the result is exactly zero.
fn gaussian_blur(buf: &mut [f32], w: usize, h: usize, planes: usize, sigma: f32) {
    if sigma <= 0.0 {
        return;
    }
    let r = (3.0 * sigma).ceil() as isize;
    let mut kernel: Vec<f32> = (-r..=r)
        .map(|k| (-(k * k) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= sum);
    let stride = w * planes;
    // Rows, in place through a copy of each row.
    buf.par_chunks_mut(stride).for_each(|row| {
        if row.iter().all(|&v| v == 0.0) {
            return;
        }
        let src = row.to_vec();
        for i in 0..w as isize {
            for p in 0..planes {
                let mut acc = 0.0f32;
                for (t, &k) in kernel.iter().enumerate() {
                    let ii = (i + t as isize - r).clamp(0, w as isize - 1) as usize;
                    acc += k * src[ii * planes + p];
                }
                row[i as usize * planes + p] = acc;
            }
        }
    });
    // Columns: each output row from the rows within r of it.
    let src = buf.to_vec();
    buf.par_chunks_mut(stride).enumerate().for_each(|(j, row)| {
        let j = j as isize;
        for (t, &k) in kernel.iter().enumerate() {
            let jj = (j + t as isize - r).clamp(0, h as isize - 1) as usize;
            let from = &src[jj * stride..(jj + 1) * stride];
            if t == 0 {
                row.iter_mut().zip(from).for_each(|(o, &v)| *o = k * v);
            } else {
                row.iter_mut().zip(from).for_each(|(o, &v)| *o += k * v);
            }
        }
    });
}

/// Level 0 of a real slide (or one part of the real split) held in memory.
pub(super) struct RealRegion {
    pub rgb: Vec<u8>,
    pub w: usize,
    pub h: usize,
    pub mpp: f64,
    /// Where in the slide's level 0 the pixels come from.
    pub rect: Rect,
    pub part: Option<&'static str>,
}

/// Reads `path`'s level 0, or the `part` of it that training/real_split.toml
/// gives; the MPP is `mpp` if given, else the file's, else the split's estimate.
/// `flag` names the option in errors.
pub(super) fn read_real(
    path: &Path,
    mpp: Option<f64>,
    part: Option<Part>,
    flag: &str,
) -> Result<RealRegion, SynthError> {
    let usage = |m: String| SynthError::Usage(m);
    let open = OpenOptions {
        mpp_override: match mpp {
            Some(m) => Some(
                Mpp::square(m)
                    .ok_or_else(|| usage(format!("--mpp must be a positive number, got {m}")))?,
            ),
            None => None,
        },
        ..OpenOptions::default()
    };
    let reader = slide::open(path, &open).map_err(|e| usage(format!("{flag}: {e}")))?;
    let info = reader.info();
    let split = RealSplit::load().map_err(|e| usage(e.to_string()))?;
    let listed = split.image(path).ok();
    let mpp = info
        .level_mpp(0)
        .map(|m| m.mean())
        .or(listed.map(|i| i.mpp))
        .ok_or_else(|| {
            usage(format!(
                "{}: the slide has no MPP; give --mpp (microns per pixel)",
                path.display()
            ))
        })?;
    let (width, height) = (info.width(), info.height());
    let (rect, part) = match part {
        None => (Rect::new(0, 0, width as u32, height as u32), None),
        Some(part) => {
            let img = split
                .image(path)
                .map_err(|e| usage(format!("{}: --part: {e}", path.display())))?;
            if img.width as u64 != width || img.height as u64 != height {
                return Err(usage(format!(
                    "{}: is {width}x{height}, but training/real_split.toml gives {}x{} for {}",
                    path.display(),
                    img.width,
                    img.height,
                    img.file
                )));
            }
            let r = img.part(part);
            let name = match part {
                Part::Train => "train",
                Part::Test => "test",
            };
            (
                Rect::new(r.x0 as i64, r.y0 as i64, r.width(), r.height()),
                Some(name),
            )
        }
    };
    let (w, h) = (rect.width as usize, rect.height as usize);
    if (w as u64) * (h as u64) > MAX_PIXELS {
        return Err(usage(format!(
            "{}: {w}x{h} pixels is over the {MAX_PIXELS} that {flag} holds in memory; \
             crop a region of normal skin first",
            path.display()
        )));
    }
    let rgb = reader
        .read_region(0, rect)
        .map_err(|e| usage(format!("{flag}: {e}")))?
        .into_raw();
    Ok(RealRegion {
        rgb,
        w,
        h,
        mpp,
        rect,
        part,
    })
}

/// Runs `synth --implant-into`: reads the slide once, then writes one implanted
/// slide per seed (and `manifest.csv` for more than one).
pub fn run(options: &ImplantOptions) -> Result<Vec<SlideOutput>, SynthError> {
    if options.count == 0 || options.count > super::limits::MAX_COUNT {
        return Err(SynthError::Usage(format!(
            "--count must be between 1 and {}, got {}",
            super::limits::MAX_COUNT,
            options.count
        )));
    }
    if options.seed.checked_add(options.count).is_none() {
        return Err(SynthError::Usage(format!(
            "--seed {} + --count {} overflows",
            options.seed, options.count
        )));
    }
    if !(1..=256).contains(&options.mask_downsample) {
        return Err(SynthError::Usage(format!(
            "--mask-downsample must be between 1 and 256, got {}",
            options.mask_downsample
        )));
    }
    if let Some(q) = options.jpeg_quality {
        if !(1..=100).contains(&q) {
            return Err(SynthError::Usage(format!(
                "--jpeg-quality must be between 1 and 100, got {q}"
            )));
        }
    }
    let path = &options.slide;
    let real = read_real(path, options.mpp, options.part, "--implant-into")?;
    let (source, w, h, mpp, rect, part) =
        (real.rgb, real.w, real.h, real.mpp, real.rect, real.part);
    let (an, stain) = find_anatomy(&source, w, h, mpp, path)?;
    if !an.epi.iter().any(|&e| e) {
        return Err(SynthError::Usage(format!(
            "{}: no epidermis found (no hematoxylin-dense band in the tissue)",
            path.display()
        )));
    }
    prepare_dir(&options.out)?;
    let mut outs = Vec::new();
    for s in options.seed..options.seed + options.count {
        let class = options.class.unwrap_or_else(|| SlideClass::for_seed(s));
        let ctx = Context {
            options,
            source: &source,
            w,
            h,
            mpp,
            rect,
            part,
            an: &an,
            stain: &stain,
        };
        outs.push(write_one(&ctx, class, s)?);
    }
    if options.count > 1 {
        write_manifest(&options.out, &outs)?;
    }
    Ok(outs)
}

struct Context<'a> {
    options: &'a ImplantOptions,
    source: &'a [u8],
    w: usize,
    h: usize,
    mpp: f64,
    rect: Rect,
    part: Option<&'static str>,
    an: &'a Anatomy,
    stain: &'a MeasuredStain,
}

fn write_one(ctx: &Context, class: SlideClass, seed: u64) -> Result<SlideOutput, SynthError> {
    let options = ctx.options;
    // How far past what it draws an implant changes pixels: the corner of the
    // optics' kernel (3 sigma, whole pixels, along each axis).
    let optics_reach = if options.generator >= Generator::V1_8 {
        let r = (3.0 * options.optics_um / ctx.mpp as f32).ceil();
        (r * std::f32::consts::SQRT_2).ceil() * ctx.mpp as f32
    } else {
        0.0
    };
    let (w, h, mpp, an) = (ctx.w, ctx.h, ctx.mpp, ctx.an);
    let (implants, variant) = plan(an, class, seed, &options.slide)?;
    let id = format!("{class}-implant-{seed}");
    let mut rgb = ctx.source.to_vec();
    let drawing = Drawing {
        w,
        mpp,
        an,
        implants: &implants,
        stain: ctx.stain,
        salt: seed ^ 0x0DD5,
    };
    drawing.composite(&mut rgb, options);

    let mut files = SlideFiles::new(&options.out, &id);
    let source_name = options
        .slide
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let compression = match options.jpeg_quality {
        Some(q) => TileCompression::Jpeg { quality: q },
        None => TileCompression::Deflate,
    };
    let mut writer = PyramidWriter::create(
        &files.tiff_tmp,
        w as u32,
        h as u32,
        WriterOptions {
            tile_size: 256,
            compression,
            mpp: Mpp::square(mpp),
            description: Some(format!(
                "dirascope synth implant|slide_id = {id}|class = {class}|seed = {seed}|MPP = {mpp}|source = {source_name}"
            )),
            background: [255, 255, 255],
            ..WriterOptions::default()
        },
    )?;
    for band in rgb.chunks(w * 3 * 512) {
        writer.push_rows(band)?;
    }
    writer.finish()?;

    let ds = options.mask_downsample;
    let (mw, mh) = ((w as u32).div_ceil(ds), (h as u32).div_ceil(ds));
    let um = ds as f64 * mpp;
    let masks = MaskGrid::from_fn(mw, mh, um, |x, y| {
        if !an.tissue_at(x, y) {
            return 0;
        }
        let mut f = TISSUE;
        if an.epi_at(x, y) {
            f |= EPIDERMIS;
        }
        for p in &implants {
            f |= mask_bits(p, an, x, y);
        }
        f
    });

    let findings = finding_records(
        &id,
        &masks,
        |_| true,
        |f| {
            implants
                .iter()
                .filter(|p| p.kind.finding() == Some(f))
                .count()
        },
    );
    let s = ctx.stain;
    let truth = Truth {
        generator: "dirascope synth --implant-into",
        generator_version: options.generator.version(),
        slide_id: id.clone(),
        class,
        variant,
        seed,
        mpp,
        width: w as u32,
        height: h as u32,
        width_um: w as f64 * mpp,
        height_um: h as f64 * mpp,
        mask_downsample: ds,
        mask_width: mw,
        mask_height: mh,
        tissue_area_mm2: round6(masks.area_mm2(TISSUE)),
        epidermis_area_mm2: round6(masks.area_mm2(EPIDERMIS)),
        findings_present: findings
            .iter()
            .filter(|f| f.present)
            .map(|f| f.key)
            .collect(),
        findings,
        stain: StainMatrix {
            hematoxylin: s.hematoxylin,
            eosin: s.eosin,
            h_scale: 1.0,
            e_scale: 1.0,
            background: s.glass,
        },
        blur_sigma_um: 0.0,
        noise_sigma: 1.6,
        jpeg_quality: options.jpeg_quality.unwrap_or(100),
        artefacts: Artefacts::default(),
        structures: Structures {
            pustules: Vec::new(),
            clefts: Vec::new(),
            coils: implants
                .iter()
                .filter_map(|p| match p.kind {
                    Kind::Coil { inflamed } => Some((p.x, p.y, p.a, inflamed)),
                    _ => None,
                })
                .collect(),
            psoriasiform_zones: Vec::new(),
            tangential: None,
            margin_ink: None,
            chatter: None,
            scan_fields: None,
            tears: Vec::new(),
            knife_lines: None,
            melanin: None,
            follicles: Vec::new(),
        },
        texture_from: None,
        implant: Some(ImplantTruth {
            source: source_name,
            source_region: [
                ctx.rect.x as u32,
                ctx.rect.y as u32,
                ctx.rect.width,
                ctx.rect.height,
            ],
            part: ctx.part,
            compression: match options.jpeg_quality {
                Some(q) => format!("jpeg quality {q}"),
                None => "deflate (lossless)".into(),
            },
            stain: s.clone(),
            epidermis_threshold: an.threshold,
            optics_um: if options.generator >= Generator::V1_8 {
                options.optics_um
            } else {
                0.0
            },
            implants: implants
                .iter()
                .map(|p| ImplantRecord {
                    kind: p.kind.name(),
                    finding: p.kind.finding().map(|f| f.key()),
                    centre_um: [p.x, p.y],
                    semi_axes_um: [p.a, p.b],
                    angle_deg: p.ang.to_degrees(),
                    reach_um: p.reach + optics_reach,
                })
                .collect(),
        }),
    };
    files.commit(&truth, &masks, w as u32, h as u32)?;
    Ok(files.output(id, class, seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_finds_the_eigenvectors_of_a_known_matrix() {
        // diag(3, 2, 1) rotated about z by 30 degrees.
        let (s, c) = (30f64.to_radians().sin(), 30f64.to_radians().cos());
        let m = [
            [3.0 * c * c + 2.0 * s * s, (3.0 - 2.0) * c * s, 0.0],
            [(3.0 - 2.0) * c * s, 3.0 * s * s + 2.0 * c * c, 0.0],
            [0.0, 0.0, 1.0],
        ];
        let e = eigen3(m);
        assert!((e[0].1 - 3.0).abs() < 1e-9 && (e[1].1 - 2.0).abs() < 1e-9);
        let v = e[0].0;
        assert!((v[0].abs() - c).abs() < 1e-9 && (v[1].abs() - s).abs() < 1e-9);
    }

    #[test]
    fn macenko_recovers_the_stain_a_synthetic_image_was_mixed_from() {
        let st = StainMatrix {
            hematoxylin: [0.80, 0.55, 0.24],
            eosin: [0.10, 0.92, 0.38],
            h_scale: 1.0,
            e_scale: 1.0,
            background: [245.0, 243.0, 246.0],
        };
        let norm = |v: [f32; 3]| {
            let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
            [v[0] / n, v[1] / n, v[2] / n]
        };
        let (hv, ev) = (norm(st.hematoxylin), norm(st.eosin));
        let st = StainMatrix {
            hematoxylin: hv,
            eosin: ev,
            ..st
        };
        let (w, h) = (300, 300);
        let mut rgb = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                let (hc, ec) = if x < 40 {
                    (0.0, 0.0)
                } else {
                    let a = unit(hash2(x as i64, y as i64, 1), 0);
                    let b = unit(hash2(x as i64, y as i64, 2), 0);
                    (1.2 * a * a * a, b * b * b)
                };
                let p = st.rgb(hc, ec, [0.0; 3]);
                for ch in 0..3 {
                    rgb[(y * w + x) * 3 + ch] = p[ch].round() as u8;
                }
            }
        }
        let m = measure_stain(&rgb, w, h, |x, _| x >= 40).expect("measured");
        for ch in 0..3 {
            assert!(
                (m.hematoxylin[ch] - hv[ch]).abs() < 0.06,
                "{:?} vs {hv:?}",
                m.hematoxylin
            );
            assert!(
                (m.eosin[ch] - ev[ch]).abs() < 0.06,
                "{:?} vs {ev:?}",
                m.eosin
            );
            assert!((m.glass[ch] - st.background[ch]).abs() <= 1.0);
        }
    }

    #[test]
    fn chamfer_distance_is_close_to_euclidean() {
        let (w, h) = (50, 50);
        let mut m = vec![false; w * h];
        m[25 * w + 25] = true;
        let d = distance_to(&m, w, h, 2.0);
        let e = (((40 - 25) as f32).hypot((10 - 25) as f32)) * 2.0;
        assert!(
            (d[10 * w + 40] - e).abs() / e < 0.09,
            "{} vs {e}",
            d[10 * w + 40]
        );
    }
}
