//! Writing phantoms: the pyramidal TIFF (rendered in parallel bands and streamed to
//! the writer), masks, truth file and set manifest, each under a temporary name in
//! the output folder and renamed into place only when complete.
//!
//! It decides file names and the band pipeline; it does not decide what anything
//! looks like.

use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::anatomy::Geometry;
use super::render::{render_rgb, Raster};
use super::truth::{MaskGrid, Truth};
use super::{
    mask_bit, slide_id, Finding, SlideClass, SynthError, SynthOptions, EPIDERMIS_BIT, TISSUE_BIT,
};
use crate::slide::writer::{PyramidWriter, TileCompression, WriterOptions};
use crate::slide::Mpp;

/// Rows rendered per step; two tile rows of the 256 px pyramid.
const BAND_ROWS: usize = 512;
/// Columns per parallel work item within a band.
const CHUNK_COLS: usize = 512;

/// What one slide left on disk.
#[derive(Debug, Clone)]
pub struct SlideOutput {
    pub slide_id: String,
    pub class: SlideClass,
    pub seed: u64,
    pub tiff: PathBuf,
    pub truth: PathBuf,
    pub masks: PathBuf,
}

fn io<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(std::io::Error) -> SynthError + 'a {
    move |source| SynthError::Io {
        path: path.to_path_buf(),
        what,
        source,
    }
}

/// Creates the output folder if needed and proves it is writable; a folder that
/// cannot be used is a usage error (exit 2), before any rendering starts.
pub fn prepare_dir(dir: &Path) -> Result<(), SynthError> {
    if dir.exists() && !dir.is_dir() {
        return Err(SynthError::Usage(format!(
            "--out {}: exists and is not a folder",
            dir.display()
        )));
    }
    fs::create_dir_all(dir).map_err(|e| {
        SynthError::Usage(format!(
            "--out {}: cannot create the folder: {e}",
            dir.display()
        ))
    })?;
    let probe = dir.join(format!(".dirascope-write-probe-{}", std::process::id()));
    fs::write(&probe, b"").map_err(|e| {
        SynthError::Usage(format!(
            "--out {}: folder is not writable: {e}",
            dir.display()
        ))
    })?;
    let _ = fs::remove_file(&probe);
    Ok(())
}

/// A temporary sibling of `path` (same folder, so the rename is atomic).
fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Removes temporaries if a slide fails half way.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            if p.is_dir() {
                let _ = fs::remove_dir_all(p);
            } else {
                let _ = fs::remove_file(p);
            }
        }
    }
}

/// Level-0 size in pixels of a slide of `width_mm × height_mm` at `mpp`.
pub fn pixel_size(options: &SynthOptions) -> (u32, u32) {
    (
        (options.width_mm * 1000.0 / options.mpp).round().max(1.0) as u32,
        (options.height_mm * 1000.0 / options.mpp).round().max(1.0) as u32,
    )
}

/// Renders one slide's pyramid into `path`, band by band.
pub fn write_tiff(
    geom: &Geometry,
    path: &Path,
    mpp: f64,
    width: u32,
    height: u32,
    quality: u8,
    description: String,
) -> Result<(), SynthError> {
    let mpp_t = Mpp::square(mpp).ok_or_else(|| SynthError::Usage(format!("bad mpp {mpp}")))?;
    // JPEG tiles of tissue compress ~10:1; leave classic TIFF well before 4 GiB.
    let bigtiff = width as u64 * height as u64 * 3 / 6 > (3u64 << 30);
    let mut writer = PyramidWriter::create(
        path,
        width,
        height,
        WriterOptions {
            tile_size: 256,
            compression: TileCompression::Jpeg { quality },
            mpp: Some(mpp_t),
            description: Some(description),
            bigtiff,
            background: [255, 255, 255],
            ..WriterOptions::default()
        },
    )?;
    let raster = Raster::new(mpp);
    let w = width as usize;
    let render_band = |y0: usize| -> Vec<u8> {
        let rows = BAND_ROWS.min(height as usize - y0);
        let chunks: Vec<Vec<u8>> = (0..w.div_ceil(CHUNK_COLS))
            .into_par_iter()
            .map(|c| {
                let x0 = c * CHUNK_COLS;
                let cw = CHUNK_COLS.min(w - x0);
                render_rgb(geom, raster, x0 as i64, y0 as i64, cw, rows)
            })
            .collect();
        let mut band = vec![0u8; w * rows * 3];
        for (c, chunk) in chunks.iter().enumerate() {
            let x0 = c * CHUNK_COLS;
            let cw = CHUNK_COLS.min(w - x0);
            for r in 0..rows {
                band[(r * w + x0) * 3..(r * w + x0 + cw) * 3]
                    .copy_from_slice(&chunk[r * cw * 3..(r + 1) * cw * 3]);
            }
        }
        band
    };
    // Render band k+1 while band k is compressed and written.
    let starts: Vec<usize> = (0..height as usize).step_by(BAND_ROWS).collect();
    let mut current = render_band(starts[0]);
    for k in 0..starts.len() {
        let next_start = starts.get(k + 1).copied();
        let (written, next) = rayon::join(
            || writer.push_rows(&current),
            || next_start.map(&render_band),
        );
        written?;
        match next {
            Some(n) => current = n,
            None => break,
        }
    }
    writer.finish()?;
    Ok(())
}

/// Writes `<id>.tiff`, `<id>.truth.json` and `<id>.masks/` for one slide.
pub fn write_slide(
    options: &SynthOptions,
    class: SlideClass,
    seed: u64,
) -> Result<SlideOutput, SynthError> {
    let id = slide_id(class, seed);
    let dir = &options.out;
    let (width, height) = pixel_size(options);
    let (w_um, h_um) = (width as f64 * options.mpp, height as f64 * options.mpp);
    let geom = Geometry::build_with(
        options.generator,
        class,
        seed,
        w_um as f32,
        h_um as f32,
        &options.artefacts,
    );
    let quality = options.jpeg_quality.unwrap_or(geom.jpeg_quality);

    let tiff = dir.join(format!("{id}.tiff"));
    let truth_path = dir.join(format!("{id}.truth.json"));
    let masks_dir = dir.join(format!("{id}.masks"));
    let (tiff_tmp, truth_tmp, masks_tmp) = (
        temp_name(&tiff),
        temp_name(&truth_path),
        temp_name(&masks_dir),
    );
    let mut cleanup = Cleanup(vec![tiff_tmp.clone(), truth_tmp.clone(), masks_tmp.clone()]);

    let description = format!(
        "dirascope synth phantom|slide_id = {id}|class = {class}|seed = {seed}|MPP = {}|generator_version = {}",
        options.mpp,
        geom.generator.version()
    );
    write_tiff(
        &geom,
        &tiff_tmp,
        options.mpp,
        width,
        height,
        quality,
        description,
    )?;

    let ds = options.mask_downsample;
    let masks = MaskGrid::sample(
        &geom,
        width.div_ceil(ds),
        height.div_ceil(ds),
        ds as f64 * options.mpp,
    );
    write_masks(&masks_tmp, &masks)?;
    let truth = Truth::new(
        &geom,
        &id,
        options.mpp,
        width,
        height,
        ds,
        &masks,
        quality,
        options.artefacts,
    );
    let json = serde_json::to_string_pretty(&truth).map_err(|e| SynthError::Encode {
        path: truth_path.clone(),
        reason: e.to_string(),
    })?;
    fs::write(&truth_tmp, json + "\n").map_err(io(&truth_tmp, "cannot write"))?;

    // Everything is complete: move it into place.
    if masks_dir.exists() {
        fs::remove_dir_all(&masks_dir)
            .map_err(io(&masks_dir, "cannot replace the old masks folder"))?;
    }
    fs::rename(&masks_tmp, &masks_dir).map_err(io(&masks_dir, "cannot rename into place"))?;
    fs::rename(&tiff_tmp, &tiff).map_err(io(&tiff, "cannot rename into place"))?;
    fs::rename(&truth_tmp, &truth_path).map_err(io(&truth_path, "cannot rename into place"))?;
    cleanup.0.clear();
    super::geojson::write_geojson(
        &dir.join(format!("{id}.geojson")),
        &masks,
        ds,
        width,
        height,
    )?;
    Ok(SlideOutput {
        slide_id: id,
        class,
        seed,
        tiff,
        truth: truth_path,
        masks: masks_dir,
    })
}

/// Writes the tissue, epidermis and finding masks as PNGs into a fresh folder `dir`.
pub fn write_masks(dir: &Path, masks: &MaskGrid) -> Result<(), SynthError> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(io(dir, "cannot clear a stale masks folder"))?;
    }
    fs::create_dir_all(dir).map_err(io(dir, "cannot create the masks folder"))?;
    let mut layers: Vec<(&str, u8)> = vec![("tissue", TISSUE_BIT), ("epidermis", EPIDERMIS_BIT)];
    layers.extend(Finding::ALL.iter().map(|f| (f.key(), mask_bit(*f))));
    for (name, bit) in layers {
        let p = dir.join(format!("{name}.png"));
        masks.image(bit).save(&p).map_err(|e| SynthError::Encode {
            path: p.clone(),
            reason: e.to_string(),
        })?;
    }
    Ok(())
}

/// Writes every slide of the set and, for more than one, `manifest.csv`.
pub fn write_set(options: &SynthOptions) -> Result<Vec<SlideOutput>, SynthError> {
    let mut outs = Vec::new();
    for (class, seed) in options.slides() {
        outs.push(write_slide(options, class, seed)?);
    }
    if options.count > 1 {
        write_manifest(&options.out, &outs)?;
    }
    Ok(outs)
}

fn write_manifest(dir: &Path, outs: &[SlideOutput]) -> Result<(), SynthError> {
    let path = dir.join("manifest.csv");
    let tmp = temp_name(&path);
    let mut text = String::from("slide_id,path,class\n");
    for o in outs {
        let name = o
            .tiff
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        text.push_str(&format!("{},{},{}\n", o.slide_id, name, o.class));
    }
    fs::write(&tmp, text).map_err(io(&tmp, "cannot write"))?;
    fs::rename(&tmp, &path).map_err(io(&path, "cannot rename into place"))?;
    Ok(())
}

/// Writes `bytes` to `path` through a temporary sibling.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SynthError> {
    let tmp = temp_name(path);
    fs::write(&tmp, bytes).map_err(io(&tmp, "cannot write"))?;
    fs::rename(&tmp, path).map_err(io(path, "cannot rename into place"))
}
