//! Slide anatomy as geometry in micrometres: tissue outline, layers, rete ridges,
//! pustules, clefts, coils, vessels and artefacts, all drawn once from the seed.
//!
//! `Geometry::locate` answers "what is at (x, y) µm" and is the single source of both
//! the rendered pixels and the truth masks, so they cannot disagree. Nothing here
//! touches pixels, files or stain colours.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::noise;
use super::stain::{StainMatrix, MEASURED_OD_MAP};
use super::{Artefacts, Generator, SlideClass};

/// Mask bits returned by [`Geometry::locate`].
pub const TISSUE: u8 = 1;
pub const EPIDERMIS: u8 = 2;
pub const PUSTULE: u8 = 4;
pub const ACANTHOLYSIS: u8 = 8;
pub const HIDRADENITIS: u8 = 16;
pub const PSORIASIFORM: u8 = 32;

/// Basal layer thickness (one row of cells), µm.
pub const BASAL_UM: f32 = 9.0;
/// Halo of neutrophils around an inflamed coil that still counts as hidradenitis, µm:
/// beyond the coil's disc up to synth 1.13, beyond its nearest tubule from 1.14.
pub const NEH_HALO_UM: f32 = 35.0;
/// Synth 1.12: how far beyond a vessel's wall the cells round it may be drawn, µm:
/// a cuff reaches at most 20 µm, and a nucleus centred there 6 µm more and its
/// smoothed edge (under 2 µm at the coarsest rasters synth draws).
pub const PERIVASCULAR_REACH: f32 = 28.0;

/// A smooth random curve: `base + Σ amp·sin(k·t + phase)`.
#[derive(Debug, Clone, Serialize)]
pub struct Curve {
    pub base: f32,
    pub terms: Vec<[f32; 3]>,
}

impl Curve {
    fn random(rng: &mut ChaCha8Rng, base: f32, n: usize, amp: (f32, f32), wl: (f32, f32)) -> Curve {
        let terms = (0..n)
            .map(|_| {
                let a = rng.gen_range(amp.0..amp.1);
                let k = std::f32::consts::TAU / rng.gen_range(wl.0..wl.1);
                [a, k, rng.gen_range(0.0..std::f32::consts::TAU)]
            })
            .collect();
        Curve { base, terms }
    }

    #[inline]
    pub fn at(&self, t: f32) -> f32 {
        let mut v = self.base;
        for [a, k, p] in &self.terms {
            v += a * (k * t + p).sin();
        }
        v
    }
}

/// One rete ridge: centre, half-width at the top, extra depth below the plate, and
/// how much it widens towards its tip (club shape).
#[derive(Debug, Clone, Serialize)]
pub struct Ridge {
    pub x: f32,
    pub hw: f32,
    pub depth: f32,
    pub club: f32,
}

/// A lens (pustule, Munro microabscess, cleft): centre, half-width, height.
#[derive(Debug, Clone, Serialize)]
pub struct Lens {
    pub x: f32,
    pub hw: f32,
    pub h: f32,
}

impl Lens {
    /// Height of the lens at `x` (0 outside).
    #[inline]
    fn height(&self, x: f32, power: f32) -> f32 {
        let u = (x - self.x) / self.hw;
        if u.abs() >= 1.0 {
            0.0
        } else {
            self.h * (1.0 - u * u).powf(power)
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Cleft {
    pub lens: Lens,
    /// The corneum and upper granular layer over the cleft are gone (erosion).
    pub roof_lost: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Circle {
    pub x: f32,
    pub y: f32,
    pub r: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Vessel {
    pub x: f32,
    pub y: f32,
    pub rx: f32,
    pub ry: f32,
    pub angle: f32,
    pub wall: f32,
    /// Dilated, tortuous papillary capillary of psoriasiform change.
    pub tortuous: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Tubule {
    pub x: f32,
    pub y: f32,
    /// Radius, µm; synth 1.10: the section's minor semi-axis.
    pub r: f32,
    /// Lumen radius, µm, in the same units as `r`.
    pub lumen: f32,
    pub duct: bool,
    /// Synth 1.10: the section's major semi-axis over its minor (a tube cut
    /// obliquely; 1 cut square across, and for every tubule of earlier generators).
    pub aspect: f32,
    /// Synth 1.10: the major axis's unit direction.
    pub axis: [f32; 2],
}

impl Vessel {
    /// (x, y) µm in the vessel's own frame: along and across its axes, or for a
    /// tortuous capillary with its winding taken out.
    pub fn local(&self, x: f32, y: f32) -> (f32, f32) {
        let (dx, dy) = (x - self.x, y - self.y);
        if self.tortuous {
            (dx - 3.5 * (dy / 9.0).sin(), dy)
        } else {
            let (s, c) = self.angle.sin_cos();
            (dx * c + dy * s, -dx * s + dy * c)
        }
    }
}

impl Tubule {
    /// A tubule cut square across (every tubule before synth 1.10).
    fn round(x: f32, y: f32, r: f32, lumen: f32, duct: bool) -> Tubule {
        Tubule {
            x,
            y,
            r,
            lumen,
            duct,
            aspect: 1.0,
            axis: [1.0, 0.0],
        }
    }

    /// (x, y) in the section's own frame with the major axis shrunk to the minor's
    /// length: the section's edge is the circle of radius `r` there, its lumen the
    /// circle of radius `lumen`. Synth 1.10.
    pub fn local(&self, x: f32, y: f32) -> (f32, f32) {
        let (dx, dy) = (x - self.x, y - self.y);
        let along = dx * self.axis[0] + dy * self.axis[1];
        let across = dy * self.axis[0] - dx * self.axis[1];
        (along / self.aspect, across)
    }

    /// (u, v) of `local` back to a plate offset from the centre, µm.
    pub fn to_plate(&self, u: f32, v: f32) -> (f32, f32) {
        let along = u * self.aspect;
        (
            along * self.axis[0] - v * self.axis[1],
            along * self.axis[1] + v * self.axis[0],
        )
    }

    /// Signed distance from (x, y) to the section's edge, µm (negative inside):
    /// exact on a round section, a close approximation on an elongated one
    /// (gradient-normalised ellipse distance). Synth 1.10.
    pub(crate) fn edge_distance(&self, x: f32, y: f32) -> f32 {
        let (dx, dy) = (x - self.x, y - self.y);
        let along = dx * self.axis[0] + dy * self.axis[1];
        let across = dy * self.axis[0] - dx * self.axis[1];
        let (a, b) = (self.r * self.aspect, self.r);
        let k0 = noise::hypot(along / a, across / b);
        let k1 = noise::hypot(along / (a * a), across / (b * b));
        if k1 <= 0.0 {
            return -b;
        }
        k0 * (k0 - 1.0) / k1
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Coil {
    pub x: f32,
    pub y: f32,
    pub r: f32,
    pub inflamed: bool,
    pub tubules: Vec<Tubule>,
}

/// Synth 1.9: how far a follicle's fibrous sheath reaches past its outer root
/// sheath, µm.
pub const FIBROUS_SHEATH_UM: f32 = 6.0;

/// Synth 1.9: a hair follicle as the section cuts it: along its axis, the segment
/// from (`x0`, `y0`) (its upper end) to (`x1`, `y1`), or across it, a point (the two
/// ends the same). Out from the axis: the hair shaft to `shaft` (its canal empty
/// where the shaft fell out of the section, `lost`), the inner root sheath to
/// `shaft + irs`, the outer root sheath to `r`, then the fibrous sheath. The axis
/// lies `z0` µm out of the section's plane (so a cut may miss the shaft), and a
/// follicle cut along leaves the plane over the last `taper` µm of its length at
/// either end, narrowing to where the plane grazes its outer layers only.
/// Sebaceous lobules sit beside it. Normal anatomy: never a finding.
#[derive(Debug, Clone, Serialize)]
pub struct Follicle {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
    pub r: f32,
    pub shaft: f32,
    pub irs: f32,
    pub lost: bool,
    pub z0: f32,
    pub taper: f32,
    /// Melanin of the hair shaft (0: fair hair).
    pub pigment: f32,
    pub lobules: Vec<Lobule>,
    /// Everything it draws lies in this box (x0, y0, x1, y1), µm.
    #[serde(skip)]
    pub bbox: [f32; 4],
}

/// Synth 1.9: a sebaceous lobule, an ellipse of semi-axes `a` (along `angle`) and `b`.
#[derive(Debug, Clone, Serialize)]
pub struct Lobule {
    pub x: f32,
    pub y: f32,
    pub a: f32,
    pub b: f32,
    pub angle: f32,
}

impl Lobule {
    /// The ellipse's normalised radius at (x, y): below 1 inside.
    #[inline]
    pub fn q(&self, x: f32, y: f32) -> f32 {
        let (s, c) = self.angle.sin_cos();
        let (dx, dy) = (x - self.x, y - self.y);
        let (u, v) = (dx * c + dy * s, -dx * s + dy * c);
        ((u / self.a).powi(2) + (v / self.b).powi(2)).sqrt()
    }
}

impl Follicle {
    /// Distance from (x, y) to the axis, µm, and where along it (0 at the upper end,
    /// 1 at the lower).
    #[inline]
    pub fn axis(&self, x: f32, y: f32) -> (f32, f32) {
        let (dx, dy) = (self.x1 - self.x0, self.y1 - self.y0);
        let l2 = dx * dx + dy * dy;
        let t = if l2 > 0.0 {
            (((x - self.x0) * dx + (y - self.y0) * dy) / l2).clamp(0.0, 1.0)
        } else {
            0.0
        };
        (noise::hypot(x - self.x0 - t * dx, y - self.y0 - t * dy), t)
    }

    /// Distance in three dimensions from (x, y) in the section's plane to the axis,
    /// µm: what decides the layer there.
    #[inline]
    pub fn radius_at(&self, x: f32, y: f32) -> f32 {
        let (d, t) = self.axis(x, y);
        let end = if self.taper > 0.0 {
            let l = self.length();
            ((t - 0.5).abs() * l - (0.5 * l - self.taper)).max(0.0) / self.taper
        } else {
            0.0
        };
        noise::hypot(d, self.z0 + 1.3 * (self.r + FIBROUS_SHEATH_UM) * end)
    }

    /// Length of the axis cut in the section's plane, µm (0 when cut across).
    pub fn length(&self) -> f32 {
        noise::hypot(self.x1 - self.x0, self.y1 - self.y0)
    }

    /// Distance from (x, y) to the nearest thing it draws (0 inside), µm.
    pub fn distance(&self, x: f32, y: f32) -> f32 {
        let sheath = self.axis(x, y).0 - self.r - FIBROUS_SHEATH_UM;
        self.lobules
            .iter()
            .map(|l| noise::hypot(x - l.x, y - l.y) - l.a.max(l.b))
            .fold(sheath, f32::min)
            .max(0.0)
    }

    fn bound(&mut self) {
        let rr = self.r + FIBROUS_SHEATH_UM;
        let mut b = [
            self.x0.min(self.x1) - rr,
            self.y0.min(self.y1) - rr,
            self.x0.max(self.x1) + rr,
            self.y0.max(self.y1) + rr,
        ];
        for l in &self.lobules {
            let e = l.a.max(l.b);
            b = [
                b[0].min(l.x - e),
                b[1].min(l.y - e),
                b[2].max(l.x + e),
                b[3].max(l.y + e),
            ];
        }
        self.bbox = b;
    }
}

/// Where the psoriasiform change is (a stretch of epidermis), with its ramps.
#[derive(Debug, Clone, Serialize)]
pub struct Zone {
    pub x0: f32,
    pub x1: f32,
}

/// Optional artefacts for QC work.
#[derive(Debug, Clone, Serialize)]
pub struct Pen {
    pub path: Curve,
    pub x0: f32,
    pub x1: f32,
    pub width: f32,
    pub od: [f32; 3],
}

#[derive(Debug, Clone, Serialize)]
pub struct Fold {
    /// A line `x·cos + y·sin = offset`, tissue within `width / 2` of it doubled.
    pub cos: f32,
    pub sin: f32,
    pub offset: f32,
    pub width: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct BlurBand {
    pub x0: f32,
    pub x1: f32,
    pub sigma_um: f32,
}

/// Synth 1.1: a stretch of epidermis cut tangentially through its rete ridges, as
/// sections of normal skin often are. The ridges merge into a broad slab of
/// epidermis `depth` µm below the plate, and the dermal papillae between them show
/// as round islands of papillary dermis inside it, each with a capillary. Not a
/// finding: it is drawn only where no psoriasiform change is, so the model learns
/// that islands of papillae alone are not psoriasiform hyperplasia.
#[derive(Debug, Clone, Serialize)]
pub struct Tangential {
    pub x0: f32,
    pub x1: f32,
    /// Thickness of the slab below the plate (the tips of the papillae), µm.
    pub depth: f32,
    /// Papillae: `x` µm, `y` µm below the plate, radius `r`; sorted by `x`.
    pub islands: Vec<Circle>,
    /// Synth 1.7: each papilla an oval of the circle's area, `[aspect, angle]` per
    /// island (a papilla is cut across obliquely more often than square on);
    /// empty before 1.7 (round papillae).
    pub ovals: Vec<[f32; 2]>,
    /// Farthest reach of a papilla from its centre along x, µm.
    pub reach: f32,
    /// Salt of the slab's undulating lower edge.
    pub salt: u64,
}

/// Ramp of a tangential stretch at each end, µm.
const TANGENTIAL_RAMP_UM: f32 = 60.0;

/// Signed distance (+ outside) to an oval of semi-axes `a` (along `angle`) and `b`
/// at offset (dx, dy) from its centre: the implicit function over its gradient's
/// length, exact on the outline and close enough a basal layer's width away.
fn oval_sdf(dx: f32, dy: f32, a: f32, b: f32, angle: f32) -> f32 {
    let (sn, cs) = angle.sin_cos();
    let (u, w) = (dx * cs + dy * sn, -dx * sn + dy * cs);
    let q = noise::hypot(u / a, w / b);
    let grad = noise::hypot(u / (a * a), w / (b * b)) / q.max(1e-6);
    (q - 1.0) / grad.max(1e-6)
}

impl Tangential {
    /// Signed distance (+ inside the epidermis) at `x`, `dv` µm below the plate.
    fn sdf(&self, x: f32, dv: f32) -> f32 {
        let bottom = self.depth * (0.7 + 0.6 * noise::value(x / 70.0, 0.5, self.salt));
        self.papillae_near(x)
            .map(|i| self.papilla_sdf(i, x, dv))
            .fold(bottom - dv, f32::min)
    }

    /// Synth 1.7: whether (x, `dv` µm below the plate) lies in a papilla cut across.
    pub fn in_papilla(&self, x: f32, dv: f32) -> bool {
        self.papillae_near(x)
            .any(|i| self.papilla_sdf(i, x, dv) < 0.0)
    }

    /// Indices of the papillae that may reach column `x`.
    fn papillae_near(&self, x: f32) -> impl Iterator<Item = usize> + '_ {
        let start = self.islands.partition_point(|c| c.x < x - self.reach);
        (start..self.islands.len()).take_while(move |&i| self.islands[i].x <= x + self.reach)
    }

    /// Signed distance (+ outside) to papilla `i`: a circle, or from 1.7 an oval.
    fn papilla_sdf(&self, i: usize, x: f32, dv: f32) -> f32 {
        let c = &self.islands[i];
        match self.ovals.get(i) {
            Some(&[k, ang]) => oval_sdf(x - c.x, dv - c.y, c.r * k.sqrt(), c.r / k.sqrt(), ang),
            None => noise::hypot(x - c.x, dv - c.y) - c.r,
        }
    }

    fn weight(&self, x: f32) -> f32 {
        trapezoid(x, self.x0, self.x1, TANGENTIAL_RAMP_UM)
    }
}

/// Synth 1.1: tissue-marking dye on the cut margins (left, right, deep), as a
/// grossing bench inks a specimen: a patchy, granular band a few µm into the tissue
/// and just past its edge. Each inked margin has its own colour.
#[derive(Debug, Clone, Serialize)]
pub struct MarginInk {
    /// OD per RGB channel of the dye on the left, right and deep margin, if inked.
    pub sides: [Option<[f32; 3]>; 3],
    /// How far into the tissue the band reaches, µm.
    pub width: f32,
    /// Share of each margin's length the dye covers, 0..1.
    pub cover: f32,
    /// Scale of the gaps along the margin, µm.
    pub patch_um: f32,
}

/// Synth 1.2: knife chatter, bands of thicker and thinner section parallel to the
/// knife edge, where the blade vibrated; in a few round patches, not over the
/// whole section.
#[derive(Debug, Clone, Serialize)]
pub struct Chatter {
    /// Direction across the bands (the cut's direction), radians.
    pub angle: f32,
    /// Band spacing, µm.
    pub period_um: f32,
    /// Thickness swing: stain concentrations are multiplied by 1 ± this.
    pub amplitude: f32,
    /// Where it shows: centre x, centre y, radius (µm), fading over its outer 30%.
    pub patches: Vec<[f32; 3]>,
    /// (cos, sin) of `angle` over `period_um`.
    #[serde(skip)]
    across: [f32; 2],
}

/// Synth 1.2: the scanner's camera fields. Each field (or each strip, for a line
/// scanner) lets through its own light, a little different per channel, and less
/// towards its edges (vignetting), so the stitched image carries faint seams on
/// a grid, as real scans do where flat-field correction is imperfect.
#[derive(Debug, Clone, Serialize)]
pub struct ScanFields {
    /// Field width and height, µm (a strip's height is the slide's).
    pub width_um: f32,
    pub height_um: f32,
    /// Line scanner: strips as wide as a field, the slide's full height.
    pub strips: bool,
    /// Where the grid starts, µm.
    pub offset: [f32; 2],
    /// Spread of a field's gain, common to the channels and per channel.
    pub gain_sd: f32,
    pub channel_sd: f32,
    /// Share of the light lost at a field's corners (a strip's edges).
    pub vignette: f32,
}

/// A field of the grid: its column and row.
pub type FieldCell = (i64, i64);

impl ScanFields {
    /// The field (x, y) µm lies in, and where in it (0..1 across, 0..1 down).
    #[inline]
    pub fn locate(&self, x: f32, y: f32) -> (FieldCell, f32, f32) {
        let u = (x + self.offset[0]) / self.width_um;
        let (fi, fu) = (u.floor(), u - u.floor());
        if self.strips {
            return ((fi as i64, 0), fu, 0.5);
        }
        let v = (y + self.offset[1]) / self.height_um;
        ((fi as i64, v.floor() as i64), fu, v - v.floor())
    }

    /// A field's gain per RGB channel on the slide of this salt.
    #[inline]
    pub fn gains(&self, (fi, fj): FieldCell, salt: u64) -> [f32; 3] {
        let h = noise::hash2(fi, fj, salt ^ 0x5CA);
        let spread = |k: u32, sd: f32| 1.0 + sd * (2.0 * noise::unit(h, k) - 1.0);
        let common = spread(0, self.gain_sd);
        [1, 2, 3].map(|k| common * spread(k, self.channel_sd))
    }

    /// The light at (fu, fv) within a field of these gains.
    #[inline]
    pub fn light(&self, gains: [f32; 3], fu: f32, fv: f32) -> [f32; 3] {
        // 0 at the centre, 1 at the corners (a strip's edges).
        let r2 = 2.0 * ((fu - 0.5) * (fu - 0.5) + (fv - 0.5) * (fv - 0.5));
        let fall = 1.0 - self.vignette * r2;
        gains.map(|g| g * fall)
    }
}

/// Synth 1.2: a tear, a narrow crack where the section split and the glass shows:
/// a wavering line of `length_um` from (x, y), widest in its middle.
#[derive(Debug, Clone, Serialize)]
pub struct Tear {
    pub x: f32,
    pub y: f32,
    /// Direction, radians.
    pub angle: f32,
    pub length_um: f32,
    /// Gap at its widest, µm.
    pub width_um: f32,
    /// How far the line wavers to either side, µm, and over what length.
    pub waver_um: f32,
    pub waver_wavelength_um: f32,
    /// (cos, sin) of `angle`; bounding box (x0, y0, x1, y1).
    #[serde(skip)]
    dir: [f32; 2],
    #[serde(skip)]
    bounds: [f32; 4],
}

impl Tear {
    /// How open the section is at (x, y): 1 in the gap, 0 beside it.
    #[inline]
    fn gap(&self, x: f32, y: f32) -> f32 {
        let [x0, y0, x1, y1] = self.bounds;
        if x < x0 || x > x1 || y < y0 || y > y1 {
            return 0.0;
        }
        let (dx, dy) = (x - self.x, y - self.y);
        let t = dx * self.dir[0] + dy * self.dir[1];
        if t <= 0.0 || t >= self.length_um {
            return 0.0;
        }
        let off = -dx * self.dir[1] + dy * self.dir[0]
            - self.waver_um * (t * std::f32::consts::TAU / self.waver_wavelength_um).sin();
        let half = 0.5 * self.width_um * (std::f32::consts::PI * t / self.length_um).sin().sqrt();
        noise::smoothstep(half + 0.4, half - 0.4, off.abs())
    }
}

/// Chatter on 30% of slides, in one to three patches of 250-900 µm radius.
fn draw_chatter(rng: &mut ChaCha8Rng, w: f32, h: f32) -> Option<Chatter> {
    if !rng.gen_bool(0.3) {
        return None;
    }
    let angle: f32 = rng.gen_range(0.0..std::f32::consts::PI);
    let period_um = rng.gen_range(12.0..45.0);
    let patches = (0..rng.gen_range(1..=3))
        .map(|_| {
            [
                rng.gen_range(0.0..w),
                rng.gen_range(0.0..h),
                rng.gen_range(250.0..900.0),
            ]
        })
        .collect();
    Some(Chatter {
        angle,
        period_um,
        amplitude: rng.gen_range(0.06..0.25),
        patches,
        across: [angle.cos() / period_um, angle.sin() / period_um],
    })
}

/// A point inside the tissue (µm): x across the section's width, then y between the
/// surface and the base there. Tears and knife lines draw through it.
fn tissue_point(rng: &mut ChaCha8Rng, g: &Geometry) -> (f32, f32) {
    let x = rng.gen_range(g.left.base..g.right.base);
    let (top, bottom) = (g.surface.at(x), g.bottom.at(x));
    (x, rng.gen_range(top..bottom.max(top + 1.0)))
}

/// Tears on 35% of slides, one to three, each starting inside the tissue.
fn draw_tears(rng: &mut ChaCha8Rng, g: &Geometry) -> Vec<Tear> {
    if !rng.gen_bool(0.35) {
        return Vec::new();
    }
    (0..rng.gen_range(1..=3))
        .map(|_| {
            let (x, y) = tissue_point(rng, g);
            let angle: f32 = rng.gen_range(0.0..std::f32::consts::TAU);
            let length_um = rng.gen_range(80.0..600.0);
            let width_um = rng.gen_range(2.0..14.0);
            let waver_um = rng.gen_range(1.0..8.0);
            let dir = [angle.cos(), angle.sin()];
            let reach = waver_um + width_um;
            let (ex, ey) = (x + length_um * dir[0], y + length_um * dir[1]);
            Tear {
                x,
                y,
                angle,
                length_um,
                width_um,
                waver_um,
                waver_wavelength_um: rng.gen_range(30.0..150.0),
                dir,
                bounds: [
                    x.min(ex) - reach,
                    y.min(ey) - reach,
                    x.max(ex) + reach,
                    y.max(ey) + reach,
                ],
            }
        })
        .collect()
}

/// Synth 1.13: knife lines, straight scratches a nick in the blade dragged through
/// the section along the cut: the section thinner there or gone to the glass, a
/// little thicker at the lips where the tissue was pushed aside; all parallel, each
/// across the whole section.
#[derive(Debug, Clone, Serialize)]
pub struct KnifeLines {
    /// Direction along the lines (the cut's direction), radians.
    pub angle: f32,
    pub lines: Vec<KnifeLine>,
    /// (cos, sin) of `angle`.
    #[serde(skip)]
    along: [f32; 2],
}

/// One knife line, at `offset_um` across the cut from the slide's origin.
#[derive(Debug, Clone, Serialize)]
pub struct KnifeLine {
    pub offset_um: f32,
    /// Width at its widest, µm; it narrows and widens along its run.
    pub width_um: f32,
    /// Share of the section the scratch took at its deepest (1: the glass shows).
    pub depth: f32,
    /// Extra thickness at its lips, a share of the section.
    pub lip: f32,
    /// How far the line wavers to either side, µm, and over what length.
    pub waver_um: f32,
    pub waver_wavelength_um: f32,
}

impl KnifeLines {
    /// Section thickness at (x, y) µm relative to the slide's own under the lines (1
    /// away from them).
    #[inline]
    fn thickness(&self, x: f32, y: f32, salt: u64) -> f32 {
        let t = x * self.along[0] + y * self.along[1];
        let across = y * self.along[0] - x * self.along[1];
        let mut kept = 1.0f32;
        for (k, l) in self.lines.iter().enumerate() {
            let off0 = across - l.offset_um;
            // The scratch, its lips and its waver lie within this of its axis.
            if off0.abs() > l.waver_um + 0.5 * l.width_um + 3.0 {
                continue;
            }
            let salt = salt ^ (0x4B1F + k as u64);
            // Ragged at a micrometre, wavering over its wavelength.
            let off = off0
                - l.waver_um * (t * std::f32::consts::TAU / l.waver_wavelength_um).sin()
                - 0.5 * (noise::value(t / 1.5, 0.5, salt) - 0.5);
            // Narrower and shallower in stretches, never quite closed.
            let half = 0.5 * l.width_um * (0.35 + 0.65 * noise::value(t / 60.0, 2.5, salt));
            let depth = l.depth
                * (0.55 + 0.45 * noise::smoothstep(0.2, 0.55, noise::value(t / 180.0, 4.5, salt)));
            let d = off.abs();
            let scratch = noise::smoothstep(half + 0.4, half - 0.4, d);
            let lip = noise::smoothstep(half - 0.2, half + 0.5, d)
                * noise::smoothstep(half + 2.2, half + 0.9, d);
            // Lines lie apart; where two meet, their thinning multiplies.
            kept *= 1.0 - depth * scratch + l.lip * lip;
        }
        kept
    }
}

/// Knife lines on 20% of slides: one (60%), two or three parallel lines along the
/// cut (chatter's direction where the slide has chatter), each through a point of
/// the tissue.
fn draw_knife_lines(rng: &mut ChaCha8Rng, g: &Geometry) -> Option<KnifeLines> {
    if !rng.gen_bool(0.2) {
        return None;
    }
    let angle = match &g.chatter {
        Some(c) => c.angle,
        None => rng.gen_range(0.0..std::f32::consts::PI),
    };
    let along = [angle.cos(), angle.sin()];
    let n = match rng.gen_range(0..20) {
        0..=11 => 1,
        12..=16 => 2,
        _ => 3,
    };
    let lines = (0..n)
        .map(|_| {
            let (x, y) = tissue_point(rng, g);
            KnifeLine {
                offset_um: y * along[0] - x * along[1],
                width_um: rng.gen_range(2.0..7.0),
                depth: rng.gen_range(0.5..1.0),
                lip: rng.gen_range(0.0..0.15),
                waver_um: rng.gen_range(0.2..1.5),
                waver_wavelength_um: rng.gen_range(80.0..400.0),
            }
        })
        .collect();
    Some(KnifeLines {
        angle,
        lines,
        along,
    })
}

/// Visible fields on 75% of slides, half of them a line scanner's strips.
fn draw_scan_fields(rng: &mut ChaCha8Rng) -> Option<ScanFields> {
    if !rng.gen_bool(0.75) {
        return None;
    }
    let width_um: f32 = rng.gen_range(250.0..700.0);
    let height_um = width_um * rng.gen_range(0.6..1.0);
    Some(ScanFields {
        width_um,
        height_um,
        strips: rng.gen_bool(0.5),
        offset: [rng.gen_range(0.0..width_um), rng.gen_range(0.0..height_um)],
        gain_sd: rng.gen_range(0.002..0.012),
        channel_sd: rng.gen_range(0.0..0.006),
        vignette: rng.gen_range(0.0..0.04),
    })
}

/// Tissue-marking dyes as optical density per RGB channel (base 10) at full strength.
const INKS: [[f32; 3]; 6] = [
    [0.75, 0.22, 0.30], // green-teal
    [0.95, 0.95, 0.90], // black
    [0.85, 0.55, 0.15], // blue
    [0.05, 0.15, 0.70], // yellow
    [0.05, 0.45, 0.85], // orange
    [0.10, 0.75, 0.60], // red
];

/// Margin ink on 45% of slides: each of the left, right and deep margins inked with
/// 70% probability, mostly in one colour (at least one side when the slide is inked).
fn draw_ink(rng: &mut ChaCha8Rng) -> Option<MarginInk> {
    if !rng.gen_bool(0.45) {
        return None;
    }
    let mut sides = [None; 3];
    let main = INKS[rng.gen_range(0..INKS.len())];
    for side in sides.iter_mut() {
        if rng.gen_bool(0.7) {
            let od = if rng.gen_bool(0.75) {
                main
            } else {
                INKS[rng.gen_range(0..INKS.len())]
            };
            let k = rng.gen_range(0.5..1.2);
            *side = Some([od[0] * k, od[1] * k, od[2] * k]);
        }
    }
    if sides.iter().all(Option::is_none) {
        sides[rng.gen_range(0..3)] = Some(main);
    }
    Some(MarginInk {
        sides,
        width: rng.gen_range(4.0..16.0),
        cover: rng.gen_range(0.35..0.95),
        patch_um: rng.gen_range(60.0..240.0),
    })
}

/// Synth 1.10: an eccrine coil of radius `r` at (x, y) as a section through a coiled
/// tube shows it: one to three lobules of tightly packed tubule sections, round where
/// the tube is cut square across, oval or long where it runs obliquely or along the
/// section; secretory sections of 13-19 µm minor radius with lumens of varied size,
/// an eighth of them ducts (narrower, small lumens), and a short run of duct sections
/// rising from the coil toward the epidermis. Every section lies inside the disc,
/// which stays the coil's mask.
fn coiled_tube_sections(rng: &mut ChaCha8Rng, x: f32, y: f32, r: f32) -> Vec<Tubule> {
    use std::f32::consts::{PI, TAU};
    let n_lobules = match rng.gen_range(0..20) {
        0..=6 => 1,
        7..=14 => 2,
        _ => 3,
    };
    let mut lobules: Vec<(f32, f32, f32)> = Vec::new();
    for _ in 0..n_lobules {
        let rl = if n_lobules == 1 {
            r * rng.gen_range(0.55f32..0.8)
        } else {
            r * rng.gen_range(0.38f32..0.58)
        };
        let mut best = (x, y);
        for _ in 0..30 {
            let (a, d) = (
                rng.gen_range(0.0..TAU),
                (r - rl - 6.0).max(0.0) * rng.gen_range(0.0f32..1.0).sqrt(),
            );
            best = (x + d * a.cos(), y + d * a.sin());
            if lobules
                .iter()
                .all(|&(lx, ly, lr)| noise::hypot(lx - best.0, ly - best.1) > 0.85 * (lr + rl))
            {
                break;
            }
        }
        lobules.push((best.0, best.1, rl));
    }
    let mut out: Vec<Tubule> = Vec::new();
    // Fits inside the coil's disc and clear of every section drawn so far.
    let fits = |out: &[Tubule], t: &Tubule, gap: f32| {
        if noise::hypot(t.x - x, t.y - y) + t.r * t.aspect > r - 2.0 {
            return false;
        }
        out.iter().all(|u| {
            let d = noise::hypot(u.x - t.x, u.y - t.y);
            if d > u.r * u.aspect + t.r * t.aspect + gap {
                return true;
            }
            if d <= u.r + t.r + gap {
                return false;
            }
            // Between the two bounds: each edge, at 32 points, stays `gap` clear
            // of the other section.
            let clear = |a: &Tubule, b: &Tubule| {
                (0..32).all(|k| {
                    let ang = k as f32 / 32.0 * TAU;
                    let (px, py) = a.to_plate(a.r * ang.cos(), a.r * ang.sin());
                    b.edge_distance(a.x + px, a.y + py) > gap
                })
            };
            clear(t, u) && clear(u, t)
        })
    };
    for &(lx, ly, rl) in &lobules {
        let fill = rng.gen_range(0.5f32..0.62) * PI * rl * rl;
        let mut area = 0.0;
        for _ in 0..1500 {
            if area >= fill {
                break;
            }
            // Ducts are narrower and would fill the gaps the secretory sections
            // leave: at most about one section in eight.
            let duct = rng.gen_bool(0.12) && 8 * out.iter().filter(|t| t.duct).count() <= out.len();
            let tr = if duct {
                rng.gen_range(9.0f32..12.5)
            } else {
                rng.gen_range(13.0f32..19.0)
            };
            let stretch = rng.gen_range(0.0f32..1.0);
            let aspect = if duct {
                1.0 + 0.5 * stretch
            } else {
                1.0 + 1.6 * stretch * stretch
            };
            let angle = rng.gen_range(0.0..PI);
            let (a, d) = (
                rng.gen_range(0.0..TAU),
                (rl - tr).max(0.0) * rng.gen_range(0.0f32..1.0).sqrt(),
            );
            let lumen = if duct {
                rng.gen_range(2.5f32..4.0)
            } else {
                rng.gen_range(3.0f32..8.0)
            };
            let gap = rng.gen_range(1.5f32..3.5);
            let t = Tubule {
                x: lx + d * a.cos(),
                y: ly + d * a.sin(),
                r: tr,
                lumen,
                duct,
                aspect,
                axis: [angle.cos(), angle.sin()],
            };
            if fits(&out, &t, gap) {
                area += PI * tr * tr * aspect;
                out.push(t);
            }
        }
    }
    // The duct leaving the coil: a few round sections stepping up toward the
    // epidermis from the first lobule's top, as far as the disc allows.
    let (lx, ly, rl) = lobules[0];
    let (mut px, mut py) = (lx + rng.gen_range(-0.4f32..0.4) * rl, ly - rl);
    for _ in 0..rng.gen_range(2..5) {
        let tr = rng.gen_range(8.5f32..11.0);
        px += rng.gen_range(-12.0f32..12.0);
        py -= 2.0 * tr + rng.gen_range(4.0f32..14.0);
        let t = Tubule {
            x: px,
            y: py,
            r: tr,
            lumen: rng.gen_range(2.0f32..3.5),
            duct: true,
            aspect: 1.0 + 0.4 * rng.gen_range(0.0f32..1.0),
            axis: [0.0, 1.0],
        };
        if fits(&out, &t, 3.0) {
            out.push(t);
        }
    }
    out
}

/// What occupies a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    Glass,
    Corneum,
    Munro,
    Pustule,
    Granular,
    Spinous,
    Basal,
    Cleft,
    Kogoj,
    Papillary,
    Reticular,
    Fat,
    VesselWall,
    VesselLumen,
    TubuleCells,
    TubuleLumen,
    CoilStroma,
    /// Synth 1.9: a hair follicle's shaft (or its empty canal).
    HairShaft,
    /// Synth 1.9: its inner and outer root sheaths.
    RootSheath,
    /// Synth 1.9: its fibrous sheath and glassy membrane.
    FollicleSheath,
    /// Synth 1.9: a sebaceous lobule.
    Sebaceous,
}

/// The answer of [`Geometry::locate`].
#[derive(Debug, Clone, Copy)]
pub struct Site {
    pub region: Region,
    pub flags: u8,
    /// Depth below the top of the viable epidermis (corneum bottom), µm.
    pub v: f32,
    /// Depth below the top of the corneum, µm.
    pub dc: f32,
    /// Local corneum thickness, µm.
    pub corneum: f32,
    /// Signed distance to the dermal-epidermal junction (+ epidermis), µm (approx.).
    pub sdf: f32,
    /// Parakeratosis weight 0..1.
    pub pk: f32,
    /// Neutrophils seeping into the corneum / dermis (DIRA), 0..1.
    pub neutro: f32,
    /// Index of the vessel, coil or tubule, where relevant.
    pub item: u32,
    pub sub: u32,
    /// Inside an inflamed coil's halo (neutrophils in the dermis around the coil).
    pub neh: bool,
    /// Distance to the nearest eccrine tubule's outer edge, µm (large when none near).
    pub tubule_dist: f32,
    /// What the site would be without the coil it lies in (dermis or fat), so the
    /// coil's stroma can fade into it; the same as `region` outside coils.
    pub under: Region,
    /// Synth 1.7: in a papilla cut across inside a tangential slab.
    pub papilla: bool,
    /// Synth 1.9: in a follicle, the distance from its axis; in a sebaceous lobule,
    /// the normalised radius (below 1), µm.
    pub radial: f32,
}

impl Site {
    fn glass() -> Site {
        Site {
            region: Region::Glass,
            flags: 0,
            v: 0.0,
            dc: 0.0,
            corneum: 0.0,
            sdf: 0.0,
            pk: 0.0,
            neutro: 0.0,
            item: 0,
            sub: 0,
            neh: false,
            tubule_dist: f32::MAX,
            under: Region::Glass,
            papilla: false,
            radial: 0.0,
        }
    }
}

/// Which DIRA features a DIRA slide shows (partial pictures on purpose).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    Full,
    NoHidradenitis,
    NoAcantholysis,
    NoPustules,
    Typical,
}

impl Variant {
    /// Which DIRA features a slide of `class` shows: for DIRA full 45%, no
    /// hidradenitis 20%, no acantholysis 18%, no pustules 17%; `Typical` otherwise.
    pub fn draw(class: SlideClass, rng: &mut ChaCha8Rng) -> Variant {
        match class {
            SlideClass::Dira => match rng.gen_range(0..100) {
                0..=44 => Variant::Full,
                45..=64 => Variant::NoHidradenitis,
                65..=82 => Variant::NoAcantholysis,
                _ => Variant::NoPustules,
            },
            _ => Variant::Typical,
        }
    }
}

/// Everything random about one slide, in micrometres, drawn once from the seed.
#[derive(Debug, Clone)]
pub struct Geometry {
    pub class: SlideClass,
    pub seed: u64,
    pub variant: Variant,
    pub width_um: f32,
    pub height_um: f32,
    pub salt: u64,
    pub surface: Curve,
    pub bottom: Curve,
    pub left: Curve,
    pub right: Curve,
    pub corneum_norm: f32,
    pub corneum_ps: f32,
    pub granular_norm: f32,
    pub plate_norm: f32,
    pub plate_ps: f32,
    pub ridge_ps: f32,
    pub ridge_norm: f32,
    pub papillary_um: f32,
    pub fat_um: f32,
    pub adipocyte_um: f32,
    pub zones: Vec<Zone>,
    pub ridges: Vec<Ridge>,
    pub ridge_max_reach: f32,
    pub pustules: Vec<Lens>,
    pub munro: Vec<Lens>,
    pub kogoj: Vec<Circle>,
    pub clefts: Vec<Cleft>,
    pub coils: Vec<Coil>,
    /// Synth 1.9: hair follicles and their sebaceous lobules.
    pub follicles: Vec<Follicle>,
    pub vessels: Vec<Vessel>,
    vessel_index: SpatialIndex,
    /// Synth 1.12: the vessels by their boxes widened by the cells round them (empty
    /// for earlier generators).
    cuff_index: SpatialIndex,
    pub stain: StainMatrix,
    pub blur_um: f32,
    pub noise_sigma: f32,
    pub jpeg_quality: u8,
    pub pen: Option<Pen>,
    pub fold: Option<Fold>,
    pub blur_band: Option<BlurBand>,
    /// Synth 1.1's tangentially cut stretch of epidermis, if any.
    pub tangential: Option<Tangential>,
    /// Synth 1.1's margin ink, if any.
    pub ink: Option<MarginInk>,
    /// Synth 1.2's knife chatter, if any.
    pub chatter: Option<Chatter>,
    /// Synth 1.2's scanner fields, if they show.
    pub scan: Option<ScanFields>,
    /// Synth 1.2's tears.
    pub tears: Vec<Tear>,
    /// Synth 1.13's knife lines, if any.
    pub knife: Option<KnifeLines>,
    /// Cell density and size multipliers for this slide (biological variation).
    pub cell_scale: f32,
    /// Which renderer draws this slide.
    pub generator: Generator,
    /// Synth 1.0's per-slide appearance (drawn from its own stream, so the
    /// anatomy of a seed is the same under every generator).
    pub look: Look,
    /// Synth 1.6: melanin of the basal layer (peak concentration; 0 on a third of
    /// slides and under every earlier generator) and how far above the junction
    /// it reaches, µm. Drawn from a stream of its own.
    pub melanin: f32,
    pub melanin_reach_um: f32,
    /// Real texture for the corneum, epidermis and dermis (`--texture-from`).
    pub texture: Option<std::sync::Arc<super::texture::TextureBank>>,
}

/// Per-slide appearance of synth 1.0: section and scanner character, stain
/// strength per compartment, drawn around what the real train parts show.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Look {
    /// Multiplies eosin in collagen (pale to deep pink-red).
    pub collagen_e: f32,
    /// Hematoxylin of the keratinocyte cytoplasm (blue-purple epidermis).
    pub epi_h: f32,
    /// Eosin of the keratinocyte cytoplasm.
    pub epi_e: f32,
    /// Nuclear hematoxylin.
    pub nuc_h: f32,
    /// Width of the white retraction clefts between collagen bundles, 0..1.
    pub clefts: f32,
    /// Perinuclear halos (fixation shrinkage), 0..1.
    pub halo: f32,
    /// Section thickness variation across the slide (stain strength), 0..1.
    pub uneven: f32,
    /// Basket-weave (1) or compact (0) corneum.
    pub weave: f32,
    /// Scale of the collagen direction field, µm.
    pub flow_um: f32,
}

impl Look {
    fn sample(rng: &mut ChaCha8Rng) -> Look {
        Look {
            collagen_e: rng.gen_range(0.35..0.8),
            epi_h: rng.gen_range(0.12..0.24),
            epi_e: rng.gen_range(0.3..0.5),
            nuc_h: rng.gen_range(0.3..0.55),
            clefts: rng.gen_range(0.3..1.0),
            halo: rng.gen_range(0.2..0.8),
            uneven: rng.gen_range(0.05..0.25),
            weave: if rng.gen_bool(0.75) {
                rng.gen_range(0.6..1.0)
            } else {
                rng.gen_range(0.0..0.3)
            },
            flow_um: rng.gen_range(120.0..320.0),
        }
    }
}

/// Buckets of item indices on a square grid, for cheap point queries.
#[derive(Debug, Clone)]
struct SpatialIndex {
    cell: f32,
    cols: usize,
    rows: usize,
    buckets: Vec<Vec<u32>>,
}

impl SpatialIndex {
    fn new(width: f32, height: f32, cell: f32) -> SpatialIndex {
        let cols = (width / cell).ceil().max(1.0) as usize;
        let rows = (height / cell).ceil().max(1.0) as usize;
        SpatialIndex {
            cell,
            cols,
            rows,
            buckets: vec![Vec::new(); cols * rows],
        }
    }

    fn insert(&mut self, id: u32, x0: f32, y0: f32, x1: f32, y1: f32) {
        let c = |v: f32, n: usize| ((v / self.cell).floor().max(0.0) as usize).min(n - 1);
        for r in c(y0, self.rows)..=c(y1, self.rows) {
            for q in c(x0, self.cols)..=c(x1, self.cols) {
                self.buckets[r * self.cols + q].push(id);
            }
        }
    }

    #[inline]
    fn query(&self, x: f32, y: f32) -> &[u32] {
        if x < 0.0 || y < 0.0 {
            return &[];
        }
        let (q, r) = ((x / self.cell) as usize, (y / self.cell) as usize);
        if q >= self.cols || r >= self.rows {
            return &[];
        }
        &self.buckets[r * self.cols + q]
    }
}

/// Local epidermal parameters of one column `x`.
#[derive(Debug, Clone, Copy)]
struct Column {
    surface: f32,
    raise: f32,
    corneum: f32,
    granular: f32,
    plate: f32,
    w: f32,
    pk: f32,
    neutro: f32,
}

/// The parts of [`Geometry::locate`] that depend on the column alone.
#[derive(Debug, Clone)]
pub struct ColumnAt {
    pub x: f32,
    col: Column,
    bottom: f32,
}

/// The tissue outline's top and bottom at one column, for margin ink.
#[derive(Debug, Clone, Copy)]
pub struct InkColumn {
    surface: f32,
    bottom: f32,
}

/// The parts of [`Geometry::locate`] that depend on the row alone.
#[derive(Debug, Clone, Copy)]
pub struct RowAt {
    pub y: f32,
    left: f32,
    right: f32,
}

/// Maximum with a rounded join of width `k` (fillets where papillae meet ridges).
#[inline]
fn smooth_max(a: f32, b: f32, k: f32) -> f32 {
    let h = (k - (a - b).abs()).max(0.0) / k;
    a.max(b) + h * h * k * 0.25
}

fn trapezoid(x: f32, x0: f32, x1: f32, ramp: f32) -> f32 {
    noise::smoothstep(x0 - ramp, x0 + ramp, x) * (1.0 - noise::smoothstep(x1 - ramp, x1 + ramp, x))
}

/// Places `n` non-overlapping intervals of half-width drawn by `hw` inside [lo, hi].
fn place_lenses(
    rng: &mut ChaCha8Rng,
    n: usize,
    lo: f32,
    hi: f32,
    taken: &mut Vec<(f32, f32)>,
    mut make: impl FnMut(&mut ChaCha8Rng) -> (f32, f32),
    prefer: Option<&[Zone]>,
) -> Vec<Lens> {
    let mut out = Vec::new();
    let mut tries = 0;
    while out.len() < n && tries < 400 {
        tries += 1;
        let (hw, h) = make(rng);
        if hi - lo < 2.0 * hw + 10.0 {
            continue;
        }
        let mut x = rng.gen_range(lo + hw..hi - hw);
        if let Some(zones) = prefer {
            if !zones.is_empty() && rng.gen_bool(0.8) {
                let z = &zones[rng.gen_range(0..zones.len())];
                let (a, b) = (z.x0.max(lo + hw), z.x1.min(hi - hw));
                if b > a {
                    x = rng.gen_range(a..b);
                }
            }
        }
        if taken
            .iter()
            .any(|&(a, b)| x + hw + 25.0 > a && x - hw - 25.0 < b)
        {
            continue;
        }
        taken.push((x - hw, x + hw));
        out.push(Lens { x, hw, h });
    }
    out.sort_by(|a, b| a.x.total_cmp(&b.x));
    out
}

impl Geometry {
    /// Draws a slide's anatomy for the default generator. Sizes follow
    /// histology.md; the class decides which findings appear and how much of each.
    pub fn build(
        class: SlideClass,
        seed: u64,
        width_um: f32,
        height_um: f32,
        artefacts: &Artefacts,
    ) -> Geometry {
        Geometry::build_with(
            Generator::default(),
            class,
            seed,
            width_um,
            height_um,
            artefacts,
        )
    }

    /// Draws a slide's anatomy for `generator`. The anatomy and masks of a seed do
    /// not depend on the generator; synth 1.0 draws its stain and look from a
    /// second stream so synth 0.3's stream stays byte-for-byte as it was.
    pub fn build_with(
        generator: Generator,
        class: SlideClass,
        seed: u64,
        width_um: f32,
        height_um: f32,
        artefacts: &Artefacts,
    ) -> Geometry {
        let mut rng = ChaCha8Rng::seed_from_u64(noise::mix(seed ^ class.salt()));
        let salt = rng.gen::<u64>();
        let (w, h) = (width_um, height_um);
        let top = h * rng.gen_range(0.08..0.14);
        let surface = Curve::random(&mut rng, top, 3, (4.0, 25.0), (300.0, 2500.0));
        let (b0, l0, r0) = (
            h * rng.gen_range(0.88..0.95),
            w * rng.gen_range(0.02..0.06),
            w * (1.0 - rng.gen_range(0.02..0.06)),
        );
        let bottom = Curve::random(&mut rng, b0, 3, (8.0, 40.0), (250.0, 2000.0));
        let mut left = Curve::random(&mut rng, l0, 3, (5.0, 30.0), (400.0, 1600.0));
        let mut right = Curve::random(&mut rng, r0, 3, (5.0, 30.0), (400.0, 1600.0));
        // Ragged cut edges: a little fine roughness on the smooth outline.
        left.terms
            .extend(Curve::random(&mut rng, 0.0, 2, (1.0, 5.0), (30.0, 120.0)).terms);
        right
            .terms
            .extend(Curve::random(&mut rng, 0.0, 2, (1.0, 5.0), (30.0, 120.0)).terms);
        let lo = left.base + 160.0;
        let hi = right.base - 160.0;
        let len = (hi - lo).max(100.0);

        let variant = Variant::draw(class, &mut rng);
        let dira = class == SlideClass::Dira;
        let has_pustules = match class {
            SlideClass::Dira => variant != Variant::NoPustules,
            SlideClass::PustularPsoriasis => true,
            _ => false,
        };
        let has_clefts = dira && variant != Variant::NoAcantholysis;
        let has_neh = dira && variant != Variant::NoHidradenitis;

        let corneum_norm = rng.gen_range(10.0..18.0);
        let corneum_ps = rng.gen_range(24.0..40.0);
        let granular_norm = rng.gen_range(5.0..9.0);
        let plate_norm = if dira {
            rng.gen_range(65.0..95.0)
        } else {
            rng.gen_range(50.0..75.0)
        };
        let plate_ps = rng.gen_range(28.0..42.0);
        let ridge_norm = rng.gen_range(18.0..42.0);
        let ridge_ps = match class {
            SlideClass::Psoriasis => rng.gen_range(150.0..230.0),
            SlideClass::PustularPsoriasis => rng.gen_range(70.0..200.0),
            _ => rng.gen_range(80.0..140.0),
        };

        // Psoriasiform zones.
        let mut zones = Vec::new();
        let zone_share = match class {
            SlideClass::Psoriasis => Some(if rng.gen_bool(0.5) {
                1.2
            } else {
                rng.gen_range(0.55..0.9)
            }),
            SlideClass::PustularPsoriasis => Some(if rng.gen_bool(0.3) {
                1.2
            } else {
                rng.gen_range(0.45..0.9)
            }),
            SlideClass::Dira if rng.gen_bool(0.3) => Some(rng.gen_range(0.2..0.35)),
            _ => None,
        };
        if let Some(share) = zone_share {
            if share >= 1.0 {
                zones.push(Zone { x0: -1e6, x1: 1e6 });
            } else {
                let zl = len * share;
                let x0 = lo + rng.gen_range(0.0..(len - zl).max(1.0));
                zones.push(Zone { x0, x1: x0 + zl });
            }
        }
        let wz = |x: f32| {
            zones
                .iter()
                .map(|z| trapezoid(x, z.x0, z.x1, 120.0))
                .fold(0.0f32, f32::max)
        };

        // Rete ridges across the whole strip.
        let mut ridges = Vec::new();
        let mut x = left.base - 200.0 + rng.gen_range(0.0..80.0);
        let regular = matches!(class, SlideClass::Psoriasis | SlideClass::PustularPsoriasis);
        while x < right.base + 200.0 {
            let wv = wz(x);
            let lerp = |a: f32, b: f32| a + (b - a) * wv;
            let spread = if regular && wv > 0.5 { 0.06 } else { 0.2 };
            let depth = lerp(ridge_norm, ridge_ps) * rng.gen_range(1.0 - spread..1.0 + spread);
            let hw = lerp(rng.gen_range(20.0..34.0), rng.gen_range(16.0..23.0));
            let club = wv * rng.gen_range(0.25..0.8);
            ridges.push(Ridge { x, hw, depth, club });
            let spacing = lerp(rng.gen_range(85.0..135.0), rng.gen_range(95.0..125.0));
            x += spacing * rng.gen_range(1.0 - spread..1.0 + spread).max(0.7);
        }
        let ridge_max_reach = ridges
            .iter()
            .map(|r| r.hw * (1.0 + r.club))
            .fold(0.0, f32::max)
            + 1.0;

        // Findings in the epidermis.
        let mut taken = Vec::new();
        let pustules = if has_pustules {
            let n_max = ((len / 900.0).round() as usize).clamp(1, 6);
            let n = rng.gen_range(1..=n_max.max(1) + 1).min(n_max + 1);
            let prefer = (class == SlideClass::PustularPsoriasis).then_some(zones.as_slice());
            place_lenses(
                &mut rng,
                n,
                lo,
                hi,
                &mut taken,
                |r| {
                    let hw: f32 = r.gen_range(45.0..230.0);
                    (hw, r.gen_range(18.0..(0.45 * hw).clamp(22.0, 60.0)))
                },
                prefer,
            )
        } else {
            Vec::new()
        };
        let clefts = if has_clefts {
            let n = rng.gen_range(1..=((len / 900.0).round() as usize).clamp(1, 4));
            let mut out = Vec::new();
            // Some clefts sit at a pustule's edge, as in the DIRA biopsies.
            let mut extra = Vec::new();
            for p in &pustules {
                if out.len() + extra.len() < n && rng.gen_bool(0.4) {
                    let hw: f32 = rng.gen_range(35.0..110.0);
                    let side = if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
                    let x = p.x + side * (p.hw + hw + 30.0);
                    if x - hw > lo
                        && x + hw < hi
                        && !taken
                            .iter()
                            .any(|&(a, b)| x + hw + 20.0 > a && x - hw - 20.0 < b)
                    {
                        taken.push((x - hw, x + hw));
                        extra.push(Lens {
                            x,
                            hw,
                            h: rng.gen_range(10.0..26.0),
                        });
                    }
                }
            }
            let rest = n
                .saturating_sub(extra.len())
                .max(if extra.is_empty() { 1 } else { 0 });
            let mut placed = place_lenses(
                &mut rng,
                rest,
                lo,
                hi,
                &mut taken,
                |r| (r.gen_range(35.0..160.0), r.gen_range(10.0..28.0)),
                None,
            );
            placed.extend(extra);
            placed.sort_by(|a, b| a.x.total_cmp(&b.x));
            for lens in placed {
                out.push(Cleft {
                    lens,
                    roof_lost: rng.gen_bool(0.3),
                });
            }
            out
        } else {
            Vec::new()
        };
        let mut munro = Vec::new();
        let mut kogoj = Vec::new();
        if matches!(class, SlideClass::Psoriasis | SlideClass::PustularPsoriasis) {
            for z in &zones {
                let (a, b) = (z.x0.max(lo), z.x1.min(hi));
                if b - a < 100.0 {
                    continue;
                }
                let n = ((b - a) / 350.0 * rng.gen_range(0.5..1.1)).ceil() as usize;
                for _ in 0..n {
                    let hw = rng.gen_range(12.0..38.0);
                    munro.push(Lens {
                        x: rng.gen_range(a..b),
                        hw,
                        h: rng.gen_range(0.25..0.55),
                    });
                }
                let nk = match class {
                    SlideClass::PustularPsoriasis => rng.gen_range(2..6),
                    _ if rng.gen_bool(0.5) => rng.gen_range(1..4),
                    _ => 0,
                };
                for _ in 0..nk {
                    // Over a papilla: between two ridges.
                    let xk = rng.gen_range(a..b);
                    let r = rng.gen_range(12.0..26.0);
                    kogoj.push(Circle {
                        x: xk,
                        y: r + rng.gen_range(2.0..8.0),
                        r,
                    });
                }
            }
            munro.sort_by(|a, b| a.x.total_cmp(&b.x));
        }

        let papillary_um = rng.gen_range(35.0..60.0);
        let thickness = bottom.base - top;
        let fat_um = if thickness > 900.0 {
            thickness * rng.gen_range(0.12..0.25)
        } else {
            0.0
        };
        let adipocyte_um = rng.gen_range(55.0..80.0);

        let mut geom = Geometry {
            class,
            seed,
            variant,
            width_um: w,
            height_um: h,
            salt,
            surface,
            bottom,
            left,
            right,
            corneum_norm,
            corneum_ps,
            granular_norm,
            plate_norm,
            plate_ps,
            ridge_ps,
            ridge_norm,
            papillary_um,
            fat_um,
            adipocyte_um,
            zones,
            ridges,
            ridge_max_reach,
            pustules,
            munro,
            kogoj,
            clefts,
            coils: Vec::new(),
            follicles: Vec::new(),
            vessels: Vec::new(),
            vessel_index: SpatialIndex::new(w, h, 200.0),
            cuff_index: SpatialIndex::new(w, h, 200.0),
            stain: StainMatrix::sample(&mut rng),
            blur_um: rng.gen_range(0.2..0.5),
            noise_sigma: rng.gen_range(1.0..3.0),
            jpeg_quality: rng.gen_range(78..93),
            pen: None,
            fold: None,
            blur_band: None,
            tangential: None,
            ink: None,
            chatter: None,
            scan: None,
            tears: Vec::new(),
            knife: None,
            cell_scale: rng.gen_range(0.92..1.08),
            generator,
            look: Look::sample(&mut ChaCha8Rng::seed_from_u64(0)),
            melanin: 0.0,
            melanin_reach_um: 0.0,
            texture: None,
        };
        if generator >= Generator::V1_6 {
            // Fair to dark skin: none on a third of slides, else a peak of 0.1-0.7,
            // which the most pigmented cells' granules carry 1.5 times (`melanin_at`):
            // an optical density of up to about 0.9 in blue.
            let mut r = ChaCha8Rng::seed_from_u64(noise::mix(seed ^ class.salt() ^ 0x3E1A6E));
            if r.gen_bool(2.0 / 3.0) {
                geom.melanin = r.gen_range(0.1..0.7);
                geom.melanin_reach_um = r.gen_range(5.0..16.0);
            }
        }
        if generator.is_v1() {
            let mut r1 = ChaCha8Rng::seed_from_u64(noise::mix(seed ^ class.salt() ^ 0x51_7E_10));
            geom.stain = StainMatrix::sample_measured(&mut r1);
            geom.look = Look::sample(&mut r1);
            geom.blur_um = r1.gen_range(0.3..0.7);
            geom.noise_sigma = r1.gen_range(1.5..4.0);
            geom.jpeg_quality = r1.gen_range(70..92);
            // Neutral absorbance (`StainMatrix::with_neutral`), synth 1.3.
            geom.stain = geom.stain.clone().with_neutral(r1.gen_range(0.15..0.35));
            // Synth 1.16: the measured stain's colour fitted to its real image.
            if generator.has_stain_grain() {
                let map = &MEASURED_OD_MAP[geom.stain.nearest_measured()];
                geom.stain = geom.stain.clone().with_od_map(map);
            }
        }
        // Kogoj pustules sit in the upper spinous layer: store their depth below
        // the viable top in `y`, their x centred over the nearest papilla.
        for k in 0..geom.kogoj.len() {
            let x = geom.kogoj[k].x;
            if let Some(i) = geom.ridges.iter().position(|r| r.x > x) {
                if i > 0 {
                    geom.kogoj[k].x = 0.5 * (geom.ridges[i - 1].x + geom.ridges[i].x);
                }
            }
        }

        // Eccrine coils at the dermis-fat junction.
        let n_coils = ((len / 1300.0) * rng.gen_range(0.8..1.3)).round().max(1.0) as usize;
        let dej_max = top + corneum_ps + granular_norm + plate_norm + ridge_ps + 60.0;
        for i in 0..n_coils {
            let cx = lo + len * (i as f32 + rng.gen_range(0.25..0.75)) / n_coils as f32;
            let fat_top = geom.bottom.at(cx) - fat_um;
            let room = (fat_top + 80.0 - dej_max - 150.0) / 2.0;
            if room < 80.0 {
                continue;
            }
            let r = rng.gen_range(140.0f32..300.0).min(room);
            let cy = (fat_top - rng.gen_range(-0.2..0.5) * r).min(geom.bottom.at(cx) - r - 40.0);
            if cy - r < dej_max + 100.0 {
                continue;
            }
            let mut tubules: Vec<Tubule> = Vec::new();
            let target = ((r * r) / (18.0 * 18.0) * 0.35) as usize + 4;
            let mut tries = 0;
            while tubules.len() < target && tries < 2000 {
                tries += 1;
                let tr: f32 = rng.gen_range(14.0..20.0);
                let a = rng.gen_range(0.0..std::f32::consts::TAU);
                let d = (r - tr) * rng.gen_range(0.0f32..1.0).sqrt();
                let (tx, ty) = (cx + d * a.cos(), cy + d * a.sin());
                if tubules
                    .iter()
                    .any(|t| noise::hypot(t.x - tx, t.y - ty) < t.r + tr + 4.0)
                {
                    continue;
                }
                let duct = rng.gen_bool(0.25);
                tubules.push(Tubule::round(
                    tx,
                    ty,
                    if duct { tr * 0.8 } else { tr },
                    if duct {
                        rng.gen_range(2.5..4.0)
                    } else {
                        rng.gen_range(4.0..7.0)
                    },
                    duct,
                ));
            }
            geom.coils.push(Coil {
                x: cx,
                y: cy,
                r,
                inflamed: false,
                tubules,
            });
        }
        if has_neh {
            let mut any = false;
            for c in geom.coils.iter_mut() {
                if rng.gen_bool(0.7) {
                    c.inflamed = true;
                    any = true;
                }
            }
            if !any {
                if let Some(c) = geom.coils.first_mut() {
                    c.inflamed = true;
                }
            }
        }

        // Vessels in the dermis, and dilated tortuous papillary capillaries in
        // psoriasiform zones.
        let dermis_area_mm2 = len * (thickness - 200.0).max(100.0) / 1e6;
        let n_vessels = (dermis_area_mm2 * 30.0) as usize;
        for _ in 0..n_vessels {
            let x = rng.gen_range(lo - 100.0..hi + 100.0);
            let y = rng.gen_range(
                top + plate_norm + 80.0..(geom.bottom.at(x) - fat_um).max(top + plate_norm + 81.0),
            );
            let u: f32 = rng.gen_range(0.0..1.0);
            let rx = 5.0 + 18.0 * u * u;
            geom.vessels.push(Vessel {
                x,
                y,
                rx,
                ry: rx * rng.gen_range(0.45..1.0),
                angle: rng.gen_range(-0.5..0.5),
                wall: (rx * 0.25).clamp(2.0, 5.0),
                tortuous: false,
            });
        }
        let ridge_xs: Vec<(f32, f32)> = geom.ridges.iter().map(|r| (r.x, r.depth)).collect();
        for pair in ridge_xs.windows(2) {
            let mx = 0.5 * (pair[0].0 + pair[1].0);
            let wv = geom.ps_weight(mx);
            if wv < 0.5 {
                continue;
            }
            let depth = pair[0].1.min(pair[1].1);
            let col = geom.column(mx);
            let y = col.surface + col.corneum + col.granular + col.plate + depth * 0.45;
            geom.vessels.push(Vessel {
                x: mx,
                y,
                rx: rng.gen_range(5.0..8.0),
                ry: depth * rng.gen_range(0.3..0.4),
                angle: 0.0,
                wall: 1.8,
                tortuous: true,
            });
        }
        if generator.is_v1() {
            // Synth 1.1's section character, from its own stream (every draw above is
            // unchanged, so a seed keeps its lesions and the finding masks).
            let mut r2 = ChaCha8Rng::seed_from_u64(noise::mix(seed ^ class.salt() ^ 0x7A_11_6E));
            geom.tangential = geom.draw_tangential(&mut r2, lo, hi);
            if let Some(t) = geom
                .tangential
                .as_mut()
                .filter(|_| generator >= Generator::V1_7)
            {
                // Papillae cut obliquely: ovals of aspect 1-2 at any angle, from a
                // stream of their own (the islands' places and sizes are 1.6's).
                let mut r = ChaCha8Rng::seed_from_u64(noise::mix(seed ^ class.salt() ^ 0x0FA1));
                t.ovals = (0..t.islands.len())
                    .map(|_| {
                        [
                            r.gen_range(1.0f32..2.0),
                            r.gen_range(0.0..std::f32::consts::PI),
                        ]
                    })
                    .collect();
                t.reach = t
                    .islands
                    .iter()
                    .map(|c| c.r * 2.0f32.sqrt() + 1.0)
                    .fold(t.reach, f32::max);
            }
            if let Some(t) = &geom.tangential {
                let caps: Vec<Vessel> = t
                    .islands
                    .iter()
                    .map(|c| {
                        let col = geom.column(c.x);
                        let y = col.surface + col.corneum + col.granular + col.plate + c.y;
                        let r = (c.r * r2.gen_range(0.2..0.3)).clamp(3.0, 6.0);
                        Vessel {
                            x: c.x,
                            y,
                            rx: r,
                            ry: r * r2.gen_range(0.7..1.0),
                            angle: r2.gen_range(0.0..std::f32::consts::PI),
                            wall: 1.5,
                            tortuous: false,
                        }
                    })
                    .collect();
                geom.vessels.extend(caps);
            }
            geom.ink = draw_ink(&mut r2);
            // Synth 1.2's, from a stream of their own again.
            let mut r3 = ChaCha8Rng::seed_from_u64(noise::mix(seed ^ class.salt() ^ 0x7A_12_C4));
            geom.chatter = draw_chatter(&mut r3, w, h);
            geom.scan = draw_scan_fields(&mut r3);
            geom.tears = draw_tears(&mut r3, &geom);
            if generator >= Generator::V1_13 {
                // Synth 1.13's knife lines, from a stream of their own.
                let mut r6 =
                    ChaCha8Rng::seed_from_u64(noise::mix(seed ^ class.salt() ^ 0x4B_1F_E5));
                geom.knife = draw_knife_lines(&mut r6, &geom);
            }
            if generator >= Generator::V1_9 {
                // Synth 1.9's hair follicles, from a stream of their own again.
                let mut r4 =
                    ChaCha8Rng::seed_from_u64(noise::mix(seed ^ class.salt() ^ 0xF0_11_1C));
                geom.follicles = geom.draw_follicles(&mut r4, lo, len, dej_max);
            }
            if generator >= Generator::V1_10 {
                // Synth 1.10's coils as a coiled tube cut across, each from a
                // stream of its own: the same discs (so the same masks), new tubules.
                for (ci, c) in geom.coils.iter_mut().enumerate() {
                    let mut r5 = ChaCha8Rng::seed_from_u64(noise::mix(
                        seed ^ class.salt() ^ 0xC0_11_10 ^ ((ci as u64) << 32),
                    ));
                    c.tubules = coiled_tube_sections(&mut r5, c.x, c.y, c.r);
                }
            }
        }
        let mut index = SpatialIndex::new(w, h, 200.0);
        for (i, v) in geom.vessels.iter().enumerate() {
            let r = v.rx.max(v.ry) + 6.0;
            index.insert(i as u32, v.x - r, v.y - r, v.x + r, v.y + r);
        }
        geom.vessel_index = index;
        if generator >= Generator::V1_12 {
            // Synth 1.12 draws cells up to PERIVASCULAR_REACH beyond a vessel's wall and
            // finds the vessels near a point of dermis by an index of its own (the
            // wider boxes would slow `locate` everywhere).
            let mut cuffs = SpatialIndex::new(w, h, 200.0);
            for (i, v) in geom.vessels.iter().enumerate() {
                let r = v.rx.max(v.ry) + PERIVASCULAR_REACH + 6.0;
                cuffs.insert(i as u32, v.x - r, v.y - r, v.x + r, v.y + r);
            }
            geom.cuff_index = cuffs;
        }

        // Artefacts.
        if artefacts.pen {
            let y0 = if rng.gen_bool(0.5) {
                top * 0.5
            } else {
                (geom.bottom.base + h) * 0.5
            };
            let od = match rng.gen_range(0..3) {
                0 => [0.9, 0.25, 0.75], // green
                1 => [0.85, 0.6, 0.1],  // blue
                _ => [0.9, 0.9, 0.9],   // black
            };
            let x0 = rng.gen_range(0.0..w * 0.4);
            geom.pen = Some(Pen {
                path: Curve::random(&mut rng, y0, 2, (20.0, 120.0), (800.0, 3000.0)),
                x0,
                x1: x0 + w * rng.gen_range(0.3..0.6),
                width: rng.gen_range(120.0..300.0),
                od,
            });
        }
        if artefacts.fold {
            let a: f32 = rng.gen_range(1.2..1.9);
            let (cx, cy) = (rng.gen_range(lo..hi.max(lo + 1.0)), h * 0.5);
            geom.fold = Some(Fold {
                cos: a.cos(),
                sin: a.sin(),
                offset: cx * a.cos() + cy * a.sin(),
                width: rng.gen_range(60.0..180.0),
            });
        }
        if artefacts.blur {
            let x0 = rng.gen_range(lo..hi.max(lo + 1.0));
            geom.blur_band = Some(BlurBand {
                x0,
                x1: x0 + rng.gen_range(300.0..900.0),
                sigma_um: rng.gen_range(2.0..4.0),
            });
        }
        geom
    }

    /// Psoriasiform weight of column `x` (1 inside a zone, ramps at its ends).
    #[inline]
    pub fn ps_weight(&self, x: f32) -> f32 {
        let mut w = 0.0f32;
        for z in &self.zones {
            w = w.max(trapezoid(x, z.x0, z.x1, 120.0));
        }
        w
    }

    #[inline]
    fn column(&self, x: f32) -> Column {
        let w = self.ps_weight(x);
        let mut raise = 0.0f32;
        for p in &self.pustules {
            raise = raise.max(p.height(x, 0.6));
        }
        // DIRA: neutrophil-imbued parakeratosis and granular-layer diminution over
        // and around its pustules and clefts; pustular psoriasis likewise.
        let mut near = 0.0f32;
        if matches!(self.class, SlideClass::Dira | SlideClass::PustularPsoriasis) {
            let spread = 140.0;
            for l in self
                .pustules
                .iter()
                .chain(self.clefts.iter().map(|c| &c.lens))
            {
                let d = ((x - l.x).abs() - l.hw).max(0.0);
                near = near.max(1.0 - noise::smoothstep(0.0, spread, d));
            }
        }
        let pk = w.max(near);
        let ps = w.max(0.6 * near);
        let lerp = |a: f32, b: f32, t: f32| a + (b - a) * t;
        Column {
            surface: self.surface.at(x),
            raise,
            corneum: lerp(self.corneum_norm, self.corneum_ps, ps),
            granular: self.granular_norm * (1.0 - 0.85 * pk),
            plate: lerp(self.plate_norm, self.plate_ps, w),
            w,
            pk,
            neutro: near,
        }
    }

    /// Signed distance (µm, + inside) to the dermal-epidermal junction at (x, v),
    /// where `v` is depth below the top of the viable epidermis and `top` the depth
    /// of the plate (the tips of the dermal papillae).
    #[inline]
    fn dej_sdf(&self, x: f32, v: f32, top: f32) -> f32 {
        let ridges = self.ridge_sdf(x, v, top);
        match &self.tangential {
            Some(t) if x > t.x0 - TANGENTIAL_RAMP_UM && x < t.x1 + TANGENTIAL_RAMP_UM => {
                let w = t.weight(x);
                ridges + (t.sdf(x, v - top) - ridges) * w
            }
            _ => ridges,
        }
    }

    /// [`Self::dej_sdf`] of the rete ridges alone.
    #[inline]
    fn ridge_sdf(&self, x: f32, v: f32, top: f32) -> f32 {
        let mut best = top - v;
        if v <= top - BASAL_UM * 3.0 {
            return best;
        }
        let start = self
            .ridges
            .partition_point(|r| r.x < x - self.ridge_max_reach);
        for r in &self.ridges[start..] {
            if r.x > x + self.ridge_max_reach {
                break;
            }
            let dx = (x - r.x).abs();
            let t = ((v - top) / r.depth).clamp(0.0, 1.0);
            let hw_b = r.hw * (1.0 + r.club);
            let vb = top + r.depth - hw_b;
            let s = if v < vb {
                r.hw * (1.0 + r.club * t * t) - dx
            } else {
                hw_b - (dx * dx + (v - vb) * (v - vb)).sqrt()
            };
            best = smooth_max(best, s, 30.0);
        }
        best
    }

    /// Bottom edge of the tissue (top of the glass below it) at column `x`.
    #[inline]
    pub fn bottom_at(&self, x: f32) -> f32 {
        self.bottom.at(x)
    }

    /// Synth 1.12: indices of the vessels whose box, widened by [`PERIVASCULAR_REACH`]
    /// and more, holds (x, y) µm: a superset of those whose cells may reach it (none
    /// for earlier generators).
    pub fn vessels_near(&self, x: f32, y: f32) -> &[u32] {
        self.cuff_index.query(x, y)
    }

    /// What occupies (x, y) µm, with the mask bits of every finding there.
    pub fn locate(&self, x: f32, y: f32) -> Site {
        self.locate_in(&self.column_at(x), &self.row_at(y))
    }

    /// What [`Self::locate`] needs of column `x` whatever the depth: renderers that
    /// shade many rows of the same columns compute it once per column.
    pub fn column_at(&self, x: f32) -> ColumnAt {
        ColumnAt {
            x,
            col: self.column(x),
            bottom: self.bottom.at(x),
        }
    }

    /// What [`Self::locate`] needs of row `y` whatever the column.
    pub fn row_at(&self, y: f32) -> RowAt {
        RowAt {
            y,
            left: self.left.at(y),
            right: self.right.at(y),
        }
    }

    /// [`Self::locate`] at column `c`'s x and row `r`'s y: the same site, without
    /// the tissue outline's sums of sines (16 a point) for every point.
    pub fn locate_in(&self, c: &ColumnAt, r: &RowAt) -> Site {
        let (x, y) = (c.x, r.y);
        if x < 0.0 || y < 0.0 || x > self.width_um || y > self.height_um {
            return Site::glass();
        }
        let col = &c.col;
        let top = col.surface - col.raise;
        if y < top || y > c.bottom || x < r.left || x > r.right {
            return Site::glass();
        }
        let mut site = Site::glass();
        site.flags = TISSUE;
        site.corneum = col.corneum;
        site.pk = col.pk;
        site.neutro = col.neutro;
        let viable_top = col.surface + col.corneum;
        let v = y - viable_top;
        site.v = v;
        site.dc = y - top;
        let plate_top = col.granular + col.plate;
        if col.w >= 0.5 {
            let reach = self.ridge_norm + (self.ridge_ps - self.ridge_norm) * col.w;
            if v < plate_top + reach + 10.0 {
                site.flags |= PSORIASIFORM;
            }
        }
        // Clefts at the granular layer (possibly open to the surface).
        for c in &self.clefts {
            let hc = c.lens.height(x, 0.5);
            if hc > 0.0 {
                let c0 = col.granular * 0.4;
                if c.roof_lost && v < c0 {
                    return Site::glass();
                }
                if v >= c0 && v < c0 + hc {
                    site.region = Region::Cleft;
                    site.flags |= EPIDERMIS | ACANTHOLYSIS;
                    return site;
                }
            }
        }
        if y < top + col.corneum {
            site.region = Region::Corneum;
            site.flags |= EPIDERMIS;
            if site.flags & PSORIASIFORM != 0 {
                for m in &self.munro {
                    let hm = m.height(x, 0.5) * col.corneum;
                    let mid = top + col.corneum * 0.45;
                    if hm > 0.0 && (y - mid).abs() < hm * 0.5 {
                        site.region = Region::Munro;
                        break;
                    }
                }
            }
            return site;
        }
        if v < 0.0 {
            // Between the lifted corneum and the viable epidermis: a subcorneal pustule.
            site.region = Region::Pustule;
            site.flags |= EPIDERMIS | PUSTULE;
            return site;
        }
        let sdf = self.dej_sdf(x, v, plate_top);
        site.sdf = sdf;
        if sdf > 0.0 {
            site.flags |= EPIDERMIS;
            site.region = if v < col.granular {
                Region::Granular
            } else if sdf < BASAL_UM {
                Region::Basal
            } else {
                Region::Spinous
            };
            if site.flags & PSORIASIFORM != 0 {
                for k in &self.kogoj {
                    if noise::hypot(x - k.x, v - col.granular - k.y) < k.r {
                        site.region = Region::Kogoj;
                    }
                }
            }
            return site;
        }
        // Dermis and fat.
        let fat_top = c.bottom - self.fat_um;
        // Everything between the rete ridges is papillary dermis, whatever its
        // distance to the nearest ridge wall.
        let reach = self.ridge_norm + (self.ridge_ps - self.ridge_norm) * col.w;
        site.region = if y > fat_top {
            Region::Fat
        } else if sdf > -self.papillary_um || v < plate_top + reach * 0.85 {
            Region::Papillary
        } else {
            Region::Reticular
        };
        if let Some(t) = &self.tangential {
            // A papilla cut across inside the slab is papillary dermis, however deep.
            if site.region == Region::Papillary && v < plate_top + t.depth && t.weight(x) > 0.5 {
                site.v = site.v.min(plate_top);
                site.papilla = self.generator >= Generator::V1_7 && t.in_papilla(x, v - plate_top);
            }
        }
        site.under = site.region;
        for (ci, c) in self.coils.iter().enumerate() {
            // A coil's reach is a square's first: the distance is never below
            // either offset, so this skips no point the distance would keep.
            let reach = c.r + NEH_HALO_UM;
            if (x - c.x).abs() >= reach || (y - c.y).abs() >= reach {
                continue;
            }
            let d = noise::hypot(x - c.x, y - c.y);
            if d < reach {
                // Synth 1.14: hidradenitis lies within the halo of the coil's tubules,
                // not over its whole disc, whose lobules leave much of it plain dermis.
                let by_tubules = c.inflamed && self.generator >= Generator::V1_14;
                if c.inflamed && !by_tubules {
                    site.flags |= HIDRADENITIS;
                    site.neh = true;
                }
                if d >= c.r + 12.0 {
                    if by_tubules {
                        let nearest = c
                            .tubules
                            .iter()
                            .map(|t| t.edge_distance(x, y))
                            .fold(f32::MAX, f32::min);
                        if nearest < NEH_HALO_UM {
                            site.flags |= HIDRADENITIS;
                            site.neh = true;
                            site.tubule_dist = nearest.max(0.0);
                        }
                    }
                } else {
                    site.item = ci as u32;
                    let mut nearest = f32::MAX;
                    let oval = self.generator >= Generator::V1_10;
                    for (ti, t) in c.tubules.iter().enumerate() {
                        let edge = if oval {
                            t.edge_distance(x, y)
                        } else {
                            noise::hypot(x - t.x, y - t.y) - t.r
                        };
                        if edge < nearest {
                            nearest = edge;
                            site.sub = ti as u32;
                        }
                    }
                    site.tubule_dist = nearest.max(0.0);
                    if by_tubules && nearest < NEH_HALO_UM {
                        site.flags |= HIDRADENITIS;
                        site.neh = true;
                    }
                    if nearest < 0.0 {
                        let t = &c.tubules[site.sub as usize];
                        let centre = if oval {
                            let (u, v) = t.local(x, y);
                            noise::hypot(u, v)
                        } else {
                            noise::hypot(x - t.x, y - t.y)
                        };
                        site.region = if centre < t.lumen {
                            Region::TubuleLumen
                        } else {
                            Region::TubuleCells
                        };
                        return site;
                    }
                    if nearest < 9.0 {
                        site.region = Region::CoilStroma;
                        return site;
                    }
                }
            }
        }
        for (fi, f) in self.follicles.iter().enumerate() {
            if x < f.bbox[0] || x > f.bbox[2] || y < f.bbox[1] || y > f.bbox[3] {
                continue;
            }
            for (li, l) in f.lobules.iter().enumerate() {
                let q = l.q(x, y);
                if q < 1.0 {
                    site.region = Region::Sebaceous;
                    site.item = fi as u32;
                    site.sub = li as u32;
                    site.radial = q;
                    return site;
                }
            }
            let d = f.radius_at(x, y);
            if d < f.r + FIBROUS_SHEATH_UM {
                site.item = fi as u32;
                site.radial = d;
                site.region = if d < f.shaft {
                    Region::HairShaft
                } else if d < f.r {
                    Region::RootSheath
                } else {
                    Region::FollicleSheath
                };
                return site;
            }
        }
        for &vi in self.vessel_index.query(x, y) {
            let ves = &self.vessels[vi as usize];
            let (dxr, dy) = ves.local(x, y);
            let q = (dxr / (ves.rx + ves.wall)).powi(2) + (dy / (ves.ry + ves.wall)).powi(2);
            if q < 1.0 {
                site.item = vi;
                let qi = (dxr / ves.rx).powi(2) + (dy / ves.ry).powi(2);
                site.region = if qi < 1.0 {
                    Region::VesselLumen
                } else {
                    Region::VesselWall
                };
                break;
            }
        }
        site
    }

    /// Which findings this slide has, in the fixed order of [`super::Finding::ALL`].
    pub fn has(&self, bit: u8) -> bool {
        match bit {
            PUSTULE => !self.pustules.is_empty(),
            ACANTHOLYSIS => !self.clefts.is_empty(),
            HIDRADENITIS => self.coils.iter().any(|c| c.inflamed),
            PSORIASIFORM => !self.zones.is_empty(),
            _ => false,
        }
    }

    /// Synth 1.9: hair follicles in the dermis: none on a fifth of slides, else 0.4-1.6
    /// a millimetre of width; three in five cut along their axis (150-700 µm of it,
    /// up to 0.6 rad off the vertical, as follicles run obliquely), the rest across;
    /// outer root sheath 30-90 µm in radius, the shaft 15-30% of it (lost from the
    /// section in three in ten), the inner root sheath 12-18%; one to three sebaceous
    /// lobules beside the upper half of most follicles cut along, and of some cut
    /// across. Each lies below the deepest the epidermis reaches (`dej_max`), above
    /// the tissue's bottom, clear of the other follicles and of every coil with its
    /// hidradenitis halo, so no finding mask changes.
    fn draw_follicles(
        &self,
        rng: &mut ChaCha8Rng,
        lo: f32,
        len: f32,
        dej_max: f32,
    ) -> Vec<Follicle> {
        use std::f32::consts::{FRAC_PI_2, TAU};
        let mut out: Vec<Follicle> = Vec::new();
        if rng.gen_bool(0.2) {
            return out;
        }
        let n = ((len / 1000.0) * rng.gen_range(0.4..1.6)).round().max(1.0) as usize;
        for _ in 0..n {
            for _ in 0..40 {
                let r = rng.gen_range(30.0f32..90.0);
                let along = rng.gen_bool(0.6);
                let x0 = rng.gen_range(lo..lo + len);
                let (top, deep) = (dej_max + 20.0 + r, self.bottom.at(x0) - r - 40.0);
                if deep <= top {
                    continue;
                }
                let y0 = rng.gen_range(top..deep);
                let (mut x1, mut y1) = (x0, y0);
                let z0 = r * 0.35 * rng.gen_range(0.0f32..1.0).powi(2);
                let mut taper = 0.0;
                if along {
                    let l = rng.gen_range(150.0f32..700.0);
                    let a = rng.gen_range(-0.6f32..0.6);
                    x1 = x0 + l * a.sin();
                    y1 = y0 + l * a.cos();
                    taper = (r * rng.gen_range(1.0f32..3.0)).min(0.4 * l);
                }
                let mut f = Follicle {
                    x0,
                    y0,
                    x1,
                    y1,
                    r,
                    shaft: r * rng.gen_range(0.15..0.3),
                    irs: r * rng.gen_range(0.12..0.18),
                    lost: rng.gen_bool(0.3),
                    z0,
                    taper,
                    pigment: if rng.gen_bool(0.5) {
                        rng.gen_range(0.2..1.0)
                    } else {
                        0.0
                    },
                    lobules: Vec::new(),
                    bbox: [0.0; 4],
                };
                if rng.gen_bool(if along { 0.7 } else { 0.35 }) {
                    for _ in 0..rng.gen_range(1..=3) {
                        let (a, b) = (rng.gen_range(25.0f32..65.0), rng.gen_range(18.0f32..40.0));
                        let off = r + FIBROUS_SHEATH_UM + 0.8 * b;
                        let (lx, ly, angle) = if along {
                            let t = rng.gen_range(0.1f32..0.5);
                            let l = f.length();
                            let (ux, uy) = ((x1 - x0) / l, (y1 - y0) / l);
                            let side = if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
                            (
                                x0 + t * (x1 - x0) - side * uy * off,
                                y0 + t * (y1 - y0) + side * ux * off,
                                uy.atan2(ux),
                            )
                        } else {
                            let phi = rng.gen_range(0.0..TAU);
                            (x0 + off * phi.cos(), y0 + off * phi.sin(), phi + FRAC_PI_2)
                        };
                        f.lobules.push(Lobule {
                            x: lx,
                            y: ly,
                            a,
                            b,
                            angle,
                        });
                    }
                }
                f.bound();
                let [bx0, by0, bx1, by1] = f.bbox;
                let floor = [bx0, 0.5 * (bx0 + bx1), bx1]
                    .iter()
                    .map(|&x| self.bottom.at(x))
                    .fold(f32::MAX, f32::min);
                let clear_of_coils = self
                    .coils
                    .iter()
                    .all(|c| f.distance(c.x, c.y) > c.r + NEH_HALO_UM + 15.0);
                let clear_of_follicles = out.iter().all(|o| {
                    bx0 > o.bbox[2] + 20.0
                        || bx1 < o.bbox[0] - 20.0
                        || by0 > o.bbox[3] + 20.0
                        || by1 < o.bbox[1] - 20.0
                });
                if by0 > dej_max + 10.0
                    && by1 < floor - 30.0
                    && bx0 > lo - 100.0
                    && bx1 < lo + len + 100.0
                    && clear_of_coils
                    && clear_of_follicles
                {
                    out.push(f);
                    break;
                }
            }
        }
        out
    }

    /// A tangential stretch on 40% of slides, where the epidermis has room for it
    /// clear of psoriasiform zones (their ramps included).
    fn draw_tangential(&self, rng: &mut ChaCha8Rng, lo: f32, hi: f32) -> Option<Tangential> {
        if !rng.gen_bool(0.4) {
            return None;
        }
        let len = rng.gen_range(250.0f32..700.0);
        let x0 = rng.gen_range(lo..(hi - len).max(lo + 1.0));
        let x1 = (x0 + len).min(hi);
        let clear = |x: f32| self.ps_weight(x) == 0.0;
        let mut x = x0 - 140.0;
        while x <= x1 + 140.0 {
            if !clear(x) {
                return None;
            }
            x += 10.0;
        }
        let depth = rng.gen_range(60.0f32..160.0);
        let spacing = rng.gen_range(70.0f32..130.0);
        let radius = rng.gen_range(15.0f32..27.0);
        let mut islands = Vec::new();
        let mut row = 0;
        let mut cy = radius + 8.0;
        while cy < depth - radius {
            let shift = if row % 2 == 1 { spacing * 0.5 } else { 0.0 };
            let mut cx = x0 - TANGENTIAL_RAMP_UM + shift;
            while cx < x1 + TANGENTIAL_RAMP_UM {
                let r = radius * rng.gen_range(0.7..1.3);
                let (jx, jy) = (rng.gen_range(-0.35..0.35), rng.gen_range(-0.3..0.3));
                if rng.gen_bool(0.8) {
                    islands.push(Circle {
                        x: cx + spacing * jx,
                        y: (cy + spacing * jy).max(r + 4.0),
                        r,
                    });
                }
                cx += spacing;
            }
            cy += spacing * 0.8;
            row += 1;
        }
        islands.sort_by(|a, b| a.x.total_cmp(&b.x));
        Some(Tangential {
            x0,
            x1,
            depth,
            islands,
            ovals: Vec::new(),
            reach: 40.0,
            salt: rng.gen(),
        })
    }

    /// Section thickness at (x, y) µm relative to the slide's own (1 where the
    /// knife ran smoothly): stain concentrations are multiplied by it.
    #[inline]
    pub fn chatter_gain(&self, x: f32, y: f32) -> f32 {
        let Some(c) = &self.chatter else {
            return 1.0;
        };
        let mut patch = 0.0f32;
        for &[cx, cy, r] in &c.patches {
            let d2 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
            if d2 < r * r {
                patch = patch.max(noise::smoothstep(r, 0.7 * r, d2.sqrt()));
            }
        }
        if patch == 0.0 {
            return 1.0;
        }
        let t = x * c.across[0] + y * c.across[1];
        // Across a band: thick in the middle, thin at its edges, -1..1.
        let wave = 2.0 * noise::smoothstep(0.0, 1.0, (2.0 * (t - t.floor()) - 1.0).abs()) - 1.0;
        1.0 + c.amplitude * patch * wave
    }

    /// Whether a row at y µm meets chatter's patches, a tear's reach or a knife line
    /// (which cross the whole section): where it does not, `chatter_gain` and
    /// `section_kept` are 1 along it (the renderer skips them there).
    pub fn section_marks_row(&self, y: f32) -> bool {
        if self.knife.is_some() {
            return true;
        }
        let chatter = self
            .chatter
            .as_ref()
            .is_some_and(|c| c.patches.iter().any(|p| (y - p[1]).abs() < p[2]));
        chatter
            || self
                .tears
                .iter()
                .any(|t| y >= t.bounds[1] && y <= t.bounds[3])
    }

    /// How much of the section is there at (x, y) µm: 0 in a tear's gap, less in a
    /// knife line's scratch and a little more at its lips, else 1.
    #[inline]
    pub fn section_kept(&self, x: f32, y: f32) -> f32 {
        let mut kept = 1.0f32;
        for t in &self.tears {
            kept = kept.min(1.0 - t.gap(x, y));
        }
        match &self.knife {
            Some(k) => kept * k.thickness(x, y, self.salt),
            None => kept,
        }
    }

    /// Light the scanner's field lets through at (x, y) µm, per RGB channel, if
    /// its fields show.
    #[inline]
    pub fn scan_gain(&self, x: f32, y: f32) -> Option<[f32; 3]> {
        let f = self.scan.as_ref()?;
        let (cell, fu, fv) = f.locate(x, y);
        Some(f.light(f.gains(cell, self.salt), fu, fv))
    }

    /// The tissue's top and bottom at column x µm, as margin ink needs them
    /// ([`Self::ink_od_in`]); `None` where no margin was inked.
    pub fn ink_column(&self, x: f32) -> Option<InkColumn> {
        self.ink.as_ref().map(|_| InkColumn {
            surface: self.surface.at(x),
            bottom: self.bottom.at(x),
        })
    }

    /// Extra OD of margin ink at (x, y) µm, if the margins were inked; `c` is
    /// [`Self::ink_column`] at x, `r` [`Self::row_at`] at y (the outline's sums of
    /// sines once a column and a row, not four times a pixel).
    #[inline]
    pub fn ink_od_in(&self, x: f32, y: f32, c: &InkColumn, r: &RowAt) -> [f32; 3] {
        let Some(ink) = &self.ink else {
            return [0.0; 3];
        };
        let mut od = [0.0f32; 3];
        for (k, side) in ink.sides.iter().enumerate() {
            let Some(colour) = side else { continue };
            let (d, along) = match k {
                0 => (x - r.left, y),
                1 => (r.right - x, y),
                _ => (c.bottom - y, x),
            };
            if d < -3.0 || d > ink.width * 1.4 {
                continue;
            }
            let within = if k < 2 {
                y > c.surface - 3.0 && y < c.bottom + 3.0
            } else {
                x > r.left - 3.0 && x < r.right + 3.0
            };
            if !within {
                continue;
            }
            let salt = self.salt ^ (0x1C0 + k as u64);
            let gap = noise::value(along / ink.patch_um, 0.5, salt);
            let patch = noise::smoothstep(1.0 - ink.cover - 0.08, 1.0 - ink.cover + 0.08, gap);
            let reach = ink.width * (0.7 + 0.6 * noise::value(along / 25.0, 1.5, salt ^ 1));
            let profile = if d < 0.0 {
                1.0 - noise::smoothstep(0.0, 3.0, -d)
            } else {
                1.0 - noise::smoothstep(reach * 0.5, reach, d)
            };
            let grain = 0.45 + 0.55 * noise::value(x / 1.6, y / 1.6, salt ^ 2);
            let a = patch * profile * grain;
            for c in 0..3 {
                od[c] += colour[c] * a;
            }
        }
        od
    }

    /// Extra OD of pen ink at (x, y) µm, if a pen mark was drawn.
    #[inline]
    pub fn pen_od(&self, x: f32, y: f32) -> [f32; 3] {
        if let Some(p) = &self.pen {
            if x >= p.x0 && x <= p.x1 {
                let d = (y - p.path.at(x)).abs();
                if d < p.width * 0.5 {
                    let k = 0.6 + 0.5 * noise::value(x / 60.0, y / 60.0, self.salt ^ 0xFE);
                    let edge = 1.0 - noise::smoothstep(p.width * 0.35, p.width * 0.5, d);
                    return [p.od[0] * k * edge, p.od[1] * k * edge, p.od[2] * k * edge];
                }
            }
        }
        [0.0; 3]
    }

    /// Stain multiplier of a tissue fold at (x, y): 2 inside the doubled strip.
    #[inline]
    pub fn fold_factor(&self, x: f32, y: f32) -> f32 {
        if let Some(f) = &self.fold {
            let d = (x * f.cos + y * f.sin - f.offset).abs();
            if d < f.width * 0.5 {
                return 1.0 + 0.9 * (1.0 - noise::smoothstep(f.width * 0.4, f.width * 0.5, d));
            }
        }
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(r: Region) -> u8 {
        match r {
            Region::Corneum | Region::Munro | Region::Pustule => 1,
            Region::Granular | Region::Cleft => 2,
            Region::Spinous | Region::Kogoj => 3,
            Region::Basal => 4,
            Region::Papillary => 5,
            Region::Reticular => 6,
            Region::Fat => 7,
            _ => 0,
        }
    }

    #[test]
    fn layers_come_in_anatomical_order_down_every_column() {
        for class in SlideClass::ALL {
            let g = Geometry::build(class, 11, 3000.0, 2000.0, &Artefacts::default());
            for k in 1..10 {
                let x = 3000.0 * k as f32 / 10.0;
                let mut last = 0u8;
                let mut seen_tissue = false;
                let mut y = 0.0;
                while y < 2000.0 {
                    let s = g.locate(x, y);
                    let o = order(s.region);
                    if s.region == Region::Glass && seen_tissue {
                        break;
                    }
                    if o > 0 {
                        if !seen_tissue {
                            assert!(o <= 2, "{class} x={x}: first tissue is {:?}", s.region);
                        }
                        seen_tissue = true;
                        // Ridges alternate spinous/basal/papillary, so only the
                        // epidermis-above-dermis-above-fat order is strict.
                        assert!(
                            o + 2 >= last.min(5) || o >= 5,
                            "{class} x={x} y={y}: {:?} after {last}",
                            s.region
                        );
                        last = last.max(o);
                    }
                    y += 1.0;
                }
                assert!(
                    last >= 6,
                    "{class} x={x}: never reached the reticular dermis"
                );
            }
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_geometry() {
        let a = Geometry::build(SlideClass::Dira, 5, 3000.0, 2000.0, &Artefacts::default());
        let b = Geometry::build(SlideClass::Dira, 5, 3000.0, 2000.0, &Artefacts::default());
        assert_eq!(format!("{:?}", a.pustules), format!("{:?}", b.pustules));
        assert_eq!(a.stain, b.stain);
        let c = Geometry::build(SlideClass::Dira, 6, 3000.0, 2000.0, &Artefacts::default());
        assert_ne!(a.stain, c.stain);
    }
}
