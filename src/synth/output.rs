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

pub(super) fn io<'a>(
    path: &'a Path,
    what: &'static str,
) -> impl FnOnce(std::io::Error) -> SynthError + 'a {
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
pub(super) fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Removes temporaries if a slide fails half way.
pub(super) struct Cleanup(pub(super) Vec<PathBuf>);

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
    let geom = options.geometry(class, seed, w_um as f32, h_um as f32);
    let quality = options.jpeg_quality.unwrap_or(geom.jpeg_quality);

    let mut files = SlideFiles::new(dir, &id);

    let description = format!(
        "dirascope synth phantom|slide_id = {id}|class = {class}|seed = {seed}|MPP = {}|generator_version = {}",
        options.mpp,
        geom.generator.version()
    );
    write_tiff(
        &geom,
        &files.tiff_tmp,
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
    files.commit(&truth, &masks, width, height)?;
    Ok(files.output(id, class, seed))
}

/// The files of one slide (`<id>.tiff`, `<id>.truth.json`, `<id>.masks/`, and
/// `<id>.geojson` last), written under temporary names and moved into place only
/// when all are complete; dropped before that, the temporaries are removed.
pub(super) struct SlideFiles {
    pub tiff: PathBuf,
    pub truth: PathBuf,
    pub masks: PathBuf,
    geojson: PathBuf,
    pub tiff_tmp: PathBuf,
    truth_tmp: PathBuf,
    masks_tmp: PathBuf,
    cleanup: Cleanup,
}

impl SlideFiles {
    pub fn new(dir: &Path, id: &str) -> SlideFiles {
        let tiff = dir.join(format!("{id}.tiff"));
        let truth = dir.join(format!("{id}.truth.json"));
        let masks = dir.join(format!("{id}.masks"));
        let (tiff_tmp, truth_tmp, masks_tmp) =
            (temp_name(&tiff), temp_name(&truth), temp_name(&masks));
        let cleanup = Cleanup(vec![tiff_tmp.clone(), truth_tmp.clone(), masks_tmp.clone()]);
        SlideFiles {
            geojson: dir.join(format!("{id}.geojson")),
            tiff,
            truth,
            masks,
            tiff_tmp,
            truth_tmp,
            masks_tmp,
            cleanup,
        }
    }

    /// What was written, once committed.
    pub fn output(self, slide_id: String, class: SlideClass, seed: u64) -> SlideOutput {
        SlideOutput {
            slide_id,
            class,
            seed,
            tiff: self.tiff,
            truth: self.truth,
            masks: self.masks,
        }
    }

    /// Writes the masks and truth beside the finished TIFF, moves all three into
    /// place, then writes the QuPath GeoJSON of the masks.
    pub fn commit(
        &mut self,
        truth: &Truth,
        masks: &MaskGrid,
        width: u32,
        height: u32,
    ) -> Result<(), SynthError> {
        write_masks(&self.masks_tmp, masks)?;
        let json = serde_json::to_string_pretty(truth).map_err(|e| SynthError::Encode {
            path: self.truth.clone(),
            reason: e.to_string(),
        })?;
        fs::write(&self.truth_tmp, json + "\n").map_err(io(&self.truth_tmp, "cannot write"))?;
        if self.masks.exists() {
            fs::remove_dir_all(&self.masks)
                .map_err(io(&self.masks, "cannot replace the old masks folder"))?;
        }
        fs::rename(&self.masks_tmp, &self.masks)
            .map_err(io(&self.masks, "cannot rename into place"))?;
        fs::rename(&self.tiff_tmp, &self.tiff)
            .map_err(io(&self.tiff, "cannot rename into place"))?;
        fs::rename(&self.truth_tmp, &self.truth)
            .map_err(io(&self.truth, "cannot rename into place"))?;
        self.cleanup.0.clear();
        super::geojson::write_geojson(&self.geojson, masks, truth.mask_downsample, width, height)
    }
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

pub(super) fn write_manifest(dir: &Path, outs: &[SlideOutput]) -> Result<(), SynthError> {
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
