//! Synth 1.0's appearance: stain concentrations per point with real-tissue texture.
//!
//! Same geometry and masks as synth 0.3 (`Geometry::locate`); what changes is how
//! each region looks: nuclei of varied size, outline and chromatin with nucleoli
//! and perinuclear halos, a blue-purple epidermis without a drawn cell-border net,
//! keratohyalin granules, basket-weave or compact corneum, wavy collagen bundles in
//! a flowing direction field with white retraction clefts, thin wavy fibroblasts,
//! fat in lobules with septa, uneven section thickness and fine stain grain.
//! Lesion cells (neutrophils, acantholytic cells, parakeratotic nuclei) are
//! synth 1.4's own (`cells`); vessels and red cells keep synth 0.3's drawing
//! inside this look until synth 1.11 draws them anew (`vessel_v1`). Pure functions
//! of µm coordinates and the slide's salt, like 0.3.

use super::anatomy::{Follicle, Region, Site, Tubule, Vessel, FIBROUS_SHEATH_UM};
use super::cells::{self, CellAt, Crowd};
use super::noise::{self, hash2, unit};
use super::render::{c, disc, ellipse, mixc, Conc, Shader};
use super::Generator;

/// Region shaders reused from synth 0.3 are drawn on 0.3's concentration scale;
/// these bring them to 1.0's (the real train parts' percentiles).
const V03_H: f32 = 0.8;
const V03_E: f32 = 0.62;

/// A nucleus drawn at offset (dx, dy) from its centre: coverage and hematoxylin.
/// `a`, `b` semi-axes, `irreg` outline irregularity, `open` 1 for open
/// (vesicular) chromatin, 0 for dense; `hsh` the cell's hash.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(super) fn nucleus(
    dx: f32,
    dy: f32,
    a: f32,
    b: f32,
    ang: f32,
    irreg: f32,
    open: f32,
    hsh: u64,
    aa: f32,
    salt: u64,
    x: f32,
    y: f32,
) -> (f32, f32) {
    let (sn, cs) = ang.sin_cos();
    let u = dx * cs + dy * sn;
    let v = -dx * sn + dy * cs;
    let q = (u / a) * (u / a) + (v / b) * (v / b);
    if q > 2.0 {
        return (0.0, 0.0);
    }
    let h2 = noise::mix(hsh ^ 0x5EED);
    let th = v.atan2(u);
    let wob = 1.0
        + irreg
            * (0.6 * (2.0 * th + std::f32::consts::TAU * unit(h2, 0)).sin()
                + 0.4 * (3.0 * th + std::f32::consts::TAU * unit(h2, 1)).sin());
    let r = q.sqrt() / wob;
    let cov = ((1.0 - r) * b.min(a) / aa + 0.5).clamp(0.0, 1.0);
    if cov <= 0.0 {
        return (0.0, 0.0);
    }
    // Chromatin: clumps on a paler ground, denser at the membrane; a nucleolus.
    let clump = noise::value(x / 0.75, y / 0.75, salt ^ 0xC1);
    let ground = 0.55 + 0.25 * (1.0 - open);
    let mut h = ground + (1.0 - ground) * noise::smoothstep(0.35, 0.75, clump);
    h += 0.35 * open * noise::smoothstep(0.7, 0.95, r);
    let (nx, ny) = (0.3 * a * (unit(h2, 2) - 0.5), 0.3 * b * (unit(h2, 3) - 0.5));
    let nl = disc(u - nx, v - ny, 0.55 + 0.35 * open, aa);
    h = h.max(1.25 * nl * open + h * (1.0 - nl * open));
    (cov, h)
}

/// Half the gap between the distances to the nearest and the second nearest of
/// jittered grid centres (spacing `sp`, jitter `jit` of a cell): 0 on a Voronoi edge,
/// growing into the cells. The two nearest centres are ranked by squared distance,
/// then their distances taken as `noise::hypot` gives them (its rounding keeps the
/// order): synth 1.4's fat is drawn with exactly these numbers.
fn voronoi_gap(x: f32, y: f32, sp: f32, salt: u64, jit: f32) -> f32 {
    let (gi, gj) = ((x / sp).floor() as i64, (y / sp).floor() as i64);
    let mut near = NearestTwo::new(f64::MAX);
    for j in gj - 1..=gj + 1 {
        for i in gi - 1..=gi + 1 {
            let hsh = hash2(i, j, salt);
            let cx = (i as f32 + 0.5 + jit * (unit(hsh, 0) - 0.5)) * sp;
            let cy = (j as f32 + 0.5 + jit * (unit(hsh, 1) - 0.5)) * sp;
            let (dx, dy) = ((x - cx) as f64, (y - cy) as f64);
            near.offer(dx * dx + dy * dy, 0);
        }
    }
    (near.q2.sqrt() as f32 - near.q1.sqrt() as f32) * 0.5
}

/// The smallest and second smallest of the squared distances offered, in the order
/// offered (a tie goes to the earlier), and the tag offered with the smallest: the
/// nearest two centres of a Voronoi field. Fat (f64, pinned by synth 1.4's digests)
/// and synth 1.17's collagen domains (f32) rank their centres with it.
struct NearestTwo<T> {
    q1: T,
    q2: T,
    tag: usize,
}

impl<T: PartialOrd + Copy> NearestTwo<T> {
    fn new(far: T) -> NearestTwo<T> {
        NearestTwo {
            q1: far,
            q2: far,
            tag: 0,
        }
    }

    #[inline]
    fn offer(&mut self, q: T, tag: usize) {
        if q < self.q1 {
            self.q2 = self.q1;
            self.q1 = q;
            self.tag = tag;
        } else if q < self.q2 {
            self.q2 = q;
        }
    }
}

/// Synth 1.17: the collagen domain a point of the reticular dermis lies in, from
/// jittered centres 70 µm apart in (x, v) (v the depth along the flowing field):
/// its centre, its bundles' direction (within about 45 degrees of the flow), whether
/// its bundles are cut across (about one domain in seven), and half the gap to the next
/// domain (the seam).
struct CollagenDomain {
    hash: u64,
    cx: f32,
    cv: f32,
    angle: f32,
    across: bool,
    seam: f32,
}

impl CollagenDomain {
    const SPACING_UM: f32 = 70.0;

    fn at(x: f32, v: f32, salt: u64) -> CollagenDomain {
        let sp = Self::SPACING_UM;
        // Seams wander: the point is looked up up to 12 µm off where it lies, each way.
        let (x, v) = (
            x + 24.0 * (noise::value(x / 38.0, v / 38.0, salt ^ 1) - 0.5),
            v + 24.0 * (noise::value(x / 38.0, v / 38.0, salt ^ 2) - 0.5),
        );
        let (gi, gj) = ((x / sp).floor() as i64, (v / sp).floor() as i64);
        let mut near = NearestTwo::new(f32::MAX);
        let (cx, cv, best) = DOMAIN_CENTRES.with(|memo| {
            let mut memo = memo.borrow_mut();
            if (memo.gi, memo.gj, memo.salt) != (gi, gj, salt) {
                *memo = DomainCentres::around(gi, gj, salt);
            }
            for (k, &(px, pv, _)) in memo.centres.iter().enumerate() {
                near.offer((x - px) * (x - px) + (v - pv) * (v - pv), k);
            }
            memo.centres[near.tag]
        });
        let (q1, q2) = (near.q1, near.q2);
        CollagenDomain {
            hash: noise::mix(best),
            cx,
            cv,
            angle: 1.6 * (unit(best, 2) - 0.5),
            across: unit(best, 3) < 0.15,
            seam: 0.5 * (q2.sqrt() - q1.sqrt()),
        }
    }
}

/// The nine domain centres round one grid cell (position in (x, v) and hash), in
/// the order [`CollagenDomain::at`] ranks them.
struct DomainCentres {
    gi: i64,
    gj: i64,
    salt: u64,
    centres: [(f32, f32, u64); 9],
}

impl DomainCentres {
    fn around(gi: i64, gj: i64, salt: u64) -> DomainCentres {
        let sp = CollagenDomain::SPACING_UM;
        let mut centres = [(0.0, 0.0, 0); 9];
        for (k, c) in centres.iter_mut().enumerate() {
            let (i, j) = (gi - 1 + (k % 3) as i64, gj - 1 + (k / 3) as i64);
            let hsh = hash2(i, j, salt);
            *c = (
                (i as f32 + 0.5 + 0.9 * (unit(hsh, 0) - 0.5)) * sp,
                (j as f32 + 0.5 + 0.9 * (unit(hsh, 1) - 0.5)) * sp,
                hsh,
            );
        }
        DomainCentres {
            gi,
            gj,
            salt,
            centres,
        }
    }
}

thread_local! {
    /// The last grid cell's domain centres: neighbouring pixels lie round the same
    /// cell (70 µm), and each cell costs nine hashes. A memo of a pure function: the
    /// values are the same whether it hits or not, on any thread.
    static DOMAIN_CENTRES: std::cell::RefCell<DomainCentres> = const {
        std::cell::RefCell::new(DomainCentres {
            gi: i64::MIN,
            gj: i64::MIN,
            salt: 0,
            centres: [(0.0, 0.0, 0); 9],
        })
    };
}

impl<'a> Shader<'a> {
    /// Concentrations at (x, y) µm for synth 1.0.
    pub(super) fn shade_v1(&self, site: &Site, x: f32, y: f32) -> Conc {
        let g = self.geom;
        if site.region == Region::Glass {
            return c(0.0, 0.0);
        }
        let real = g.texture.as_ref().and_then(|t| t.shade(site, x, y, g.salt));
        if let Some(k) = real {
            // Real texture carries its own section thickness and grain. Where
            // synth adds cells to the layer (neutrophils, parakeratotic nuclei),
            // they are drawn over it, with the eosin real nuclei also take up.
            let f = g.fold_factor(x, y);
            let k = match self.layer_cells(site, x, y) {
                Some(cell) => {
                    let d = c(cell.k.h, cell.k.e + 0.35 * cell.k.h);
                    mixc(k, d, cell.cov)
                }
                None => k,
            };
            return c(k.h * f, k.e * f);
        }
        let mut k = match site.region {
            Region::Corneum => self.corneum_v1(site, x, y),
            Region::Munro => self.munro_v1(site, x, y),
            Region::Pustule => self.pustule_v1(x, y),
            Region::Cleft => self.cleft_v1(x, y),
            Region::Kogoj => self.kogoj_v1(site, x, y),
            Region::Granular | Region::Spinous | Region::Basal => self.epidermis_v1(site, x, y),
            Region::Papillary | Region::Reticular => self.dermis_v1(site, x, y),
            Region::Fat => self.fat_v1(x, y),
            Region::TubuleCells | Region::TubuleLumen | Region::CoilStroma => {
                self.coil_v1(site, x, y)
            }
            Region::HairShaft | Region::RootSheath | Region::FollicleSheath => {
                self.follicle_v1(site, x, y)
            }
            Region::Sebaceous => self.sebaceous_v1(site, x, y),
            Region::VesselWall | Region::VesselLumen if g.generator >= Generator::V1_11 => {
                self.vessel_v1(site, x, y)
            }
            _ => {
                let k = self.shade_site(site, x, y);
                c(k.h * V03_H, k.e * V03_E)
            }
        };
        // Section thickness varies across the slide; stain has a fine grain.
        let look = &g.look;
        let thick =
            1.0 + look.uneven * (2.0 * noise::value(x / 450.0, y / 450.0, g.salt ^ 0x71) - 1.0);
        // The grain moves the dyes apart (synth 1.3): real stain varies in hue,
        // not only in strength, from one micrometre to the next.
        let grain = noise::value(x / 1.3, y / 1.3, g.salt ^ 0x72);
        let (grain_h, grain_e) = (0.9 + 0.2 * grain, 1.1 - 0.2 * grain);
        let f = thick * g.fold_factor(x, y);
        k.h *= f * grain_h;
        k.e *= f * grain_e;
        k.m *= f;
        // Chromatin and cytoplasm take up eosin with the hematoxylin, as real
        // nuclei do: pure hematoxylin shows navy to teal in the measured stains
        // (synth 1.3; before, only over a real slide's texture).
        k.e += 0.35 * k.h;
        k
    }

    fn corneum_v1(&self, s: &Site, x: f32, y: f32) -> Conc {
        let g = self.geom;
        let salt = g.salt;
        let t = s.dc;
        // Basket-weave: thin wavy eosinophilic lamellae with clear spaces between;
        // compact: dense pink-red keratin with faint streaks.
        let warp = 3.0 * noise::value(x / 40.0, t / 6.0, salt ^ 0x81);
        let lam = noise::value(x / 30.0, (t + warp) / 2.2, salt ^ 0x82);
        let line = 1.0 - noise::smoothstep(0.03, 0.09, (lam - 0.5).abs());
        let weave = c(0.03, 0.08 + 0.55 * line);
        let streak = 0.8 + 0.2 * noise::value(x / 12.0, t / 1.2, salt ^ 0x83);
        let compact = c(0.05, 0.55 * streak);
        let base_w = g.look.weave * (1.0 - noise::smoothstep(s.corneum - 4.0, s.corneum - 1.0, t));
        let mut out = mixc(compact, weave, base_w * (1.0 - 0.6 * s.pk));
        // Parakeratotic keratin is denser and a little basophilic.
        out = c(out.h + 0.04 * s.pk, out.e + 0.1 * s.pk);
        CellAt::maybe_over(self.layer_cells(s, x, y), out)
    }

    /// The lesion cells synth adds to a layer at (x, y): flat parakeratotic
    /// nuclei and neutrophils in the corneum; neutrophils in the papillary
    /// dermis under DIRA's pustules and around an inflamed coil. The same over
    /// a drawn layer and over a real slide's texture (`--texture-from`).
    fn layer_cells(&self, s: &Site, x: f32, y: f32) -> Option<CellAt> {
        let g = self.geom;
        let (salt, nuc_h, aa) = (g.salt ^ 0x4E0, g.look.nuc_h, self.aa);
        let front = |a: Option<CellAt>, b: Option<CellAt>| match (a, b) {
            (Some(a), Some(b)) => Some(if b.nuc > a.nuc { b } else { a }),
            (a, b) => a.or(b),
        };
        match s.region {
            Region::Corneum => {
                let para = (s.pk > 0.05)
                    .then(|| self.parakeratotic_nucleus(s, x, y))
                    .flatten();
                let crowd = Crowd {
                    spacing: 11.0,
                    occ: 0.35 * s.neutro,
                    pyknotic: 0.35,
                };
                let neutro = (s.neutro > 0.3)
                    .then(|| cells::neutrophil(x, y, crowd, salt ^ 1, nuc_h, aa))
                    .flatten();
                front(para, neutro)
            }
            Region::Papillary | Region::Reticular => {
                let under = (s.region == Region::Papillary && s.neutro > 0.2)
                    .then(|| {
                        let crowd = Crowd {
                            spacing: 16.0,
                            occ: 0.25 * s.neutro,
                            pyknotic: 0.1,
                        };
                        cells::neutrophil(x, y, crowd, salt ^ 2, nuc_h, aa)
                    })
                    .flatten();
                let halo = s
                    .neh
                    .then(|| {
                        let occ = 0.6 * (1.0 - noise::smoothstep(4.0, 45.0, s.tubule_dist)) + 0.06;
                        let crowd = Crowd {
                            spacing: 11.0,
                            occ,
                            pyknotic: 0.15,
                        };
                        cells::neutrophil(x, y, crowd, salt ^ 3, nuc_h, aa)
                    })
                    .flatten();
                front(under, halo)
            }
            _ => None,
        }
    }

    /// A flat nucleus kept in parakeratotic corneum, on a grid along the surface.
    fn parakeratotic_nucleus(&self, s: &Site, x: f32, y: f32) -> Option<CellAt> {
        let g = self.geom;
        let (sx, sy) = (13.0, 4.5);
        let t = s.dc;
        let salt = g.salt ^ 0x4F0;
        let (gi, gj) = ((x / sx).floor() as i64, (t / sy).floor() as i64);
        let mut best: Option<CellAt> = None;
        for j in gj - 1..=gj + 1 {
            for i in gi - 1..=gi + 1 {
                let hsh = hash2(i, j, salt);
                if unit(hsh, 0) > s.pk * 0.75 {
                    continue;
                }
                let cx = (i as f32 + 0.5 + 0.4 * (unit(hsh, 1) - 0.5)) * sx;
                let cy = (j as f32 + 0.5 + 0.4 * (unit(hsh, 2) - 0.5)) * sy;
                let a = 3.0 + 1.4 * unit(hsh, 3);
                let h2 = noise::mix(hsh);
                let b = 0.75 + 0.45 * unit(h2, 0);
                let ang = 0.25 * (unit(h2, 1) - 0.5);
                let (cv, hv) = nucleus(
                    x - cx,
                    t - cy,
                    a,
                    b,
                    ang,
                    0.1,
                    0.0,
                    hsh,
                    self.aa,
                    salt,
                    x,
                    y,
                );
                if cv > best.map_or(0.0, |b| b.cov) {
                    best = Some(CellAt {
                        cov: cv,
                        nuc: cv,
                        k: c(g.look.nuc_h * hv * 1.6, 0.35),
                    });
                }
            }
        }
        best
    }

    /// A Munro microabscess: neutrophils, many of them dying, packed into
    /// parakeratotic corneum.
    fn munro_v1(&self, s: &Site, x: f32, y: f32) -> Conc {
        let g = self.geom;
        let base = self.corneum_v1(s, x, y);
        let base = c(base.h * 0.6, base.e * 0.6);
        let crowd = Crowd {
            spacing: 8.0,
            occ: 0.9,
            pyknotic: 0.4,
        };
        CellAt::maybe_over(
            cells::neutrophil(x, y, crowd, g.salt ^ 0x4E4, g.look.nuc_h, self.aa),
            base,
        )
    }

    /// A subcorneal pustule: neutrophils packed in serum with fibrin strands.
    fn pustule_v1(&self, x: f32, y: f32) -> Conc {
        let g = self.geom;
        let salt = g.salt ^ 0x4E5;
        let ground = cells::serum(x, y, salt);
        CellAt::maybe_over(
            cells::packed_neutrophils(x, y, 9.0, 0.12, salt, g.look.nuc_h, self.aa),
            ground,
        )
    }

    /// A spongiform pustule (Kogoj): neutrophils among pale, separated
    /// keratinocytes of the upper epidermis.
    fn kogoj_v1(&self, s: &Site, x: f32, y: f32) -> Conc {
        let g = self.geom;
        let spinous = Site {
            region: Region::Spinous,
            ..*s
        };
        let base = self.epidermis_v1(&spinous, x, y);
        let base = c(base.h * 0.6, base.e * 0.6);
        let crowd = Crowd {
            spacing: 10.0,
            occ: 0.7,
            pyknotic: 0.1,
        };
        CellAt::maybe_over(
            cells::neutrophil(x, y, crowd, g.salt ^ 0x4E6, g.look.nuc_h, self.aa),
            base,
        )
    }

    /// An acantholytic cleft: an empty space with a little serum, rounded
    /// acantholytic keratinocytes floating in it (drawn as the implants draw
    /// them) and a few neutrophils.
    fn cleft_v1(&self, x: f32, y: f32) -> Conc {
        let g = self.geom;
        let salt = g.salt ^ 0x4E7;
        let out = cells::acantholytic_field(x, y, salt, self.aa, |_, _| true);
        let crowd = Crowd {
            spacing: 17.0,
            occ: 0.2,
            pyknotic: 0.1,
        };
        CellAt::maybe_over(
            cells::neutrophil(x, y, crowd, salt ^ 9, g.look.nuc_h, self.aa),
            out,
        )
    }

    fn epidermis_v1(&self, s: &Site, x: f32, y: f32) -> Conc {
        let g = self.geom;
        let look = &g.look;
        let salt = g.salt ^ 0x90;
        // Cells on a jittered grid in (x, depth): flatter towards the granular layer.
        // Synth 1.7: the basal layer crowded with small dark nuclei, little
        // cytoplasm between them, as real sections show it (a dark band along the
        // junction and round every papilla cut across).
        let crowded = g.generator >= Generator::V1_7 && s.region == Region::Basal;
        let (sx, sy) = match s.region {
            Region::Granular => (14.0, 5.5),
            Region::Basal if crowded => (6.0, 6.5),
            Region::Basal => (7.5, 9.0),
            _ => (16.0, 14.0),
        };
        let vv = s.v;
        let (gi, gj) = ((x / sx).floor() as i64, (vv / sy).floor() as i64);
        let (mut d1, mut d2) = (f32::MAX, f32::MAX);
        let mut own = 0u64;
        let (mut cov, mut nh, mut halo) = (0.0f32, 0.0f32, 0.0f32);
        for j in gj - 1..=gj + 1 {
            for i in gi - 1..=gi + 1 {
                let hsh = hash2(i, j, salt);
                let cx = (i as f32 + 0.15 + 0.7 * unit(hsh, 0)) * sx;
                let cy = (j as f32 + 0.15 + 0.7 * unit(hsh, 1)) * sy;
                let (dx, dy) = (x - cx, vv - cy);
                let d = dx * dx + dy * dy;
                if d < d1 {
                    d2 = d1;
                    d1 = d;
                    own = hsh;
                } else if d < d2 {
                    d2 = d;
                }
                let h2 = noise::mix(hsh);
                // About one cell in six is cut past its nucleus.
                if unit(h2, 3) < 0.16 {
                    continue;
                }
                let size = g.cell_scale * (0.75 + 0.55 * unit(hsh, 2));
                let (a, b, ang, open) = match s.region {
                    Region::Granular => (4.0 * size, 1.4 * size, 0.2 * (unit(h2, 0) - 0.5), 0.3),
                    Region::Basal if crowded => (
                        3.0 * size,
                        2.6 * size,
                        unit(h2, 0) * std::f32::consts::PI,
                        0.15,
                    ),
                    Region::Basal => (
                        3.2 * size,
                        2.3 * size,
                        1.57 + 0.5 * (unit(h2, 0) - 0.5),
                        0.2,
                    ),
                    _ => (
                        3.4 * size,
                        3.4 * size * (0.6 + 0.3 * unit(hsh, 3)),
                        unit(h2, 0) * std::f32::consts::PI,
                        0.9,
                    ),
                };
                let (cv, hv) = nucleus(dx, dy, a, b, ang, 0.12, open, hsh, self.aa, salt, x, vv);
                if cv > cov {
                    cov = cv;
                    nh = hv;
                }
                if look.halo > 0.0 {
                    let hal = ellipse(
                        dx,
                        dy,
                        a * 1.45 + 0.8,
                        b * 1.45 + 0.8,
                        ang.cos(),
                        ang.sin(),
                        0.6,
                    );
                    halo = halo.max(hal);
                }
            }
        }
        let tone = 0.85 + 0.3 * unit(own, 3);
        let basal_dark = match s.region {
            Region::Basal if crowded => 1.8,
            Region::Basal => 1.3,
            _ => 1.0,
        };
        let mut out = c(look.epi_h * tone * basal_dark, look.epi_e * tone);
        // Fine cytoplasmic texture and, at most, faint intercellular bridges.
        let gap = d2.sqrt() - d1.sqrt();
        if gap < 0.5 {
            out = c(out.h * 0.9, out.e * 0.9);
        }
        if halo > 0.0 && look.halo > 0.0 {
            let k = 1.0 - 0.75 * look.halo * halo;
            out = c(out.h * k, out.e * k);
        }
        if s.region == Region::Granular {
            let gran = noise::value(x / 0.7, y / 0.7, salt ^ 0x91);
            out.h += 0.8 * noise::smoothstep(0.62, 0.78, gran);
        }
        if cov > 0.0 {
            let dense = match s.region {
                Region::Spinous => 1.0,
                _ if crowded => 1.4,
                _ => 1.25,
            };
            out = mixc(out, c(look.nuc_h * nh * dense, 0.5), cov);
        }
        if g.melanin > 0.0 {
            out.m = self.melanin_at(s, x, y, own, cov);
        }
        out
    }

    /// Synth 1.6: melanin in the basal keratinocytes, as sections of all but the
    /// fairest skin show it: brown granules in the cytoplasm, more in some cells
    /// than others, thinning over the nucleus, in the basal layer and (on more
    /// pigmented slides) a cell or two above it; around the junction wherever it
    /// runs: rete, papillae cut across, psoriasiform ridges alike. Never a finding.
    /// `own` is the nearest cell's hash, `cov` the nucleus's coverage at the point.
    fn melanin_at(&self, s: &Site, x: f32, y: f32, own: u64, cov: f32) -> f32 {
        let g = self.geom;
        if s.sdf > g.melanin_reach_um + 4.0 {
            return 0.0;
        }
        let layer =
            1.0 - noise::smoothstep(0.5 * g.melanin_reach_um, g.melanin_reach_um + 4.0, s.sdf);
        // Cell to cell: a few cells heavily pigmented, most moderately, some not.
        let u = unit(noise::mix(own ^ 0x3E1A), 0);
        let cell = if u < 0.2 { 0.0 } else { 0.3 + 1.2 * u * u };
        let gran = noise::smoothstep(0.45, 0.8, noise::value(x / 0.6, y / 0.6, g.salt ^ 0x3E1B));
        g.melanin * layer * cell * (0.15 + 0.85 * gran) * (1.0 - 0.85 * cov)
    }

    /// Papillary (fine, pale, loose) and reticular (coarse wavy bundles) dermis.
    fn dermis_v1(&self, s: &Site, x: f32, y: f32) -> Conc {
        let g = self.geom;
        let look = &g.look;
        let salt = g.salt ^ 0xA0;
        let flow = look.flow_um;
        // A flowing direction field: warp the depth coordinate by large-scale noise.
        let warp = |x: f32| {
            flow * 0.9 * (noise::fbm2(x / flow, y / flow, salt ^ 1) - 0.5)
                + 4.0 * (x / 13.0 + 2.0 * noise::value(x / 60.0, y / 60.0, salt ^ 2)).sin()
        };
        let w0 = warp(x);
        let v = y + w0;
        let papillary = s.region == Region::Papillary;
        // Papillary (fine, pale) fades into reticular (coarse) with the distance
        // below the junction, not at the region's hard edge.
        let plate = g.granular_norm + g.plate_norm;
        let pw = 1.0
            - noise::smoothstep(
                plate + 0.5 * g.ridge_norm,
                plate + g.ridge_norm + g.papillary_um,
                s.v,
            );
        let fine = |_: ()| {
            let fib = noise::value(x / 9.0, v / 2.2, salt ^ 3);
            let strand = 1.0 - noise::smoothstep(0.04, 0.16, (fib - 0.5).abs());
            c(0.06, look.collagen_e * (0.16 + 0.2 * strand))
        };
        let coarse = |_: ()| {
            let bundle = noise::fbm2(x / 45.0, v / 12.0, salt ^ 4);
            let cl = noise::value(x / 55.0, v / 6.5, salt ^ 5);
            let broken = noise::smoothstep(0.3, 0.6, noise::value(x / 35.0, v / 20.0, salt ^ 9));
            let cleft = (1.0
                - noise::smoothstep(0.02, 0.02 + 0.09 * look.clefts, (cl - 0.5).abs()))
                * broken;
            let fibril = 0.8 + 0.2 * noise::value(x / 6.0, v / 0.9, salt ^ 6);
            let e = look.collagen_e * (0.3 + 0.3 * bundle) * fibril;
            // Wide retraction spaces between bundles, thin clefts within them.
            let space =
                noise::smoothstep(0.3 + 0.12 * look.clefts, 0.42 + 0.12 * look.clefts, bundle);
            c(0.04 * space, e * space * (1.0 - 0.92 * cleft))
        };
        // Synth 1.17: reticular collagen in domains of their own direction; the
        // domain at this point also turns the fibroblasts lying in it.
        let domain = (g.generator >= Generator::V1_17 && pw < 1.0 && !s.papilla)
            .then(|| CollagenDomain::at(x, v, salt ^ 0x117));
        let coarse = |_: ()| match &domain {
            Some(d) => self.collagen_v1_17(d, x, v),
            None => coarse(()),
        };
        let mut out = if s.papilla {
            // Synth 1.7: a papilla cut across is as pink as the collagen around
            // it in real sections, not the pale fine dermis of the papillae's tips.
            let f = fine(());
            c(f.h, f.e * 2.2)
        } else if pw >= 1.0 {
            fine(())
        } else if pw <= 0.0 {
            coarse(())
        } else {
            mixc(coarse(()), fine(()), pw)
        };
        // Thin wavy fibroblast nuclei along the local fibre direction.
        let (sx, sy, occ) = if papillary {
            (22.0, 16.0, 0.5)
        } else {
            (34.0, 22.0, 0.35)
        };
        let (gi, gj) = ((x / sx).floor() as i64, (y / sy).floor() as i64);
        // The local fibre slope, computed once and only where a nucleus is near.
        let mut slope = None;
        // A centre lies in the middle 70% of its cell each way: cells whose
        // middle is over 10 µm off (a rounding's width to spare) are skipped
        // unhashed, and two cells in three of the nine are.
        let off = |k: i64, p: f32, sp: f32| {
            ((k as f32 + 0.15) * sp - p).max(p - (k as f32 + 0.85) * sp) > 10.05
        };
        for j in gj - 1..=gj + 1 {
            if off(j, y, sy) {
                continue;
            }
            for i in gi - 1..=gi + 1 {
                if off(i, x, sx) {
                    continue;
                }
                let hsh = hash2(i, j, salt ^ 7);
                if unit(hsh, 0) > occ {
                    continue;
                }
                let cx = (i as f32 + 0.15 + 0.7 * unit(hsh, 1)) * sx;
                let cy = (j as f32 + 0.15 + 0.7 * unit(hsh, 2)) * sy;
                let (dx, dy) = (x - cx, y - cy);
                if dx * dx + dy * dy > 100.0 {
                    continue;
                }
                let sl = *slope.get_or_insert_with(|| {
                    let with_flow = ((warp(x + 2.0) - w0) / 2.0).atan();
                    match &domain {
                        // Along the domain's bundles, crimp aside (synth 1.17).
                        Some(d) if !d.across => with_flow - d.angle,
                        _ => with_flow,
                    }
                });
                let ang = -sl + 0.3 * (unit(hsh, 3) - 0.5);
                let a = 4.5 + 4.0 * unit(noise::mix(hsh), 0);
                let bend = 0.8 * (dx / a * 2.0).sin() * unit(noise::mix(hsh), 1);
                let (cv, hv) = nucleus(
                    dx,
                    dy - bend,
                    a,
                    0.9 + 0.5 * unit(noise::mix(hsh), 2),
                    ang,
                    0.05,
                    0.1,
                    hsh,
                    self.aa,
                    salt,
                    x,
                    y,
                );
                if cv > 0.0 {
                    out = mixc(out, c(look.nuc_h * hv * 0.95, 0.4), cv);
                }
            }
        }
        // Sparse lymphocytes (small round dense nuclei), more under lesions.
        if papillary {
            let occ = 0.05 + 0.25 * s.pk;
            let sp = 20.0;
            let (gi, gj) = ((x / sp).floor() as i64, (y / sp).floor() as i64);
            let hsh = hash2(gi, gj, salt ^ 8);
            if unit(hsh, 0) < occ {
                let cx = (gi as f32 + 0.3 + 0.4 * unit(hsh, 1)) * sp;
                let cy = (gj as f32 + 0.3 + 0.4 * unit(hsh, 2)) * sp;
                let r = 2.6 + 0.8 * unit(hsh, 3);
                let (cv, hv) = nucleus(
                    x - cx,
                    y - cy,
                    r,
                    r * 0.9,
                    0.0,
                    0.06,
                    0.0,
                    hsh,
                    self.aa,
                    salt,
                    x,
                    y,
                );
                out = mixc(out, c(look.nuc_h * hv * 1.3, 0.3), cv);
            }
        }
        if g.generator >= Generator::V1_12 {
            out = self.perivascular(out, x, y);
        }
        CellAt::maybe_over(self.layer_cells(s, x, y), out)
    }

    /// Synth 1.17's reticular collagen at (x, v) (v the depth along the dermis'
    /// flowing field) in domain `d`: bundles 3-10 µm across running along the
    /// domain's direction, crimped, of uneven density, with fibrils along them and
    /// thin white clefts between them; a domain cut across shows the bundles' round
    /// and polygonal cross-sections instead. Domains meet at seams that open into
    /// retraction spaces of their own width, some wide, some closed.
    fn collagen_v1_17(&self, d: &CollagenDomain, x: f32, v: f32) -> Conc {
        let look = &self.geom.look;
        let salt = self.geom.salt ^ 0x1170 ^ d.hash;
        let (cs, sn) = (d.angle.cos(), d.angle.sin());
        let (px, pv) = (x - d.cx, v - d.cv);
        let along = px * cs + pv * sn;
        let across = -px * sn + pv * cs;
        // How wide the clefts open here: thin lines to gaps of a few µm.
        let gape = 0.25 + 1.5 * look.clefts * noise::value(x / 22.0, v / 22.0, salt ^ 6);
        let (tone, cleft) = if d.across {
            // Bundles cut across: rounded fragments 6-14 µm with gaps, each its own shade.
            let sp = 6.0 + 8.0 * unit(d.hash, 4);
            let (wx, wy) = (
                2.0 * noise::value(along / 4.0, across / 4.0, salt ^ 7) - 1.0,
                2.0 * noise::value(along / 4.0, across / 4.0, salt ^ 8) - 1.0,
            );
            let gap = voronoi_gap(along + 1.5 * wx, across + 1.5 * wy, sp, salt ^ 1, 0.9);
            let tone = 0.55 + 0.6 * noise::value(along / sp, across / sp, salt ^ 2);
            let cleft = 1.0 - noise::smoothstep(0.3 * gape, 0.3 + gape, gap);
            (tone, cleft)
        } else {
            let width = 3.0 + 7.0 * unit(d.hash, 4);
            let length = 35.0 + 55.0 * unit(d.hash, 5);
            // Crimp: the bundles wave a few µm aside, unevenly.
            let period = 7.0 + 12.0 * unit(d.hash, 7);
            let crimp = (1.0 + 3.0 * unit(d.hash, 6))
                * (2.0 * noise::value(along / period, across / 40.0, salt ^ 9) - 1.0);
            let w = across + crimp;
            let b = 0.7 * noise::value(along / length, w / width, salt ^ 3)
                + 0.3 * noise::value(along / (0.5 * length), w / (0.45 * width), salt ^ 4);
            // Neighbouring bundles differ in density, and clefts run between them.
            let tone = 0.5 + 0.8 * noise::value(along / length, w / width + 0.5, salt ^ 11);
            let cleft = 1.0 - noise::smoothstep(0.02 * gape, 0.03 + 0.08 * gape, (b - 0.5).abs());
            (tone, cleft)
        };
        let fibril = 0.65 + 0.35 * noise::value(along / 5.0, across / 0.8, salt ^ 5);
        // Seams between domains: closed along some stretches, open a few µm along others.
        let open = (2.0 + 3.0 * look.clefts)
            * noise::smoothstep(0.45, 0.75, noise::value(x / 45.0, v / 45.0, salt ^ 10));
        let space = if open > 0.05 {
            noise::smoothstep(0.2 * open, open, d.seam)
        } else {
            1.0
        };
        let e = look.collagen_e * 0.7 * tone * fibril * (1.0 - 0.93 * cleft) * space;
        c(0.04 * space, e)
    }

    /// Synth 1.12: the cells that lie round vessels in the dermis, drawn over `base`
    /// at (x, y) µm. Each vessel draws its own cuff: a lymphocyte here and there (in
    /// nearly half), a light cuff, or a dense one (one in six), reaching 5-20 µm
    /// beyond the wall and thinning outward; a dilated psoriasiform capillary always
    /// has a light one. Lymphocytes are small round dense nuclei of 5.4-6.8 µm; one
    /// cell in eight is a histiocyte, an oval paler nucleus with open chromatin.
    /// The cells lie in clusters round part of the wall, not evenly round it.
    fn perivascular(&self, base: Conc, x: f32, y: f32) -> Conc {
        let g = self.geom;
        // The cuffs that may reach (x, y) with a nucleus: (vessel, share of places
        // with a cell at the wall, reach beyond the wall).
        let mut near = [(0u32, 0.0f32, 0.0f32); 6];
        let mut n = 0;
        // How far from its centre a nucleus drawn here can cover a point: the largest
        // histiocyte's half-length with its outline's wobble and the edge's smoothing.
        let nuc_reach = 6.0 + 1.2 * self.aa;
        for &vi in g.vessels_near(x, y) {
            let v = &g.vessels[vi as usize];
            // Most points of dermis are beyond any cuff's reach (20 µm): passed over
            // before the vessel's own draw is read.
            let d = noise::hypot(x - v.x, y - v.y);
            if d > v.rx.max(v.ry) + v.wall + 3.5 + 20.0 + nuc_reach {
                continue;
            }
            let cuff = hash2(vi as i64, 7, g.salt ^ 0xCF0F);
            let (occ, reach) = if v.tortuous {
                (0.35, 9.0)
            } else {
                let kind = unit(cuff, 0);
                let occ = if kind < 0.45 {
                    0.1
                } else if kind < 0.83 {
                    0.35
                } else {
                    0.7
                };
                (occ, 5.0 + 15.0 * unit(cuff, 1))
            };
            // A cell's centre lies within the wall's farthest reach from the vessel's
            // centre (with a tortuous capillary's winding) plus the cuff's; its nucleus
            // covers points `nuc_reach` beyond. (Measured from the centre, not as
            // `beyond_wall`, which is not a distance and would cut nuclei at the edge
            // of a long vessel's cuff.) More than six cuffs at one point: the first six.
            let winding = if v.tortuous { 3.5 } else { 0.0 };
            let span = v.rx.max(v.ry) + v.wall + winding + reach + nuc_reach;
            if d <= span && n < near.len() {
                near[n] = (vi, occ, reach);
                n += 1;
            }
        }
        if n == 0 {
            return base;
        }
        let near = &near[..n];
        // No place's share can exceed this (the densest cuff at its wall, at the patch
        // noise's peak): a cell whose hash is over it, or whose nucleus cannot reach
        // (x, y), is passed over before its place is measured.
        let most = 1.8 * near.iter().fold(0.0f32, |m, c| m.max(c.1));
        let (aa, salt) = (self.aa, g.salt ^ 0x9E7);
        let cells = cells_around(x, y, 6.5, 0.05, salt, |dx, dy, hsh| {
            if unit(hsh, 2) >= most || noise::hypot(dx, dy) > nuc_reach {
                return None;
            }
            // Whether a cell lies at this place is read at its centre, so the cuff's
            // edge thins it and never cuts a nucleus.
            let (cx, cy) = (x - dx, y - dy);
            let mut p = 0.0f32;
            for &(vi, occ, reach) in near {
                let out = beyond_wall(&g.vessels[vi as usize], cx, cy);
                if out < 1.0 {
                    return None;
                }
                p = p.max(occ * (1.0 - noise::smoothstep(0.4 * reach, reach, out)));
            }
            // Cuffs are lopsided and patchy, not rings of beads.
            p *= 0.2 + 1.6 * noise::value(cx / 16.0, cy / 16.0, salt ^ 1);
            if unit(hsh, 2) >= p {
                return None;
            }
            let ang = std::f32::consts::TAU * unit(hsh, 5);
            Some(if unit(hsh, 3) < 0.12 {
                let (cv, hv) = nucleus(
                    dx,
                    dy,
                    4.2 + unit(hsh, 4),
                    2.8 + 0.6 * unit(hsh, 6),
                    ang,
                    0.12,
                    0.7,
                    hsh,
                    aa,
                    salt,
                    x,
                    y,
                );
                (cv, 0.85 * hv)
            } else {
                let r = 2.7 + 0.7 * unit(hsh, 4);
                let (cv, hv) = nucleus(dx, dy, r, 0.92 * r, ang, 0.07, 0.0, hsh, aa, salt, x, y);
                (cv, 1.3 * hv)
            })
        });
        if cells.cov <= 0.0 {
            return base;
        }
        mixc(base, c(g.look.nuc_h * cells.h, 0.3), cells.cov)
    }

    /// Fat in lobules: adipocytes of varied size with thin membranes, fibrous septa
    /// between lobules. Synth 1.4's is kept as it was ([`Self::fat_v1_4`]).
    pub(super) fn fat_v1(&self, x0: f32, y0: f32) -> Conc {
        let g = self.geom;
        if g.generator == Generator::V1_4 {
            return self.fat_v1_4(x0, y0);
        }
        // Synth 1.5: synth 1.4's fat read as a net of straight polygons (its cell
        // walls and lobule borders were Voronoi edges bent by 18 um over 90 um).
        // Real subcutis is lobules of large rounded cells (50-150 um) whose thin
        // membranes curve, fade and break, between septa of varied width that wind.
        let warp = |x: f32, y: f32, scale: f32, amp: f32, salt: u64| {
            (
                x + amp * (noise::value(x / scale, y / scale, salt) - 0.5),
                y + amp * (noise::value(x / scale, y / scale, salt ^ 0x5A) - 0.5),
            )
        };
        // Lobules: borders wind over hundreds of micrometres.
        let (lx, ly) = warp(x0, y0, 260.0, 150.0, g.salt ^ 0xC0);
        let (lx, ly) = warp(lx, ly, 70.0, 30.0, g.salt ^ 0xC1);
        let lobule = voronoi_gap(lx, ly, g.adipocyte_um * 9.0, g.salt ^ 0xB1, 0.6);
        // A septum is at most 7.5 + 2 um from the border on either side: past that
        // its width need not be drawn (the same pixels, less noise per point).
        let septum = if lobule >= 9.6 {
            0.0
        } else {
            let width = 1.5 + 6.0 * noise::value(lx / 140.0, ly / 140.0, g.salt ^ 0xC2);
            1.0 - noise::smoothstep(width, width + 2.0, lobule)
        };
        // Cells: larger than synth 1.4's, warped at their own scale so walls curve.
        let sp = g.adipocyte_um * 1.15;
        let (cx, cy) = warp(x0, y0, 0.8 * sp, 0.45 * sp, g.salt ^ 0xC3);
        let wall = voronoi_gap(cx, cy, sp, g.salt ^ 0xB3, 0.85);
        // A membrane is at most 1.1 um from its wall (the same: inside a cell, nothing).
        let m = if wall >= 1.2 {
            0.0
        } else {
            let thin = 0.5 + 0.6 * noise::value(x0 / 20.0, y0 / 20.0, g.salt ^ 0xC4);
            let membrane = 1.0 - noise::smoothstep(0.1, thin, wall);
            // Along a wall the membrane fades and, here and there, is broken.
            let along = noise::value(x0 / 9.0, y0 / 9.0, g.salt ^ 0xC5);
            let strength = 0.45 + 0.55 * along;
            let broken = noise::smoothstep(0.08, 0.16, along);
            membrane * strength * broken
        };
        let mut out = c(0.03 * m, 0.36 * g.look.collagen_e * m);
        if septum > 0.0 {
            // Collagen of the septum along its run, with a fibroblast nucleus now and then.
            let fib = noise::value(lx / 25.0, ly / 3.5, g.salt ^ 0xB4);
            let mut k = c(0.05, g.look.collagen_e * (0.35 + 0.3 * fib));
            let nuc =
                noise::smoothstep(0.86, 0.93, noise::value(x0 / 3.0, y0 / 1.2, g.salt ^ 0xC6));
            k = mixc(k, c(g.look.nuc_h * 0.8, 0.25), nuc * 0.8);
            out = mixc(out, k, septum);
        }
        out
    }

    /// Synth 1.4's fat, kept byte for byte.
    fn fat_v1_4(&self, x0: f32, y0: f32) -> Conc {
        let g = self.geom;
        // Wavy septa and rounded cells: warp the plane before the cell pattern.
        let x = x0 + 18.0 * (noise::value(x0 / 90.0, y0 / 90.0, g.salt ^ 0xB6) - 0.5);
        let y = y0 + 18.0 * (noise::value(x0 / 90.0, y0 / 90.0, g.salt ^ 0xB7) - 0.5);
        let lobule = voronoi_gap(x, y, g.adipocyte_um * 7.0, g.salt ^ 0xB1, 0.5)
            + 12.0 * (noise::value(x / 60.0, y / 60.0, g.salt ^ 0xB5) - 0.5);
        let septum = 1.0
            - noise::smoothstep(
                1.0,
                2.5 + 3.0 * noise::value(x / 80.0, y / 80.0, g.salt ^ 0xB2),
                lobule,
            );
        let wall = voronoi_gap(x, y, g.adipocyte_um * 0.85, g.salt ^ 0xB3, 0.7);
        let membrane = 1.0 - noise::smoothstep(0.2, 0.9, wall);
        let mut out = c(0.02 * membrane, 0.32 * g.look.collagen_e * membrane);
        if septum > 0.0 {
            let fib = noise::value(x / 30.0, y / 3.0, g.salt ^ 0xB4);
            out = mixc(out, c(0.04, g.look.collagen_e * (0.3 + 0.25 * fib)), septum);
        }
        out
    }

    /// `base` with the neutrophil of an inflamed coil's crowd (spacing, occupancy,
    /// salt) at (x, y) drawn over it, where one is.
    fn coil_neutrophil(&self, base: Conc, x: f32, y: f32, crowd: (f32, f32, u64)) -> Conc {
        let (spacing, occ, salt) = crowd;
        let crowd = Crowd {
            spacing,
            occ,
            pyknotic: 0.15,
        };
        CellAt::maybe_over(
            cells::neutrophil(x, y, crowd, salt, self.geom.look.nuc_h, self.aa),
            base,
        )
    }

    /// An eccrine coil: irregular tubules of cuboidal cells with pale cytoplasm and
    /// basal nuclei, lumens of varied size, ducts darker. An inflamed coil
    /// (neutrophilic eccrine hidradenitis) is the same coil drawn the same way,
    /// with neutrophils in its stroma, lumens and epithelium, vacuolated cells
    /// and pyknotic nuclei on top, so that the drawing style never tells a
    /// normal coil from an inflamed one: only the inflammation does.
    fn coil_v1(&self, s: &Site, x: f32, y: f32) -> Conc {
        let g = self.geom;
        let coil = &g.coils[s.item as usize];
        let nsalt = g.salt ^ 0xC9 ^ ((s.item as u64) << 24);
        if s.region == Region::CoilStroma {
            // Thin loose stroma against each tubule that fades, by the distance to
            // the nearest tubule, into what the coil sits in (dermis or fat): no
            // edge where the stroma region ends, and no pink disc over fat.
            let under = Site {
                region: s.under,
                ..*s
            };
            let around = match s.under {
                Region::Fat => self.fat_v1(x, y),
                _ => self.dermis_v1(&under, x, y),
            };
            let fib = noise::value(x / 4.0, y / 1.6, g.salt ^ 0xC7 ^ s.item as u64);
            let loose = c(0.03, g.look.collagen_e * (0.22 + 0.2 * fib));
            let out = mixc(loose, around, noise::smoothstep(0.5, 5.0, s.tubule_dist));
            if coil.inflamed {
                return self.coil_neutrophil(out, x, y, (10.0, 0.6, nsalt ^ 1));
            }
            return out;
        }
        let t = &coil.tubules[s.sub as usize];
        // Synth 1.10 draws oval and long sections: the cells are laid out in the
        // section's own frame, where its edge is a circle (`Tubule::local`).
        let oval = g.generator >= Generator::V1_10;
        let (dx, dy) = if oval {
            t.local(x, y)
        } else {
            (x - t.x, y - t.y)
        };
        let d = noise::hypot(dx, dy);
        let ang = dy.atan2(dx);
        let tsalt = g.salt ^ 0xC1 ^ ((s.item as u64) << 20) ^ s.sub as u64;
        let lumen = t.lumen * (0.6 + 0.9 * noise::value(ang * 1.2 + 7.0, 0.5, tsalt));
        if d < lumen {
            if coil.inflamed {
                return self.coil_neutrophil(c(0.0, 0.03), x, y, (9.0, 0.35, nsalt ^ 2));
            }
            return c(0.0, 0.03);
        }
        // One cell per sector of the wall, its nucleus near the basement membrane.
        let rm = lumen + 0.62 * (t.r - lumen);
        let n = if oval {
            ((std::f32::consts::TAU * rm * perimeter_factor(t.aspect)) / 7.5)
                .round()
                .max(5.0)
        } else {
            ((std::f32::consts::TAU * rm) / 7.5).round().max(5.0)
        };
        let two_kinds = g.generator >= Generator::V1_15;
        let mut out = if t.duct {
            c(0.42, 0.5)
        } else if two_kinds {
            secretory_cell(n, (d, ang), (lumen, t.r), s.sub, tsalt, x, y)
        } else {
            c(0.16, 0.26 + 0.12 * noise::value(x / 3.0, y / 3.0, tsalt))
        };
        if two_kinds && t.duct {
            // Synth 1.15: the duct's eosinophilic cuticle lining its lumen.
            let cuticle = noise::smoothstep(lumen + 1.8, lumen + 0.7, d);
            out = mixc(out, c(0.05, 0.95), 0.85 * cuticle);
        }
        if coil.inflamed && noise::value(x / 2.2, y / 2.2, nsalt ^ 3) > 0.6 {
            // Vacuolar change of the secretory cells.
            out = c(out.h * 0.3, out.e * 0.3);
        }
        let sec = ((ang / std::f32::consts::TAU + 0.5) * n).floor();
        for k in [sec - 1.0, sec, sec + 1.0] {
            let hsh = hash2(k as i64, s.sub as i64, tsalt);
            let ac = (k + 0.5 + 0.3 * (unit(hsh, 0) - 0.5)) / n * std::f32::consts::TAU
                - std::f32::consts::PI;
            let rr = lumen + (t.r - lumen) * (0.35 + 0.5 * unit(hsh, 1));
            let (ox, oy, rot) = if oval {
                let (px, py) = t.to_plate(rr * ac.cos(), rr * ac.sin());
                let (rx, ry) = t.to_plate(ac.cos(), ac.sin());
                (x - t.x - px, y - t.y - py, ry.atan2(rx))
            } else {
                let (nx, ny) = (t.x + rr * ac.cos(), t.y + rr * ac.sin());
                (x - nx, y - ny, ac)
            };
            // An inflamed coil's cells: some nuclei shrunken and dark (pyknotic).
            let pyknotic = coil.inflamed && unit(hsh, 3) < 0.3;
            let r = if pyknotic {
                1.6 + 0.3 * unit(hsh, 2)
            } else {
                2.4 + 0.7 * unit(hsh, 2)
            };
            let (cv, hv) = nucleus(
                ox,
                oy,
                r,
                r * 0.85,
                rot,
                0.08,
                0.5,
                hsh,
                self.aa,
                tsalt,
                x,
                y,
            );
            if cv > 0.0 {
                let dark = if pyknotic { 1.5 } else { 1.0 };
                out = mixc(out, c(g.look.nuc_h * hv * dark, 0.3), cv);
            }
        }
        if oval && !t.duct {
            out = self.myoepithelium(out, t, (dx, dy, d, ang), s.sub, tsalt, x, y);
        }
        if coil.inflamed {
            return self.coil_neutrophil(out, x, y, (13.0, 0.25, nsalt ^ 4));
        }
        out
    }

    /// Synth 1.10: the myoepithelial layer of a secretory tubule, a thin pink rim at
    /// its edge with a flat dark spindle nucleus along it every 16 µm or so (not in
    /// every stretch the section cuts). `at` is the point in the section's own frame:
    /// (u, v), its radius there and its angle.
    #[allow(clippy::too_many_arguments)]
    fn myoepithelium(
        &self,
        base: Conc,
        t: &Tubule,
        at: (f32, f32, f32, f32),
        sub: u32,
        tsalt: u64,
        x: f32,
        y: f32,
    ) -> Conc {
        use std::f32::consts::{FRAC_PI_2, PI, TAU};
        let (u, v, d, ang) = at;
        let mut out = base;
        let rim = noise::smoothstep(t.r - 2.2, t.r - 0.9, d);
        if rim > 0.0 {
            out = mixc(
                out,
                c(0.07, 0.75 * self.geom.look.collagen_e.max(0.6)),
                0.7 * rim,
            );
        }
        let n = ((TAU * t.r * perimeter_factor(t.aspect)) / 16.0)
            .round()
            .max(3.0);
        let sec = ((ang / TAU + 0.5) * n).floor();
        let msalt = tsalt ^ 0x4D_7E;
        for k in [sec - 1.0, sec, sec + 1.0] {
            let hsh = hash2(k as i64, sub as i64, msalt);
            if unit(hsh, 2) < 0.35 {
                continue;
            }
            let ac = (k + 0.5 + 0.4 * (unit(hsh, 0) - 0.5)) / n * TAU - PI;
            let rr = t.r - 1.5;
            let (nu, nv) = (rr * ac.cos(), rr * ac.sin());
            let (px, py) = t.to_plate(u - nu, v - nv);
            // Along the edge: square to the ellipse's normal there, which in the
            // plate is (cos / aspect, sin) in the section's axes.
            let (rx, ry) = t.to_plate(ac.cos() / (t.aspect * t.aspect), ac.sin());
            let (cv, hv) = nucleus(
                px,
                py,
                3.0 + 0.9 * unit(hsh, 1),
                1.1 + 0.3 * unit(hsh, 3),
                ry.atan2(rx) + FRAC_PI_2,
                0.05,
                0.25,
                hsh,
                self.aa,
                msalt,
                x,
                y,
            );
            if cv > 0.0 {
                out = mixc(out, c(self.geom.look.nuc_h * hv * 1.3, 0.3), cv);
            }
        }
        out
    }

    /// Synth 1.11: a vessel as real sections show one, in place of synth 0.3's ring
    /// of dark blocks round red dots. The wall: pink with a fibrillar grain round the
    /// lumen, a muscle coat of circumferential spindle nuclei where the vessel is
    /// wide enough for one. The endothelium: flat dark nuclei along the lumen's edge,
    /// bulging into it, one every 10-24 µm and not in every stretch. The lumen, by
    /// the vessel's own draw: empty but for a little pale serum, or red cells
    /// (discs of 6.6-7.6 µm, orange-red with a paler centre) in clumps, or packed
    /// into one red mass (as a dilated psoriasiform capillary always is).
    fn vessel_v1(&self, s: &Site, x: f32, y: f32) -> Conc {
        use std::f32::consts::{PI, TAU};
        let g = self.geom;
        let v = &g.vessels[s.item as usize];
        let vsalt = g.salt ^ 0x7E55 ^ ((s.item as u64) << 24);
        let own = hash2(s.item as i64, 0, vsalt);
        // The vessel's own frame, as `Geometry::locate` takes it.
        let (u, w) = v.local(x, y);
        let (a, b) = (v.rx, v.ry);
        // The eccentric angle of the point and how far out from the lumen's edge
        // it lies along the ray from the centre (negative inside the lumen).
        let th = (w / b).atan2(u / a);
        let rho = ((u / a).powi(2) + (w / b).powi(2)).sqrt();
        let edge = noise::hypot(a * th.cos(), b * th.sin());
        let out_um = (rho - 1.0) * edge;
        let mut out = if out_um >= 0.0 {
            // The wall: concentric fibres, a little denser toward the lumen.
            let fib = noise::value(th * edge / 5.0, out_um / 0.8, vsalt ^ 1);
            let inner = 1.0 - noise::smoothstep(0.0, v.wall + 0.5, out_um);
            c(
                0.05 + 0.03 * inner,
                g.look.collagen_e.max(0.5) * (0.55 + 0.25 * fib + 0.2 * inner),
            )
        } else {
            self.vessel_lumen(v.tortuous, own, vsalt, x, y)
        };
        // A muscle coat in wide vessels: spindle nuclei along the circumference,
        // in the middle of the wall.
        if v.wall >= 3.5 && out_um > 0.5 {
            let n = ((TAU * (a + b) * 0.5 + PI * v.wall) / 13.0)
                .round()
                .max(4.0);
            let sec = ((th / TAU + 0.5) * n).floor();
            for k in [sec - 1.0, sec, sec + 1.0] {
                // Hashed by the stretch modulo n, so the one either side of the seam
                // at -pi is the same nucleus, not two half ones.
                let hsh = hash2(k.rem_euclid(n) as i64, 1, vsalt ^ 2);
                if unit(hsh, 2) < 0.45 {
                    continue;
                }
                let tc = (k + 0.5 + 0.4 * (unit(hsh, 0) - 0.5)) / n * TAU - PI;
                out = self.along_edge(out, (u, w), (a, b), tc, 0.5 * v.wall, hsh, (3.5, 0.8));
            }
        }
        // The endothelium: flat nuclei at the lumen's edge.
        let n = ((PI * (a + b) * 1.05) / (10.0 + 14.0 * unit(own, 3)))
            .round()
            .max(2.0);
        let sec = ((th / TAU + 0.5) * n).floor();
        let plump = if a.min(b) < 7.0 { 1.35 } else { 1.0 };
        for k in [sec - 1.0, sec, sec + 1.0] {
            let hsh = hash2(k.rem_euclid(n) as i64, 0, vsalt ^ 3);
            if unit(hsh, 2) < 0.3 {
                continue;
            }
            let tc = (k + 0.5 + 0.5 * (unit(hsh, 0) - 0.5)) / n * TAU - PI;
            out = self.along_edge(out, (u, w), (a, b), tc, 0.3, hsh, (3.0, 1.1 * plump));
        }
        out
    }

    /// A vessel's lumen at (x, y): pale serum, with red cells by the vessel's own
    /// draw `own` (always packed in a dilated psoriasiform capillary).
    fn vessel_lumen(&self, tortuous: bool, own: u64, vsalt: u64, x: f32, y: f32) -> Conc {
        let serum = 0.04 + 0.12 * unit(own, 1) * noise::value(x / 9.0, y / 9.0, vsalt ^ 4);
        let ground = c(0.005, serum);
        let kind = unit(own, 0);
        let occ = if tortuous || kind > 0.55 {
            0.9
        } else if kind > 0.2 {
            // Red cells in clumps, the rest of the lumen clear.
            0.85 * noise::smoothstep(0.45, 0.6, noise::value(x / 14.0, y / 14.0, vsalt ^ 5))
        } else {
            0.04
        };
        if occ <= 0.0 {
            return ground;
        }
        let cells = cells_around(x, y, 4.6, 0.1, vsalt ^ 6, |dx, dy, hsh| {
            if unit(hsh, 2) > occ {
                return None;
            }
            let r = 3.3 + 0.5 * unit(hsh, 3);
            let cov = disc(dx, dy, r, self.aa);
            // Biconcave: paler at the centre, seen face on.
            let centre = 1.0 - 0.2 * (1.0 - noise::smoothstep(0.6, 1.8, noise::hypot(dx, dy)));
            Some((cov, centre))
        });
        if cells.cov <= 0.0 {
            return ground;
        }
        // Eosin, and haemoglobin's own absorption of blue and green (on melanin's
        // vector, the nearest the renderer draws), which turns them orange-red.
        let e = (0.7 + 0.25 * unit(cells.own, 4)) * cells.h;
        let red = Conc {
            h: 0.02,
            e,
            m: 0.22 * e,
        };
        mixc(ground, red, cells.cov)
    }

    /// `base` with a flat nucleus drawn over it, lying along a vessel's lumen ellipse
    /// (semi-axes `ab`) at eccentric angle `tc`, `out_um` outside its edge; `(u, w)` the
    /// point in the vessel's frame, `size` the nucleus's half-length and half-width.
    #[allow(clippy::too_many_arguments)]
    fn along_edge(
        &self,
        base: Conc,
        (u, w): (f32, f32),
        (a, b): (f32, f32),
        tc: f32,
        out_um: f32,
        hsh: u64,
        size: (f32, f32),
    ) -> Conc {
        let (st, ct) = tc.sin_cos();
        // The edge point, its outward normal and its tangent.
        let (nx, ny) = (b * ct, a * st);
        let nl = noise::hypot(nx, ny).max(1e-6);
        let (px, py) = (a * ct + out_um * nx / nl, b * st + out_um * ny / nl);
        let ang = (a * st).atan2(b * ct) + std::f32::consts::FRAC_PI_2;
        let (cv, hv) = nucleus(
            u - px,
            w - py,
            size.0 + 1.5 * unit(hsh, 1),
            size.1 + 0.3 * unit(hsh, 3),
            ang,
            0.05,
            0.2,
            hsh,
            self.aa,
            hsh,
            u,
            w,
        );
        if cv > 0.0 {
            mixc(base, c(self.geom.look.nuc_h * hv * 1.5, 0.3), cv)
        } else {
            base
        }
    }
}

/// How far (x, y) µm lies beyond a vessel's wall along the ray from its centre
/// (negative inside the wall or the lumen), measured as synth 1.11's vessel shader
/// measures a point's distance from the lumen's edge: the point is `rho` times the
/// wall's edge point on its ray, so it lies (rho - 1) / rho of its own distance out
/// (no angle needed).
fn beyond_wall(v: &Vessel, x: f32, y: f32) -> f32 {
    let (u, w) = v.local(x, y);
    let (a, b) = (v.rx + v.wall, v.ry + v.wall);
    let rho = ((u / a).powi(2) + (w / b).powi(2)).sqrt().max(1e-6);
    (rho - 1.0) / rho * noise::hypot(u, w)
}

/// An ellipse's perimeter over its minor circle's (Ramanujan's approximation) for
/// a major-over-minor ratio `aspect`: 1 for a circle.
fn perimeter_factor(aspect: f32) -> f32 {
    0.5 * (3.0 * (aspect + 1.0) - ((3.0 * aspect + 1.0) * (aspect + 3.0)).sqrt())
}

/// Synth 1.9's cells round (x, y): the nearest cell's hash, the gap between the
/// distances to the nearest and the second nearest centre (0 on the border between
/// two cells), and the most covering nucleus there with its hematoxylin.
struct CellsAround {
    own: u64,
    gap: f32,
    cov: f32,
    h: f32,
}

/// Cells centred on a jittered grid of spacing `sp` (each centre between `lo` and
/// `1 - lo` of its grid cell, from `salt`); `nucleus(dx, dy, hash)` gives a cell's
/// nucleus coverage and hematoxylin at offset (dx, dy) from its centre, `None` for a
/// cell the section cut past its nucleus.
fn cells_around(
    x: f32,
    y: f32,
    sp: f32,
    lo: f32,
    salt: u64,
    nucleus: impl Fn(f32, f32, u64) -> Option<(f32, f32)>,
) -> CellsAround {
    let (gi, gj) = ((x / sp).floor() as i64, (y / sp).floor() as i64);
    let (mut cov, mut nh) = (0.0f32, 0.0f32);
    let (mut d1, mut d2, mut own) = (f32::MAX, f32::MAX, 0u64);
    for j in gj - 1..=gj + 1 {
        for i in gi - 1..=gi + 1 {
            let hsh = hash2(i, j, salt);
            let cx = (i as f32 + lo + (1.0 - 2.0 * lo) * unit(hsh, 0)) * sp;
            let cy = (j as f32 + lo + (1.0 - 2.0 * lo) * unit(hsh, 1)) * sp;
            let (dx, dy) = (x - cx, y - cy);
            let q = dx * dx + dy * dy;
            if q < d1 {
                d2 = d1;
                d1 = q;
                own = hsh;
            } else if q < d2 {
                d2 = q;
            }
            if let Some((cv, hv)) = nucleus(dx, dy, hsh) {
                if cv > cov {
                    cov = cv;
                    nh = hv;
                }
            }
        }
    }
    CellsAround {
        own,
        gap: d2.sqrt() - d1.sqrt(),
        cov,
        h: nh,
    }
}

impl<'a> Shader<'a> {
    /// Synth 1.9: a hair follicle, out from its axis: the hair shaft (pale pink
    /// keratin in fine streaks along the axis, a denser cuticle, melanin granules
    /// in dark hair) or, where the shaft fell out of the section, its empty canal;
    /// the inner root sheath, bright eosinophilic with red trichohyalin granules;
    /// the outer root sheath, clear glycogenated cells with a palisade of darker
    /// basal cells at its edge; the glassy membrane; the fibrous sheath's
    /// concentric collagen with flat fibroblast nuclei, fading into what the
    /// follicle lies in. `u` runs along the axis (round it, for a follicle cut
    /// across), so streaks follow the follicle.
    fn follicle_v1(&self, s: &Site, x: f32, y: f32) -> Conc {
        let g = self.geom;
        let look = &g.look;
        let f = &g.follicles[s.item as usize];
        let fsalt = g.salt ^ 0xF011 ^ ((s.item as u64) << 28);
        let d = s.radial;
        let l = f.length();
        let u = if l > 0.0 {
            ((x - f.x0) * (f.x1 - f.x0) + (y - f.y0) * (f.y1 - f.y0)) / l
        } else {
            (y - f.y0).atan2(x - f.x0) * f.r
        };
        match s.region {
            Region::HairShaft if f.lost => {
                let edge = noise::smoothstep(f.shaft - 1.5, f.shaft, d);
                c(0.01, 0.03 + 0.35 * edge * noise::value(u / 2.0, d, fsalt))
            }
            Region::HairShaft => {
                let streak = noise::value(u / 9.0, d / 1.1, fsalt ^ 1);
                let cuticle = noise::smoothstep(f.shaft - 1.5, f.shaft - 0.3, d);
                let mut out = c(0.05, 0.5 + 0.3 * streak + 0.3 * cuticle);
                if f.pigment > 0.0 {
                    let gran =
                        noise::smoothstep(0.55, 0.85, noise::value(u / 1.8, d / 0.8, fsalt ^ 2));
                    out.m = f.pigment * (0.3 + 0.7 * gran) * (1.0 - 0.6 * cuticle);
                }
                out
            }
            Region::RootSheath if d < f.shaft + f.irs => {
                let mut out = c(0.06, look.collagen_e * 1.5 + 0.1);
                let gran = noise::value(x / 0.8, y / 0.8, fsalt ^ 3);
                if d > f.shaft + 0.4 * f.irs {
                    out.e += 0.6 * noise::smoothstep(0.7, 0.85, gran);
                }
                out
            }
            Region::RootSheath => self.outer_root_sheath(f, d, x, y, fsalt ^ 4),
            _ => {
                if d < f.r + 1.8 {
                    // The glassy membrane.
                    return c(
                        0.03,
                        look.collagen_e * 1.3 + 0.1 * noise::value(u / 3.0, d, fsalt),
                    );
                }
                let fib = noise::value(u / 12.0, d, fsalt ^ 5);
                let mut out = c(0.03, look.collagen_e * (0.7 + 0.4 * fib));
                let (ci, cj) = ((u / 14.0).floor(), ((d - f.r) / 3.0).floor());
                let hsh = hash2(ci as i64, cj as i64, fsalt ^ 6);
                if unit(hsh, 0) < 0.35 {
                    let (cu, cd) = ((ci + 0.5) * 14.0, f.r + (cj + 0.5) * 3.0);
                    let (cv, hv) = nucleus(
                        u - cu,
                        d - cd,
                        4.5,
                        1.1,
                        0.0,
                        0.1,
                        0.2,
                        hsh,
                        self.aa,
                        fsalt,
                        x,
                        y,
                    );
                    if cv > 0.0 {
                        out = mixc(out, c(look.nuc_h * hv * 1.2, 0.4), cv);
                    }
                }
                let under = Site {
                    region: s.under,
                    ..*s
                };
                let around = match s.under {
                    Region::Fat => self.fat_v1(x, y),
                    _ => self.dermis_v1(&under, x, y),
                };
                let fade = noise::smoothstep(f.r + 3.0, f.r + FIBROUS_SHEATH_UM, d);
                mixc(out, around, fade)
            }
        }
    }

    /// The outer root sheath at distance `d` from the axis: clear cells with
    /// visible membranes and small nuclei, the outermost 8 µm a palisade of
    /// darker basal cells.
    fn outer_root_sheath(&self, f: &Follicle, d: f32, x: f32, y: f32, salt: u64) -> Conc {
        let g = self.geom;
        let look = &g.look;
        let palisade = d > f.r - 8.0;
        let sp = if palisade { 7.0 } else { 10.0 };
        let cells = cells_around(x, y, sp, 0.15, salt, |dx, dy, hsh| {
            let h2 = noise::mix(hsh);
            if unit(h2, 3) < 0.2 {
                return None;
            }
            let size = g.cell_scale * (0.8 + 0.4 * unit(hsh, 2));
            let ang = unit(h2, 0) * std::f32::consts::PI;
            let (a, b) = (3.0 * size, 2.4 * size);
            Some(nucleus(
                dx, dy, a, b, ang, 0.12, 0.6, hsh, self.aa, salt, x, y,
            ))
        });
        let (own, cov, nh) = (cells.own, cells.cov, cells.h);
        let tone = 0.85 + 0.3 * unit(own, 3);
        let mut out = if palisade {
            c(look.epi_h * 1.3 * tone, look.epi_e * 0.9 * tone)
        } else {
            c(look.epi_h * 0.45 * tone, look.epi_e * 0.5 * tone)
        };
        if cells.gap < 0.6 {
            out = c(out.h * 1.3 + 0.02, out.e * 1.2 + 0.03);
        }
        if cov > 0.0 {
            let dark = if palisade { 1.3 } else { 1.0 };
            out = mixc(out, c(look.nuc_h * nh * dark, 0.5), cov);
        }
        out
    }

    /// Synth 1.9: a sebaceous lobule: a rim of flat, dark germinative cells;
    /// inside, big cells of foamy, finely vacuolated pale cytoplasm with thin
    /// membranes and a small, dark, scalloped central nucleus; in the biggest
    /// lobules a centre of holocrine debris without nuclei.
    fn sebaceous_v1(&self, s: &Site, x: f32, y: f32) -> Conc {
        let g = self.geom;
        let look = &g.look;
        let l = &g.follicles[s.item as usize].lobules[s.sub as usize];
        let lsalt = g.salt ^ 0x5EB ^ ((s.item as u64) << 28) ^ ((s.sub as u64) << 20);
        let edge = (1.0 - s.radial) * l.a.min(l.b);
        if edge < 3.5 {
            let mut out = c(look.epi_h * 1.5, look.epi_e * 0.7);
            let tangent = (y - l.y).atan2(x - l.x) + std::f32::consts::FRAC_PI_2;
            let sp = 6.0;
            let (gi, gj) = ((x / sp).floor() as i64, (y / sp).floor() as i64);
            for j in gj - 1..=gj + 1 {
                for i in gi - 1..=gi + 1 {
                    let hsh = hash2(i, j, lsalt ^ 1);
                    let cx = (i as f32 + 0.2 + 0.6 * unit(hsh, 0)) * sp;
                    let cy = (j as f32 + 0.2 + 0.6 * unit(hsh, 1)) * sp;
                    let (cv, hv) = nucleus(
                        x - cx,
                        y - cy,
                        2.8,
                        1.7,
                        tangent,
                        0.1,
                        0.2,
                        hsh,
                        self.aa,
                        lsalt,
                        x,
                        y,
                    );
                    if cv > 0.0 {
                        out = mixc(out, c(look.nuc_h * hv * 1.3, 0.4), cv);
                    }
                }
            }
            return out;
        }
        if l.b > 30.0 && s.radial < 0.3 {
            // Holocrine debris.
            return c(
                0.03,
                0.15 + 0.15 * noise::value(x / 2.0, y / 2.0, lsalt ^ 3),
            );
        }
        let foam = noise::value(x / 1.1, y / 1.1, lsalt ^ 2);
        let cyto = mixc(
            c(0.02, 0.06),
            c(0.1, 0.3),
            noise::smoothstep(0.42, 0.62, foam),
        );
        let cells = cells_around(x, y, 13.0, 0.2, lsalt ^ 4, |dx, dy, hsh| {
            let r = 2.0 + 0.6 * unit(hsh, 2);
            Some(nucleus(
                dx,
                dy,
                r,
                r * 0.85,
                0.0,
                0.35,
                0.1,
                hsh,
                self.aa,
                lsalt,
                x,
                y,
            ))
        });
        let (own, cov, nh) = (cells.own, cells.cov, cells.h);
        let tone = 0.85 + 0.3 * unit(own, 3);
        let mut out = c(cyto.h * tone, cyto.e * tone);
        if cells.gap < 0.8 {
            out = c(0.12, 0.4);
        }
        if cov > 0.0 {
            out = mixc(out, c(look.nuc_h * nh * 1.3, 0.4), cov);
        }
        out
    }
}

/// Synth 1.15: the cytoplasm of a secretory coil's cells, as the real coil shows
/// them: large clear cells (pale, faintly bubbly glycogen) resting on the basement
/// membrane, and smaller dark cells (granular, basophilic) crowded along the lumen,
/// where a clear cell reaches through here and there. `n` cells go round the wall
/// (the clear ones; the luminal band holds half as many again); the borders wander.
/// `at` is the point's radius and angle in the section's own frame, `wall` the
/// lumen's radius there and the section's.
fn secretory_cell(
    n: f32,
    at: (f32, f32),
    wall: (f32, f32),
    sub: u32,
    tsalt: u64,
    x: f32,
    y: f32,
) -> Conc {
    use std::f32::consts::TAU;
    let ((d, ang), (lumen, r)) = (at, wall);
    let turn = ang / TAU + 0.5;
    // The luminal band ends 0.4-0.6 of the wall out and a border wanders by at most
    // 0.3 of a cell: each noise is read only where it can change the answer.
    let luminal = if d < lumen + 0.39 * (r - lumen) {
        true
    } else if d > lumen + 0.61 * (r - lumen) {
        false
    } else {
        let band = 0.4 + 0.2 * noise::value(ang * 5.0, 1.5, tsalt ^ 0xBA);
        d < lumen + band * (r - lumen)
    };
    let (cells, kind) = if luminal {
        (1.5 * n, 0xDA_4C)
    } else {
        (n, 0xC1_EA)
    };
    let at_cell = turn * cells;
    let cell = if (0.31..0.69).contains(&(at_cell - at_cell.floor())) {
        at_cell.floor()
    } else {
        let wander = noise::value(d / 1.5, ang * 4.0, tsalt ^ 0x5EC) - 0.5;
        (at_cell + 0.6 * wander).floor()
    };
    let hsh = hash2(cell as i64, sub as i64, tsalt ^ kind);
    let dark = if luminal {
        unit(hsh, 0) < 0.7
    } else {
        unit(hsh, 0) < 0.08
    };
    if dark {
        let grain = noise::value(x / 0.8, y / 0.8, tsalt ^ 0x6A);
        c(0.22 + 0.08 * grain, 0.3 + 0.1 * grain)
    } else {
        let bubble = noise::value(x / 1.2, y / 1.2, tsalt ^ 0xB0);
        c(0.05 + 0.03 * bubble, 0.13 + 0.08 * bubble)
    }
}

#[cfg(test)]
mod tests {
    use super::{c, noise};
    use crate::synth::anatomy::Geometry;
    use crate::synth::render::{render_rgb, Raster};
    use crate::synth::{Artefacts, Generator, MaskGrid, SlideClass, EPIDERMIS_BIT, TISSUE_BIT};

    fn pair(class: SlideClass, seed: u64) -> (Geometry, Geometry) {
        let a = Artefacts::default();
        (
            Geometry::build_with(Generator::V0_3, class, seed, 1600.0, 1200.0, &a),
            Geometry::build_with(Generator::V1_7, class, seed, 1600.0, 1200.0, &a),
        )
    }

    /// sha256 of whole small slides (one a class, 1.6 x 1.2 mm at 4 um/px, every
    /// artefact) rendered by `gen`.
    fn digest_of(gen: Generator) -> String {
        use sha2::{Digest, Sha256};
        let a = Artefacts {
            pen: true,
            fold: true,
            blur: false,
        };
        let mut h = Sha256::new();
        for (i, class) in SlideClass::ALL.into_iter().enumerate() {
            for artefacts in [Artefacts::default(), a] {
                let g = Geometry::build_with(gen, class, 40 + i as u64, 1600.0, 1200.0, &artefacts);
                h.update(render_rgb(&g, Raster::new(4.0), 0, 0, 400, 300));
            }
        }
        format!("{:x}", h.finalize())
    }

    /// sha256 of the tangential stretches of the first three normal slides that have
    /// one, at 1 um/px, rendered by `gen` (the whole-slide digest at 4 um/px cuts none).
    fn tangential_digest(gen: Generator) -> String {
        use sha2::{Digest, Sha256};
        let a = Artefacts::default();
        let mut h = Sha256::new();
        let mut n = 0;
        for seed in 1.. {
            let g = Geometry::build_with(gen, SlideClass::Normal, seed, 1600.0, 1200.0, &a);
            if let Some(t) = &g.tangential {
                h.update(render_rgb(&g, Raster::new(1.0), t.x0 as i64, 0, 256, 400));
                n += 1;
                if n == 3 {
                    break;
                }
            }
        }
        format!("{:x}", h.finalize())
    }

    /// sha256 of every eccrine coil (its disc and 30 µm round it) of the first two
    /// slides of each class that have one, at 1 µm/px, rendered by `gen`.
    fn coil_digest(gen: Generator) -> String {
        use sha2::{Digest, Sha256};
        let a = Artefacts::default();
        let mut h = Sha256::new();
        for class in SlideClass::ALL {
            let mut n = 0;
            for seed in 1..40 {
                let g = Geometry::build_with(gen, class, seed, 3000.0, 2400.0, &a);
                for c in &g.coils {
                    let reach = (c.r + 30.0) as i64;
                    let (x0, y0) = (c.x as i64 - reach, c.y as i64 - reach);
                    let side = 2 * reach as usize;
                    h.update(render_rgb(&g, Raster::new(1.0), x0, y0, side, side));
                }
                n += !g.coils.is_empty() as usize;
                if n == 2 {
                    break;
                }
            }
        }
        format!("{:x}", h.finalize())
    }

    /// sha256 of the mask bits round every inflamed coil (its disc and the halo that
    /// counts as hidradenitis) of the first three DIRA slides that have one, on a 2 µm
    /// grid, drawn by `gen`.
    fn inflamed_coil_mask_digest(gen: Generator) -> String {
        use sha2::{Digest, Sha256};
        let a = Artefacts::default();
        let mut h = Sha256::new();
        let mut n = 0;
        for seed in 1..60 {
            let g = Geometry::build_with(gen, SlideClass::Dira, seed, 3000.0, 2400.0, &a);
            for c in g.coils.iter().filter(|c| c.inflamed) {
                let reach = c.r + crate::synth::anatomy::NEH_HALO_UM + 4.0;
                let mut y = c.y - reach;
                while y < c.y + reach {
                    let mut x = c.x - reach;
                    while x < c.x + reach {
                        h.update([g.locate(x, y).flags]);
                        x += 2.0;
                    }
                    y += 2.0;
                }
            }
            n += g.coils.iter().any(|c| c.inflamed) as usize;
            if n == 3 {
                break;
            }
        }
        format!("{:x}", h.finalize())
    }

    /// sha256 of the first six vessels (lumen, wall and 12 µm round them) of the
    /// first two slides of each class, at 1 µm/px, rendered by `gen`.
    fn vessel_digest(gen: Generator) -> String {
        use sha2::{Digest, Sha256};
        let a = Artefacts::default();
        let mut h = Sha256::new();
        for class in SlideClass::ALL {
            for seed in [1, 2] {
                let g = Geometry::build_with(gen, class, seed, 3000.0, 2400.0, &a);
                for v in g.vessels.iter().take(6) {
                    let reach = (v.rx.max(v.ry) + v.wall + 12.0) as i64;
                    let (x0, y0) = (v.x as i64 - reach, v.y as i64 - reach);
                    let side = 2 * reach as usize;
                    h.update(render_rgb(&g, Raster::new(1.0), x0, y0, side, side));
                }
            }
        }
        format!("{:x}", h.finalize())
    }

    /// Generators kept byte for byte after a newer one redrew a structure, pinned from
    /// the code of the commit before each step: 1.9 when synth 1.10 redrew the eccrine
    /// coils (model 2.20.0 learnt follicles from 1.9), 1.10 when synth 1.11 redrew the
    /// vessels, 1.11 when synth 1.12 drew cells round them, 1.12 when synth 1.13 drew
    /// knife lines, 1.13 (its coils, and the masks round inflamed ones) when synth
    /// 1.14 drew hidradenitis where the tubules are, 1.14 (its coils) when synth 1.15
    /// drew the coil's clear and dark cells and the duct's cuticle, 1.15 when synth 1.16
    /// gave the stain its grain, colour noise and fitted colour.
    /// `benches/synth_same.sh` with
    /// every case at the older generator (LINE) gave identical files against that
    /// commit's binary, each time.
    #[test]
    fn synth_1_9_to_1_15_are_kept_byte_for_byte() {
        type Digest = fn(Generator) -> String;
        let kept: [(Generator, &str, Digest, &str); 15] = [
            (
                Generator::V1_9,
                "coils",
                coil_digest,
                "50c3451d8679d07b5792846af677c507818c2dc5e1fc6513eaa88a886f5a95f3",
            ),
            (
                Generator::V1_9,
                "slides",
                digest_of,
                "54c61ce609f007d98af72ea962f57063f59b4239dfe06c5a18dbcc1e82d48258",
            ),
            (
                Generator::V1_10,
                "vessels",
                vessel_digest,
                "f7da8ee2c21a7b6ca07f1b9d3a6a6ec42958f48290f6c6bce3be06621490220f",
            ),
            (
                Generator::V1_10,
                "coils",
                coil_digest,
                "1a742e199986ecef76e15a5395693ddfe1b5d28c43aec407e2683db7b4f6427b",
            ),
            (
                Generator::V1_10,
                "slides",
                digest_of,
                "dcb1b902c69d17566cdb85ed967dc53e9ebaa8cbf994c1797362a6570bf65279",
            ),
            (
                Generator::V1_11,
                "vessels",
                vessel_digest,
                "3f3d61fe3966b41041dceb4e5512f5846cb21dd511b61da94370b1ad5444281b",
            ),
            (
                Generator::V1_11,
                "slides",
                digest_of,
                "59d13d35629cda05bd5af8e72dafde0dd239391ee186ef7d88f8f1bffbddc072",
            ),
            (
                Generator::V1_12,
                "slides",
                digest_of,
                "456e3febf21b5dcfd3072a90708039778cf4960c63ded8f2663ee4c895921f2b",
            ),
            (
                Generator::V1_13,
                "coils",
                coil_digest,
                "33f819b59488bba8d4a434f48e7eb3ea5ab60e11016c6df9d7fe200b55dee670",
            ),
            (
                Generator::V1_13,
                "slides",
                digest_of,
                "2ee5c573c173efc5cdb34e83c4c723252b94297a6cc80385d93efd517d570c7b",
            ),
            (
                Generator::V1_13,
                "hidradenitis masks",
                inflamed_coil_mask_digest,
                "50b247e8ef84f3e7b2a3919b5c983d68f828481863ec724536b72cf9234ffe32",
            ),
            (
                Generator::V1_14,
                "coils",
                coil_digest,
                "d8f09025259e1b0221d183234eebe260ba1b5e6fe14c6ed1b724ee479977d366",
            ),
            (
                Generator::V1_14,
                "slides",
                digest_of,
                "66495b1625a8655f802709186f322fc406487312e4c03d5c2cd5891ec334c085",
            ),
            (
                Generator::V1_15,
                "coils",
                coil_digest,
                "599b721e54366a3a38f6898c7d15a7739c1500692377d4d956cc12471e3ec2a6",
            ),
            (
                Generator::V1_15,
                "slides",
                digest_of,
                "1781fce6ffa8b5a6b64dabdf11895c0c3505a33c9532ca5d148a86a340ee4254",
            ),
        ];
        for (gen, what, digest, pinned) in kept {
            assert_eq!(digest(gen), pinned, "{} {what}", gen.version());
        }
    }

    /// What a newer generator must leave as an older one drew it, on one slide of
    /// 3 x 2.4 mm: every point's mask bits (a 4 um grid), a point's region only where
    /// `region_ok(x, y, old, new)` allows a change, and every pixel at 4 um/px except
    /// where `drawn(x, y)` (the new structure's reach). Returns (points whose region
    /// changed, pixels compared, pixels within reach that changed).
    fn changes_only_where(
        old: &Geometry,
        new: &Geometry,
        what: &str,
        region_ok: impl Fn(
            f32,
            f32,
            crate::synth::anatomy::Region,
            crate::synth::anatomy::Region,
        ) -> bool,
        drawn: impl Fn(f32, f32) -> bool,
    ) -> (usize, usize, usize) {
        let (mut moved, mut kept, mut changed) = (0usize, 0usize, 0usize);
        for yi in 0..600 {
            for xi in 0..750 {
                let (x, y) = (xi as f32 * 4.0 + 1.3, yi as f32 * 4.0 + 0.7);
                let (so, sn) = (old.locate(x, y), new.locate(x, y));
                assert_eq!(so.flags, sn.flags, "{what} at ({x}, {y})");
                if so.region != sn.region {
                    assert!(
                        region_ok(x, y, so.region, sn.region),
                        "{what} at ({x}, {y}): {:?} -> {:?}",
                        so.region,
                        sn.region
                    );
                    moved += 1;
                }
            }
        }
        let (w, h) = (750, 600);
        let po = render_rgb(old, Raster::new(4.0), 0, 0, w, h);
        let pn = render_rgb(new, Raster::new(4.0), 0, 0, w, h);
        for (k, (po, pn)) in po.chunks(3).zip(pn.chunks(3)).enumerate() {
            let (x, y) = ((k % w) as f32 * 4.0 + 2.0, (k / w) as f32 * 4.0 + 2.0);
            if !drawn(x, y) {
                assert_eq!(po, pn, "{what}: pixel at ({x}, {y}) um");
                kept += 1;
            } else {
                changed += (po != pn) as usize;
            }
        }
        (moved, kept, changed)
    }

    /// Synth 1.10 redraws the tubules of each eccrine coil and changes nothing else:
    /// the same coils (centre, radius, inflamed), the same follicles, every point's
    /// mask bits 1.9's, a point's region different only inside a coil's disc (between
    /// tubule, lumen, stroma and what the coil lies in), and the pixels 1.9's beyond
    /// 30 µm of every coil.
    #[test]
    fn synth_1_10_redraws_the_coils_and_changes_nothing_else() {
        use crate::synth::anatomy::Region as R;
        let a = Artefacts::default();
        let (mut coils, mut moved, mut kept) = (0, 0usize, 0usize);
        for (i, class) in SlideClass::ALL.into_iter().enumerate() {
            for seed in [80 + i as u64, 90 + i as u64] {
                let old = Geometry::build_with(Generator::V1_9, class, seed, 3000.0, 2400.0, &a);
                let new = Geometry::build_with(Generator::V1_10, class, seed, 3000.0, 2400.0, &a);
                assert_eq!(old.coils.len(), new.coils.len());
                for (o, n) in old.coils.iter().zip(&new.coils) {
                    assert_eq!((o.x, o.y, o.r, o.inflamed), (n.x, n.y, n.r, n.inflamed));
                }
                assert_eq!(old.follicles.len(), new.follicles.len());
                coils += new.coils.len();
                let in_coil = |x: f32, y: f32, margin: f32| {
                    new.coils
                        .iter()
                        .any(|c| noise::hypot(x - c.x, y - c.y) < c.r + margin)
                };
                let coil_or_under = |r: R| {
                    matches!(
                        r,
                        R::TubuleCells
                            | R::TubuleLumen
                            | R::CoilStroma
                            | R::Papillary
                            | R::Reticular
                            | R::Fat
                            | R::VesselWall
                            | R::VesselLumen
                    )
                };
                let (m, k, _) = changes_only_where(
                    &old,
                    &new,
                    &format!("{class:?} {seed}"),
                    |x, y, so, sn| in_coil(x, y, 12.0) && coil_or_under(so) && coil_or_under(sn),
                    |x, y| in_coil(x, y, 30.0),
                );
                moved += m;
                kept += k;
            }
        }
        assert!(
            coils >= 8 && moved > 1000 && kept > 3_000_000,
            "{coils} coils, {moved} points redrawn, {kept} pixels kept"
        );
    }

    /// Synth 1.10's coils as a section through a coiled tube shows them: sections
    /// more crowded than 1.9's round tubules scattered over the disc, a share of them oval or long,
    /// some ducts, each inside the coil's disc and clear of the others; a point's
    /// region follows the section's own shape (lumen at its centre, cells out to its
    /// edge along the long axis, not past it).
    #[test]
    fn synth_1_10_coils_are_packed_round_oval_and_long_tubule_sections() {
        use crate::synth::anatomy::Region as R;
        let a = Artefacts::default();
        // How crowded a coil's sections are: for each section, the area of the
        // sections centred within 60 µm of it over that disc's area, the mean.
        let crowding = |g: &Geometry| -> Vec<f32> {
            let disc = std::f32::consts::PI * 60.0 * 60.0;
            g.coils
                .iter()
                .flat_map(|c| {
                    c.tubules.iter().map(|t| {
                        c.tubules
                            .iter()
                            .filter(|u| noise::hypot(t.x - u.x, t.y - u.y) < 60.0)
                            .map(|u| std::f32::consts::PI * u.r * u.r * u.aspect)
                            .sum::<f32>()
                            / disc
                    })
                })
                .collect()
        };
        let (mut sections, mut long, mut ducts, mut checked) = (0usize, 0usize, 0usize, 0usize);
        let (mut crowd_old, mut crowd_new) = (Vec::new(), Vec::new());
        for seed in 1..=24u64 {
            let class = SlideClass::ALL[seed as usize % 4];
            let g = Geometry::build_with(Generator::V1_10, class, seed, 4000.0, 3000.0, &a);
            let old = Geometry::build_with(Generator::V1_9, class, seed, 4000.0, 3000.0, &a);
            crowd_new.extend(crowding(&g));
            crowd_old.extend(crowding(&old));
            for c in &g.coils {
                assert!(
                    c.tubules.len() >= 6,
                    "seed {seed}: {} sections",
                    c.tubules.len()
                );
                for (ti, t) in c.tubules.iter().enumerate() {
                    sections += 1;
                    long += (t.aspect > 1.5) as usize;
                    ducts += t.duct as usize;
                    assert!(
                        noise::hypot(t.x - c.x, t.y - c.y) + t.r * t.aspect <= c.r,
                        "seed {seed}: section {ti} leaves its coil's disc"
                    );
                    // Points just inside the edge all round belong to no other section.
                    for k in 0..24 {
                        let ang = k as f32 / 24.0 * std::f32::consts::TAU;
                        let (px, py) = t.to_plate(0.97 * t.r * ang.cos(), 0.97 * t.r * ang.sin());
                        for (ui, u) in c.tubules.iter().enumerate() {
                            if ui != ti {
                                let (lu, lv) = u.local(t.x + px, t.y + py);
                                assert!(
                                    noise::hypot(lu, lv) > u.r,
                                    "seed {seed}: sections {ti} and {ui} overlap"
                                );
                            }
                        }
                    }
                    let site = |u: f32| {
                        let (px, py) = t.to_plate(u, 0.0);
                        g.locate(t.x + px, t.y + py)
                    };
                    if t.lumen > 1.0 {
                        assert_eq!(site(0.0).region, R::TubuleLumen, "seed {seed} section {ti}");
                    }
                    let inner = site(0.9 * t.r);
                    assert_eq!(inner.region, R::TubuleCells, "seed {seed} section {ti}");
                    assert_eq!(inner.sub as usize, ti);
                    let past = site(t.r + 1.0 / t.aspect);
                    assert!(
                        past.sub as usize != ti
                            || !matches!(past.region, R::TubuleCells | R::TubuleLumen),
                        "seed {seed}: section {ti} reaches past its edge"
                    );
                    checked += 1;
                }
            }
        }
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len().max(1) as f32;
        let (co, cn) = (mean(&crowd_old), mean(&crowd_new));
        let got = format!(
            "{sections} sections, {long} long, {ducts} ducts; crowding 1.9 {co:.3}, 1.10 {cn:.3}"
        );
        assert!(sections > 300 && checked == sections, "{got}");
        let (long, ducts) = (
            long as f32 / sections as f32,
            ducts as f32 / sections as f32,
        );
        assert!((0.08..0.4).contains(&long), "{got}");
        assert!((0.05..0.3).contains(&ducts), "{got}");
        // Measured when written: 1.9 0.300, 1.10 0.385 (24 slides).
        assert!(cn > 1.2 * co, "{got}");
    }

    /// Synth 1.10's myoepithelium: round the edge of a secretory section, flat dark
    /// nuclei along it in some stretches and a pink rim; nothing deeper in the cells.
    #[test]
    fn synth_1_10_myoepithelium_lines_the_edge_of_secretory_tubules() {
        use crate::synth::render::Shader;
        let a = Artefacts::default();
        let g = Geometry::build_with(Generator::V1_10, SlideClass::Normal, 3, 4000.0, 3000.0, &a);
        let shader = Shader { geom: &g, aa: 0.25 };
        let base = c(0.16, 0.3);
        let (mut rim_dark, mut rim_n, mut deep_changed, mut tubules) = (0usize, 0usize, 0usize, 0);
        for c in &g.coils {
            for (ti, t) in c.tubules.iter().enumerate().filter(|(_, t)| !t.duct) {
                tubules += 1;
                for k in 0..720 {
                    let ang = k as f32 / 720.0 * std::f32::consts::TAU - std::f32::consts::PI;
                    for (radius, deep) in [(t.r - 1.5, false), (t.r - 6.0, true)] {
                        let (u, v) = (radius * ang.cos(), radius * ang.sin());
                        let (px, py) = t.to_plate(u, v);
                        let out = shader.myoepithelium(
                            base,
                            t,
                            (u, v, radius, v.atan2(u)),
                            ti as u32,
                            77,
                            t.x + px,
                            t.y + py,
                        );
                        if deep {
                            deep_changed +=
                                ((out.h, out.e, out.m) != (base.h, base.e, base.m)) as usize;
                        } else {
                            rim_n += 1;
                            rim_dark += (out.h > base.h + 0.25) as usize;
                        }
                    }
                }
            }
        }
        let share = rim_dark as f32 / rim_n.max(1) as f32;
        assert!(tubules >= 10, "{tubules} secretory sections");
        assert_eq!(deep_changed, 0);
        assert!(
            (0.05..0.6).contains(&share),
            "{share:.3} of the rim under a nucleus"
        );
    }

    /// A generator step that draws only at vessels changes nothing else: on one slide of
    /// each class (seeds from `seed`), `new`'s vessels are `old`'s, every point's mask
    /// bits and region `old`'s, and every pixel `old`'s farther than `reach` µm beyond a
    /// vessel's wall (3.5 µm more for a pixel's width) or where `also` allows a change.
    fn changes_only_at_vessels(
        (old, new): (Generator, Generator),
        seed: u64,
        reach: f32,
        also: impl Fn(&Geometry, f32, f32) -> bool,
    ) {
        let a = Artefacts::default();
        let (mut vessels, mut kept) = (0usize, 0usize);
        for (i, class) in SlideClass::ALL.into_iter().enumerate() {
            let seed = seed + i as u64;
            let og = Geometry::build_with(old, class, seed, 3000.0, 2400.0, &a);
            let ng = Geometry::build_with(new, class, seed, 3000.0, 2400.0, &a);
            assert_eq!(og.vessels.len(), ng.vessels.len());
            vessels += ng.vessels.len();
            let near = |x: f32, y: f32| {
                ng.vessels
                    .iter()
                    .any(|v| noise::hypot(x - v.x, y - v.y) < v.rx.max(v.ry) + v.wall + reach + 3.5)
                    || also(&ng, x, y)
            };
            let what = format!("{class:?} {seed}");
            let (_, k, _) = changes_only_where(&og, &ng, &what, |_, _, _, _| false, near);
            kept += k;
        }
        assert!(
            vessels >= 100 && kept > 1_500_000,
            "{vessels} vessels, {kept} pixels kept"
        );
    }

    /// Synth 1.11 redraws the vessels and changes nothing else: every point's mask
    /// bits and region 1.10's, and the pixels 1.10's beyond 8 µm of every vessel's
    /// wall, but for dark hair on slides without basal melanin (which 1.9 and 1.10
    /// drew fair: the melanin plane, which now carries red cells' haemoglobin too,
    /// was drawn on pigmented slides only).
    #[test]
    fn synth_1_11_redraws_the_vessels_and_changes_nothing_else() {
        let dark_hair = |g: &Geometry, x: f32, y: f32| {
            g.melanin == 0.0
                && g.follicles.iter().any(|f| {
                    let [x0, y0, x1, y1] = f.bbox;
                    f.pigment > 0.0
                        && (x0 - 8.0..x1 + 8.0).contains(&x)
                        && (y0 - 8.0..y1 + 8.0).contains(&y)
                })
        };
        changes_only_at_vessels((Generator::V1_10, Generator::V1_11), 70, 8.0, dark_hair);
    }

    /// Synth 1.12 draws cells round the vessels and changes nothing else: every point's
    /// mask bits and region 1.11's, and the pixels 1.11's beyond the cuffs' reach.
    #[test]
    fn synth_1_12_adds_cells_round_vessels_and_changes_nothing_else() {
        use crate::synth::anatomy::PERIVASCULAR_REACH;
        changes_only_at_vessels(
            (Generator::V1_11, Generator::V1_12),
            80,
            PERIVASCULAR_REACH,
            |_, _, _| false,
        );
    }

    /// Synth 1.12's cells round vessels: nuclei far denser in the dermis just beyond a
    /// vessel's wall than away from vessels (in 1.11 about as dense), and cuffs that
    /// differ from vessel to vessel: some bare, some crowded.
    #[test]
    fn synth_1_12_draws_lymphocytes_round_vessels_not_elsewhere() {
        use super::beyond_wall;
        use crate::synth::anatomy::Region;
        use crate::synth::render::Shader;
        let a = Artefacts::default();
        // (nuclear points near, points near, nuclear points far, points far).
        let density = |gen: Generator| {
            let mut n = [0usize; 4];
            let mut per_vessel = Vec::new();
            for seed in 1..3 {
                let g = Geometry::build_with(gen, SlideClass::Normal, seed, 4000.0, 3000.0, &a);
                // The same vessels, found by 1.12's index (1.11 has none).
                let g12 = Geometry::build_with(
                    Generator::V1_12,
                    SlideClass::Normal,
                    seed,
                    4000.0,
                    3000.0,
                    &a,
                );
                let shader = Shader { geom: &g, aa: 0.25 };
                let mut own = vec![[0usize; 2]; g.vessels.len()];
                // Every other micrometre each way.
                for yi in 0..1500 {
                    for xi in 0..2000 {
                        let (x, y) = (2.0 * xi as f32 + 0.5, 2.0 * yi as f32 + 0.5);
                        let site = g.locate(x, y);
                        if !matches!(site.region, Region::Papillary | Region::Reticular) {
                            continue;
                        }
                        // The nearest vessel's distance beyond its wall.
                        let (mut best, mut which) = (f32::MAX, 0);
                        for &vi in g12.vessels_near(x, y) {
                            let d = beyond_wall(&g12.vessels[vi as usize], x, y);
                            if d < best {
                                (best, which) = (d, vi as usize);
                            }
                        }
                        let slot = if (1.0..10.0).contains(&best) {
                            0
                        } else if best > 60.0 {
                            2
                        } else {
                            continue;
                        };
                        let dark = shader.shade_v1(&site, x, y).h > 0.45;
                        n[slot] += dark as usize;
                        n[slot + 1] += 1;
                        if slot == 0 {
                            own[which][0] += dark as usize;
                            own[which][1] += 1;
                        }
                    }
                }
                per_vessel.extend(
                    own.iter()
                        .filter(|o| o[1] > 75)
                        .map(|o| o[0] as f32 / o[1] as f32),
                );
            }
            let near = n[0] as f32 / n[1] as f32;
            let far = n[2] as f32 / n[3] as f32;
            (near, far, per_vessel)
        };
        let (near, far, cuffs) = density(Generator::V1_12);
        let (near_old, far_old, _) = density(Generator::V1_11);
        eprintln!("1.12 near {near:.4} far {far:.4}; 1.11 near {near_old:.4} far {far_old:.4}");
        let bare = cuffs.iter().filter(|&&d| d < 0.03).count();
        let crowded = cuffs.iter().filter(|&&d| d > 0.12).count();
        eprintln!("{} vessels: {bare} bare, {crowded} crowded", cuffs.len());
        assert!(
            near > 10.0 * far,
            "1.12: {near:.4} near vessels, {far:.4} away"
        );
        assert!(
            near_old < 2.0 * far_old,
            "1.11: {near_old:.4} near, {far_old:.4} away"
        );
        assert!(
            cuffs.len() >= 40 && 10 * bare >= cuffs.len() && 10 * crowded >= cuffs.len(),
            "{} vessels: {bare} bare, {crowded} crowded",
            cuffs.len()
        );
    }

    /// Distance of (x, y) µm across the cut from knife line `l` of `k`'s axis.
    fn across_knife_line(
        k: &crate::synth::anatomy::KnifeLines,
        l: &crate::synth::anatomy::KnifeLine,
        x: f32,
        y: f32,
    ) -> f32 {
        let (sn, cs) = k.angle.sin_cos();
        y * cs - x * sn - l.offset_um
    }

    /// Synth 1.13 draws knife lines and changes nothing else: on slides with and
    /// without them, every point's mask bits and region 1.12's, and every pixel 1.12's
    /// farther from a line's axis than its waver, half its width, its lips and a pixel.
    #[test]
    fn synth_1_13_adds_knife_lines_and_changes_nothing_else() {
        let a = Artefacts::default();
        let (mut with, mut without, mut kept) = (0, 0, 0usize);
        for seed in 1..=12u64 {
            let class = SlideClass::ALL[seed as usize % 4];
            let old = Geometry::build_with(Generator::V1_12, class, seed, 3000.0, 2400.0, &a);
            let new = Geometry::build_with(Generator::V1_13, class, seed, 3000.0, 2400.0, &a);
            assert!(old.knife.is_none());
            let near = |x: f32, y: f32| {
                new.knife.as_ref().is_some_and(|k| {
                    k.lines.iter().any(|l| {
                        across_knife_line(k, l, x, y).abs()
                            <= l.waver_um + 0.5 * l.width_um + 3.0 + 3.0
                    })
                })
            };
            if new.knife.is_some() {
                with += 1;
            } else {
                without += 1;
            }
            let what = format!("{class:?} {seed}");
            let (moved, k, _) = changes_only_where(&old, &new, &what, |_, _, _, _| false, near);
            assert_eq!(moved, 0);
            kept += k;
        }
        assert!(
            with >= 2 && without >= 2,
            "{with} with knife lines, {without} without"
        );
        assert!(kept > 4_000_000, "{kept} pixels kept");
    }

    /// Knife lines as sections show them: on about a fifth of slides, one to three
    /// parallel lines along the cut (chatter's direction where the slide has chatter),
    /// each through the tissue; the section thinner along a line's axis (paler pixels
    /// there than 4-6 µm to either side, on most of its run through the tissue),
    /// thicker at its lips, and nowhere thicker than its lips allow.
    #[test]
    fn knife_lines_run_along_the_cut_and_thin_the_section() {
        let a = Artefacts::default();
        let (mut slides, mut lined, mut chattered) = (0, 0, 0);
        let mut counts = [0usize; 4];
        for seed in 0..300u64 {
            let class = SlideClass::ALL[seed as usize % 4];
            let g = Geometry::build_with(Generator::V1_13, class, seed, 2000.0, 1600.0, &a);
            slides += 1;
            let Some(k) = &g.knife else { continue };
            lined += 1;
            counts[k.lines.len()] += 1;
            if let Some(c) = &g.chatter {
                assert_eq!(c.angle, k.angle, "seed {seed}: knife lines across the cut");
                chattered += 1;
            }
            for l in &k.lines {
                assert!((2.0..7.0).contains(&l.width_um) && (0.5..1.0).contains(&l.depth));
            }
        }
        let share = lined as f32 / slides as f32;
        eprintln!("knife lines on {lined} of {slides} slides (lines per slide {counts:?}), {chattered} with chatter");
        assert!((0.14..0.26).contains(&share), "{lined} of {slides} slides");
        assert!(
            counts[1] > counts[2] && counts[2] > 0 && counts[3] > 0,
            "{counts:?}"
        );
        assert!(chattered > 0);

        // Along the lines of the first slides that have them: the section's thickness
        // on the axis and beside it, and the rendered light.
        let (mut on_paler, mut runs) = (0usize, 0usize);
        let (mut lipped, mut lip_runs, mut lip_most) = (0usize, 0usize, f32::MIN);
        let seeds = (0u64..).filter_map(|seed| {
            let g = Geometry::build_with(
                Generator::V1_13,
                SlideClass::Normal,
                seed,
                2000.0,
                1600.0,
                &a,
            );
            g.knife.is_some().then_some(g)
        });
        for g in seeds.take(4) {
            let k = g.knife.as_ref().unwrap();
            let (sn, cs) = k.angle.sin_cos();
            for l in &k.lines {
                // Points on the axis: along the cut from its foot nearest the origin.
                let (fx, fy) = (-l.offset_um * sn, l.offset_um * cs);
                for step in -4000..4000 {
                    let t = step as f32;
                    let (x, y) = (fx + t * cs, fy + t * sn);
                    if !(20.0..1980.0).contains(&x) || !(20.0..1580.0).contains(&y) {
                        continue;
                    }
                    let kept = g.section_kept(x, y);
                    assert!(kept <= 1.0 + l.lip + 1e-4, "{kept} at ({x}, {y})");
                    // The lips: thicker just beside the scratch, by the line's own lip.
                    let lips = (0..=40)
                        .map(|d| {
                            let d = d as f32 * 0.25 - 5.0;
                            g.section_kept(x - d * sn, y + d * cs)
                        })
                        .fold(0.0f32, f32::max);
                    lip_most = lip_most.max(lips - 1.0 - l.lip);
                    if l.lip > 0.05 && lips > 1.0 + 0.5 * l.lip {
                        lipped += 1;
                    }
                    if l.lip > 0.05 {
                        lip_runs += 1;
                    }
                    if step % 40 != 0
                        || !matches!(
                            g.locate(x, y).region,
                            crate::synth::anatomy::Region::Papillary
                                | crate::synth::anatomy::Region::Reticular
                        )
                    {
                        continue;
                    }
                    // The axis wavers by up to waver_um: the thinnest of a short
                    // cross-section, against the section 5 µm out on both sides.
                    let thinnest = (-8..=8)
                        .map(|d| {
                            let d = d as f32 * 0.25;
                            g.section_kept(x - d * sn, y + d * cs)
                        })
                        .fold(f32::MAX, f32::min);
                    let beside = g
                        .section_kept(x - 5.5 * sn, y + 5.5 * cs)
                        .min(g.section_kept(x + 5.5 * sn, y - 5.5 * cs));
                    assert!(beside >= 0.999, "{beside} beside a line at ({x}, {y})");
                    assert!(
                        thinnest <= 1.0 - 0.5 * 0.55 * l.depth + 1e-3,
                        "{thinnest} on a line"
                    );
                    // Rendered at 0.5 µm/px: the brightest pixel of the cross-section
                    // over the mean of those 4-6 µm to either side.
                    let px = |x: f32, y: f32| {
                        let p = render_rgb(
                            &g,
                            Raster::new(0.5),
                            (x / 0.5) as i64,
                            (y / 0.5) as i64,
                            1,
                            1,
                        );
                        p.iter().map(|&v| v as f32).sum::<f32>()
                    };
                    let on = (-8..=8)
                        .map(|d| {
                            let d = d as f32 * 0.25;
                            px(x - d * sn, y + d * cs)
                        })
                        .fold(0.0f32, f32::max);
                    let off = [-6.0f32, -4.0, 4.0, 6.0]
                        .map(|d| px(x - d * sn, y + d * cs))
                        .iter()
                        .sum::<f32>()
                        / 4.0;
                    runs += 1;
                    if on > off + 15.0 {
                        on_paler += 1;
                    }
                }
            }
        }
        eprintln!("{on_paler} of {runs} points on knife lines paler than beside them");
        eprintln!("{lipped} of {lip_runs} points on lines with lips thicker beside the scratch");
        assert!(lip_most <= 1e-4, "a lip {lip_most} over its own");
        assert!(
            lip_runs >= 100 && lipped * 10 >= lip_runs * 9,
            "{lipped} of {lip_runs}"
        );
        assert!(
            runs >= 30 && on_paler * 10 >= runs * 7,
            "{on_paler} of {runs}"
        );
    }

    /// Synth 1.11's vessels as sections show them: flat dark endothelial nuclei along
    /// part of the lumen's edge (not a continuous ring, not nowhere); lumens that are
    /// packed with red cells, hold them in clumps, or are nearly empty, vessel by
    /// vessel; red cells redder than anything else in the dermis (eosin with
    /// haemoglobin's absorption on the melanin plane), the empty lumen pale.
    #[test]
    fn synth_1_11_vessels_have_endothelium_and_red_cells_packed_clumped_or_none() {
        use crate::synth::render::Shader;
        let a = Artefacts::default();
        let (mut packed, mut clumped, mut empty) = (0, 0, 0);
        let (mut edge_dark, mut edge_n) = (0usize, 0usize);
        for seed in 1..4 {
            let g = Geometry::build_with(
                Generator::V1_11,
                SlideClass::Normal,
                seed,
                4000.0,
                3000.0,
                &a,
            );
            let shader = Shader { geom: &g, aa: 0.25 };
            let wide = |v: &crate::synth::anatomy::Vessel| !v.tortuous && v.rx.min(v.ry) >= 6.0;
            for (vi, v) in g.vessels.iter().enumerate().filter(|(_, v)| wide(v)) {
                let (sn, cs) = v.angle.sin_cos();
                let at = |u: f32, w: f32| (v.x + u * cs - w * sn, v.y + u * sn + w * cs);
                let (mut red, mut n) = (0usize, 0usize);
                for k in 0..360 {
                    let th = k as f32 / 360.0 * std::f32::consts::TAU;
                    // On the lumen's edge, against the wall just outside it.
                    let (x, y) = at(v.rx * th.cos(), v.ry * th.sin());
                    let (xo, yo) = at((v.rx + 1.8) * th.cos(), (v.ry + 1.8) * th.sin());
                    let site = g.locate(x, y);
                    let wall = shader.shade_v1(&g.locate(xo, yo), xo, yo);
                    if site.region == crate::synth::Region::VesselLumen
                        || site.region == crate::synth::Region::VesselWall
                    {
                        let k = shader.shade_v1(&site, x, y);
                        edge_n += 1;
                        edge_dark += (k.h > wall.h + 0.2) as usize;
                    }
                    // Inside the lumen, clear of the edge.
                    for f in [0.2, 0.45, 0.65] {
                        let (x, y) = at(f * v.rx * th.cos(), f * v.ry * th.sin());
                        let site = g.locate(x, y);
                        if site.region != crate::synth::Region::VesselLumen
                            || site.item != vi as u32
                        {
                            continue;
                        }
                        let k = shader.shade_v1(&site, x, y);
                        n += 1;
                        if k.m > 0.1 {
                            assert!(k.e > 0.35 && k.h < 0.2, "a red cell: {k:?}");
                            red += 1;
                        } else if k.m == 0.0 && k.h < 0.1 {
                            assert!(k.e < 0.35, "serum: {k:?}");
                        }
                    }
                }
                let share = red as f32 / n.max(1) as f32;
                if share > 0.7 {
                    packed += 1;
                } else if share > 0.08 {
                    clumped += 1;
                } else {
                    empty += 1;
                }
            }
        }
        let edge = edge_dark as f32 / edge_n.max(1) as f32;
        // Each kind in at least a tenth of 100 or more vessels.
        let all = packed + clumped + empty;
        assert!(
            all >= 100 && [packed, clumped, empty].iter().all(|&n| 10 * n >= all),
            "{packed} packed, {clumped} clumped, {empty} empty"
        );
        assert!(
            (0.08..0.7).contains(&edge),
            "{edge:.3} of the lumen's edge under an endothelial nucleus"
        );
    }

    #[test]
    fn synth_1_5_fat_is_rounded_cells_with_thin_broken_membranes_and_winding_septa() {
        // Synth 1.4's fat was a net of straight-sided polygons; 1.5 draws larger,
        // rounded cells whose membranes fade and break, between septa that wind.
        // Measured on the same fat of the same slides: how much of it is stained
        // (membrane or septum), and how straight the membranes run: the share of
        // membrane points (stained, but paler than a septum) with stained points
        // 15 um away on both sides along one of 16 directions (a straight cell wall
        // scores; a curved one or one that breaks does not).
        use crate::synth::render::Shader;
        let a = Artefacts::default();
        let stats = |gen: Generator| {
            let (mut fat, mut stained, mut straight, mut thin_n) = (0usize, 0usize, 0usize, 0usize);
            for seed in 0..6 {
                let g = Geometry::build_with(gen, SlideClass::Normal, seed, 1600.0, 1200.0, &a);
                let shader = Shader { geom: &g, aa: 0.25 };
                let on = |x: f32, y: f32| shader.fat_v1(x, y).e > 0.08;
                let mut y = 0.0;
                while y < 1200.0 {
                    let mut x = 0.0;
                    while x < 1600.0 {
                        if g.locate(x, y).region == crate::synth::anatomy::Region::Fat {
                            fat += 1;
                            let e = shader.fat_v1(x, y).e;
                            if e > 0.08 {
                                stained += 1;
                                if e < 0.3 * g.look.collagen_e {
                                    let line = (0..16).any(|k| {
                                        let t = k as f32 * std::f32::consts::PI / 16.0;
                                        let (dx, dy) = (15.0 * t.cos(), 15.0 * t.sin());
                                        on(x + dx, y + dy) && on(x - dx, y - dy)
                                    });
                                    straight += line as usize;
                                    thin_n += 1;
                                }
                            }
                        }
                        x += 2.0;
                    }
                    y += 2.0;
                }
            }
            (
                fat,
                stained as f64 / fat as f64,
                straight as f64 / thin_n as f64,
            )
        };
        let (n4, stained4, straight4) = stats(Generator::V1_4);
        let (n5, stained5, straight5) = stats(Generator::V1_5);
        assert_eq!(n4, n5, "the same anatomy");
        assert!(n5 > 10_000, "only {n5} fat points");
        // Measured when written: 1.4 stained 0.079, straight 0.235; 1.5 0.051, 0.090.
        let got = format!("1.4 {stained4:.3} / {straight4:.3}, 1.5 {stained5:.3} / {straight5:.3}");
        assert!(stained5 < stained4 && stained5 > 0.02, "{got}");
        assert!(straight5 < 0.5 * straight4 && straight5 < 0.15, "{got}");
    }

    #[test]
    fn synth_1_4_is_kept_byte_for_byte() {
        // The calibration and validation sets of model 2.12.0 (training/protocol.sh,
        // GENERATOR=1.4) must render again exactly as they did.
        assert_eq!(
            digest_of(Generator::V1_4),
            "7ef17aec5892ae1dd4bf7bb21e4c7199fe4fd86184115ec8aa35c1a53422fc35"
        );
    }

    #[test]
    fn synth_1_6_pigments_the_basal_layer_of_some_slides_of_every_class_and_nothing_else() {
        // Melanin (synth 1.6): on about two thirds of slides, in every class; in the
        // basal layer along the junction (granular, patchy cell to cell), never in
        // the upper epidermis, the dermis or a lesion; none under synth 1.5. In pixels:
        // the basal layer of a pigmented slide is browner (blue absorbs more, against
        // red) than the same slide drawn by 1.5, and the dermis is untouched.
        use crate::synth::anatomy::Region;
        use crate::synth::render::Shader;
        let a = Artefacts::default();
        let (mut pigmented, mut pixels_checked) = (0, false);
        for class in SlideClass::ALL {
            let mut of_class = 0;
            for seed in 0..9 {
                let g = Geometry::build_with(Generator::V1_6, class, seed, 1600.0, 1200.0, &a);
                let old = Geometry::build_with(Generator::V1_5, class, seed, 1600.0, 1200.0, &a);
                assert_eq!(old.melanin, 0.0);
                if g.melanin == 0.0 {
                    continue;
                }
                of_class += 1;
                let shader = Shader { geom: &g, aa: 0.25 };
                let (mut basal, mut basal_m, mut high_m) = (0usize, 0usize, 0usize);
                for i in 0..400 {
                    let x = 100.0 + 3.5 * i as f32;
                    for j in 0..300 {
                        let y = j as f32 * 1.5;
                        let s = g.locate(x, y);
                        let m = shader.shade_in(&g.column_at(x), &g.row_at(y)).m;
                        let epidermis = matches!(s.region, Region::Basal | Region::Spinous);
                        if epidermis && s.sdf < 4.0 {
                            basal += 1;
                            basal_m += (m > 0.02) as usize;
                        } else if m > 0.0 {
                            // Only a cell or two above the junction (reach + ramp).
                            assert!(
                                epidermis,
                                "{class} seed {seed}: melanin in {:?} at ({x}, {y})",
                                s.region
                            );
                            assert!(
                                s.sdf < g.melanin_reach_um + 4.0,
                                "{class} seed {seed}: at sdf {}",
                                s.sdf
                            );
                            high_m += 1;
                        }
                    }
                }
                let share = basal_m as f64 / basal.max(1) as f64;
                assert!(basal > 200, "{class} seed {seed}: {basal} basal points");
                assert!(
                    (0.3..0.95).contains(&share),
                    "{class} seed {seed}: pigmented share {share:.2}"
                );
                assert!(
                    high_m > 0,
                    "{class} seed {seed}: no pigment above the basal points"
                );
                if !pixels_checked && g.melanin > 0.3 {
                    pixels_checked = true;
                    // Pixels: blue-over-red optical density of the junction's points.
                    let r = Raster::new(1.0);
                    let (new_px, old_px) = (
                        render_rgb(&g, r, 100, 0, 1400, 450),
                        render_rgb(&old, r, 100, 0, 1400, 450),
                    );
                    let (mut near, mut far) = ((0.0f64, 0.0f64, 0usize), (0usize, 0usize));
                    for j in 0..450 {
                        for i in 0..1400 {
                            let s = g.locate(100.0 + i as f32 + 0.5, j as f32 + 0.5);
                            let k = (j * 1400 + i) * 3;
                            let od =
                                |p: &[u8], c: usize| -((p[k + c].max(1) as f64) / 255.0).log10();
                            if matches!(s.region, Region::Basal) && s.sdf < 3.0 {
                                near.0 += od(&new_px, 2) - od(&new_px, 0);
                                near.1 += od(&old_px, 2) - od(&old_px, 0);
                                near.2 += 1;
                            } else if matches!(s.region, Region::Reticular) {
                                far.0 += 1;
                                far.1 += (new_px[k..k + 3] != old_px[k..k + 3]) as usize;
                            }
                        }
                    }
                    let n = near.2.max(1) as f64;
                    assert!(
                        near.0 / n > near.1 / n + 0.03,
                        "blue-red OD {:.3} vs 1.5's {:.3}",
                        near.0 / n,
                        near.1 / n
                    );
                    assert!(
                        far.0 > 1000 && far.1 == 0,
                        "{} of {} dermis pixels changed",
                        far.1,
                        far.0
                    );
                }
                pigmented += 1;
            }
            assert!(of_class > 0, "{class}: no pigmented slide in 9 seeds");
        }
        assert!(
            (12..=30).contains(&pigmented),
            "{pigmented} of 36 slides pigmented"
        );
    }

    #[test]
    fn synth_1_5_is_kept_byte_for_byte() {
        // Synth 1.6 added basal melanin and nothing else: 1.5 renders as it did.
        assert_eq!(
            digest_of(Generator::V1_5),
            "9674ecbf98f96e39f94724e554446cfe6ce7b096c2b6a0594cd5e86156b78d72"
        );
    }

    #[test]
    fn synth_1_6_is_kept_byte_for_byte() {
        // Synth 1.7 changed the tangentially cut papillae and the basal layer and
        // nothing else: 1.6 renders as it did.
        assert_eq!(
            tangential_digest(Generator::V1_6),
            "38cca61cba4287c1c0675e2c10ba25a24e43bbca452375efafc1bec0049d9b91"
        );
        assert_eq!(
            digest_of(Generator::V1_6),
            "9fb265ea149c9bae44bef45e166c7f0feb0633b89e287aae7ed84e6c3be6d222"
        );
    }

    #[test]
    fn synth_1_8_phantoms_are_1_7s_pixel_for_pixel() {
        // Synth 1.8 changed the implants only (`--implant-into`): its phantoms are
        // 1.7's, whole slides and tangential stretches alike (checked against the
        // 1.7 binary of the commit before, eight 1.6 x 1.2 mm slides at 1 um/px).
        // When 1.8's phantoms change, pin 1.7's digests here from the code before.
        assert_eq!(digest_of(Generator::V1_7), digest_of(Generator::V1_8));
        assert_eq!(
            tangential_digest(Generator::V1_7),
            tangential_digest(Generator::V1_8)
        );
    }

    /// Synth 1.9 adds hair follicles and sebaceous glands to 1.8 and changes nothing
    /// else: every point's mask bits are 1.8's, a point's region differs only where
    /// 1.9 draws a follicle or a lobule over 1.8's dermis, fat or vessel, and the
    /// pixels are 1.8's beyond 12 µm of every follicle's box.
    #[test]
    fn synth_1_9_adds_follicles_and_sebaceous_glands_and_changes_nothing_else() {
        use crate::synth::anatomy::Region as R;
        let a = Artefacts::default();
        let (mut follicles, mut lobules, mut drawn, mut kept) = (0, 0, 0usize, 0usize);
        for (i, class) in SlideClass::ALL.into_iter().enumerate() {
            for seed in [60 + i as u64, 70 + i as u64] {
                let old = Geometry::build_with(Generator::V1_8, class, seed, 3000.0, 2400.0, &a);
                let new = Geometry::build_with(Generator::V1_9, class, seed, 3000.0, 2400.0, &a);
                assert!(old.follicles.is_empty());
                follicles += new.follicles.len();
                lobules += new.follicles.iter().map(|f| f.lobules.len()).sum::<usize>();
                let near = |x: f32, y: f32| {
                    new.follicles.iter().any(|f| {
                        let [x0, y0, x1, y1] = f.bbox;
                        x > x0 - 12.0 && x < x1 + 12.0 && y > y0 - 12.0 && y < y1 + 12.0
                    })
                };
                let (d, k, _) = changes_only_where(
                    &old,
                    &new,
                    &format!("{class:?} {seed}"),
                    |_, _, so, sn| {
                        matches!(
                            sn,
                            R::HairShaft | R::RootSheath | R::FollicleSheath | R::Sebaceous
                        ) && matches!(
                            so,
                            R::Papillary | R::Reticular | R::Fat | R::VesselWall | R::VesselLumen
                        )
                    },
                    near,
                );
                drawn += d;
                kept += k;
            }
        }
        assert!(
            follicles >= 8 && lobules >= 4 && drawn > 2000 && kept > 2_000_000,
            "{follicles} follicles, {lobules} lobules, {drawn} points drawn, {kept} pixels kept"
        );
    }

    /// Synth 1.9's follicles as a section shows them: across the middle of one, out
    /// from its axis, the shaft where the cut passes through it, then the inner and
    /// the outer root sheath; a sebaceous lobule at each lobule's centre; none in an
    /// eccrine coil or its hidradenitis halo; on most slides, a few a slide.
    #[test]
    fn synth_1_9_draws_follicles_in_layers_with_sebaceous_lobules_beside_them() {
        use crate::synth::anatomy::{Region as R, NEH_HALO_UM};
        let a = Artefacts::default();
        let (mut slides_with, mut shafts, mut sheaths, mut inner, mut lobules) = (0, 0, 0, 0, 0);
        for seed in 1..=30u64 {
            let g = Geometry::build_with(
                Generator::V1_9,
                SlideClass::Normal,
                seed,
                4000.0,
                3000.0,
                &a,
            );
            slides_with += !g.follicles.is_empty() as usize;
            assert!(
                g.follicles.len() <= 8,
                "seed {seed}: {} follicles",
                g.follicles.len()
            );
            for (fi, f) in g.follicles.iter().enumerate() {
                for c in &g.coils {
                    assert!(
                        f.distance(c.x, c.y) > c.r + NEH_HALO_UM,
                        "seed {seed}: follicle {fi} in a coil's halo"
                    );
                }
                let (mx, my) = (0.5 * (f.x0 + f.x1), 0.5 * (f.y0 + f.y1));
                let l = f.length();
                let (nx, ny) = if l > 0.0 {
                    (-(f.y1 - f.y0) / l, (f.x1 - f.x0) / l)
                } else {
                    (1.0, 0.0)
                };
                let mut last = 0u8;
                for k in 0..400 {
                    let d = k as f32 * 0.25;
                    let rho = d.hypot(f.z0);
                    if rho > f.r - 3.0 {
                        break;
                    }
                    let s = g.locate(mx + nx * d, my + ny * d);
                    assert_eq!(s.item as usize, fi, "seed {seed}");
                    let (want, rank) = if rho < f.shaft {
                        (R::HairShaft, 1)
                    } else {
                        (R::RootSheath, 2)
                    };
                    assert_eq!(s.region, want, "seed {seed}, follicle {fi}, {d} um out");
                    assert!(rank >= last, "layers out of order");
                    last = rank;
                    shafts += (rank == 1) as usize;
                    sheaths += (rank == 2) as usize;
                    inner += (rank == 2 && rho < f.shaft + f.irs) as usize;
                }
                for lb in &f.lobules {
                    let s = g.locate(lb.x, lb.y);
                    assert_eq!(
                        (s.region, s.item as usize),
                        (R::Sebaceous, fi),
                        "seed {seed}"
                    );
                    lobules += 1;
                }
            }
        }
        assert!(
            (18..=28).contains(&slides_with) && shafts > 100 && inner > 100 && sheaths > 1000 && lobules >= 10,
            "{slides_with}/30 slides with follicles; {shafts} shaft, {inner} inner and {sheaths} root-sheath points, {lobules} lobules"
        );
    }

    #[test]
    fn both_generators_share_anatomy_and_masks_but_not_pixels() {
        // Finding and tissue masks are the same for a seed; the epidermis differs
        // only where synth 1.1 cut a stretch tangentially.
        let strip =
            |m: &MaskGrid| -> Vec<u8> { m.bits.iter().map(|b| b & !EPIDERMIS_BIT).collect() };
        let mut tangential = 0;
        for class in SlideClass::ALL {
            for seed in 1..6 {
                let (old, new) = pair(class, seed);
                let (m0, m1) = (
                    MaskGrid::sample(&old, 200, 150, 8.0),
                    MaskGrid::sample(&new, 200, 150, 8.0),
                );
                assert_eq!(strip(&m0), strip(&m1), "{class} seed {seed}");
                if new.tangential.is_none() {
                    assert_eq!(m0.bits, m1.bits, "{class} seed {seed}");
                } else {
                    tangential += 1;
                }
            }
        }
        assert!(tangential > 0, "no tangential stretch in 20 slides");
        let (old, new) = pair(SlideClass::Dira, 7);
        assert_ne!(old.stain, new.stain);
        let r = Raster::new(1.0);
        assert_ne!(
            render_rgb(&old, r, 0, 100, 64, 64),
            render_rgb(&new, r, 0, 100, 64, 64)
        );
    }

    #[test]
    fn a_coil_in_fat_has_no_stroma_disc_past_a_thin_sheath() {
        // The stroma around each tubule fades into what the coil sits in: past
        // its sheath, a coil's stroma over fat shades as that fat does, not as
        // collagen (the pink disc of every tubule in fat before).
        use crate::synth::anatomy::Region;
        use crate::synth::render::Shader;
        let a = Artefacts::default();
        let mut checked = 0;
        for seed in 0..12 {
            let g = Geometry::build_with(
                Generator::V1_5,
                SlideClass::Normal,
                seed,
                1600.0,
                1600.0,
                &a,
            );
            let shader = Shader { geom: &g, aa: 0.25 };
            for coil in g.coils.iter().filter(|c| !c.inflamed) {
                let mut y = coil.y - coil.r;
                while y < coil.y + coil.r {
                    let mut x = coil.x - coil.r;
                    while x < coil.x + coil.r {
                        let site = g.locate(x, y);
                        if site.region == Region::CoilStroma && site.under == Region::Fat {
                            let k = shader.coil_v1(&site, x, y);
                            if site.tubule_dist > 5.0 {
                                let bare = shader.fat_v1(x, y);
                                assert!(
                                    (k.h - bare.h).abs() < 1e-4 && (k.e - bare.e).abs() < 1e-4,
                                    "seed {seed} ({x}, {y}): {k:?} against fat {bare:?}"
                                );
                                checked += 1;
                            }
                        }
                        x += 1.5;
                    }
                    y += 1.5;
                }
            }
        }
        assert!(checked > 200, "only {checked} stroma points over fat");
    }

    #[test]
    fn an_inflamed_coil_is_drawn_as_a_normal_one_apart_from_the_inflammation() {
        // Where an inflamed coil shows no neutrophil, vacuole or pyknotic nucleus,
        // its pixels are exactly those of the same coil not inflamed: the drawing
        // style must not be a shortcut to hidradenitis (it was synth 0.3's shader).
        use crate::synth::anatomy::Region;
        use crate::synth::render::Shader;
        let a = Artefacts::default();
        let (mut same, mut total) = (0usize, 0usize);
        for seed in 0..40 {
            let inflamed =
                Geometry::build_with(Generator::V1_5, SlideClass::Dira, seed, 1600.0, 1600.0, &a);
            let Some(ci) = inflamed.coils.iter().position(|c| c.inflamed) else {
                continue;
            };
            let mut normal = inflamed.clone();
            normal.coils[ci].inflamed = false;
            let (si, sn) = (
                Shader {
                    geom: &inflamed,
                    aa: 0.25,
                },
                Shader {
                    geom: &normal,
                    aa: 0.25,
                },
            );
            let coil = &inflamed.coils[ci];
            let mut y = coil.y - coil.r;
            while y < coil.y + coil.r {
                let mut x = coil.x - coil.r;
                while x < coil.x + coil.r {
                    let site = inflamed.locate(x, y);
                    let in_coil = matches!(
                        site.region,
                        Region::TubuleCells | Region::TubuleLumen | Region::CoilStroma
                    );
                    if in_coil && site.item as usize == ci {
                        let (ki, kn) = (si.shade(x, y), sn.shade(x, y));
                        total += 1;
                        if ki.h == kn.h && ki.e == kn.e {
                            same += 1;
                        }
                    }
                    x += 2.0;
                }
                y += 2.0;
            }
        }
        assert!(total > 1000, "only {total} coil points");
        let frac = same as f64 / total as f64;
        // Neutrophils, vacuoles and pyknosis change some points, not most.
        assert!(
            (0.4..0.95).contains(&frac),
            "{same} of {total} points unchanged"
        );
    }

    /// Synth 1.14 marks hidradenitis, and draws the neutrophils of an inflamed coil's
    /// halo, only within 35 µm of the coil's tubules; 1.13 marked the coil's whole disc
    /// and 35 µm beyond it, though its lobules leave much of the disc plain dermis (a
    /// tile there showed collagen and a scatter of neutrophils, labelled
    /// hidradenitis). Every region and every other mask bit stays 1.13's, and so does
    /// every pixel away from inflamed coils.
    #[test]
    fn synth_1_14_marks_hidradenitis_by_the_tubules() {
        use crate::synth::anatomy::{Region, HIDRADENITIS, NEH_HALO_UM};
        use crate::synth::render::Shader;
        let a = Artefacts::default();
        let (mut old_area, mut new_area, mut plain, mut slides) = (0usize, 0usize, 0usize, 0);
        let (mut far_px, mut near_changed) = (0usize, 0usize);
        for seed in 1..80 {
            let build = |gen| Geometry::build_with(gen, SlideClass::Dira, seed, 3000.0, 2400.0, &a);
            let (old, new) = (build(Generator::V1_13), build(Generator::V1_14));
            if !new.coils.iter().any(|c| c.inflamed) {
                continue;
            }
            slides += 1;
            let mut calm = new.clone();
            for c in calm.coils.iter_mut() {
                c.inflamed = false;
            }
            let (sn, sc) = (
                Shader {
                    geom: &new,
                    aa: 0.25,
                },
                Shader {
                    geom: &calm,
                    aa: 0.25,
                },
            );
            let inflamed: Vec<_> = new.coils.iter().filter(|c| c.inflamed).collect();
            let near_tubules = |x: f32, y: f32| {
                inflamed.iter().any(|c| {
                    c.tubules
                        .iter()
                        .any(|t| t.edge_distance(x, y) < NEH_HALO_UM)
                })
            };
            for c in &inflamed {
                let reach = c.r + NEH_HALO_UM + 4.0;
                let mut y = c.y - reach;
                while y < c.y + reach {
                    let mut x = c.x - reach;
                    while x < c.x + reach {
                        let (o, n) = (old.locate(x, y), new.locate(x, y));
                        assert_eq!(o.region, n.region, "region at ({x}, {y})");
                        assert_eq!(o.flags & !HIDRADENITIS, n.flags & !HIDRADENITIS);
                        let marked = n.flags & HIDRADENITIS != 0;
                        assert_eq!(marked, near_tubules(x, y), "hidradenitis at ({x}, {y})");
                        assert!(!marked || o.flags & HIDRADENITIS != 0, "1.13 marked it too");
                        old_area += (o.flags & HIDRADENITIS != 0) as usize;
                        new_area += marked as usize;
                        // Unmarked dermis is drawn as if no coil were inflamed: no
                        // neutrophil far from the tubules.
                        if !marked && matches!(n.region, Region::Papillary | Region::Reticular) {
                            let (kn, kc) = (sn.shade(x, y), sc.shade(x, y));
                            assert!(kn.h == kc.h && kn.e == kc.e, "neutrophil at ({x}, {y})");
                            plain += 1;
                        }
                        x += 2.0;
                    }
                    y += 2.0;
                }
            }
            if slides <= 2 {
                // Every pixel away from the inflamed coils is 1.13's (4 um/px).
                let (w, h) = (750usize, 600usize);
                let (po, pn) = (
                    render_rgb(&old, Raster::new(4.0), 0, 0, w, h),
                    render_rgb(&new, Raster::new(4.0), 0, 0, w, h),
                );
                for i in 0..w * h {
                    let (x, y) = ((i % w) as f32 * 4.0 + 2.0, (i / w) as f32 * 4.0 + 2.0);
                    let same = po[i * 3..i * 3 + 3] == pn[i * 3..i * 3 + 3];
                    let away = inflamed
                        .iter()
                        .all(|c| noise::hypot(x - c.x, y - c.y) > c.r + NEH_HALO_UM + 12.0);
                    if away {
                        assert!(same, "pixel ({x}, {y}) away from inflamed coils changed");
                        far_px += 1;
                    } else {
                        near_changed += !same as usize;
                    }
                }
            }
            if slides == 6 {
                break;
            }
        }
        assert_eq!(slides, 6, "DIRA slides with an inflamed coil");
        assert!(
            plain > 5000 && far_px > 100_000,
            "{plain} dermis points, {far_px} pixels"
        );
        assert!(
            near_changed > 100,
            "{near_changed} pixels changed round the coils"
        );
        // The lobules leave a good share of the old mark plain dermis.
        let kept = new_area as f64 / old_area as f64;
        eprintln!(
            "hidradenitis: 1.14 marks {new_area} of 1.13's {old_area} points ({kept:.3}); \
             {plain} unmarked dermis points drawn calm; {far_px} far pixels kept, \
             {near_changed} near ones changed"
        );
        assert!(
            (0.3..0.9).contains(&kept),
            "1.14 keeps {new_area} of {old_area} marked points"
        );
    }

    /// Synth 1.15 draws a secretory coil's cells as two kinds, clear (pale) and dark
    /// (basophilic), a cell at a time, and lines each duct's lumen with an eosinophilic
    /// cuticle; everything outside the coils, every region and every mask is 1.14's.
    #[test]
    fn synth_1_15_draws_clear_and_dark_coil_cells_and_a_duct_cuticle() {
        use crate::synth::anatomy::Region;
        use crate::synth::render::Shader;
        let a = Artefacts::default();
        let (mut clear, mut dark, mut between) = (0usize, 0usize, 0usize);
        // Summed share of the section's radius at the clear and the dark points.
        let mut depth = (0.0f64, 0.0f64);
        let (mut cuticle_e, mut wall_e, mut n_cut) = (0.0f64, 0.0f64, 0usize);
        let (mut far_px, mut changed) = (0usize, 0usize);
        let mut slides = 0;
        for (i, class) in SlideClass::ALL.into_iter().enumerate() {
            for seed in [3 + i as u64, 11 + i as u64] {
                let build = |gen| Geometry::build_with(gen, class, seed, 3000.0, 2400.0, &a);
                let (old, new) = (build(Generator::V1_14), build(Generator::V1_15));
                if new.coils.is_empty() {
                    continue;
                }
                slides += 1;
                let near = |x: f32, y: f32| {
                    new.coils
                        .iter()
                        .any(|c| noise::hypot(x - c.x, y - c.y) <= c.r + 20.0)
                };
                let what = format!("{class:?} {seed}");
                let (_, k, n) = changes_only_where(&old, &new, &what, |_, _, _, _| false, near);
                far_px += k;
                changed += n;
                let shade = Shader {
                    geom: &new,
                    aa: 0.25,
                };
                for c in &new.coils {
                    let mut y = c.y - c.r;
                    while y < c.y + c.r {
                        let mut x = c.x - c.r;
                        while x < c.x + c.r {
                            let (so, sn) = (old.locate(x, y), new.locate(x, y));
                            assert_eq!(so.region, sn.region);
                            let t = (sn.region == Region::TubuleCells)
                                .then(|| &c.tubules[sn.sub as usize]);
                            if let Some(t) = t.filter(|t| !t.duct) {
                                // Nuclei are darker than any cytoplasm: left out.
                                let k = shade.shade(x, y);
                                let (u, v) = t.local(x, y);
                                let out = (noise::hypot(u, v) / t.r) as f64;
                                if k.h < 0.11 && k.e < 0.22 {
                                    clear += 1;
                                    depth.0 += out;
                                } else if (0.21..0.31).contains(&k.h) && k.e > 0.29 {
                                    dark += 1;
                                    depth.1 += out;
                                } else {
                                    between += 1;
                                }
                            }
                            x += 1.0;
                        }
                        y += 1.0;
                    }
                    // Each duct, out from its centre along 24 rays in its own frame: just
                    // past the lumen's edge (the cuticle) against 3.5 um further out.
                    for t in c.tubules.iter().filter(|t| t.duct) {
                        for k in 0..24 {
                            let ang = k as f32 / 24.0 * std::f32::consts::TAU;
                            let at = |r: f32| {
                                let (px, py) = t.to_plate(r * ang.cos(), r * ang.sin());
                                (t.x + px, t.y + py)
                            };
                            let Some(edge) = (0..(t.r * 4.0) as usize)
                                .map(|i| i as f32 * 0.25)
                                .find(|&r| {
                                    let (x, y) = at(r);
                                    new.locate(x, y).region == Region::TubuleCells
                                })
                            else {
                                continue;
                            };
                            if edge + 4.0 > t.r - 1.0 {
                                continue;
                            }
                            let ((x1, y1), (x2, y2)) = (at(edge + 0.6), at(edge + 3.5));
                            cuticle_e += shade.shade(x1, y1).e as f64;
                            wall_e += shade.shade(x2, y2).e as f64;
                            n_cut += 1;
                        }
                    }
                }
            }
        }
        let cells = (clear + dark + between) as f64;
        eprintln!(
            "{slides} slides: secretory points clear {clear} (at {:.2} of the radius), dark {dark} \
             (at {:.2}), other {between}; \
             duct cuticle e {:.3} against the wall 3.5 um out {:.3} ({n_cut} rays); \
             {far_px} far pixels kept, {changed} near ones changed",
            depth.0 / clear.max(1) as f64,
            depth.1 / dark.max(1) as f64,
            cuticle_e / n_cut.max(1) as f64,
            wall_e / n_cut.max(1) as f64
        );
        // The dark cells line the lumen, the clear ones the basement membrane.
        assert!(depth.1 / dark as f64 + 0.03 < depth.0 / clear as f64);
        assert!(
            slides >= 5 && far_px > 500_000 && changed > 1000,
            "{slides} {far_px} {changed}"
        );
        // Both kinds of cell, each a good share (nuclei, rims and inflammation are the rest).
        assert!(
            clear as f64 > 0.2 * cells && dark as f64 > 0.2 * cells,
            "{clear} {dark} {cells}"
        );
        assert!(n_cut > 200, "{n_cut} rays");
        assert!(cuticle_e / n_cut as f64 > wall_e / n_cut as f64 + 0.15);
    }

    /// Synth 1.17 redraws the reticular collagen and nothing else: on eight slides of
    /// 3 x 2.4 mm (two of each class) every point's mask bits and region are 1.15's, and
    /// every pixel at 4 um/px is 1.15's beyond 8 um of the dermis and what lies in it
    /// (the epidermis, the fat, the glass). In the deep dermis
    /// (1 um grid, blocks of 16 um) its bundles run in more directions than 1.15's
    /// flowing field: the blocks' fibre angles spread wider (doubled-angle resultant
    /// lower), while within a block the fibres still run one way (coherence kept).
    #[test]
    fn synth_1_17_redraws_the_reticular_collagen_in_domains_and_changes_nothing_else() {
        use crate::synth::anatomy::Region as R;
        use crate::synth::render::Shader;
        let a = Artefacts::default();
        let (mut kept, mut changed) = (0usize, 0usize);
        let mut spread = [(0.0f64, 0usize); 2];
        let mut coherence = [(0.0f64, 0usize); 2];
        for (i, class) in SlideClass::ALL.into_iter().enumerate() {
            for seed in [170 + i as u64, 180 + i as u64] {
                let old = Geometry::build_with(Generator::V1_15, class, seed, 3000.0, 2400.0, &a);
                let new = Geometry::build_with(Generator::V1_17, class, seed, 3000.0, 2400.0, &a);
                // The dermis and what lies in it (coils, follicles and vessels fade
                // into the collagen round them), at the pixel centres of
                // `changes_only_where`'s 4 um render and two beyond its edges.
                let (cols, rows) = (754usize, 604usize);
                let in_dermis: Vec<bool> = (0..cols * rows)
                    .map(|k| {
                        let (i, j) = ((k % cols) as f32 - 2.0, (k / cols) as f32 - 2.0);
                        !matches!(
                            new.locate(4.0 * i + 2.0, 4.0 * j + 2.0).region,
                            R::Glass
                                | R::Corneum
                                | R::Munro
                                | R::Pustule
                                | R::Granular
                                | R::Spinous
                                | R::Basal
                                | R::Cleft
                                | R::Kogoj
                                | R::Fat
                        )
                    })
                    .collect();
                // Within 8 um (two pixels) of the dermis each way.
                let dermis = |x: f32, y: f32| {
                    let (i, j) = (
                        ((x - 2.0) / 4.0) as usize + 2,
                        ((y - 2.0) / 4.0) as usize + 2,
                    );
                    (j - 2..=j + 2).any(|j| (i - 2..=i + 2).any(|i| in_dermis[j * cols + i]))
                };
                let (moved, k, n) =
                    changes_only_where(&old, &new, "synth 1.17", |_, _, _, _| false, dermis);
                assert_eq!(moved, 0);
                kept += k;
                changed += n;
                // The deepest 256 x 256 um of reticular dermis on the slide's middle line.
                let x0 = 1372.0;
                let Some(y0) = (0..400)
                    .map(|k| 2300.0 - 256.0 - 4.0 * k as f32)
                    .find(|&y| {
                        (0..=8).all(|j| {
                            (0..=8).all(|i| {
                                new.locate(x0 + 32.0 * i as f32, y + 32.0 * j as f32).region
                                    == R::Reticular
                            })
                        })
                    })
                else {
                    continue;
                };
                for (g, geom) in [&old, &new].into_iter().enumerate() {
                    let shade = Shader { geom, aa: 0.25 };
                    let e: Vec<f32> = (0..256 * 256)
                        .map(|k| {
                            let (x, y) = ((k % 256) as f32, (k / 256) as f32);
                            shade.shade(x0 + x + 0.5, y0 + y + 0.5).e
                        })
                        .collect();
                    let (mut sum_c, mut sum_s) = (0.0f64, 0.0f64);
                    for by in 0..16 {
                        for bx in 0..16 {
                            let (mut jxx, mut jyy, mut jxy) = (0.0f64, 0.0f64, 0.0f64);
                            for y in by * 16 + 1..by * 16 + 15 {
                                for x in bx * 16 + 1..bx * 16 + 15 {
                                    let at = |x: usize, y: usize| e[y * 256 + x] as f64;
                                    let gx = at(x + 1, y) - at(x - 1, y);
                                    let gy = at(x, y + 1) - at(x, y - 1);
                                    jxx += gx * gx;
                                    jyy += gy * gy;
                                    jxy += gx * gy;
                                }
                            }
                            let lam = ((jxx - jyy).powi(2) + 4.0 * jxy * jxy).sqrt();
                            if jxx + jyy > 1e-9 {
                                coherence[g].0 += lam / (jxx + jyy);
                                coherence[g].1 += 1;
                                // Doubled angle of the gradient: fibres at 0 and 180 agree.
                                let ang = (2.0 * jxy).atan2(jxx - jyy);
                                sum_c += ang.cos();
                                sum_s += ang.sin();
                            }
                        }
                    }
                    spread[g].0 += (sum_c * sum_c + sum_s * sum_s).sqrt() / 256.0;
                    spread[g].1 += 1;
                }
            }
        }
        let mean = |p: (f64, usize)| p.0 / p.1.max(1) as f64;
        let (r15, r17) = (mean(spread[0]), mean(spread[1]));
        let (c15, c17) = (mean(coherence[0]), mean(coherence[1]));
        eprintln!(
            "{kept} pixels kept, {changed} in the dermis changed; {} patches: block angles' \
             resultant 1.15 {r15:.3}, 1.17 {r17:.3}; coherence within a block {c15:.3}, {c17:.3}",
            spread[1].1
        );
        assert!(kept > 1_000_000 && changed > 500_000, "{kept} {changed}");
        assert!(spread[1].1 >= 6, "{} deep dermis patches", spread[1].1);
        assert!(r17 + 0.15 < r15, "resultant {r15} -> {r17}");
        assert!(c17 > 0.6 * c15, "coherence {c15} -> {c17}");
    }

    /// Of a `side` x `side` render from the origin: the mean relative eosin step between
    /// stained tissue pixels two apart (1 um, the model's pixel), and the correlation of red minus green two pixels
    /// apart on the glass.
    fn grain_and_colour_noise(
        g: &Geometry,
        px: &[u8],
        masks: &MaskGrid,
        side: usize,
    ) -> (f64, f64) {
        let at = |i: usize| [px[i * 3], px[i * 3 + 1], px[i * 3 + 2]];
        let rg = |i: usize| px[i * 3] as f64 - px[i * 3 + 1] as f64;
        let (mut step, mut n) = (0.0f64, 0usize);
        let mut pairs = Vec::new();
        for y in 0..side {
            for x in 0..side - 2 {
                let i = y * side + x;
                let b = |k: usize| masks.bits[i + k];
                if b(0) & TISSUE_BIT != 0 && b(2) & TISSUE_BIT != 0 {
                    let (e0, e2) = (g.stain.unmix(at(i)).1, g.stain.unmix(at(i + 2)).1);
                    if e0 > 0.2 && e2 > 0.2 {
                        step += ((e2 - e0) / (e2 + e0)).abs() as f64;
                        n += 1;
                    }
                } else if b(0) == 0 && b(2) == 0 {
                    pairs.push((rg(i), rg(i + 2)));
                }
            }
        }
        assert!(
            n > 10_000 && pairs.len() > 10_000,
            "{n} tissue, {} glass pairs",
            pairs.len()
        );
        let m = pairs.len() as f64;
        let (m0, m2) = (
            pairs.iter().map(|p| p.0).sum::<f64>() / m,
            pairs.iter().map(|p| p.1).sum::<f64>() / m,
        );
        let cov: f64 = pairs.iter().map(|p| (p.0 - m0) * (p.1 - m2)).sum();
        let var: f64 = pairs.iter().map(|p| (p.0 - m0).powi(2)).sum();
        (step / n as f64, cov / var)
    }

    /// Synth 1.16 changes the stain alone: every mask bit and region is 1.15's, the
    /// stain's vectors are 1.15's mapped by its measured stain's fitted map (scales and
    /// glass kept), and at 0.5 um/px the pixels gain a grain in the tissue (the
    /// eosin's relative step from pixel to pixel) and colour noise that spans pixels on the
    /// glass (red minus green correlated two pixels apart, where 1.15's is nearly a pixel's own).
    #[test]
    fn synth_1_16_adds_grain_and_correlated_colour_noise_and_fits_each_stain_only() {
        use crate::synth::stain::MEASURED_OD_MAP;
        let a = Artefacts::default();
        let mut anchors = [0usize; 2];
        for (i, class) in SlideClass::ALL.into_iter().enumerate() {
            for seed in [30 + i as u64, 40 + i as u64] {
                let build = |gen| Geometry::build_with(gen, class, seed, 3000.0, 2400.0, &a);
                let (old, new) = (build(Generator::V1_15), build(Generator::V1_16));
                let what = format!("{class:?} {seed}");
                changes_only_where(&old, &new, &what, |_, _, _, _| false, |_, _| true);
                let k = old.stain.nearest_measured();
                anchors[k] += 1;
                let mapped = old.stain.clone().with_od_map(&MEASURED_OD_MAP[k]);
                assert_eq!(new.stain.hematoxylin, mapped.hematoxylin, "{what}");
                assert_eq!(new.stain.eosin, mapped.eosin, "{what}");
                assert_eq!(
                    (new.stain.h_scale, new.stain.e_scale, new.stain.background),
                    (old.stain.h_scale, old.stain.e_scale, old.stain.background),
                    "{what}"
                );
                if seed != 30 + i as u64 {
                    continue;
                }
                // One slide a class at 0.5 um/px, 0.8 x 0.8 mm from the corner.
                let (side, mpp) = (1600usize, 0.5);
                let masks = MaskGrid::sample(&new, side as u32, side as u32, mpp);
                let (po, pn) = (
                    render_rgb(&old, Raster::new(mpp), 0, 0, side, side),
                    render_rgb(&new, Raster::new(mpp), 0, 0, side, side),
                );
                let (old_step, old_lag2) = grain_and_colour_noise(&old, &po, &masks, side);
                let (new_step, new_lag2) = grain_and_colour_noise(&new, &pn, &masks, side);
                assert!(
                    new_step > 1.3 * old_step,
                    "{what}: eosin step {old_step} -> {new_step}"
                );
                assert!(
                    old_lag2 < 0.1 && new_lag2 > old_lag2 + 0.15,
                    "{what}: R-G lag-2 correlation {old_lag2} -> {new_lag2}"
                );
            }
        }
        assert!(
            anchors[0] > 0 && anchors[1] > 0,
            "both measured stains: {anchors:?}"
        );
    }

    #[test]
    fn synth_1_epidermis_is_basophilic_and_dermis_eosinophilic() {
        for seed in 0..4 {
            let (_, g) = pair(SlideClass::Normal, seed);
            let (w, h) = (400usize, 300usize);
            let mpp = 4.0;
            let px = render_rgb(&g, Raster::new(mpp), 0, 0, w, h);
            let masks = MaskGrid::sample(&g, w as u32, h as u32, mpp);
            let (mut epi, mut derm) = ((0.0f64, 0.0f64, 0u32), (0.0f64, 0.0f64, 0u32));
            for i in 0..w * h {
                let b = masks.bits[i];
                let (hc, ec) = g.stain.unmix([px[i * 3], px[i * 3 + 1], px[i * 3 + 2]]);
                let acc = if b & EPIDERMIS_BIT != 0 {
                    &mut epi
                } else if b & TISSUE_BIT != 0 {
                    &mut derm
                } else {
                    continue;
                };
                acc.0 += hc as f64;
                acc.1 += ec as f64;
                acc.2 += 1;
            }
            assert!(epi.2 > 100 && derm.2 > 1000, "seed {seed}: too few pixels");
            let (eh, ee) = (epi.0 / epi.2 as f64, epi.1 / epi.2 as f64);
            let (dh, de) = (derm.0 / derm.2 as f64, derm.1 / derm.2 as f64);
            assert!(
                eh > 1.5 * dh,
                "seed {seed}: epidermis H {eh} vs dermis {dh}"
            );
            assert!(de > 2.0 * dh, "seed {seed}: dermis E {de} vs H {dh}");
            assert!(
                eh / ee > dh / de,
                "seed {seed}: epidermis not more basophilic"
            );
        }
    }

    /// A synth 1.1 slide of `class` (1.6 x 1.2 mm) whose geometry passes `pick`.
    fn find(class: SlideClass, pick: impl Fn(&Geometry) -> bool) -> Geometry {
        (1..200)
            .map(|seed| pair(class, seed).1)
            .find(|g| pick(g))
            .expect("a seed with the structure in 200")
    }

    #[test]
    fn a_tangential_stretch_shows_papillae_as_islands_with_capillaries_and_no_psoriasiform_mask() {
        use crate::synth::anatomy::Region;
        let g = find(SlideClass::Normal, |g| g.tangential.is_some());
        let t = g.tangential.as_ref().unwrap();
        let (mut islands, mut capillaries) = (0, 0);
        let mut x = t.x0 + 10.0;
        while x < t.x1 - 10.0 {
            // Down the column: epidermis, then a papilla, then epidermis again.
            let mut seen = Vec::new();
            let mut y = 0.0;
            while y < 600.0 {
                let s = g.locate(x, y);
                assert_eq!(
                    s.flags & crate::synth::anatomy::PSORIASIFORM,
                    0,
                    "x {x} y {y}"
                );
                let epi = matches!(s.region, Region::Spinous | Region::Basal);
                let papilla = matches!(
                    s.region,
                    Region::Papillary | Region::VesselLumen | Region::VesselWall
                );
                capillaries += (s.region == Region::VesselLumen) as usize;
                if seen.last() != Some(&epi) && (epi || papilla) {
                    seen.push(epi);
                }
                y += 1.0;
            }
            if seen.windows(3).any(|w| w == [true, false, true]) {
                islands += 1;
            }
            x += 5.0;
        }
        assert!(
            islands > 10,
            "{islands} columns cross a papilla inside the epidermis"
        );
        assert!(capillaries > 0);
        // Without the stretch the same slide's epidermis has no islands there.
        let mut plain = g.clone();
        plain.tangential = None;
        let mid = 0.5 * (t.x0 + t.x1);
        let deep = (0..600)
            .map(|y| plain.locate(mid, y as f32).region)
            .filter(|r| matches!(r, Region::Spinous | Region::Basal))
            .count();
        let slab = (0..600)
            .map(|y| g.locate(mid, y as f32).region)
            .filter(|r| matches!(r, Region::Spinous | Region::Basal))
            .count();
        assert!(slab > deep, "slab {slab} µm of epidermis, plain {deep}");
    }

    #[test]
    fn synth_1_7_draws_papillae_cut_across_as_pink_ovals_ringed_by_a_crowded_dark_basal_layer() {
        // In a tangential slab of a 1.7 slide: the papillae are ovals (wider one
        // way than the other), their collagen as pink as the reticular dermis's
        // (1.6's were paler), and the basal layer round them (crowded nuclei, darker
        // cytoplasm) carries more hematoxylin than 1.6's did.
        use crate::synth::anatomy::Region;
        use crate::synth::render::Shader;
        let a = Artefacts::default();
        let mut checked = 0;
        for seed in 1..40 {
            let g = Geometry::build_with(
                Generator::V1_7,
                SlideClass::Normal,
                seed,
                1600.0,
                1200.0,
                &a,
            );
            let Some(t) = g.tangential.clone() else {
                continue;
            };
            let old = Geometry::build_with(
                Generator::V1_6,
                SlideClass::Normal,
                seed,
                1600.0,
                1200.0,
                &a,
            );
            assert_eq!(t.islands.len(), t.ovals.len());
            assert!(
                t.ovals.iter().any(|o| o[0] > 1.4),
                "seed {seed}: no oval papilla"
            );
            assert!(old.tangential.as_ref().unwrap().ovals.is_empty());
            let (new_s, old_s) = (
                Shader { geom: &g, aa: 0.25 },
                Shader {
                    geom: &old,
                    aa: 0.25,
                },
            );
            let (mut pap, mut pap_e, mut old_pap_e, mut ret_e, mut ret) =
                (0usize, 0.0f64, 0.0f64, 0.0f64, 0usize);
            let (mut basal, mut basal_h, mut old_basal, mut old_basal_h) =
                (0usize, 0.0f64, 0usize, 0.0f64);
            let mut x = t.x0;
            while x < t.x1 {
                let mut y = 0.0;
                while y < 900.0 {
                    let (s, so) = (g.locate(x, y), old.locate(x, y));
                    if s.papilla && s.region == Region::Papillary {
                        pap += 1;
                        pap_e += new_s.shade(x, y).e as f64;
                        if so.region == Region::Papillary {
                            old_pap_e += old_s.shade(x, y).e as f64;
                        }
                    }
                    if s.region == Region::Reticular {
                        ret += 1;
                        ret_e += new_s.shade(x, y).e as f64;
                    }
                    if s.region == Region::Basal {
                        basal += 1;
                        basal_h += new_s.shade(x, y).h as f64;
                    }
                    if so.region == Region::Basal {
                        old_basal += 1;
                        old_basal_h += old_s.shade(x, y).h as f64;
                    }
                    y += 1.5;
                }
                x += 1.5;
            }
            assert!(pap > 200, "seed {seed}: {pap} papilla points");
            let (pe, ope, re) = (
                pap_e / pap as f64,
                old_pap_e / pap as f64,
                ret_e / ret.max(1) as f64,
            );
            assert!(
                pe > 1.5 * ope && pe > 0.7 * re,
                "seed {seed}: papilla eosin {pe:.3}, 1.6 {ope:.3}, reticular {re:.3}"
            );
            let (bh, obh) = (basal_h / basal as f64, old_basal_h / old_basal as f64);
            assert!(
                bh > 1.2 * obh,
                "seed {seed}: basal haematoxylin {bh:.3}, 1.6 {obh:.3}"
            );
            checked += 1;
        }
        assert!(checked >= 3, "{checked} tangential slides in 39 seeds");
    }

    #[test]
    fn margin_ink_colours_only_a_band_at_the_inked_margins() {
        let g = find(SlideClass::Psoriasis, |g| {
            g.ink
                .as_ref()
                .is_some_and(|i| i.sides[0].is_some() && i.cover > 0.7)
        });
        let ink = g.ink.as_ref().unwrap();
        let r = Raster::new(1.0);
        let mut plain = g.clone();
        plain.ink = None;
        // A strip across the left margin, halfway down the tissue.
        let y0 = (0.5 * (g.surface.at(g.left.base) + g.bottom.at(g.left.base))) as i64;
        let x0 = (g.left.base - 40.0) as i64;
        let (w, h) = (160usize, 400usize);
        let (a, b) = (
            render_rgb(&g, r, x0, y0, w, h),
            render_rgb(&plain, r, x0, y0, w, h),
        );
        let mut changed = 0;
        for j in 0..h {
            let y = (y0 + j as i64) as f32 + 0.5;
            for i in 0..w {
                let x = (x0 + i as i64) as f32 + 0.5;
                let at = (j * w + i) * 3;
                if a[at..at + 3] != b[at..at + 3] {
                    changed += 1;
                    let d = x - g.left.at(y);
                    assert!(
                        d > -4.0 && d < ink.width * 1.4 + 1.0,
                        "ink {d} µm from the margin"
                    );
                }
            }
        }
        assert!(changed > 200, "{changed} pixels inked");
        // synth 0.3 never inks.
        let old = Geometry::build_with(
            Generator::V0_3,
            SlideClass::Psoriasis,
            g.seed,
            1600.0,
            1200.0,
            &crate::synth::Artefacts::default(),
        );
        assert!(old.ink.is_none() && old.tangential.is_none());
        assert!(old.chatter.is_none() && old.scan.is_none() && old.tears.is_empty());
    }

    #[test]
    fn knife_chatter_swings_thickness_in_bands_across_the_cut_in_patches() {
        let g = find(SlideClass::Normal, |g| g.chatter.is_some());
        let c = g.chatter.clone().unwrap();
        let (across, along) = (
            [c.angle.cos(), c.angle.sin()],
            [-c.angle.sin(), c.angle.cos()],
        );
        let (mut lo, mut hi, mut inside) = (f32::MAX, f32::MIN, 0);
        let (mut step_across, mut step_along) = (0.0f64, 0.0f64);
        let q = c.period_um / 4.0;
        for j in 0..120 {
            for i in 0..160 {
                let (x, y) = (
                    i as f32 * g.width_um / 160.0,
                    j as f32 * g.height_um / 120.0,
                );
                let k = g.chatter_gain(x, y);
                assert!((k - 1.0).abs() <= c.amplitude + 1e-6, "{k}");
                let in_patch = c.patches.iter().any(|p| (x - p[0]).hypot(y - p[1]) < p[2]);
                if !in_patch {
                    assert_eq!(k, 1.0, "no chatter outside its patches");
                    continue;
                }
                inside += 1;
                (lo, hi) = (lo.min(k), hi.max(k));
                let at = |d: [f32; 2]| g.chatter_gain(x + q * d[0], y + q * d[1]);
                step_across += (at(across) - k).abs() as f64;
                step_along += (at(along) - k).abs() as f64;
            }
        }
        assert!(inside > 100, "{inside} points in patches");
        assert!(hi - lo > c.amplitude, "bands swing thickness: {lo}..{hi}");
        assert!(
            step_across > 10.0 * step_along,
            "bands run along the knife: {step_across} across, {step_along} along"
        );
    }

    #[test]
    fn a_tear_opens_a_narrow_gap_to_the_glass_and_leaves_the_rest_of_the_section() {
        let g = find(SlideClass::Normal, |g| {
            g.tears
                .iter()
                .any(|t| t.width_um > 6.0 && t.length_um > 150.0)
        });
        let t = g.tears.iter().find(|t| t.width_um > 6.0).unwrap().clone();
        let (d, n) = (
            [t.angle.cos(), t.angle.sin()],
            [-t.angle.sin(), t.angle.cos()],
        );
        let on_line = |along: f32, beside: f32| {
            let off =
                t.waver_um * (along * std::f32::consts::TAU / t.waver_wavelength_um).sin() + beside;
            (
                t.x + along * d[0] + off * n[0],
                t.y + along * d[1] + off * n[1],
            )
        };
        let (mx, my) = on_line(0.5 * t.length_um, 0.0);
        assert_eq!(g.section_kept(mx, my), 0.0, "open in its middle");
        let (bx, by) = on_line(0.5 * t.length_um, t.width_um + 2.0);
        let (ex, ey) = on_line(1.2 * t.length_um, 0.0);
        let others = |x: f32, y: f32| {
            let mut h = g.clone();
            h.tears.retain(|o| o.x != t.x);
            h.section_kept(x, y)
        };
        if others(bx, by) == 1.0 && others(ex, ey) == 1.0 {
            assert_eq!(g.section_kept(bx, by), 1.0, "closed beside the gap");
            assert_eq!(g.section_kept(ex, ey), 1.0, "closed past its end");
        }
        // In the pixels: the glass's own colour in the gap; outside every tear's
        // reach, the same pixels as the slide without tears.
        let mut plain = g.clone();
        plain.tears.clear();
        let r = Raster::new(1.0);
        let (x0, y0) = (mx as i64 - 30, my as i64 - 30);
        let (a, b) = (
            render_rgb(&g, r, x0, y0, 60, 60),
            render_rgb(&plain, r, x0, y0, 60, 60),
        );
        let at = (30 * 60 + 30) * 3;
        let glass = g.stain.rgb(0.0, 0.0, [0.0; 3]);
        let light = g.scan_gain(mx, my).unwrap_or([1.0; 3]);
        for c in 0..3 {
            let want = glass[c] * light[c];
            assert!(
                (a[at + c] as f32 - want).abs() <= 3.0 * g.noise_sigma + 1.0,
                "gap pixel {} vs glass {want}",
                a[at + c]
            );
        }
        let mut same = 0;
        for (i, (p, q)) in a.chunks_exact(3).zip(b.chunks_exact(3)).enumerate() {
            let (x, y) = (
                (x0 + (i % 60) as i64) as f32 + 0.5,
                (y0 + (i / 60) as i64) as f32 + 0.5,
            );
            if g.section_kept(x, y) == 1.0 {
                assert_eq!(p, q, "untouched at ({x}, {y})");
                same += 1;
            }
        }
        assert!(
            same > 1000 && same < 3600,
            "{same} of 3600 pixels untouched"
        );
    }

    #[test]
    fn scanner_fields_change_only_the_light_each_field_lets_through() {
        let g = find(SlideClass::Normal, |g| {
            g.scan
                .as_ref()
                .is_some_and(|f| !f.strips && f.vignette > 0.02 && f.gain_sd > 0.005)
        });
        let f = g.scan.clone().unwrap();
        let centre = |fi: f32, fj: f32| {
            (
                (fi + 0.5) * f.width_um - f.offset[0],
                (fj + 0.5) * f.height_um - f.offset[1],
            )
        };
        // Within a field: brightest at its centre, the vignette's share less at
        // its corners; fields differ, so their meeting lines are seams.
        let mut centres = Vec::new();
        for (fi, fj) in [(1.0, 1.0), (2.0, 1.0), (1.0, 2.0), (2.0, 2.0)] {
            let (cx, cy) = centre(fi, fj);
            let mid = g.scan_gain(cx, cy).unwrap();
            let corner = g
                .scan_gain(cx + 0.4999 * f.width_um, cy + 0.4999 * f.height_um)
                .unwrap();
            for k in 0..3 {
                let loss = 1.0 - corner[k] / mid[k];
                assert!((loss - f.vignette).abs() < 1e-3, "corner loses {loss}");
                assert!((mid[k] - 1.0).abs() <= f.gain_sd + f.channel_sd + 1e-3);
            }
            centres.push(mid);
        }
        assert!(centres.windows(2).any(|w| w[0] != w[1]), "fields differ");
        // In the pixels: the same slide without fields differs by that light alone
        // (sensor noise comes after it, so it is the same noise).
        let mut plain = g.clone();
        plain.scan = None;
        // Across the seam between two fields (the renderer keeps a field's gains
        // along a row: the pixels must still follow `scan_gain` past the seam).
        let (cx, cy) = centre(1.5, 1.0);
        let r = Raster::new(1.0);
        let (x0, y0) = (cx as i64 - 20, cy as i64 - 20);
        let seam = |px: i64| g.scan_gain(px as f32 + 0.5, cy).unwrap();
        assert_ne!(seam(x0), seam(x0 + 39), "the strip crosses a seam");
        let (a, b) = (
            render_rgb(&g, r, x0, y0, 40, 40),
            render_rgb(&plain, r, x0, y0, 40, 40),
        );
        let mut checked = 0;
        for (i, (&lit, &flat)) in a.iter().zip(&b).enumerate() {
            let (px, py) = (x0 + (i / 3 % 40) as i64, y0 + (i / 120) as i64);
            let light = g.scan_gain(px as f32 + 0.5, py as f32 + 0.5).unwrap()[i % 3];
            if flat > 20 && flat < 235 {
                // Rounding and the noise (added after the light) bound the difference.
                let want = flat as f32 * light;
                assert!(
                    (lit as f32 - want).abs()
                        <= 1.0 + 5.0 * g.noise_sigma * (1.0 - light).abs() + 0.51,
                    "{lit} vs {want}"
                );
                checked += 1;
            }
        }
        assert!(checked > 1000, "{checked} values checked");
    }

    #[test]
    fn generator_names_parse_and_unknown_ones_are_refused() {
        assert_eq!("0.3".parse::<Generator>().unwrap(), Generator::V0_3);
        assert_eq!("1.0".parse::<Generator>().unwrap(), Generator::V1_15);
        assert_eq!("1.1".parse::<Generator>().unwrap(), Generator::V1_15);
        assert_eq!("1.13".parse::<Generator>().unwrap(), Generator::V1_13);
        assert_eq!("1.13.0".parse::<Generator>().unwrap(), Generator::V1_13);
        assert_eq!("1.14".parse::<Generator>().unwrap(), Generator::V1_14);
        assert_eq!("1.14.0".parse::<Generator>().unwrap(), Generator::V1_14);
        assert_eq!("1.15".parse::<Generator>().unwrap(), Generator::V1_15);
        assert_eq!("1.15.0".parse::<Generator>().unwrap(), Generator::V1_15);
        assert_eq!("1.16".parse::<Generator>().unwrap(), Generator::V1_16);
        assert_eq!(Generator::V1_16.version(), "1.16.0");
        assert_eq!(Generator::V1_12.version(), "1.12.0");
        assert!(Generator::V1_13 > Generator::V1_12);
        assert!(Generator::V1_14 > Generator::V1_13);
        assert!(Generator::V1_15 > Generator::V1_14);
        assert!(Generator::V1_16 > Generator::V1_15);
        assert_eq!("1.17".parse::<Generator>().unwrap(), Generator::V1_17);
        assert_eq!(Generator::V1_17.version(), "1.17.0");
        assert!(Generator::V1_17 > Generator::V1_16);
        assert_eq!("1.18".parse::<Generator>().unwrap(), Generator::V1_18);
        assert!(Generator::V1_18.has_stain_grain() && Generator::V1_16.has_stain_grain());
        assert!(!Generator::V1_17.has_stain_grain() && !Generator::V1_15.has_stain_grain());
        assert_eq!(Generator::default(), Generator::V1_15);
        assert_eq!("1.12".parse::<Generator>().unwrap(), Generator::V1_12);
        assert_eq!("1.12.0".parse::<Generator>().unwrap(), Generator::V1_12);
        assert_eq!("1.11".parse::<Generator>().unwrap(), Generator::V1_11);
        assert_eq!(Generator::V1_11.version(), "1.11.0");
        assert!(Generator::V1_12 > Generator::V1_11);
        assert_eq!("1.10".parse::<Generator>().unwrap(), Generator::V1_10);
        assert_eq!(Generator::V1_10.version(), "1.10.0");
        assert!(Generator::V1_11 > Generator::V1_10);
        assert_eq!("1.9".parse::<Generator>().unwrap(), Generator::V1_9);
        assert_eq!(Generator::V1_9.version(), "1.9.0");
        assert!(Generator::V1_10 > Generator::V1_9);
        assert_eq!("1.8".parse::<Generator>().unwrap(), Generator::V1_8);
        assert_eq!(Generator::V1_8.version(), "1.8.0");
        assert!(Generator::V1_9 > Generator::V1_8);
        assert_eq!("1.7".parse::<Generator>().unwrap(), Generator::V1_7);
        assert_eq!(Generator::V1_7.version(), "1.7.0");
        assert!(Generator::V1_8 > Generator::V1_7 && Generator::V1_4 > Generator::V0_3);
        assert_eq!("1.6".parse::<Generator>().unwrap(), Generator::V1_6);
        assert_eq!("1.6.0".parse::<Generator>().unwrap(), Generator::V1_6);
        assert_eq!(Generator::V1_6.version(), "1.6.0");
        assert_eq!("1.5".parse::<Generator>().unwrap(), Generator::V1_5);
        assert_eq!("1.4".parse::<Generator>().unwrap(), Generator::V1_4);
        assert_eq!("1.4.0".parse::<Generator>().unwrap(), Generator::V1_4);
        assert_eq!("1.5.0".parse::<Generator>().unwrap(), Generator::V1_5);
        assert_eq!(Generator::V1_4.version(), "1.4.0");
        assert!("1.3.0".parse::<Generator>().is_err());
        assert!("1.2.0".parse::<Generator>().is_err());
        assert!("1.0.0".parse::<Generator>().unwrap_err().is_usage());
        assert!("1.1.0".parse::<Generator>().unwrap_err().is_usage());
        assert_eq!(
            Generator::default().version(),
            crate::synth::GENERATOR_VERSION
        );
        assert!("2".parse::<Generator>().unwrap_err().is_usage());
    }
}
