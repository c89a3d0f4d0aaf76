//! The `slide` stage: open a slide file by its magic bytes and read pixels on demand.
//!
//! It owns formats, metadata and decode limits; it never decodes a whole slide and
//! knows nothing of tissue, tiles or models.

mod cache;
mod dicom;
mod grid;
mod jpeg;
mod limits;
mod metadata;
mod raster;
mod tiff;
pub mod writer;

use std::fmt;
use std::path::{Path, PathBuf};

use image::RgbImage;
use serde::{Deserialize, Serialize};

pub use self::limits::Limits;
pub use self::metadata::MppSource;

/// Microns per pixel along x and y, always positive and finite.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Mpp {
    pub x: f64,
    pub y: f64,
}

impl Mpp {
    /// Both axes the same; `None` unless the value is positive and finite.
    pub fn square(value: f64) -> Option<Mpp> {
        Mpp::new(value, value)
    }

    /// `None` unless both values are positive and finite.
    pub fn new(x: f64, y: f64) -> Option<Mpp> {
        let ok = |v: f64| v.is_finite() && v > 0.0;
        (ok(x) && ok(y)).then_some(Mpp { x, y })
    }

    /// The mean of x and y, for code that works with square pixels.
    pub fn mean(&self) -> f64 {
        (self.x + self.y) / 2.0
    }
}

/// A rectangle in the pixel grid of one pyramid level (not level 0 unless the level is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Rect {
    pub x: i64,
    pub y: i64,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    pub fn new(x: i64, y: i64, width: u32, height: u32) -> Rect {
        Rect {
            x,
            y,
            width,
            height,
        }
    }
}

/// Which family of file a slide came from, decided by magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SlideFormat {
    Aperio,
    OmeTiff,
    Tiff,
    BigTiff,
    Png,
    Jpeg,
    Dicom,
}

impl fmt::Display for SlideFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            SlideFormat::Aperio => "aperio-svs",
            SlideFormat::OmeTiff => "ome-tiff",
            SlideFormat::Tiff => "tiff",
            SlideFormat::BigTiff => "bigtiff",
            SlideFormat::Png => "png",
            SlideFormat::Jpeg => "jpeg",
            SlideFormat::Dicom => "dicom",
        };
        f.write_str(name)
    }
}

/// One pyramid level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LevelInfo {
    pub width: u64,
    pub height: u64,
    /// Level-0 pixels per pixel of this level (the mean of x and y).
    pub downsample: f64,
}

/// An image stored beside the pyramid (thumbnail, label, macro).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssociatedInfo {
    pub name: String,
    pub width: u64,
    pub height: u64,
}

/// What a slide is, read from its headers without decoding pixels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlideInfo {
    pub format: SlideFormat,
    pub vendor: Option<String>,
    /// Pyramid levels, level 0 (largest) first, downsample increasing.
    pub levels: Vec<LevelInfo>,
    pub mpp: Option<Mpp>,
    pub mpp_source: MppSource,
    pub objective_power: Option<f64>,
    pub associated: Vec<AssociatedInfo>,
    /// The colour of empty glass, used to pad reads outside the image.
    pub background: [u8; 3],
}

impl SlideInfo {
    pub fn width(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.width)
    }

    pub fn height(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.height)
    }

    /// The MPP of level `level`, if the slide's MPP is known.
    pub fn level_mpp(&self, level: usize) -> Option<Mpp> {
        let (mpp, l0) = (self.mpp?, self.levels.first()?);
        let l = self.levels.get(level)?;
        Mpp::new(
            mpp.x * l0.width as f64 / l.width as f64,
            mpp.y * l0.height as f64 / l.height as f64,
        )
    }
}

/// Options for [`open`].
#[derive(Debug, Clone)]
pub struct OpenOptions {
    pub limits: Limits,
    /// Replaces whatever MPP the file stores (`--mpp`).
    pub mpp_override: Option<Mpp>,
    /// Bytes of decoded tiles kept per open slide (default 64 MiB).
    pub cache_bytes: usize,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            limits: Limits::default(),
            mpp_override: None,
            cache_bytes: 64 << 20,
        }
    }
}

/// A slide opened for reading: cheap metadata first, pixels on demand.
///
/// Implementations are `Send + Sync` so worker threads can read regions at once.
pub trait SlideReader: Send + Sync {
    fn path(&self) -> &Path;

    fn info(&self) -> &SlideInfo;

    /// RGB pixels of `rect` in the pixel grid of `level`. Parts of the
    /// rectangle outside the level are filled with the background colour.
    fn read_region(&self, level: usize, rect: Rect) -> Result<RgbImage, SlideError>;

    /// An associated image (thumbnail, label, macro) by name.
    fn read_associated(&self, name: &str) -> Result<RgbImage, SlideError>;

    /// The whole slide fitted within `max_side` pixels, decoded from the
    /// smallest level that is at least that large (never level 0 of a large slide
    /// unless it is the only level).
    fn thumbnail(&self, max_side: u32) -> Result<RgbImage, SlideError> {
        let info = self.info();
        let level = thumbnail_level(info, max_side);
        let l = info.levels[level];
        let image = self.read_region(level, Rect::new(0, 0, l.width as u32, l.height as u32))?;
        let scale = max_side as f64 / info.width().max(info.height()).max(1) as f64;
        let (w, h) = (
            ((info.width() as f64 * scale).round() as u32).max(1),
            ((info.height() as f64 * scale).round() as u32).max(1),
        );
        Ok(image::imageops::resize(
            &image,
            w,
            h,
            image::imageops::FilterType::Triangle,
        ))
    }
}

/// The smallest level whose longer side is still at least `max_side`, or level 0.
fn thumbnail_level(info: &SlideInfo, max_side: u32) -> usize {
    let mut best = 0;
    for (i, l) in info.levels.iter().enumerate() {
        if l.width.max(l.height) >= max_side as u64 {
            best = i;
        }
    }
    best
}

/// Every way opening or reading a slide can fail, sorted by whose fault it is.
#[derive(Debug, thiserror::Error)]
pub enum SlideError {
    #[error("{path}: cannot read the file: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a slide this tool reads ({reason})")]
    Unsupported { path: PathBuf, reason: String },
    #[error("{path}: malformed {format} file: {reason}")]
    Format {
        path: PathBuf,
        format: &'static str,
        reason: String,
    },
    #[error("{path}: refused: {what} is {value}, above the limit of {limit} ({name} in Limits)")]
    Limit {
        path: PathBuf,
        what: String,
        value: u64,
        limit: u64,
        name: &'static str,
    },
    #[error("{path}: level {level} does not exist (the slide has {levels})")]
    NoSuchLevel {
        path: PathBuf,
        level: usize,
        levels: usize,
    },
    #[error("{path}: no associated image named '{name}'")]
    NoSuchAssociated { path: PathBuf, name: String },
}

impl SlideError {
    /// A short machine-readable kind for error tables (`errors.csv`).
    pub fn kind(&self) -> &'static str {
        match self {
            SlideError::Io { .. } => "io",
            SlideError::Unsupported { .. } => "unsupported",
            SlideError::Format { .. } => "format",
            SlideError::Limit { .. } => "limits",
            SlideError::NoSuchLevel { .. } | SlideError::NoSuchAssociated { .. } => "usage",
        }
    }
}

/// Opens a slide, choosing the reader by the file's first bytes (never its extension).
///
/// A directory is read as a DICOM whole-slide image: the `.dcm` instances of one series.
pub fn open(path: &Path, options: &OpenOptions) -> Result<Box<dyn SlideReader>, SlideError> {
    let io = |source| SlideError::Io {
        path: path.to_path_buf(),
        source,
    };
    if check_file_kind(path)?.is_dir() {
        return Ok(Box::new(dicom::DicomSlide::open_dir(path, options)?));
    }
    let file = std::fs::File::open(path).map_err(io)?;
    let mut prefix = [0u8; 132];
    let n = read_prefix(&file, &mut prefix).map_err(io)?;
    let magic = &prefix[..n.min(8)];
    let reader: Box<dyn SlideReader> = if magic.starts_with(b"II*\0")
        || magic.starts_with(b"MM\0*")
        || magic.starts_with(b"II+\0")
        || magic.starts_with(b"MM\0+")
    {
        Box::new(tiff::TiffSlide::open(path, file, options)?)
    } else if magic.starts_with(b"\x89PNG\r\n\x1a\n") || magic.starts_with(b"\xff\xd8\xff") {
        Box::new(raster::RasterSlide::open(path, file, options)?)
    } else if dicom::has_magic(&prefix[..n]) {
        Box::new(dicom::DicomSlide::open_file(path, options)?)
    } else if n == 0 {
        return Err(SlideError::Unsupported {
            path: path.to_path_buf(),
            reason: "the file is empty".into(),
        });
    } else {
        return Err(SlideError::Unsupported {
            path: path.to_path_buf(),
            reason: "unknown file signature; expected TIFF/SVS/BigTIFF, DICOM, PNG or JPEG".into(),
        });
    };
    Ok(reader)
}

/// The metadata of `path` (links followed) when it is a regular file or a folder;
/// anything else (a named pipe, a socket, a device) is refused before it is opened,
/// since opening or reading it can block forever or never end.
pub fn check_file_kind(path: &Path) -> Result<std::fs::Metadata, SlideError> {
    let meta = std::fs::metadata(path).map_err(|source| SlideError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    match special_file_kind(&meta) {
        None => Ok(meta),
        Some(kind) => Err(SlideError::Unsupported {
            path: path.to_path_buf(),
            reason: format!("not a regular file but {kind}"),
        }),
    }
}

/// What `meta` describes when it is neither a regular file nor a folder.
pub fn special_file_kind(meta: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_file() || t.is_dir() {
        None
    } else if t.is_fifo() {
        Some("a named pipe (FIFO)")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else {
        Some("a special file")
    }
}

/// The DICOM Series Instance UID of the file at `path`, read from its header (for
/// grouping the files of a folder into slides); `None` when it has none or is not
/// DICOM.
pub fn dicom_series_uid(path: &Path, limits: &Limits) -> Option<String> {
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return None;
    }
    dicom::series_of(path, limits).filter(|s| !s.is_empty())
}

fn read_prefix(file: &std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Fills `out` from a positioned read, failing on a short file.
pub(crate) fn read_exact_at(
    file: &std::fs::File,
    out: &mut [u8],
    offset: u64,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(out, offset)
}

/// A human-readable table of a slide's metadata (for `dirascope inspect`).
pub fn describe(path: &Path, info: &SlideInfo) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "file             {}", path.display());
    let _ = writeln!(s, "format           {}", info.format);
    let _ = writeln!(
        s,
        "vendor           {}",
        info.vendor.as_deref().unwrap_or("-")
    );
    let _ = writeln!(s, "dimensions       {} x {}", info.width(), info.height());
    match info.mpp {
        Some(m) => {
            let _ = writeln!(
                s,
                "mpp              {:.4} x {:.4} µm/px ({})",
                m.x, m.y, info.mpp_source
            );
        }
        None => {
            let _ = writeln!(
                s,
                "mpp              unknown (pass --mpp to tile this slide)"
            );
        }
    }
    let power = info
        .objective_power
        .map_or("-".to_string(), |p| format!("{p}x"));
    let _ = writeln!(s, "objective power  {power}");
    let _ = writeln!(s, "levels           {}", info.levels.len());
    for (i, l) in info.levels.iter().enumerate() {
        let _ = writeln!(
            s,
            "  level {i:<2}       {} x {} (downsample {:.3})",
            l.width, l.height, l.downsample
        );
    }
    let _ = writeln!(s, "associated       {}", info.associated.len());
    for a in &info.associated {
        let _ = writeln!(s, "  {:<14} {} x {}", a.name, a.width, a.height);
    }
    s
}
