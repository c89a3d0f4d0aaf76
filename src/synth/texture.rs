//! `synth --texture-from SLIDE`: phantoms rendered with a real slide's own tissue
//! texture and stain, so a lab can make phantoms in its stain and scanner style.
//!
//! The slide is read once (its train part where training/real_split.toml lists
//! it) and its anatomy found as `--implant-into` finds it. Patches lying wholly in
//! its corneum, epidermis or dermis form a bank. A phantom's corneum, epidermis and
//! dermis are then covered with bank patches of the same layer, laid on a grid of
//! half a patch and blended with windows that sum to one, in the real slide's
//! hematoxylin and eosin concentrations; the slide's measured stain replaces the
//! phantom's. Everything else (lesions, parakeratosis, coils, vessels, fat, the
//! layers the real slide lacks) is drawn by synth 1.0 as usual.

use std::fmt;
use std::path::Path;

use serde::Serialize;

use super::anatomy::{Region, Site, ACANTHOLYSIS, PUSTULE};
use super::implant::{find_anatomy, od, read_real, unmix, DRAW_E95, DRAW_H95};
use super::noise::{hash2, mix};
use super::render::{c, Conc};
use super::{StainMatrix, SynthError};
use crate::real_split::Part;

/// Patch side per layer, µm (thin layers get small patches).
const PATCH_UM: [f32; 3] = [16.0, 24.0, 48.0];
/// Fewest patches for a layer to be textured from the slide.
const MIN_PATCHES: usize = 4;

/// Real texture patches by layer, and the slide's stain.
pub struct TextureBank {
    pub source: TextureSource,
    mpp: f32,
    w: usize,
    h: usize,
    /// Hematoxylin and eosin of every level-0 pixel, in synth's drawing units.
    conc: Vec<(f32, f32)>,
    /// Top-left pixels of the patches of each layer.
    patches: [Vec<(u32, u32)>; 3],
    pub stain: StainMatrix,
}

impl fmt::Debug for TextureBank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TextureBank")
            .field("source", &self.source)
            .field("patches", &self.patches.each_ref().map(Vec::len))
            .finish()
    }
}

/// Where a phantom's texture came from, written into its truth.json.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TextureSource {
    pub file: String,
    /// Level-0 rectangle of the slide that was sampled: x, y, width, height.
    pub region: [u32; 4],
    pub part: Option<&'static str>,
    pub mpp: f64,
    /// Patches per layer (corneum, epidermis, dermis); a layer under the minimum
    /// is drawn by synth 1.0 instead.
    pub patches: [usize; 3],
}

impl TextureBank {
    /// Reads `path` (its train part when the real split lists it) and builds the bank.
    pub fn from_slide(path: &Path, mpp: Option<f64>) -> Result<TextureBank, SynthError> {
        let listed = crate::real_split::RealSplit::load()
            .ok()
            .is_some_and(|s| s.image(path).is_ok());
        let part = listed.then_some(Part::Train);
        let real = read_real(path, mpp, part, "--texture-from")?;
        let (an, stain) = find_anatomy(&real.rgb, real.w, real.h, real.mpp, path)?;
        let (hs, es) = (
            DRAW_H95 / stain.h_p50_p95[1].max(0.05),
            DRAW_E95 / stain.e_p50_p95[1].max(0.05),
        );
        let conc: Vec<(f32, f32)> = real
            .rgb
            .chunks_exact(3)
            .map(|p| {
                let o = [0, 1, 2].map(|ch| od(p[ch], stain.glass[ch]).max(0.0));
                let (h, e) = unmix(stain.hematoxylin, stain.eosin, o);
                (h.max(0.0) * hs, e.max(0.0) * es)
            })
            .collect();
        // A cell's layer: 0 corneum, 1 epidermis, 2 dermis (20 µm clear of the
        // epidermis), or none.
        let layer = |k: usize| -> Option<usize> {
            if !an.tissue[k] {
                None
            } else if an.corneum[k] {
                Some(0)
            } else if an.epi[k] {
                Some(1)
            } else if an.d_epi[k] >= 20.0 {
                Some(2)
            } else {
                None
            }
        };
        let mpp = real.mpp as f32;
        let mut patches: [Vec<(u32, u32)>; 3] = Default::default();
        for (l, list) in patches.iter_mut().enumerate() {
            let side_px = (PATCH_UM[l] / mpp).ceil() as usize;
            let step = (side_px / 2).max(1);
            let cells = (PATCH_UM[l] / an.cell).ceil() as usize;
            for y in (0..real.h.saturating_sub(side_px)).step_by(step) {
                for x in (0..real.w.saturating_sub(side_px)).step_by(step) {
                    let (ci, cj) = (
                        (x as f32 * mpp / an.cell) as usize,
                        (y as f32 * mpp / an.cell) as usize,
                    );
                    let inside = (cj..(cj + cells).min(an.h)).all(|j| {
                        (ci..(ci + cells).min(an.w)).all(|i| layer(j * an.w + i) == Some(l))
                    });
                    if inside {
                        list.push((x as u32, y as u32));
                    }
                }
            }
            if list.len() < MIN_PATCHES {
                list.clear();
            }
        }
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(TextureBank {
            source: TextureSource {
                file,
                region: [
                    real.rect.x as u32,
                    real.rect.y as u32,
                    real.rect.width,
                    real.rect.height,
                ],
                part: real.part,
                mpp: real.mpp,
                patches: patches.each_ref().map(Vec::len),
            },
            mpp,
            w: real.w,
            h: real.h,
            conc,
            patches,
            stain: StainMatrix {
                hematoxylin: stain.hematoxylin,
                eosin: stain.eosin,
                h_scale: 1.0 / hs,
                e_scale: 1.0 / es,
                background: stain.glass,
            },
        })
    }

    /// The bank's concentrations at (x, y) µm of a phantom site, or `None` where
    /// synth draws it (lesions, structures, layers the slide lacks).
    pub fn shade(&self, site: &Site, x: f32, y: f32, salt: u64) -> Option<Conc> {
        let l = match site.region {
            Region::Corneum => 0,
            Region::Granular | Region::Spinous | Region::Basal
                if site.flags & (PUSTULE | ACANTHOLYSIS) == 0 =>
            {
                1
            }
            Region::Papillary | Region::Reticular => 2,
            _ => return None,
        };
        let list = &self.patches[l];
        if list.is_empty() {
            return None;
        }
        // Patches of side P on a grid of P/2: every point lies in four, each
        // weighted by a window; the windows are sharpened so one patch dominates
        // away from the seams.
        let p = PATCH_UM[l];
        let half = p / 2.0;
        let (gi, gj) = ((x / half).floor() as i64, (y / half).floor() as i64);
        let (mut sum, mut wsum) = (c(0.0, 0.0), 0.0f32);
        for cj in gj - 1..=gj {
            for ci in gi - 1..=gi {
                let (u, v) = (x - ci as f32 * half, y - cj as f32 * half);
                let win = |t: f32| (std::f32::consts::PI * t / p).sin().powi(2);
                let wgt = (win(u) * win(v)).powf(1.5);
                if wgt <= 1e-6 {
                    continue;
                }
                let hsh = mix(hash2(ci, cj, salt ^ ((l as u64 + 1) * 0x7E47)));
                let (ox, oy) = list[((hsh >> 8) % list.len() as u64) as usize];
                // Mirror patches at random (layers keep their up and down: only
                // the dermis is also flipped vertically).
                let mu = if hsh & 1 == 1 { p - u } else { u };
                let mv = if l == 2 && hsh & 2 == 2 { p - v } else { v };
                let px = (ox as usize + (mu / self.mpp) as usize).min(self.w - 1);
                let py = (oy as usize + (mv / self.mpp) as usize).min(self.h - 1);
                let (h, e) = self.conc[py * self.w + px];
                sum.h += wgt * h;
                sum.e += wgt * e;
                wsum += wgt;
            }
        }
        (wsum > 0.0).then(|| c(sum.h / wsum, sum.e / wsum))
    }
}
