//! The `stain` stage: which two stains a slide carries, measured from its tiles
//! (Macenko et al., ISBI 2009), so that QC can refuse a slide that is not H&E.
//!
//! Every tile adds its stained pixels (OD above 0.15 in every channel, a sixteenth
//! of the pixels) to a [`StainStats`]: a histogram of OD chromaticity, each
//! pixel's share of red, green and blue OD, which is its OD direction. Integer
//! counts make any order of tiles and any split over threads give the same bits.
//! [`StainStats::estimate`] then takes Macenko's steps on the directions: the
//! plane that holds most of them (fitted three times, each time to the 95% of
//! pixels nearest the last fit, so that margin ink or pigment does not tilt it),
//! the angle of every pixel's direction in that plane, and the two stain vectors
//! at the 1st and 99th percentile of those angles. The vector with the larger red
//! OD share is the haematoxylin-like one. Each is reported with its angle to the
//! Ruifrok-Johnston reference for its stain.
//!
//! Measured (docs/stain.md): H&E phantoms and real H&E put the eosin-like vector
//! within 27° of Ruifrok's eosin; an immunostain (DAB and haematoxylin) 53°, a
//! trichrome-like re-stain (methyl blue for eosin) 37°.
//!
//! The same estimate can map a slide's stains onto a model's training stain
//! (`score --normalise-stain`): a [`StainProfile`] is a stain's two vectors and
//! how dense each gets (the 99th percentile of its concentration), measured on a
//! sample of the slide's tiles; a [`StainNormaliser`] unmixes each tile's pixels
//! with the slide's vectors, rescales the concentrations to the reference's
//! density and mixes them again with the reference's vectors (Macenko's
//! normalisation). The model's reference is the `[stain]` table of its
//! model.toml, measured with `dirascope stain` on slides like its training data.
//! Optical density is taken against the slide's glass (the tissue step's
//! thumbnail, or the sampled tiles' brightest pixels, or white): a camera's dim
//! glass is not faint stain.

use std::sync::OnceLock;

use image::RgbImage;
use serde::{Deserialize, Serialize};

/// Haematoxylin's optical density per RGB channel (Ruifrok and Johnston 2001).
pub const RUIFROK_HEMATOXYLIN: [f64; 3] = [0.650, 0.704, 0.286];
/// Eosin's optical density per RGB channel (Ruifrok and Johnston 2001).
pub const RUIFROK_EOSIN: [f64; 3] = [0.072, 0.990, 0.105];

/// Optical density is looked up in thousandths.
const OD_SCALE: f64 = 1000.0;
/// A pixel counts as stained when its OD is above 0.15 in every channel
/// (Macenko's beta): glass, and tissue too faint to tell stains apart, are left out.
const MIN_OD: i32 = 150;
/// Every fourth pixel of every fourth row: a sixteenth of a tile's pixels (3,136 of
/// a 224 px tile) is plenty, and costs under 1% of the stream.
const STEP: usize = 4;
/// Chromaticity bins per axis (red share, green share).
const BINS: usize = 128;
/// Share of stained pixels beyond each extreme angle (Macenko's alpha, 1%).
const ALPHA: f64 = 0.01;
/// The plane of the two stains is fitted this many times, each to this share of
/// the pixels nearest the last fit.
const PLANE_FITS: usize = 3;
const PLANE_SHARE: f64 = 0.95;
/// Fewer stained pixels than this give no estimate.
pub const MIN_PIXELS: u64 = 2_000;

/// OD of each 8-bit value, -ln(max(v, 1) / 255), as a float.
fn od_float_table() -> &'static [f64; 256] {
    static TABLE: OnceLock<[f64; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0f64; 256];
        for (v, od) in t.iter_mut().enumerate() {
            *od = -((v.max(1) as f64) / 255.0).ln();
        }
        t
    })
}

/// Steps per unit OD of [`transmitted_table`].
const OD_STEPS: usize = 4096;

/// The 8-bit value of light through OD `i / OD_STEPS`, round(255 exp(-OD)), for
/// OD 0 to 8 (beyond, 0): a table lookup in place of three `exp` a pixel; the OD
/// is rounded to 1/4096 first, within 0.07 of a level before rounding to 8 bits.
fn transmitted_table() -> &'static [u8] {
    static TABLE: OnceLock<Vec<u8>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=8 * OD_STEPS)
            .map(|i| (255.0 * (-(i as f64) / OD_STEPS as f64).exp()).round() as u8)
            .collect()
    })
}

/// OD in thousandths of each 8-bit value: -ln(max(v, 1) / 255).
fn od_table() -> &'static [i32; 256] {
    static TABLE: OnceLock<[i32; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0i32; 256];
        for (v, od) in t.iter_mut().enumerate() {
            *od = (-((v.max(1) as f64) / 255.0).ln() * OD_SCALE).round() as i32;
        }
        t
    })
}

/// Calls `f` with each sampled stained pixel of `tile` (every [`STEP`]th pixel of
/// every [`STEP`]th row, OD above [`MIN_OD`] in all three channels): its 8-bit
/// values and its OD in thousandths. The stain check and the stain profile see the
/// same pixels.
fn for_each_stained_pixel(tile: &RgbImage, mut f: impl FnMut([u8; 3], [i32; 3])) {
    let od = od_table();
    for_each_sampled_pixel(tile, |v| {
        let d = v.map(|x| od[x as usize]);
        if d.iter().all(|&c| c > MIN_OD) {
            f(v, d);
        }
    });
}

/// Calls `f` with every [`STEP`]th pixel of every [`STEP`]th row of `tile`.
fn for_each_sampled_pixel(tile: &RgbImage, mut f: impl FnMut([u8; 3])) {
    let (w, h) = (tile.width() as usize, tile.height() as usize);
    let raw = tile.as_raw();
    for y in (0..h).step_by(STEP) {
        for p in raw[y * w * 3..][..w * 3].chunks_exact(3 * STEP) {
            f([p[0], p[1], p[2]]);
        }
    }
}

/// The stained pixels of some tiles, counted exactly (see the module's header).
#[derive(Debug, Clone, PartialEq)]
pub struct StainStats {
    pixels: u64,
    /// Counts by (red share, green share) of OD, BINS x BINS.
    chromaticity: Vec<u32>,
}

impl Default for StainStats {
    fn default() -> Self {
        StainStats {
            pixels: 0,
            chromaticity: vec![0; BINS * BINS],
        }
    }
}

/// A slide's two stain vectors (unit OD vectors) and how far each is from H&E's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StainEstimate {
    pub hematoxylin: [f64; 3],
    pub eosin: [f64; 3],
    /// Angle of `hematoxylin` to Ruifrok-Johnston haematoxylin, degrees.
    pub hematoxylin_angle_deg: f64,
    /// Angle of `eosin` to Ruifrok-Johnston eosin, degrees.
    pub eosin_angle_deg: f64,
    /// Stained pixels measured (a sixteenth of the tiles' stained pixels).
    pub pixels: u64,
}

impl StainStats {
    pub fn new() -> StainStats {
        StainStats::default()
    }

    /// Stained pixels counted so far.
    pub fn pixels(&self) -> u64 {
        self.pixels
    }

    /// Adds one tile's stained pixels.
    pub fn add_tile(&mut self, tile: &RgbImage) {
        for_each_stained_pixel(tile, |_, [r, g, b]| {
            self.pixels += 1;
            let total = r + g + b;
            let bin = |c: i32| ((c * BINS as i32) / total).min(BINS as i32 - 1) as usize;
            self.chromaticity[bin(r) * BINS + bin(g)] += 1;
        });
    }

    /// Adds another accumulator's pixels (exact: the order does not matter).
    pub fn merge(&mut self, other: &StainStats) {
        self.pixels += other.pixels;
        for (a, b) in self.chromaticity.iter_mut().zip(&other.chromaticity) {
            *a += b;
        }
    }

    /// The two stain vectors, or `None` with fewer than [`MIN_PIXELS`] stained pixels.
    ///
    /// Every pixel weighs the same, whatever its density (Macenko's covariance of
    /// OD lets a dense minority such as margin ink tilt the plane), and the plane
    /// is fitted three times, each time to the 95% of pixels nearest the last one,
    /// so a third colour (ink, pigment) is left out of it.
    pub fn estimate(&self) -> Option<StainEstimate> {
        if self.pixels < MIN_PIXELS {
            return None;
        }
        // Each occupied bin: its OD direction and count.
        let bins: Vec<([f64; 3], f64)> = self
            .chromaticity
            .iter()
            .enumerate()
            .filter(|(_, &count)| count > 0)
            .map(|(i, &count)| {
                let r = ((i / BINS) as f64 + 0.5) / BINS as f64;
                let g = ((i % BINS) as f64 + 0.5) / BINS as f64;
                (unit([r, g, (1.0 - r - g).max(0.0)]), count as f64)
            })
            .collect();
        let mut kept = vec![true; bins.len()];
        let (mut u, mut v) = ([0.0; 3], [0.0; 3]);
        for _fit in 0..PLANE_FITS {
            let mut m = [[0.0f64; 3]; 3];
            for ((d, w), _) in bins.iter().zip(&kept).filter(|(_, &k)| k) {
                for i in 0..3 {
                    for j in 0..3 {
                        m[i][j] += w * d[i] * d[j];
                    }
                }
            }
            let (values, vectors) = symmetric_eigen(m);
            let mut order = [0usize, 1, 2];
            order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
            // Each axis pointing into positive OD.
            let axis = |k: usize| {
                let a = [vectors[0][k], vectors[1][k], vectors[2][k]];
                if a.iter().sum::<f64>() < 0.0 {
                    a.map(|x| -x)
                } else {
                    a
                }
            };
            (u, v) = (axis(order[0]), axis(order[1]));
            let normal = axis(order[2]);
            // Keep the pixels nearest the plane for the next fit.
            let off: Vec<f64> = bins.iter().map(|(d, _)| dot(*d, normal).abs()).collect();
            let mut by_off: Vec<usize> = (0..bins.len()).collect();
            by_off.sort_by(|&a, &b| off[a].total_cmp(&off[b]).then(a.cmp(&b)));
            let total: f64 = bins.iter().map(|b| b.1).sum();
            let mut seen = 0.0;
            kept = vec![false; bins.len()];
            for i in by_off {
                if seen >= PLANE_SHARE * total {
                    break;
                }
                kept[i] = true;
                seen += bins[i].1;
            }
        }
        // The kept pixels by their angle in the plane; the extremes are the stains.
        let mut angles: Vec<(f64, f64)> = bins
            .iter()
            .zip(&kept)
            .filter(|(_, &k)| k)
            .map(|((d, w), _)| (dot(*d, v).atan2(dot(*d, u)), *w))
            .collect();
        angles.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total: f64 = angles.iter().map(|a| a.1).sum();
        let at_share = |share: f64| {
            let mut seen = 0.0;
            for &(angle, w) in &angles {
                seen += w;
                if seen >= share * total {
                    return angle;
                }
            }
            angles.last().map_or(0.0, |a| a.0)
        };
        let in_plane =
            |angle: f64| unit([0, 1, 2].map(|c| u[c] * angle.cos() + v[c] * angle.sin()));
        let (a, b) = (in_plane(at_share(ALPHA)), in_plane(at_share(1.0 - ALPHA)));
        let (hematoxylin, eosin) = if a[0] >= b[0] { (a, b) } else { (b, a) };
        Some(StainEstimate {
            hematoxylin,
            eosin,
            hematoxylin_angle_deg: angle_deg(hematoxylin, RUIFROK_HEMATOXYLIN),
            eosin_angle_deg: angle_deg(eosin, RUIFROK_EOSIN),
            pixels: self.pixels,
        })
    }
}

/// A stain as normalisation sees it: its two vectors and how dense each gets.
/// A model's `[stain]` table in model.toml is one (its training stain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StainProfile {
    /// Unit OD vector of the haematoxylin-like stain (R, G, B).
    pub hematoxylin: [f64; 3],
    /// Unit OD vector of the eosin-like stain (R, G, B).
    pub eosin: [f64; 3],
    /// 99th percentile of each stain's concentration (OD units) over the
    /// stained pixels: [haematoxylin, eosin].
    pub max_concentration: [f64; 2],
    /// Light through empty glass, 8-bit RGB (I0): optical density is measured
    /// against it. 255 where not given (a model's `[stain]` table, a bright
    /// scanner); a camera's dim glass (226 for the public-domain fixture) would
    /// otherwise count as faint stain and be normalised into tinted tissue.
    #[serde(default = "white", skip_serializing_if = "is_white")]
    pub glass: [f64; 3],
}

fn white() -> [f64; 3] {
    [255.0; 3]
}

fn is_white(glass: &[f64; 3]) -> bool {
    *glass == white()
}

/// Share of the sampled pixels, the brightest by their sum, whose median per
/// channel is the glass (Macenko's I0 estimate).
const GLASS_SHARE: f64 = 0.005;
/// Glass is bright and grey: the brightest pixels are taken for it only if every
/// channel is at least this and the channels lie within [`GLASS_SPREAD`] of
/// each other; otherwise (a sample of tissue alone, whose palest pixels are
/// pink) the glass is taken as 255.
const MIN_GLASS: f64 = 200.0;
const GLASS_SPREAD: f64 = 5.0;

/// The slide's glass (see [`StainProfile::glass`]) from the sampled pixels of
/// `tiles`: the per-channel median of the brightest [`GLASS_SHARE`] of them
/// where that is bright and grey, 255 otherwise.
fn glass_of(tiles: &[RgbImage]) -> [f64; 3] {
    let mut px: Vec<[u8; 3]> = Vec::new();
    for tile in tiles {
        for_each_sampled_pixel(tile, |p| px.push(p));
    }
    if px.is_empty() {
        return white();
    }
    let sum = |p: &[u8; 3]| p.iter().map(|&v| v as u32).sum::<u32>();
    px.sort_by_key(|p| std::cmp::Reverse(sum(p)));
    let n = ((px.len() as f64 * GLASS_SHARE).ceil() as usize).max(1);
    let bright = &px[..n];
    let glass = [0, 1, 2].map(|c| {
        let mut v: Vec<u8> = bright.iter().map(|p| p[c]).collect();
        v.sort_unstable();
        v[v.len() / 2] as f64
    });
    if is_glass(&glass) {
        glass
    } else {
        white()
    }
}

/// Bright and grey enough to be glass ([`MIN_GLASS`], [`GLASS_SPREAD`]).
fn is_glass(colour: &[f64; 3]) -> bool {
    let (lo, hi) = (
        colour.iter().cloned().fold(255.0, f64::min),
        colour.iter().cloned().fold(0.0, f64::max),
    );
    lo >= MIN_GLASS && hi - lo <= GLASS_SPREAD
}

/// `tile` white-balanced to `glass`: each channel scaled so that the glass reads
/// 255 (brighter values clip).
fn balanced(tile: &RgbImage, glass: [f64; 3]) -> RgbImage {
    let mut out = tile.clone();
    for p in out.pixels_mut() {
        for (v, g) in p.0.iter_mut().zip(glass) {
            *v = (*v as f64 * 255.0 / g).round().min(255.0) as u8;
        }
    }
    out
}

/// Tiles a slide's stain profile is measured on for normalisation: at most this
/// many, evenly spaced over its tile grid.
pub const PROFILE_TILES: usize = 64;

impl StainProfile {
    /// The profile of some tiles: the vectors of [`StainStats::estimate`] and the
    /// concentrations of the same sampled stained pixels unmixed with them. `None`
    /// with too few stained pixels or vectors that cannot be unmixed.
    pub fn measure(tiles: &[RgbImage]) -> Option<StainProfile> {
        StainProfile::measure_against(tiles, None)
    }

    /// [`StainProfile::measure`] with the slide's glass seen elsewhere (the
    /// tissue step's thumbnail: sampled tissue tiles may hold no glass). A
    /// glass that is not bright and grey (see [`MIN_GLASS`]) is not taken;
    /// without one it is looked for in the tiles.
    pub fn measure_against(tiles: &[RgbImage], glass: Option<[u8; 3]>) -> Option<StainProfile> {
        let glass = match glass.map(|g| g.map(f64::from)).filter(is_glass) {
            Some(g) => g,
            None => glass_of(tiles),
        };
        // White-balanced copies only where the glass is not white.
        let balanced_tiles: Vec<RgbImage>;
        let tiles = if is_white(&glass) {
            tiles
        } else {
            balanced_tiles = tiles.iter().map(|t| balanced(t, glass)).collect();
            &balanced_tiles[..]
        };
        let mut stats = StainStats::new();
        tiles.iter().for_each(|t| stats.add_tile(t));
        let e = stats.estimate()?;
        let unmix = unmixing(e.hematoxylin, e.eosin)?;
        let od = od_float_table();
        let mut h = Vec::with_capacity(stats.pixels() as usize);
        let mut eo = Vec::with_capacity(stats.pixels() as usize);
        for tile in tiles {
            for_each_stained_pixel(tile, |p, _| {
                let d = p.map(|v| od[v as usize]);
                h.push(dot(unmix[0], d).max(0.0));
                eo.push(dot(unmix[1], d).max(0.0));
            });
        }
        let max_concentration = [percentile_99(&mut h), percentile_99(&mut eo)];
        let profile = StainProfile {
            hematoxylin: e.hematoxylin,
            eosin: e.eosin,
            max_concentration,
            glass,
        };
        profile.check().ok()?;
        Some(profile)
    }

    /// Why the profile cannot normalise (a model.toml's `[stain]` is checked with
    /// it): vectors not finite, not of unit length, of negative OD or nearly
    /// parallel; densities not positive.
    pub fn check(&self) -> Result<(), String> {
        for (name, v) in [("hematoxylin", self.hematoxylin), ("eosin", self.eosin)] {
            if v.iter().any(|x| !x.is_finite() || *x < 0.0) {
                return Err(format!("{name} {v:?} must be finite and not negative"));
            }
            let norm = dot(v, v).sqrt();
            if (norm - 1.0).abs() > 0.01 {
                return Err(format!(
                    "{name} {v:?} must be a unit vector (length {norm:.3})"
                ));
            }
        }
        let apart = angle_deg(self.hematoxylin, self.eosin);
        if apart < 5.0 {
            return Err(format!(
                "hematoxylin and eosin are {apart:.1} degrees apart: too close to unmix"
            ));
        }
        if self
            .glass
            .iter()
            .any(|g| !(g.is_finite() && (1.0..=255.0).contains(g)))
        {
            return Err(format!("glass {:?} must be within 1..=255", self.glass));
        }
        if self
            .max_concentration
            .iter()
            .any(|c| !(c.is_finite() && *c > 0.0))
        {
            return Err(format!(
                "max_concentration {:?} must be finite and above 0",
                self.max_concentration
            ));
        }
        Ok(())
    }
}

/// Rows of the pseudo-inverse of the 3 x 2 matrix [h e]: each pixel's OD dotted
/// with them gives its concentrations by least squares. `None` for parallel vectors.
fn unmixing(h: [f64; 3], e: [f64; 3]) -> Option<[[f64; 3]; 2]> {
    let (hh, he, ee) = (dot(h, h), dot(h, e), dot(e, e));
    let det = hh * ee - he * he;
    if !det.is_finite() || det.abs() <= 1e-6 {
        return None;
    }
    Some([
        [0, 1, 2].map(|c| (ee * h[c] - he * e[c]) / det),
        [0, 1, 2].map(|c| (hh * e[c] - he * h[c]) / det),
    ])
}

/// The 99th percentile (nearest rank) of `values`, 0 for none; sorts them.
fn percentile_99(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((0.99 * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

/// Maps a slide's stains onto a reference's, pixel by pixel (see the header), in
/// integers: each pixel's concentrations are sums of per-channel tables, so a
/// tile maps to the same bits on every machine (no `exp` or `ln` at run time).
#[derive(Debug, Clone, PartialEq)]
pub struct StainNormaliser {
    /// `unmix[k][c][v]`: stain k's concentration from channel c at 8-bit value v
    /// (its unmixing weight, times the density scale, times that value's OD), in
    /// 1/[`OD_STEPS`] units.
    unmix: Box<[[[i32; 256]; 3]; 2]>,
    /// The reference's vectors in 1/[`OD_STEPS`] units: `mix[k][c]`.
    mix: [[i64; 3]; 2],
}

impl StainNormaliser {
    /// From `slide`'s stains to `reference`'s; `None` where either cannot unmix.
    pub fn new(slide: &StainProfile, reference: &StainProfile) -> Option<StainNormaliser> {
        slide.check().ok()?;
        reference.check().ok()?;
        let rows = unmixing(slide.hematoxylin, slide.eosin)?;
        let scale = [0, 1].map(|k| reference.max_concentration[k] / slide.max_concentration[k]);
        let steps = OD_STEPS as f64;
        let mut unmix = Box::new([[[0i32; 256]; 3]; 2]);
        for (k, table) in unmix.iter_mut().enumerate() {
            for (c, channel) in table.iter_mut().enumerate() {
                // OD against the slide's own glass; brighter than the glass is none.
                let glass = slide.glass[c];
                for (v, entry) in channel.iter_mut().enumerate() {
                    let od = (-((v.max(1) as f64) / glass).ln()).max(0.0);
                    *entry = (rows[k][c] * scale[k] * od * steps).round() as i32;
                }
            }
        }
        Some(StainNormaliser {
            unmix,
            mix: [reference.hematoxylin, reference.eosin]
                .map(|v| v.map(|x| (x * steps).round() as i64)),
        })
    }

    /// Rewrites `tile` in the reference's stains. Glass (OD near 0) stays glass;
    /// what neither stain explains (a third colour, noise) is dropped.
    pub fn apply(&self, tile: &mut RgbImage) {
        let light = transmitted_table();
        let last = light.len() as i64 - 1;
        let [h, e] = self.mix;
        let [uh, ue] = &*self.unmix;
        for p in tile.as_mut().chunks_exact_mut(3) {
            let (r, g, b) = (p[0] as usize, p[1] as usize, p[2] as usize);
            let ch = (uh[0][r] + uh[1][g] + uh[2][b]).max(0) as i64;
            let ce = (ue[0][r] + ue[1][g] + ue[2][b]).max(0) as i64;
            for c in 0..3 {
                // OD of channel c in 1/OD_STEPS, rounded.
                let od = (ch * h[c] + ce * e[c] + (OD_STEPS as i64 / 2)) / OD_STEPS as i64;
                p[c] = light[od.clamp(0, last) as usize];
            }
        }
    }
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn unit(a: [f64; 3]) -> [f64; 3] {
    let n = dot(a, a).sqrt();
    if n > 0.0 {
        a.map(|x| x / n)
    } else {
        a
    }
}

/// Angle between two directions, degrees.
pub fn angle_deg(a: [f64; 3], b: [f64; 3]) -> f64 {
    dot(unit(a), unit(b)).clamp(-1.0, 1.0).acos().to_degrees()
}

/// Eigenvalues and eigenvectors (columns) of a symmetric 3 x 3 matrix by cyclic
/// Jacobi rotations: a fixed sequence of operations, so the same bits every time.
fn symmetric_eigen(mut a: [[f64; 3]; 3]) -> ([f64; 3], [[f64; 3]; 3]) {
    let mut v = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for _sweep in 0..32 {
        let off = a[0][1] * a[0][1] + a[0][2] * a[0][2] + a[1][2] * a[1][2];
        if off <= 1e-30 * (a[0][0] * a[0][0] + a[1][1] * a[1][1] + a[2][2] * a[2][2]) {
            break;
        }
        for (p, q) in [(0, 1), (0, 2), (1, 2)] {
            if a[p][q] == 0.0 {
                continue;
            }
            let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
            // (signum of +0.0 is 1: theta 0 turns by 45 degrees, as it should.)
            let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
            let c = 1.0 / (t * t + 1.0).sqrt();
            let s = t * c;
            // A <- J^T A J with J the rotation in the (p, q) plane: columns, then rows.
            for row in a.iter_mut() {
                let (xp, xq) = (row[p], row[q]);
                row[p] = c * xp - s * xq;
                row[q] = s * xp + c * xq;
            }
            let (rp, rq) = (a[p], a[q]);
            a[p] = [0, 1, 2].map(|k| c * rp[k] - s * rq[k]);
            a[q] = [0, 1, 2].map(|k| s * rp[k] + c * rq[k]);
            for row in v.iter_mut() {
                let (vp, vq) = (row[p], row[q]);
                row[p] = c * vp - s * vq;
                row[q] = s * vp + c * vq;
            }
        }
    }
    ([a[0][0], a[1][1], a[2][2]], v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A tile of pixels mixed from two stains by Beer-Lambert, with random
    /// concentrations (some pure, most mixed) and a little noise.
    fn mixed_tile(first: [f64; 3], second: [f64; 3], seed: u64) -> RgbImage {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (s1, s2) = (unit(first), unit(second));
        RgbImage::from_fn(224, 224, |_, _| {
            let a: f64 = rng.gen_range(0.0..1.2);
            let b: f64 = rng.gen_range(0.0..1.2);
            image::Rgb([0, 1, 2].map(|c| {
                let od = a * s1[c] + b * s2[c] + rng.gen_range(-0.01..0.01);
                (255.0 * (-od).exp()).round().clamp(0.0, 255.0) as u8
            }))
        })
    }

    /// Like [`mixed_tile`] without noise, and every concentration times `density`.
    fn stained_tile(h: [f64; 3], e: [f64; 3], density: f64, seed: u64) -> RgbImage {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (h, e) = (unit(h), unit(e));
        RgbImage::from_fn(224, 224, |_, _| {
            let a: f64 = density * rng.gen_range(0.0..1.2);
            let b: f64 = density * rng.gen_range(0.0..1.2);
            image::Rgb([0, 1, 2].map(|c| (255.0 * (-(a * h[c] + b * e[c])).exp()).round() as u8))
        })
    }

    fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
        let sum: u64 = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| x.abs_diff(*y) as u64)
            .sum();
        sum as f64 / a.as_raw().len() as f64
    }

    #[test]
    fn normalising_a_tile_to_its_own_profile_changes_little() {
        let tile = mixed_tile(RUIFROK_HEMATOXYLIN, RUIFROK_EOSIN, 20);
        let profile = StainProfile::measure(std::slice::from_ref(&tile)).unwrap();
        let mut out = tile.clone();
        StainNormaliser::new(&profile, &profile)
            .unwrap()
            .apply(&mut out);
        // The noise off the two stains' plane is dropped, nothing else.
        let diff = mean_abs_diff(&tile, &out);
        assert!(diff < 2.0, "mean |difference| {diff:.2} levels");
    }

    #[test]
    fn another_labs_stain_and_density_map_back_onto_the_reference() {
        // The same tissue (same concentrations) stained in another lab: both
        // vectors turned by about 10 degrees, and everything 35% paler.
        let reference = stained_tile(RUIFROK_HEMATOXYLIN, RUIFROK_EOSIN, 1.0, 21);
        let (h2, e2) = ([0.55, 0.76, 0.35], [0.2, 0.97, 0.15]);
        let other = stained_tile(h2, e2, 0.65, 21);
        let before = mean_abs_diff(&reference, &other);
        let to = StainProfile::measure(std::slice::from_ref(&reference)).unwrap();
        let from = StainProfile::measure(std::slice::from_ref(&other)).unwrap();
        assert!(
            from.max_concentration[1] < 0.8 * to.max_concentration[1],
            "{from:?} {to:?}"
        );
        let mut out = other.clone();
        StainNormaliser::new(&from, &to).unwrap().apply(&mut out);
        let after = mean_abs_diff(&reference, &out);
        assert!(
            after < before / 3.0,
            "mean |difference| {before:.1} -> {after:.1} levels"
        );
    }

    #[test]
    fn a_dim_cameras_slide_normalises_as_the_bright_scanners_does() {
        // The same stained tissue under bright glass and under a camera's dim,
        // slightly blue glass (the public-domain fixture's is 226, 225, 227), with
        // glass showing in an eighth of the tile.
        let tissue = stained_tile(RUIFROK_HEMATOXYLIN, RUIFROK_EOSIN, 1.0, 31);
        let with_glass = |light: [f64; 3]| {
            RgbImage::from_fn(224, 224, |x, y| {
                let p = if x < 112 && y < 56 {
                    image::Rgb([255u8; 3])
                } else {
                    *tissue.get_pixel(x, y)
                };
                image::Rgb([0, 1, 2].map(|c| (p.0[c] as f64 * light[c] / 255.0).round() as u8))
            })
        };
        let bright = with_glass([255.0; 3]);
        let dim = with_glass([224.0, 223.0, 227.0]);
        let reference = StainProfile::measure(std::slice::from_ref(&bright)).unwrap();
        assert_eq!(reference.glass, [255.0; 3]);
        let slide = StainProfile::measure(std::slice::from_ref(&dim)).unwrap();
        assert_eq!(slide.glass, [224.0, 223.0, 227.0]);
        let mut out = dim.clone();
        StainNormaliser::new(&slide, &reference)
            .unwrap()
            .apply(&mut out);
        let before = mean_abs_diff(&bright, &dim);
        let after = mean_abs_diff(&bright, &out);
        assert!(
            after < 1.5 && after < before / 5.0,
            "{before:.2} -> {after:.2} levels"
        );
        assert!(
            out.get_pixel(5, 5).0.iter().all(|&v| v == 255),
            "glass stays glass"
        );
        // Dense tissue alone gives no glass estimate: 255 is kept.
        assert_eq!(StainProfile::measure(&[tissue]).unwrap().glass, [255.0; 3]);
    }

    #[test]
    fn glass_stays_glass() {
        let profile =
            StainProfile::measure(&[mixed_tile(RUIFROK_HEMATOXYLIN, RUIFROK_EOSIN, 22)]).unwrap();
        let mut glass = RgbImage::from_pixel(8, 8, image::Rgb([255, 255, 255]));
        StainNormaliser::new(&profile, &profile)
            .unwrap()
            .apply(&mut glass);
        assert!(glass.pixels().all(|p| p.0 == [255, 255, 255]));
    }

    #[test]
    fn a_profile_that_cannot_unmix_is_refused() {
        let good = StainProfile {
            glass: white(),
            hematoxylin: unit(RUIFROK_HEMATOXYLIN),
            eosin: unit(RUIFROK_EOSIN),
            max_concentration: [1.0, 1.0],
        };
        assert_eq!(good.check(), Ok(()));
        let parallel = StainProfile {
            eosin: good.hematoxylin,
            ..good.clone()
        };
        assert!(parallel.check().unwrap_err().contains("too close"));
        let not_unit = StainProfile {
            eosin: [0.1, 2.0, 0.1],
            ..good.clone()
        };
        assert!(not_unit.check().unwrap_err().contains("unit vector"));
        let empty = StainProfile {
            max_concentration: [0.0, 1.0],
            ..good.clone()
        };
        assert!(empty.check().unwrap_err().contains("above 0"));
        assert_eq!(StainNormaliser::new(&parallel, &good), None);
        // Glass alone has no profile.
        let glass = RgbImage::from_pixel(224, 224, image::Rgb([240, 238, 242]));
        assert_eq!(StainProfile::measure(&[glass]), None);
    }

    #[test]
    fn recovers_the_stain_vectors_of_an_h_and_e_mixture() {
        let mut stats = StainStats::new();
        stats.add_tile(&mixed_tile(RUIFROK_HEMATOXYLIN, RUIFROK_EOSIN, 1));
        let e = stats.estimate().expect("enough stained pixels");
        assert!(e.hematoxylin_angle_deg < 2.0, "{e:?}");
        // Pure eosin has little red OD, so the OD > 0.15 in every channel that
        // Macenko asks of a pixel keeps the eosin-like extreme a few degrees
        // towards haematoxylin (4.8° here).
        assert!(e.eosin_angle_deg < 6.0, "{e:?}");
    }

    #[test]
    fn an_immunostain_puts_its_second_stain_far_from_eosin() {
        let dab = [0.268, 0.570, 0.776];
        let mut stats = StainStats::new();
        stats.add_tile(&mixed_tile(RUIFROK_HEMATOXYLIN, dab, 2));
        let e = stats.estimate().unwrap();
        assert!(e.hematoxylin_angle_deg < 6.0, "{e:?}");
        assert!((angle_deg(e.eosin, dab)) < 6.0, "{e:?}");
        assert!(e.eosin_angle_deg > 45.0, "{e:?}");
    }

    #[test]
    fn a_dense_third_colour_on_a_few_pixels_does_not_tilt_the_plane() {
        // Margin ink or melanin: 3% of the stained pixels, dense and brown (DAB's
        // direction, 28 degrees off the H&E plane), on an H&E tile.
        let dab = [0.268, 0.570, 0.776];
        let mut tile = mixed_tile(RUIFROK_HEMATOXYLIN, RUIFROK_EOSIN, 3);
        let brown = image::Rgb([0, 1, 2].map(|c| (255.0 * (-1.5 * unit(dab)[c]).exp()) as u8));
        for (i, p) in tile.pixels_mut().enumerate() {
            if i % 33 == 0 {
                *p = brown;
            }
        }
        let mut stats = StainStats::new();
        stats.add_tile(&tile);
        let e = stats.estimate().unwrap();
        assert!(e.eosin_angle_deg < 8.0, "{e:?}");
        assert!(e.hematoxylin_angle_deg < 4.0, "{e:?}");
    }

    #[test]
    fn the_sums_are_the_same_in_any_order_and_split() {
        let tiles: Vec<RgbImage> = (0..3)
            .map(|s| mixed_tile(RUIFROK_HEMATOXYLIN, RUIFROK_EOSIN, 10 + s))
            .collect();
        let mut forward = StainStats::new();
        tiles.iter().for_each(|t| forward.add_tile(t));
        let mut backward = StainStats::new();
        tiles.iter().rev().for_each(|t| backward.add_tile(t));
        let mut split = StainStats::new();
        split.add_tile(&tiles[2]);
        let mut rest = StainStats::new();
        rest.add_tile(&tiles[0]);
        rest.add_tile(&tiles[1]);
        split.merge(&rest);
        assert_eq!(forward, backward);
        assert_eq!(forward, split);
        assert_eq!(forward.estimate(), split.estimate());
    }

    #[test]
    fn glass_gives_no_estimate() {
        let mut stats = StainStats::new();
        stats.add_tile(&RgbImage::from_pixel(224, 224, image::Rgb([238, 236, 240])));
        assert_eq!(stats.pixels(), 0);
        assert_eq!(stats.estimate(), None);
    }

    #[test]
    fn jacobi_diagonalises_a_symmetric_matrix() {
        let m = [[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 1.0]];
        let (values, v) = symmetric_eigen(m);
        for k in 0..3 {
            let col = [v[0][k], v[1][k], v[2][k]];
            let mv = [0, 1, 2].map(|i| dot(m[i], col));
            for i in 0..3 {
                assert!(
                    (mv[i] - values[k] * col[i]).abs() < 1e-9,
                    "{k}: {mv:?} {values:?}"
                );
            }
        }
    }
}
