//! The `report` stage: everything a scored slide leaves on disk, and the batch pages.
//!
//! It owns the report types (`report.json`'s schema), their serialisation and the
//! atomic write of every output. It never scores, reads slides or decides a call;
//! the score pipeline hands it finished results. Outputs are byte-identical for the
//! same inputs: structs serialise in field order, maps are sorted, CSV floats have a
//! fixed number of decimals.

pub mod audit;
pub mod csv;
pub mod geojson;
pub mod heatmap;
pub mod html;
pub mod json;
pub mod outputs;

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::aggregate::{AggregateParams, SlideResult};
use crate::pipeline::Stage;
use crate::qc::{QcOptions, QcReport};
use crate::slide::{LevelInfo, Mpp, MppSource, SlideFormat};
use crate::tiling::TilingOptions;
use crate::tissue::{MaskSource, TissueOptions};

pub use self::audit::{Audit, Configuration, FileDigest};

/// Version of `report.json`'s layout; bump on any change a reader would notice.
/// 2: the `audit` record.
pub const SCHEMA_VERSION: u32 = 2;

/// The notice every report carries.
pub const RESEARCH_NOTICE: &str =
    "Research use only, not a diagnostic device. The call is a morphological flag for review by a pathologist, never a diagnosis.";

/// Added to reports whose call is `dira-pattern`.
pub const IL1RN_NOTE: &str =
    "A DIRA-pattern call means: consider DIRA. Genetic testing of IL1RN confirms or excludes DIRA.";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: cannot write: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot encode: {reason}")]
    Encode { path: PathBuf, reason: String },
    #[error("{path}: cannot read: {reason}")]
    Read { path: PathBuf, reason: String },
}

impl ReportError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> ReportError {
        ReportError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Prefix of the temporary files [`write_atomic`] writes; a killed run can leave
/// them, and the next run into the same folder removes them.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Writes `bytes` to a temporary file beside `path`, then renames it into place,
/// so a reader never sees half a file and an interrupted run leaves none.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| ReportError::io(dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(|e| ReportError::io(path, e))?;
    tmp.write_all(bytes).map_err(|e| ReportError::io(path, e))?;
    // Temporary files are created private (0600); reports are ordinary files.
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| ReportError::io(path, e))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| ReportError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| ReportError::io(path, e.error))?;
    Ok(())
}

/// Encodes `image` as PNG and writes it atomically.
pub fn write_png(path: &Path, image: &image::RgbImage) -> Result<(), ReportError> {
    let bytes = png_bytes(image).map_err(|reason| ReportError::Encode {
        path: path.to_path_buf(),
        reason,
    })?;
    write_atomic(path, &bytes)
}

pub fn png_bytes(image: &image::RgbImage) -> Result<Vec<u8>, String> {
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    Ok(out.into_inner())
}

/// The tool that wrote a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
}

impl Default for ToolInfo {
    fn default() -> Self {
        ToolInfo {
            name: env!("CARGO_PKG_NAME").to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// The model that scored the slide (from its manifest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub classes: Vec<String>,
    pub tile_px: u32,
    pub mpp: f64,
}

/// The slide file and what the reader found in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlideMeta {
    pub id: String,
    pub path: String,
    pub sha256: Option<String>,
    pub size_bytes: u64,
    pub format: SlideFormat,
    pub width: u64,
    pub height: u64,
    pub levels: Vec<LevelInfo>,
    pub mpp: Option<Mpp>,
    pub mpp_source: MppSource,
}

/// Every resolved parameter, echoed so a report can be reproduced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parameters {
    pub tissue: TissueParams,
    pub tiling: TilingParams,
    pub qc: QcOptions,
    pub aggregate: AggregateParams,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TissueParams {
    pub mask_source: MaskSource,
    pub user_mask: Option<String>,
    pub target_mask_mpp: f64,
    pub open_radius: u32,
    pub close_radius: u32,
    pub min_component_mm2: f64,
    pub min_saturation: f64,
    /// Absent in reports written before the cap existed: no cap then (1.0).
    #[serde(default = "no_saturation_cap")]
    pub max_saturation: f64,
    /// Absent in reports written before 2026-12-05: opened, then closed.
    #[serde(default)]
    pub close_first: bool,
}

fn no_saturation_cap() -> f64 {
    1.0
}

impl TissueParams {
    pub fn new(o: &TissueOptions, source: MaskSource, user_mask: Option<&Path>) -> Self {
        TissueParams {
            mask_source: source,
            user_mask: user_mask.map(|p| p.display().to_string()),
            target_mask_mpp: o.target_mask_mpp,
            open_radius: o.open_radius,
            close_radius: o.close_radius,
            min_component_mm2: o.min_component_mm2,
            min_saturation: o.min_saturation,
            max_saturation: o.max_saturation,
            close_first: o.close_first,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TilingParams {
    pub tile_px: u32,
    pub model_mpp: f64,
    pub overlap_px: u32,
    pub min_tissue: f64,
}

impl From<&TilingOptions> for TilingParams {
    fn from(o: &TilingOptions) -> Self {
        TilingParams {
            tile_px: o.tile_px,
            model_mpp: o.model_mpp,
            overlap_px: o.overlap_px,
            min_tissue: o.min_tissue,
        }
    }
}

/// Tissue measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TissueSummary {
    pub area_mm2: Option<f64>,
    pub pen_area_mm2: Option<f64>,
    pub mask_width: u32,
    pub mask_height: u32,
    pub um_per_mask_px: Option<f64>,
}

/// Tile counts and where they were read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TileCounts {
    /// Every cell of the grid.
    pub grid: u64,
    pub cols: u32,
    pub rows: u32,
    /// Cells with enough tissue, all of them scored.
    pub scored: usize,
    pub level: usize,
    pub level_downsample: f64,
}

/// Wall-clock seconds per phase; kept apart so tests can drop it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub open_s: f64,
    /// Hashing the slide file. With two or more threads it runs on its own thread
    /// beside the tissue step, so it overlaps `tissue_s` (which then includes any
    /// wait for it).
    pub hash_s: f64,
    /// Thumbnail, tissue mask and slide-level QC.
    pub tissue_s: f64,
    /// The tile stream's stages, each summed over the worker threads that ran it. The
    /// workers run at once, so with more than one the sum can exceed `stream_s`. Reading tile regions: file reads, tile decoding, copying.
    pub decode_s: f64,
    /// Resampling regions to the model's tile size and scale.
    pub resample_s: f64,
    /// Per-tile QC (the Laplacian variance behind the blur flag).
    pub tile_qc_s: f64,
    /// `--normalise-stain`: measuring the slide's stain on its sampled tiles (one
    /// thread, before the stream) and mapping every tile (0 without the option).
    #[serde(default)]
    pub normalise_s: f64,
    /// Preprocessing to the model's tensor, and the model itself.
    pub inference_s: f64,
    /// Wall time of the tile stream (all of the above together).
    pub stream_s: f64,
    pub aggregate_s: f64,
    pub reports_s: f64,
    pub total_s: f64,
}

/// The whole of `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlideReport {
    pub schema_version: u32,
    pub notice: String,
    pub tool: ToolInfo,
    pub model: ModelInfo,
    pub slide: SlideMeta,
    pub parameters: Parameters,
    pub qc: QcReport,
    pub tissue: TissueSummary,
    pub tiles: TileCounts,
    pub result: SlideResult,
    /// The IL1RN note for a `dira-pattern` call, else absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Every other file of the slide folder with its size and sha256: a rerun
    /// reuses the folder only when all are there unchanged.
    #[serde(default)]
    pub files: Vec<outputs::OutputFile>,
    pub audit: Audit,
    pub timings: Timings,
}

/// One slide that failed, as `errors.csv` and the HTML page list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedSlide {
    pub slide_id: String,
    /// The slide's path as the batch was given it.
    pub path: String,
    pub stage: Stage,
    /// A short machine-readable kind (`format`, `limits`, `io`, ...).
    pub kind: String,
    /// The whole error, naming the file and the reason.
    pub message: String,
}

/// Sorts failures by slide id (then path) so the errors table is deterministic.
pub fn sort_failures(failures: &mut [FailedSlide]) {
    failures.sort_by(|a, b| (&a.slide_id, &a.path).cmp(&(&b.slide_id, &b.path)));
}

/// A colour per class key, fixed so maps and QuPath classes look the same everywhere.
pub fn class_color(key: &str) -> [u8; 3] {
    match key {
        crate::aggregate::PUSTULE => [240, 190, 0],
        crate::aggregate::ACANTHOLYSIS => [220, 50, 50],
        crate::aggregate::HIDRADENITIS => [40, 120, 240],
        crate::aggregate::PSORIASIFORM => [150, 70, 200],
        _ => [128, 128, 128],
    }
}

/// A file-name-safe version of a class key or slide id.
pub fn safe_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_leaves_only_the_final_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("a.txt");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.txt")]);
    }

    #[test]
    fn safe_names() {
        assert_eq!(safe_name("a b/c.svs"), "a_b_c.svs");
    }
}
