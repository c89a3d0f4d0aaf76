//! The labelled tile dataset (`--tiles`): PNG tiles rendered directly at the tile
//! MPP, and `labels.csv` with each tile's tissue and finding fractions.
//!
//! Column names of `labels.csv` are a contract with the training script; do not
//! rename or reorder them. Nothing here writes slides.

use std::fs;
use std::path::PathBuf;

use rayon::prelude::*;

use super::anatomy::Geometry;
use super::noise;
use super::output::{write_atomic, write_masks};
use super::render::{render_rgb, Raster};
use super::truth::{MaskGrid, Truth};
use super::{mask_bit, slide_id, Finding, SynthError, SynthOptions, TileOptions, TISSUE_BIT};

/// The header of `labels.csv`, in order.
pub const LABEL_COLUMNS: [&str; 13] = [
    "path",
    "slide_id",
    "class",
    "seed",
    "x_um",
    "y_um",
    "tile_px",
    "tile_mpp",
    "tissue",
    "subcorneal_pustule",
    "acantholysis",
    "neutrophilic_eccrine_hidradenitis",
    "psoriasiform",
];

/// Samples per tile side used to measure the fractions.
const LABEL_SAMPLES: usize = 32;

/// What a tile export wrote.
#[derive(Debug, Clone)]
pub struct TileExport {
    pub labels: PathBuf,
    pub tiles: usize,
    pub slides: usize,
}

/// Fractions of a tile covered by tissue and each finding, sampled on a grid.
fn fractions(geom: &Geometry, x0: f32, y0: f32, side: f32, n: usize) -> [f64; 5] {
    let mut counts = [0u32; 5];
    let step = side / n as f32;
    for j in 0..n {
        for i in 0..n {
            let flags = geom
                .locate(x0 + (i as f32 + 0.5) * step, y0 + (j as f32 + 0.5) * step)
                .flags;
            if flags & TISSUE_BIT != 0 {
                counts[0] += 1;
            }
            for (k, f) in Finding::ALL.iter().enumerate() {
                if flags & mask_bit(*f) != 0 {
                    counts[k + 1] += 1;
                }
            }
        }
    }
    counts.map(|c| c as f64 / (n * n) as f64)
}

/// Renders and writes the tiles of every slide of the set, then `labels.csv`.
pub fn export_tiles(options: &SynthOptions, t: &TileOptions) -> Result<TileExport, SynthError> {
    let dir = &options.out;
    let (width, height) = super::output::pixel_size(options);
    let (w_um, h_um) = (width as f64 * options.mpp, height as f64 * options.mpp);
    let side_um = t.tile_px as f64 * t.tile_mpp;
    let across = (w_um / side_um).floor() as i64;
    let down = (h_um / side_um).floor() as i64;
    let raster = Raster::new(t.tile_mpp);
    let mut rows: Vec<String> = Vec::new();
    let mut manifest = String::from("slide_id,path,class\n");
    let slides = options.slides();
    for &(class, seed) in &slides {
        let id = slide_id(class, seed);
        let geom = options.geometry(class, seed, w_um as f32, h_um as f32);
        let sub = format!("tiles/{id}");
        let tile_dir = dir.join(&sub);
        fs::create_dir_all(&tile_dir).map_err(|source| SynthError::Io {
            path: tile_dir.clone(),
            what: "cannot create the tile folder",
            source,
        })?;
        let cells: Vec<(i64, i64)> = (0..down)
            .flat_map(|j| (0..across).map(move |i| (i, j)))
            .collect();
        let made: Vec<Result<Option<String>, SynthError>> = cells
            .par_iter()
            .map(|&(i, j)| {
                let (x0, y0) = (i as f64 * side_um, j as f64 * side_um);
                let coarse = fractions(&geom, x0 as f32, y0 as f32, side_um as f32, 8);
                if coarse[0] < t.min_tissue {
                    // Keep a few clean-glass tiles as background; skip the rest.
                    let pick = noise::unit(noise::hash2(i, j, geom.salt ^ 0xB6), 0);
                    if coarse[0] > 0.0 || pick >= t.background_share as f32 {
                        return Ok(None);
                    }
                }
                let f = fractions(&geom, x0 as f32, y0 as f32, side_um as f32, LABEL_SAMPLES);
                if f[0] < t.min_tissue && f[0] > 0.0 {
                    return Ok(None);
                }
                let px = t.tile_px as usize;
                let rgb = render_rgb(&geom, raster, i * px as i64, j * px as i64, px, px);
                let name = format!("{id}_x{}_y{}.png", x0.round() as i64, y0.round() as i64);
                let rel = format!("{sub}/{name}");
                let path = dir.join(&rel);
                let img =
                    image::RgbImage::from_raw(t.tile_px, t.tile_px, rgb).ok_or_else(|| {
                        SynthError::Encode {
                            path: path.clone(),
                            reason: "tile buffer size mismatch".into(),
                        }
                    })?;
                let mut png = Vec::new();
                img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                    .map_err(|e| SynthError::Encode {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                write_atomic(&path, &png)?;
                Ok(Some(format!(
                    "{rel},{id},{class},{seed},{:.1},{:.1},{},{},{:.4},{:.4},{:.4},{:.4},{:.4}",
                    x0, y0, t.tile_px, t.tile_mpp, f[0], f[1], f[2], f[3], f[4]
                )))
            })
            .collect();
        for m in made {
            if let Some(row) = m? {
                rows.push(row);
            }
        }
        // A small truth record per slide, with masks at the label resolution.
        let ds = options.mask_downsample;
        let masks = MaskGrid::sample(
            &geom,
            width.div_ceil(ds),
            height.div_ceil(ds),
            ds as f64 * options.mpp,
        );
        let truth = Truth::new(
            &geom,
            &id,
            options.mpp,
            width,
            height,
            ds,
            &masks,
            geom.jpeg_quality,
            options.artefacts,
        );
        let json = serde_json::to_string_pretty(&truth).map_err(|e| SynthError::Encode {
            path: dir.join(format!("{sub}.truth.json")),
            reason: e.to_string(),
        })?;
        // Masks beside the truth, as its `mask` paths say (relative to tiles/).
        write_masks(&dir.join(format!("tiles/{id}.masks")), &masks)?;
        write_atomic(
            &dir.join(format!("tiles/{id}.truth.json")),
            (json + "\n").as_bytes(),
        )?;
        manifest.push_str(&format!("{id},{sub},{class}\n"));
    }
    let labels = dir.join("labels.csv");
    let mut text = LABEL_COLUMNS.join(",");
    text.push('\n');
    for r in &rows {
        text.push_str(r);
        text.push('\n');
    }
    write_atomic(&labels, text.as_bytes())?;
    write_atomic(&dir.join("manifest.csv"), manifest.as_bytes())?;
    Ok(TileExport {
        labels,
        tiles: rows.len(),
        slides: slides.len(),
    })
}
