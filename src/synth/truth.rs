//! Ground truth of one phantom: the masks sampled from its geometry and the
//! `truth.json` record (class, findings with areas, stain, MPP, seed, version).
//!
//! Masks come from the same `Geometry::locate` the renderer uses, so they line up
//! with the pixels by construction. Nothing here renders colour.

use rayon::prelude::*;
use serde::Serialize;

use super::anatomy::Geometry;
use super::stain::StainMatrix;
use super::{mask_bit, Artefacts, Finding, SlideClass, Variant, EPIDERMIS_BIT, TISSUE_BIT};

/// Flag bits sampled at the centre of each mask pixel (one byte per pixel).
pub struct MaskGrid {
    pub width: u32,
    pub height: u32,
    /// Micrometres per mask pixel.
    pub um_per_px: f64,
    pub bits: Vec<u8>,
}

impl MaskGrid {
    /// Samples `geom` on a grid of `um_per_px` covering `width_px × height_px` cells.
    pub fn sample(geom: &Geometry, width_px: u32, height_px: u32, um_per_px: f64) -> MaskGrid {
        MaskGrid::from_fn(width_px, height_px, um_per_px, |x, y| {
            geom.locate(x, y).flags
        })
    }

    /// Samples `flags(x, y)` (µm) at the centre of every cell of a
    /// `width_px × height_px` grid of `um_per_px`.
    pub fn from_fn(
        width_px: u32,
        height_px: u32,
        um_per_px: f64,
        flags: impl Fn(f32, f32) -> u8 + Sync,
    ) -> MaskGrid {
        let mut bits = vec![0u8; width_px as usize * height_px as usize];
        bits.par_chunks_mut(width_px as usize)
            .enumerate()
            .for_each(|(j, row)| {
                let y = ((j as f64 + 0.5) * um_per_px) as f32;
                for (i, b) in row.iter_mut().enumerate() {
                    let x = ((i as f64 + 0.5) * um_per_px) as f32;
                    *b = flags(x, y);
                }
            });
        MaskGrid {
            width: width_px,
            height: height_px,
            um_per_px,
            bits,
        }
    }

    /// A 0/255 grey image of one bit.
    pub fn image(&self, bit: u8) -> image::GrayImage {
        let data = self
            .bits
            .iter()
            .map(|&b| if b & bit != 0 { 255 } else { 0 })
            .collect();
        image::GrayImage::from_raw(self.width, self.height, data)
            .unwrap_or_else(|| image::GrayImage::new(self.width, self.height))
    }

    /// Area of one bit in mm².
    pub fn area_mm2(&self, bit: u8) -> f64 {
        let n = self.bits.iter().filter(|&&b| b & bit != 0).count();
        n as f64 * self.um_per_px * self.um_per_px / 1e6
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TruthFinding {
    pub key: &'static str,
    pub present: bool,
    pub area_mm2: f64,
    /// Number of separate lesions drawn (pustules, clefts, inflamed coils, zones).
    pub lesions: usize,
    pub mask: String,
}

/// The content of `<id>.truth.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Truth {
    pub generator: &'static str,
    pub generator_version: &'static str,
    pub slide_id: String,
    pub class: SlideClass,
    /// Which DIRA features a DIRA slide shows (`typical` for other classes).
    pub variant: Variant,
    pub seed: u64,
    pub mpp: f64,
    pub width: u32,
    pub height: u32,
    pub width_um: f64,
    pub height_um: f64,
    /// Level-0 pixels per mask pixel; masks are sampled at mask-pixel centres.
    pub mask_downsample: u32,
    pub mask_width: u32,
    pub mask_height: u32,
    pub tissue_area_mm2: f64,
    pub epidermis_area_mm2: f64,
    /// Keys of the findings present, in the fixed order.
    pub findings_present: Vec<&'static str>,
    pub findings: Vec<TruthFinding>,
    pub stain: StainMatrix,
    pub blur_sigma_um: f32,
    pub noise_sigma: f32,
    pub jpeg_quality: u8,
    pub artefacts: Artefacts,
    /// Where the drawn structures are, in level-0 micrometres.
    pub structures: Structures,
    /// For `synth --implant-into`: the real slide, its measured stain and every
    /// implanted structure (absent for phantoms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub implant: Option<super::implant::ImplantTruth>,
    /// For `synth --texture-from`: the real slide whose texture and stain were used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub texture_from: Option<super::texture::TextureSource>,
}

/// Positions of the lesions and coils, for reviewers and crops.
#[derive(Debug, Clone, Serialize)]
pub struct Structures {
    /// Subcorneal pustules: centre x, half-width, height (µm).
    pub pustules: Vec<[f32; 3]>,
    /// Acantholytic clefts: centre x, half-width, height (µm).
    pub clefts: Vec<[f32; 3]>,
    /// Eccrine coils: centre x, centre y, radius (µm), inflamed.
    pub coils: Vec<(f32, f32, f32, bool)>,
    /// Psoriasiform zones: x from, x to (µm; clipped to the slide).
    pub psoriasiform_zones: Vec<[f32; 2]>,
    /// Synth 1.1: the stretch of epidermis cut tangentially (x from, x to, slab
    /// depth below the plate, µm), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tangential: Option<[f32; 3]>,
    /// Synth 1.1: the margin ink (OD per RGB channel on the left, right and deep
    /// margins, band width µm), if the margins were inked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub margin_ink: Option<super::anatomy::MarginInk>,
    /// Synth 1.2: knife chatter (band direction, spacing, thickness swing), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chatter: Option<super::anatomy::Chatter>,
    /// Synth 1.2: the scanner's fields (size, gains, vignetting), if they show.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan_fields: Option<super::anatomy::ScanFields>,
    /// Synth 1.2: tears (start, direction, length, widest gap), if any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tears: Vec<super::anatomy::Tear>,
    /// Synth 1.13: knife lines (direction along the cut; each line's offset across
    /// it, width, depth, lips and waver), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knife_lines: Option<super::anatomy::KnifeLines>,
    /// Synth 1.6: basal melanin (peak concentration, reach above the junction in
    /// µm), if the slide is pigmented.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub melanin: Option<[f32; 2]>,
    /// Synth 1.9: hair follicles (axis ends, radii of the sheaths, shaft lost or
    /// not, its pigment) with their sebaceous lobules, if any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub follicles: Vec<super::anatomy::Follicle>,
}

impl Truth {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        geom: &Geometry,
        slide_id: &str,
        mpp: f64,
        width: u32,
        height: u32,
        downsample: u32,
        masks: &MaskGrid,
        jpeg_quality: u8,
        artefacts: Artefacts,
    ) -> Truth {
        let findings = finding_records(
            slide_id,
            masks,
            |f| geom.has(mask_bit(f)),
            |f| match f {
                Finding::SubcornealPustule => geom.pustules.len(),
                Finding::Acantholysis => geom.clefts.len(),
                Finding::NeutrophilicEccrineHidradenitis => {
                    geom.coils.iter().filter(|c| c.inflamed).count()
                }
                Finding::Psoriasiform => geom.zones.len(),
            },
        );
        Truth {
            generator: "dirascope synth",
            generator_version: geom.generator.version(),
            slide_id: slide_id.to_string(),
            class: geom.class,
            variant: geom.variant,
            seed: geom.seed,
            mpp,
            width,
            height,
            width_um: width as f64 * mpp,
            height_um: height as f64 * mpp,
            mask_downsample: downsample,
            mask_width: masks.width,
            mask_height: masks.height,
            tissue_area_mm2: round6(masks.area_mm2(TISSUE_BIT)),
            epidermis_area_mm2: round6(masks.area_mm2(EPIDERMIS_BIT)),
            findings_present: findings
                .iter()
                .filter(|f| f.present)
                .map(|f| f.key)
                .collect(),
            findings,
            stain: geom.stain.clone(),
            blur_sigma_um: geom.blur_um,
            noise_sigma: geom.noise_sigma,
            jpeg_quality,
            artefacts,
            structures: Structures {
                pustules: geom.pustules.iter().map(|p| [p.x, p.hw, p.h]).collect(),
                clefts: geom
                    .clefts
                    .iter()
                    .map(|c| [c.lens.x, c.lens.hw, c.lens.h])
                    .collect(),
                coils: geom
                    .coils
                    .iter()
                    .map(|c| (c.x, c.y, c.r, c.inflamed))
                    .collect(),
                psoriasiform_zones: geom
                    .zones
                    .iter()
                    .map(|z| [z.x0.max(0.0), z.x1.min(geom.width_um)])
                    .collect(),
                tangential: geom.tangential.as_ref().map(|t| [t.x0, t.x1, t.depth]),
                margin_ink: geom.ink.clone(),
                chatter: geom.chatter.clone(),
                scan_fields: geom.scan.clone(),
                tears: geom.tears.clone(),
                knife_lines: geom.knife.clone(),
                melanin: (geom.melanin > 0.0).then_some([geom.melanin, geom.melanin_reach_um]),
                follicles: geom.follicles.clone(),
            },
            implant: None,
            texture_from: geom.texture.as_ref().map(|t| t.source.clone()),
        }
    }
}

/// One record per finding, in the fixed order, from the masks: present when
/// `drawn(finding)` and its mask covers any area; `lesions(finding)` counts them.
pub(crate) fn finding_records(
    slide_id: &str,
    masks: &MaskGrid,
    drawn: impl Fn(Finding) -> bool,
    lesions: impl Fn(Finding) -> usize,
) -> Vec<TruthFinding> {
    Finding::ALL
        .iter()
        .map(|&f| {
            let area = masks.area_mm2(mask_bit(f));
            TruthFinding {
                key: f.key(),
                present: drawn(f) && area > 0.0,
                area_mm2: round6(area),
                lesions: lesions(f),
                mask: format!("{slide_id}.masks/{}.png", f.key()),
            }
        })
        .collect()
}

/// Areas in truth.json: rounded to 6 decimals (1 µm² in mm²).
pub(crate) fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}
