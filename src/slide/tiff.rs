//! The TIFF family: Aperio SVS, generic tiled or stripped TIFF, BigTIFF, OME-TIFF.
//!
//! Reads IFDs (main chain and SubIFDs) under the limits, sorts pages into pyramid
//! levels and associated images, and decodes tiles on demand (none, LZW, Deflate,
//! PackBits, JPEG with shared JPEGTables). It never decodes a level whole.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;

use super::cache::ChunkCache;
use super::grid::{
    check_region, copy_region, decode_jpeg_chunk_with, ChunkGrid, JpegColour, JpegError,
    SharedTables,
};
use super::metadata::{self, MppSource};
use super::{
    read_exact_at, AssociatedInfo, LevelInfo, Limits, Mpp, OpenOptions, Rect, SlideError,
    SlideFormat, SlideInfo, SlideReader,
};

const TAG_NEW_SUBFILE_TYPE: u16 = 254;
const TAG_WIDTH: u16 = 256;
const TAG_HEIGHT: u16 = 257;
const TAG_BITS_PER_SAMPLE: u16 = 258;
const TAG_COMPRESSION: u16 = 259;
const TAG_PHOTOMETRIC: u16 = 262;
const TAG_DESCRIPTION: u16 = 270;
const TAG_STRIP_OFFSETS: u16 = 273;
const TAG_SAMPLES_PER_PIXEL: u16 = 277;
const TAG_ROWS_PER_STRIP: u16 = 278;
const TAG_STRIP_BYTE_COUNTS: u16 = 279;
const TAG_X_RESOLUTION: u16 = 282;
const TAG_Y_RESOLUTION: u16 = 283;
const TAG_PLANAR_CONFIG: u16 = 284;
const TAG_RESOLUTION_UNIT: u16 = 296;
const TAG_PREDICTOR: u16 = 317;
const TAG_TILE_WIDTH: u16 = 322;
const TAG_TILE_LENGTH: u16 = 323;
const TAG_TILE_OFFSETS: u16 = 324;
const TAG_TILE_BYTE_COUNTS: u16 = 325;
const TAG_SUB_IFDS: u16 = 330;
const TAG_JPEG_TABLES: u16 = 347;

/// One IFD entry, value not yet read unless it was stored inline.
#[derive(Debug, Clone)]
struct Entry {
    typ: u16,
    count: u64,
    /// The inline value bytes, or the offset of the value.
    inline: Option<Vec<u8>>,
    offset: u64,
}

/// Low-level access to the file: byte order, offset width, limits.
struct TiffFile {
    path: PathBuf,
    file: File,
    len: u64,
    little: bool,
    big: bool,
    limits: Limits,
}

fn type_size(typ: u16) -> Option<u64> {
    Some(match typ {
        1 | 2 | 6 | 7 => 1,
        3 | 8 => 2,
        4 | 9 | 11 | 13 => 4,
        5 | 10 | 12 | 16 | 17 | 18 => 8,
        _ => return None,
    })
}

impl TiffFile {
    fn format_err(&self, reason: impl Into<String>) -> SlideError {
        SlideError::Format {
            path: self.path.clone(),
            format: "TIFF",
            reason: reason.into(),
        }
    }

    fn limit_err(&self, what: String, value: u64, limit: u64, name: &'static str) -> SlideError {
        SlideError::Limit {
            path: self.path.clone(),
            what,
            value,
            limit,
            name,
        }
    }

    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, SlideError> {
        let end = offset.checked_add(len);
        if end.is_none_or(|e| e > self.len) {
            return Err(self.format_err(format!(
                "data at offset {offset} ({len} bytes) runs past the end of the {}-byte file (truncated?)",
                self.len
            )));
        }
        let mut buf = vec![0u8; len as usize];
        read_exact_at(&self.file, &mut buf, offset).map_err(|source| SlideError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(buf)
    }

    fn u16(&self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        if self.little {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        }
    }

    fn u32(&self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.little {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    }

    fn u64(&self, b: &[u8]) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        if self.little {
            u64::from_le_bytes(a)
        } else {
            u64::from_be_bytes(a)
        }
    }

    /// Records a visit to the IFD at `offset`, refusing loops and more IFDs than the limit.
    fn visit_ifd(
        &self,
        seen: &mut HashSet<u64>,
        offset: u64,
        kind: &str,
    ) -> Result<(), SlideError> {
        if !seen.insert(offset) {
            return Err(self.format_err(format!("{kind} loop at offset {offset}")));
        }
        if seen.len() > self.limits.max_ifds {
            return Err(self.limit_err(
                "number of IFDs".into(),
                seen.len() as u64,
                self.limits.max_ifds as u64,
                "max_ifds",
            ));
        }
        Ok(())
    }

    /// Reads the IFD at `offset`: its entries and the offset of the next IFD.
    fn read_ifd(&self, offset: u64) -> Result<(HashMap<u16, Entry>, u64), SlideError> {
        let (count_size, entry_size, inline_size) = if self.big { (8, 20, 8) } else { (2, 12, 4) };
        let head = self.read_at(offset, count_size)?;
        let count = if self.big {
            self.u64(&head)
        } else {
            self.u16(&head) as u64
        };
        if count > self.limits.max_ifd_entries {
            return Err(self.limit_err(
                format!("IFD at offset {offset} entry count"),
                count,
                self.limits.max_ifd_entries,
                "max_ifd_entries",
            ));
        }
        let next_size = if self.big { 8 } else { 4 };
        let body = self.read_at(offset + count_size, count * entry_size + next_size)?;
        let mut entries = HashMap::new();
        for raw in body.chunks_exact(entry_size as usize).take(count as usize) {
            let tag = self.u16(&raw[0..2]);
            let typ = self.u16(&raw[2..4]);
            let (n, value) = if self.big {
                (self.u64(&raw[4..12]), &raw[12..20])
            } else {
                (self.u32(&raw[4..8]) as u64, &raw[8..12])
            };
            let Some(size) = type_size(typ) else {
                continue; // unknown types are skipped, as the TIFF spec asks
            };
            let bytes = n.saturating_mul(size);
            let entry = if bytes <= inline_size {
                Entry {
                    typ,
                    count: n,
                    inline: Some(value[..bytes as usize].to_vec()),
                    offset: 0,
                }
            } else {
                Entry {
                    typ,
                    count: n,
                    inline: None,
                    offset: if self.big {
                        self.u64(value)
                    } else {
                        self.u32(value) as u64
                    },
                }
            };
            entries.insert(tag, entry);
        }
        let tail = &body[(count * entry_size) as usize..];
        let next = if self.big {
            self.u64(tail)
        } else {
            self.u32(tail) as u64
        };
        Ok((entries, next))
    }

    fn value_bytes(&self, tag: u16, e: &Entry) -> Result<Vec<u8>, SlideError> {
        if let Some(v) = &e.inline {
            return Ok(v.clone());
        }
        let size = type_size(e.typ).unwrap_or(1);
        let bytes = e.count.saturating_mul(size);
        if bytes > self.limits.max_tag_bytes {
            return Err(self.limit_err(
                format!("tag {tag} value size"),
                bytes,
                self.limits.max_tag_bytes,
                "max_tag_bytes",
            ));
        }
        self.read_at(e.offset, bytes)
    }

    /// An integer array (BYTE, SHORT, LONG, LONG8, IFD types).
    fn uints(&self, tag: u16, e: &Entry) -> Result<Vec<u64>, SlideError> {
        let b = self.value_bytes(tag, e)?;
        let v = match e.typ {
            1 | 7 => b.iter().map(|&x| x as u64).collect(),
            3 => b.chunks_exact(2).map(|c| self.u16(c) as u64).collect(),
            4 | 13 => b.chunks_exact(4).map(|c| self.u32(c) as u64).collect(),
            16 | 18 => b.chunks_exact(8).map(|c| self.u64(c)).collect(),
            _ => return Err(self.format_err(format!("tag {tag} has non-integer type {}", e.typ))),
        };
        Ok(v)
    }

    fn rational(&self, tag: u16, e: &Entry) -> Result<f64, SlideError> {
        let b = self.value_bytes(tag, e)?;
        match e.typ {
            5 if b.len() >= 8 => {
                let (n, d) = (self.u32(&b[0..4]), self.u32(&b[4..8]));
                Ok(if d == 0 { 0.0 } else { n as f64 / d as f64 })
            }
            11 if b.len() >= 4 => Ok(f32::from_bits(self.u32(&b[0..4])) as f64),
            12 if b.len() >= 8 => Ok(f64::from_bits(self.u64(&b[0..8]))),
            _ => Ok(self.uints(tag, e)?.first().copied().unwrap_or(0) as f64),
        }
    }
}

/// How one page's pixels are cut into chunks (tiles, or strips as full-width tiles).
#[derive(Debug, Clone)]
struct Page {
    width: u64,
    height: u64,
    chunk_width: u64,
    chunk_height: u64,
    tiled: bool,
    offsets: Vec<u64>,
    counts: Vec<u64>,
    compression: u16,
    photometric: u16,
    samples: u16,
    predictor: u16,
    jpeg_tables: Option<SharedTables>,
    description: String,
    subfile_type: u64,
    x_resolution: Option<(f64, f64, u16)>,
}

impl Page {
    fn chunks_across(&self) -> u64 {
        self.width.div_ceil(self.chunk_width)
    }
}

/// A slide stored as TIFF, SVS, BigTIFF or OME-TIFF.
pub struct TiffSlide {
    file: TiffFile,
    info: SlideInfo,
    pages: Vec<Page>,
    /// Index into `pages` for each pyramid level.
    level_pages: Vec<usize>,
    /// Index into `pages` for each associated image, by name.
    associated_pages: Vec<(String, usize)>,
    cache: ChunkCache,
}

impl TiffSlide {
    pub fn open(path: &Path, file: File, options: &OpenOptions) -> Result<TiffSlide, SlideError> {
        let len = file
            .metadata()
            .map_err(|source| SlideError::Io {
                path: path.to_path_buf(),
                source,
            })?
            .len();
        let mut tf = TiffFile {
            path: path.to_path_buf(),
            file,
            len,
            little: true,
            big: false,
            limits: options.limits,
        };
        let header = tf.read_at(0, 8.min(len))?;
        if header.len() < 8 {
            return Err(tf.format_err("file shorter than a TIFF header"));
        }
        tf.little = &header[0..2] == b"II";
        let magic = tf.u16(&header[2..4]);
        let first = match magic {
            42 => tf.u32(&header[4..8]) as u64,
            43 => {
                tf.big = true;
                let h = tf.read_at(0, 16)?;
                if tf.u16(&h[4..6]) != 8 {
                    return Err(tf.format_err("BigTIFF offset size is not 8"));
                }
                tf.u64(&h[8..16])
            }
            _ => return Err(tf.format_err(format!("bad TIFF version {magic}"))),
        };

        // Walk the main chain, then each page's SubIFDs, refusing loops.
        let mut seen = HashSet::new();
        let mut main_chain = Vec::new();
        let mut offset = first;
        while offset != 0 {
            tf.visit_ifd(&mut seen, offset, "IFD")?;
            let (entries, next) = tf.read_ifd(offset)?;
            main_chain.push(entries);
            offset = next;
        }
        if main_chain.is_empty() {
            return Err(tf.format_err("no image (first IFD offset is 0)"));
        }
        let mut pages = Vec::new();
        let mut sub_of_first = Vec::new();
        for (i, entries) in main_chain.iter().enumerate() {
            pages.push(read_page(&tf, entries)?);
            if i == 0 {
                if let Some(e) = entries.get(&TAG_SUB_IFDS) {
                    for sub in tf.uints(TAG_SUB_IFDS, e)? {
                        tf.visit_ifd(&mut seen, sub, "SubIFD")?;
                        let (sub_entries, _) = tf.read_ifd(sub)?;
                        sub_of_first.push(read_page(&tf, &sub_entries)?);
                    }
                }
            }
        }
        if pages.len() + sub_of_first.len() > tf.limits.max_levels {
            return Err(tf.limit_err(
                "number of pages".into(),
                (pages.len() + sub_of_first.len()) as u64,
                tf.limits.max_levels as u64,
                "max_levels",
            ));
        }
        let main_count = pages.len();
        pages.extend(sub_of_first);
        let (level_pages, associated_pages, format, vendor) = classify(&pages, main_count, tf.big);
        let mut levels = Vec::new();
        let l0 = &pages[level_pages[0]];
        for &p in &level_pages {
            let page = &pages[p];
            levels.push(LevelInfo {
                width: page.width,
                height: page.height,
                downsample: (l0.width as f64 / page.width as f64
                    + l0.height as f64 / page.height as f64)
                    / 2.0,
            });
        }
        let description = &l0.description;
        let (mut mpp, mut mpp_source, mut objective_power) = (None, MppSource::Unknown, None);
        if metadata::is_aperio(description) {
            let h = metadata::parse_aperio(description);
            mpp = h.mpp.and_then(Mpp::square);
            objective_power = h.app_mag;
            if mpp.is_some() {
                mpp_source = MppSource::AperioDescription;
            }
        } else if metadata::is_ome_xml(description) {
            mpp = metadata::parse_ome_mpp(description);
            if mpp.is_some() {
                mpp_source = MppSource::OmeXml;
            }
            objective_power = ome_magnification(description);
        }
        if mpp.is_none() {
            if let Some((x, y, unit)) = l0.x_resolution {
                mpp = metadata::mpp_from_resolution(x, y, unit);
                if mpp.is_some() {
                    mpp_source = MppSource::TiffResolution;
                }
            }
        }
        if let Some(m) = options.mpp_override {
            mpp = Some(m);
            mpp_source = MppSource::Override;
        }
        let associated = associated_pages
            .iter()
            .map(|(name, p)| AssociatedInfo {
                name: name.clone(),
                width: pages[*p].width,
                height: pages[*p].height,
            })
            .collect();
        let info = SlideInfo {
            format,
            vendor,
            levels,
            mpp,
            mpp_source,
            objective_power,
            associated,
            background: [255, 255, 255],
        };
        Ok(TiffSlide {
            file: tf,
            info,
            pages,
            level_pages,
            associated_pages,
            cache: ChunkCache::new(options.cache_bytes),
        })
    }

    /// Decoded RGB8 pixels of one chunk, `chunk_width * chunk_rows * 3` bytes.
    fn chunk(&self, page_index: usize, chunk: usize) -> Result<Arc<Vec<u8>>, SlideError> {
        self.cache.get_or_decode((page_index, chunk), || {
            decode_chunk(&self.file, &self.pages[page_index], chunk)
        })
    }

    fn read_page_rect(&self, page_index: usize, rect: Rect) -> Result<RgbImage, SlideError> {
        check_region(&self.file.path, &self.file.limits, rect)?;
        let page = &self.pages[page_index];
        let grid = ChunkGrid {
            width: page.width,
            height: page.height,
            chunk_width: page.chunk_width,
            chunk_height: page.chunk_height,
        };
        copy_region(grid, rect, self.info.background, |index| {
            self.chunk(page_index, index)
        })
    }
}

impl SlideReader for TiffSlide {
    fn path(&self) -> &Path {
        &self.file.path
    }

    fn info(&self) -> &SlideInfo {
        &self.info
    }

    fn read_region(&self, level: usize, rect: Rect) -> Result<RgbImage, SlideError> {
        let page = *self
            .level_pages
            .get(level)
            .ok_or_else(|| SlideError::NoSuchLevel {
                path: self.file.path.clone(),
                level,
                levels: self.level_pages.len(),
            })?;
        self.read_page_rect(page, rect)
    }

    fn read_associated(&self, name: &str) -> Result<RgbImage, SlideError> {
        let (_, page) = self
            .associated_pages
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| SlideError::NoSuchAssociated {
                path: self.file.path.clone(),
                name: name.to_string(),
            })?;
        let p = &self.pages[*page];
        let pixels = p.width * p.height;
        if pixels > self.file.limits.max_whole_image_pixels {
            return Err(self.file.limit_err(
                format!("associated image '{name}' pixels"),
                pixels,
                self.file.limits.max_whole_image_pixels,
                "max_whole_image_pixels",
            ));
        }
        self.read_page_rect(*page, Rect::new(0, 0, p.width as u32, p.height as u32))
    }
}

fn ome_magnification(xml: &str) -> Option<f64> {
    let i = xml.find("NominalMagnification=\"")? + "NominalMagnification=\"".len();
    let end = xml[i..].find('"')? + i;
    xml[i..end]
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
}

fn read_page(tf: &TiffFile, entries: &HashMap<u16, Entry>) -> Result<Page, SlideError> {
    let uint = |tag: u16| -> Result<Option<u64>, SlideError> {
        match entries.get(&tag) {
            Some(e) => Ok(tf.uints(tag, e)?.first().copied()),
            None => Ok(None),
        }
    };
    let width = uint(TAG_WIDTH)?.ok_or_else(|| tf.format_err("page without ImageWidth"))?;
    let height = uint(TAG_HEIGHT)?.ok_or_else(|| tf.format_err("page without ImageLength"))?;
    let limits = &tf.limits;
    for (name, v) in [("width", width), ("height", height)] {
        if v == 0 {
            return Err(tf.format_err(format!("image {name} is 0")));
        }
        if v > limits.max_dimension {
            return Err(tf.limit_err(
                format!("image {name}"),
                v,
                limits.max_dimension,
                "max_dimension",
            ));
        }
    }
    let samples = uint(TAG_SAMPLES_PER_PIXEL)?.unwrap_or(1);
    let bits = match entries.get(&TAG_BITS_PER_SAMPLE) {
        Some(e) => tf.uints(TAG_BITS_PER_SAMPLE, e)?,
        None => vec![1],
    };
    let compression = uint(TAG_COMPRESSION)?.unwrap_or(1) as u16;
    let photometric = uint(TAG_PHOTOMETRIC)?.unwrap_or(if samples >= 3 { 2 } else { 1 }) as u16;
    let planar = uint(TAG_PLANAR_CONFIG)?.unwrap_or(1);
    let predictor = uint(TAG_PREDICTOR)?.unwrap_or(1) as u16;
    let unsupported = |reason: String| SlideError::Unsupported {
        path: tf.path.clone(),
        reason,
    };
    if !matches!(samples, 1 | 3 | 4) {
        return Err(unsupported(format!("{samples} samples per pixel")));
    }
    if bits.iter().any(|&b| b != 8) {
        return Err(unsupported(format!(
            "bits per sample {bits:?} (only 8-bit is read)"
        )));
    }
    if planar != 1 && samples > 1 {
        return Err(unsupported(
            "separate colour planes (PlanarConfiguration 2)".into(),
        ));
    }
    let tiled = entries.contains_key(&TAG_TILE_WIDTH);
    let (chunk_width, chunk_height, off_tag, cnt_tag) = if tiled {
        let tw = uint(TAG_TILE_WIDTH)?.unwrap_or(0);
        let th = uint(TAG_TILE_LENGTH)?.unwrap_or(0);
        if tw == 0 || th == 0 {
            return Err(tf.format_err(format!("zero tile size {tw}x{th}")));
        }
        (tw, th, TAG_TILE_OFFSETS, TAG_TILE_BYTE_COUNTS)
    } else {
        let rps = uint(TAG_ROWS_PER_STRIP)?.unwrap_or(height).clamp(1, height);
        (width, rps, TAG_STRIP_OFFSETS, TAG_STRIP_BYTE_COUNTS)
    };
    let chunk_pixels = chunk_width.saturating_mul(chunk_height);
    if chunk_pixels > limits.max_tile_pixels {
        return Err(tf.limit_err(
            format!("tile or strip of {chunk_width}x{chunk_height} pixels"),
            chunk_pixels,
            limits.max_tile_pixels,
            "max_tile_pixels",
        ));
    }
    let expected = width.div_ceil(chunk_width) * height.div_ceil(chunk_height);
    let read_array = |tag: u16, what: &str| -> Result<Vec<u64>, SlideError> {
        let e = entries
            .get(&tag)
            .ok_or_else(|| tf.format_err(format!("page without {what}")))?;
        if e.count < expected {
            return Err(tf.format_err(format!("{what} has {} entries, {expected} needed", e.count)));
        }
        tf.uints(tag, e)
    };
    let offsets = read_array(off_tag, "tile/strip offsets")?;
    let counts = read_array(cnt_tag, "tile/strip byte counts")?;
    if offsets.len() < expected as usize || counts.len() < expected as usize {
        return Err(tf.format_err("tile/strip arrays shorter than the image needs"));
    }
    let jpeg_tables = match entries.get(&TAG_JPEG_TABLES) {
        Some(e) => Some(SharedTables::new(tf.value_bytes(TAG_JPEG_TABLES, e)?)),
        None => None,
    };
    let description = match entries.get(&TAG_DESCRIPTION) {
        Some(e) => {
            let b = tf.value_bytes(TAG_DESCRIPTION, e)?;
            let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
            String::from_utf8_lossy(&b[..end]).into_owned()
        }
        None => String::new(),
    };
    let x_resolution = match (
        entries.get(&TAG_X_RESOLUTION),
        entries.get(&TAG_Y_RESOLUTION),
    ) {
        (Some(x), Some(y)) => Some((
            tf.rational(TAG_X_RESOLUTION, x)?,
            tf.rational(TAG_Y_RESOLUTION, y)?,
            uint(TAG_RESOLUTION_UNIT)?.unwrap_or(2) as u16,
        )),
        _ => None,
    };
    Ok(Page {
        width,
        height,
        chunk_width,
        chunk_height,
        tiled,
        offsets,
        counts,
        compression,
        photometric,
        samples: samples as u16,
        predictor,
        jpeg_tables,
        description,
        subfile_type: uint(TAG_NEW_SUBFILE_TYPE)?.unwrap_or(0),
        x_resolution,
    })
}

type Classified = (
    Vec<usize>,
    Vec<(String, usize)>,
    SlideFormat,
    Option<String>,
);

/// Sorts pages into pyramid levels (largest first) and named associated images.
// The reduced-level test keeps the NewSubfileType term for readability; clippy sees it as
// implied by the last term (it is), so the lint is silenced rather than the rule rewritten.
#[allow(clippy::overly_complex_bool_expr)]
fn classify(pages: &[Page], main_count: usize, big: bool) -> Classified {
    let first = &pages[0];
    let aperio = metadata::is_aperio(&first.description);
    let ome = metadata::is_ome_xml(&first.description);
    let mut levels = vec![0usize];
    let mut associated = Vec::new();
    let aspect = first.width as f64 / first.height as f64;
    let same_aspect = |p: &Page| {
        let a = p.width as f64 / p.height as f64;
        // Reduced levels round their sides, so allow a pixel's worth of drift.
        (a - aspect).abs() <= aspect * (2.0 / p.width.min(p.height) as f64).max(0.01)
    };
    for (i, p) in pages.iter().enumerate().skip(1) {
        let from_subifd = i >= main_count;
        if aperio {
            // Aperio: tiled pages are levels; the first stripped page is the thumbnail,
            // others are named in their description (label, macro).
            if p.tiled {
                levels.push(i);
            } else if let Some(name) = metadata::aperio_associated_name(&p.description) {
                associated.push((name.to_string(), i));
            } else if !associated.iter().any(|(n, _)| n == "thumbnail") {
                associated.push(("thumbnail".to_string(), i));
            } else {
                associated.push((format!("page-{i}"), i));
            }
        } else if p.subfile_type & 4 != 0 {
            // A transparency mask (NewSubfileType bit 2) is neither a level nor a picture.
            continue;
        } else if same_aspect(p) && p.width < first.width && (from_subifd || !ome) {
            // OME-TIFF keeps its pyramid in SubIFDs; other main-chain pages are other series.
            levels.push(i);
        } else {
            let lower = p.description.to_ascii_lowercase();
            let name = if lower.contains("label") {
                "label".to_string()
            } else if lower.contains("macro") {
                "macro".to_string()
            } else if lower.contains("thumbnail") {
                "thumbnail".to_string()
            } else {
                format!("page-{i}")
            };
            if !associated.iter().any(|(n, _)| *n == name) {
                associated.push((name, i));
            }
        }
    }
    levels.sort_by(|&a, &b| pages[b].width.cmp(&pages[a].width));
    levels.dedup_by(|a, b| pages[*a].width == pages[*b].width);
    let format = if aperio {
        SlideFormat::Aperio
    } else if ome {
        SlideFormat::OmeTiff
    } else if big {
        SlideFormat::BigTiff
    } else {
        SlideFormat::Tiff
    };
    let vendor = if aperio {
        Some("aperio".to_string())
    } else if ome {
        Some("ome".to_string())
    } else {
        None
    };
    (levels, associated, format, vendor)
}

/// Decodes one tile or strip into RGB8, `chunk_width * rows * 3` bytes, where rows is
/// the chunk height (or fewer for the last strip).
fn decode_chunk(tf: &TiffFile, page: &Page, index: usize) -> Result<Vec<u8>, SlideError> {
    let (offset, count) = (page.offsets[index], page.counts[index]);
    if count > tf.limits.max_tile_bytes {
        return Err(tf.limit_err(
            format!("tile {index} compressed size"),
            count,
            tf.limits.max_tile_bytes,
            "max_tile_bytes",
        ));
    }
    let width = page.chunk_width as usize;
    let rows = if page.tiled {
        page.chunk_height
    } else {
        page.chunk_height
            .min(page.height - (index as u64 / page.chunks_across()) * page.chunk_height)
    } as usize;
    let samples = page.samples as usize;
    let raw_len = width * rows * samples;
    if count == 0 {
        // Sparse tile (no data written): background, as OpenSlide and libtiff do.
        return Ok(vec![255u8; width * rows * 3]);
    }
    let data = tf.read_at(offset, count)?;
    let tile_err = |reason: String| tf.format_err(format!("tile {index}: {reason}"));
    let mut raw = match page.compression {
        7 => return decode_jpeg(tf, page, &data, width, rows, index),
        1 => data,
        5 => {
            let mut out = Vec::with_capacity(raw_len);
            let mut dec = weezl::decode::Decoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8);
            let result = dec.into_stream(&mut out).decode(&data[..]);
            // LZW streams often end without an EOI code; take what decoded so far.
            if let Err(e) = result.status {
                if out.len() < raw_len {
                    return Err(tile_err(format!("LZW: {e}")));
                }
            }
            out
        }
        8 | 32946 => {
            let mut out = Vec::with_capacity(raw_len);
            flate2::read::ZlibDecoder::new(&data[..])
                .take(raw_len as u64)
                .read_to_end(&mut out)
                .map_err(|e| tile_err(format!("Deflate: {e}")))?;
            out
        }
        32773 => unpack_bits(&data, raw_len),
        33003 | 33005 => {
            return Err(SlideError::Unsupported {
                path: tf.path.clone(),
                reason: "Aperio JPEG 2000 tiles (compression 33003/33005) are not supported".into(),
            })
        }
        c => {
            return Err(SlideError::Unsupported {
                path: tf.path.clone(),
                reason: format!("TIFF compression {c}"),
            })
        }
    };
    if raw.len() < raw_len {
        return Err(tile_err(format!(
            "decoded {} bytes, expected {raw_len}",
            raw.len()
        )));
    }
    raw.truncate(raw_len);
    if page.predictor == 2 {
        for row in raw.chunks_exact_mut(width * samples) {
            for i in samples..row.len() {
                row[i] = row[i].wrapping_add(row[i - samples]);
            }
        }
    }
    to_rgb(tf, page, raw)
}

fn to_rgb(tf: &TiffFile, page: &Page, raw: Vec<u8>) -> Result<Vec<u8>, SlideError> {
    match (page.samples, page.photometric) {
        (3, 2) => Ok(raw),
        (4, 2) => Ok(raw
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect()),
        (1, 1) => Ok(raw.iter().flat_map(|&g| [g, g, g]).collect()),
        (1, 0) => Ok(raw
            .iter()
            .flat_map(|&g| [255 - g, 255 - g, 255 - g])
            .collect()),
        (s, p) => Err(SlideError::Unsupported {
            path: tf.path.clone(),
            reason: format!("{s} samples with photometric interpretation {p} (uncompressed)"),
        }),
    }
}

fn unpack_bits(data: &[u8], limit: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(limit);
    let mut i = 0;
    while i < data.len() && out.len() < limit {
        let n = data[i] as i8;
        i += 1;
        if n >= 0 {
            let end = (i + n as usize + 1).min(data.len());
            out.extend_from_slice(&data[i..end]);
            i = end;
        } else if n != -128 {
            if let Some(&b) = data.get(i) {
                out.extend(std::iter::repeat_n(b, (1 - n as isize) as usize));
            }
            i += 1;
        }
    }
    out
}

/// JPEG-compressed chunk: with the page's shared JPEGTables (parsed once), decode with the colour
/// transform the photometric interpretation says (RGB tiles are not YCbCr).
fn decode_jpeg(
    tf: &TiffFile,
    page: &Page,
    data: &[u8],
    width: usize,
    rows: usize,
    index: usize,
) -> Result<Vec<u8>, SlideError> {
    let colour = match page.photometric {
        2 => JpegColour::Rgb,
        6 => JpegColour::YCbCr,
        _ => JpegColour::FromStream,
    };
    decode_jpeg_chunk_with(
        data,
        page.jpeg_tables.as_ref(),
        colour,
        width,
        rows,
        &tf.limits,
    )
    .map_err(|e| match e {
        JpegError::TooLarge(pixels) => tf.limit_err(
            format!("JPEG tile {index} pixels"),
            pixels,
            tf.limits.max_tile_pixels,
            "max_tile_pixels",
        ),
        JpegError::Bad(reason) => tf.format_err(format!("JPEG tile {index}: {reason}")),
    })
}
