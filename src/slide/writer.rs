//! A streaming writer of pyramidal tiled TIFF (and BigTIFF), the format phantoms are saved in.
//!
//! Level 0 arrives in bands of whole tile rows; lower levels are built on the fly by
//! 2 × 2 box averaging, so no level is ever held whole. It writes only what the readers
//! in this stage read back, and never reads anything itself.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use super::Mpp;

/// How each tile is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileCompression {
    /// Baseline JPEG, 4:2:0 YCbCr, full JFIF stream per tile (as many scanners write).
    Jpeg { quality: u8 },
    /// zlib/Deflate (TIFF compression 8), lossless.
    Deflate,
    /// Uncompressed.
    None,
}

/// Where the reduced levels go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PyramidLayout {
    /// Each level is the next IFD in the main chain (Aperio, most generic pyramids).
    Pages,
    /// Reduced levels hang off level 0's SubIFDs tag (OME-TIFF, some converters).
    SubIfds,
}

/// Options for [`PyramidWriter`]; `Default` writes 256 px JPEG tiles at quality 85.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub tile_size: u32,
    pub compression: TileCompression,
    pub layout: PyramidLayout,
    /// Write BigTIFF (64-bit offsets) even when the file would fit classic TIFF.
    pub bigtiff: bool,
    /// Stored as X/YResolution in pixels per centimetre (ResolutionUnit 3).
    pub mpp: Option<Mpp>,
    /// ImageDescription of level 0 (for example an Aperio header or OME-XML).
    pub description: Option<String>,
    /// Stop adding levels once the longer side is at most this many pixels.
    pub min_level_side: u32,
    /// Colour used to pad partial edge tiles.
    pub background: [u8; 3],
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            tile_size: 256,
            compression: TileCompression::Jpeg { quality: 85 },
            layout: PyramidLayout::Pages,
            bigtiff: false,
            mpp: None,
            description: None,
            min_level_side: 256,
            background: [255, 255, 255],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: cannot write: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writer misuse: {0}")]
    Usage(String),
    #[error("JPEG encoding failed: {0}")]
    Jpeg(String),
}

struct Level {
    width: u32,
    height: u32,
    /// Pixel rows received but not yet written as a full tile row.
    pending: Vec<u8>,
    pending_rows: u32,
    rows_done: u32,
    offsets: Vec<u64>,
    counts: Vec<u64>,
}

impl Level {
    fn new(width: u32, height: u32) -> Level {
        Level {
            width,
            height,
            pending: Vec::new(),
            pending_rows: 0,
            rows_done: 0,
            offsets: Vec::new(),
            counts: Vec::new(),
        }
    }
}

/// Writes one pyramidal TIFF, band by band. Call [`PyramidWriter::push_rows`] with
/// level-0 rows top to bottom, then [`PyramidWriter::finish`].
pub struct PyramidWriter {
    out: BufWriter<File>,
    path: String,
    options: WriterOptions,
    levels: Vec<Level>,
    /// Level 0 row not yet paired for the 2×2 reduction into level 1, per level.
    carry: Vec<Option<Vec<u8>>>,
    pos: u64,
}

impl PyramidWriter {
    pub fn create(
        path: &Path,
        width: u32,
        height: u32,
        options: WriterOptions,
    ) -> Result<Self, WriteError> {
        if width == 0 || height == 0 {
            return Err(WriteError::Usage(format!(
                "image must be at least 1 x 1, got {width} x {height}"
            )));
        }
        if options.tile_size == 0 || !options.tile_size.is_multiple_of(16) {
            return Err(WriteError::Usage(format!(
                "tile size must be a positive multiple of 16, got {}",
                options.tile_size
            )));
        }
        let mut levels = vec![Level::new(width, height)];
        let (mut w, mut h) = (width, height);
        while w.max(h) > options.min_level_side.max(1) && w > 1 && h > 1 {
            w = w.div_ceil(2);
            h = h.div_ceil(2);
            levels.push(Level::new(w, h));
        }
        let io = |source| WriteError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = File::create(path).map_err(io)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        // Header with a placeholder first-IFD offset, patched in finish().
        let header: Vec<u8> = if options.bigtiff {
            let mut h = b"II+\0".to_vec();
            h.extend_from_slice(&8u16.to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes());
            h.extend_from_slice(&0u64.to_le_bytes());
            h
        } else {
            let mut h = b"II*\0".to_vec();
            h.extend_from_slice(&0u32.to_le_bytes());
            h
        };
        out.write_all(&header).map_err(io)?;
        let carry = levels.iter().map(|_| None).collect();
        Ok(PyramidWriter {
            out,
            path: path.display().to_string(),
            pos: header.len() as u64,
            options,
            levels,
            carry,
        })
    }

    /// Number of levels the file will hold.
    pub fn level_count(&self) -> usize {
        self.levels.len()
    }

    fn io(&self, source: std::io::Error) -> WriteError {
        WriteError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends level-0 rows (RGB8, `width * 3` bytes each), top to bottom.
    pub fn push_rows(&mut self, rgb: &[u8]) -> Result<(), WriteError> {
        let row_bytes = self.levels[0].width as usize * 3;
        if !rgb.len().is_multiple_of(row_bytes) {
            return Err(WriteError::Usage(format!(
                "band of {} bytes is not whole rows of {row_bytes} bytes",
                rgb.len()
            )));
        }
        for row in rgb.chunks_exact(row_bytes) {
            self.push_row(0, row)?;
        }
        Ok(())
    }

    fn push_row(&mut self, level: usize, row: &[u8]) -> Result<(), WriteError> {
        let l = &mut self.levels[level];
        if l.rows_done + l.pending_rows >= l.height {
            return Err(WriteError::Usage(format!(
                "more rows than the image height {} at level {level}",
                l.height
            )));
        }
        l.pending.extend_from_slice(row);
        l.pending_rows += 1;
        let full =
            l.pending_rows == self.options.tile_size || l.rows_done + l.pending_rows == l.height;
        if full {
            self.flush_tile_row(level)?;
        }
        if level + 1 < self.levels.len() {
            let last_row = self.levels[level].rows_done + self.levels[level].pending_rows
                == self.levels[level].height;
            match self.carry[level].take() {
                Some(upper) => {
                    let reduced = reduce_rows(&upper, row);
                    self.push_row(level + 1, &reduced)?;
                }
                None if last_row => {
                    let reduced = reduce_rows(row, row);
                    self.push_row(level + 1, &reduced)?;
                }
                None => self.carry[level] = Some(row.to_vec()),
            }
        }
        Ok(())
    }

    fn flush_tile_row(&mut self, level: usize) -> Result<(), WriteError> {
        let ts = self.options.tile_size as usize;
        let (width, rows) = (
            self.levels[level].width as usize,
            self.levels[level].pending_rows as usize,
        );
        let pending = std::mem::take(&mut self.levels[level].pending);
        let across = width.div_ceil(ts);
        let mut tile = vec![0u8; ts * ts * 3];
        for tx in 0..across {
            for px in tile.chunks_exact_mut(3) {
                px.copy_from_slice(&self.options.background);
            }
            let x0 = tx * ts;
            let w = ts.min(width - x0);
            for r in 0..rows {
                let src = &pending[(r * width + x0) * 3..(r * width + x0 + w) * 3];
                tile[r * ts * 3..r * ts * 3 + w * 3].copy_from_slice(src);
            }
            let bytes = self.encode_tile(&tile)?;
            let offset = self.pos;
            self.out.write_all(&bytes).map_err(|e| self.io(e))?;
            self.pos += bytes.len() as u64;
            let l = &mut self.levels[level];
            l.offsets.push(offset);
            l.counts.push(bytes.len() as u64);
        }
        let l = &mut self.levels[level];
        l.rows_done += l.pending_rows;
        l.pending_rows = 0;
        Ok(())
    }

    fn encode_tile(&self, tile: &[u8]) -> Result<Vec<u8>, WriteError> {
        let ts = self.options.tile_size as u16;
        match self.options.compression {
            TileCompression::None => Ok(tile.to_vec()),
            TileCompression::Deflate => {
                let mut enc =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
                enc.write_all(tile).map_err(|e| self.io(e))?;
                enc.finish().map_err(|e| self.io(e))
            }
            TileCompression::Jpeg { quality } => {
                let mut out = Vec::new();
                let mut enc = jpeg_encoder::Encoder::new(&mut out, quality);
                enc.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
                enc.encode(tile, ts, ts, jpeg_encoder::ColorType::Rgb)
                    .map_err(|e| WriteError::Jpeg(e.to_string()))?;
                Ok(out)
            }
        }
    }

    /// Writes the IFDs and closes the file. Every level-0 row must have been pushed.
    pub fn finish(mut self) -> Result<(), WriteError> {
        let l0 = &self.levels[0];
        if l0.rows_done != l0.height {
            return Err(WriteError::Usage(format!(
                "finish() after {} of {} rows",
                l0.rows_done, l0.height
            )));
        }
        // Every level reached its last row through the reduction chain.
        for (i, l) in self.levels.iter().enumerate() {
            if l.rows_done != l.height {
                return Err(WriteError::Usage(format!(
                    "level {i} incomplete: {} of {} rows",
                    l.rows_done, l.height
                )));
            }
        }
        let big = self.options.bigtiff;
        if !big && self.pos > u32::MAX as u64 - (1 << 24) {
            return Err(WriteError::Usage(
                "file too large for classic TIFF; set bigtiff".into(),
            ));
        }
        // Lay out the IFDs after the tile data. SubIFD levels are written first so
        // level 0's SubIFDs tag can point at them.
        let n = self.levels.len();
        let mut ifd_offsets = vec![0u64; n];
        let mut blobs: Vec<Vec<u8>> = vec![Vec::new(); n];
        // Two passes: sizes do not depend on offsets, so compute layout with dummy offsets.
        for _pass in 0..2 {
            let mut pos = self.pos + (self.pos & 1);
            let order: Vec<usize> = match self.options.layout {
                PyramidLayout::Pages => (0..n).collect(),
                PyramidLayout::SubIfds => (1..n).chain(std::iter::once(0)).collect(),
            };
            for &i in &order {
                ifd_offsets[i] = pos;
                let next = match self.options.layout {
                    PyramidLayout::Pages if i + 1 < n => ifd_offsets[i + 1],
                    _ => 0,
                };
                let subifds: Vec<u64> = match self.options.layout {
                    PyramidLayout::SubIfds if i == 0 => ifd_offsets[1..].to_vec(),
                    _ => Vec::new(),
                };
                blobs[i] = self.build_ifd(i, pos, next, &subifds);
                pos += blobs[i].len() as u64;
                pos += pos & 1;
            }
        }
        let order: Vec<usize> = match self.options.layout {
            PyramidLayout::Pages => (0..n).collect(),
            PyramidLayout::SubIfds => (1..n).chain(std::iter::once(0)).collect(),
        };
        for &i in &order {
            let pad = (ifd_offsets[i] - self.pos) as usize;
            self.out
                .write_all(&vec![0u8; pad])
                .map_err(|e| self.io(e))?;
            self.pos += pad as u64;
            let blob = std::mem::take(&mut blobs[i]);
            self.out.write_all(&blob).map_err(|e| self.io(e))?;
            self.pos += blob.len() as u64;
        }
        let first = ifd_offsets[0];
        let patch_at = if big { 8 } else { 4 };
        let mut file = self.out.into_inner().map_err(|e| WriteError::Io {
            path: self.path.clone(),
            source: e.into_error(),
        })?;
        let io = |source| WriteError::Io {
            path: self.path.clone(),
            source,
        };
        file.seek(SeekFrom::Start(patch_at)).map_err(io)?;
        if big {
            file.write_all(&first.to_le_bytes()).map_err(io)?;
        } else {
            file.write_all(&(first as u32).to_le_bytes()).map_err(io)?;
        }
        file.sync_all().map_err(io)?;
        Ok(())
    }

    /// One IFD with its out-of-line values, laid out to start at `at`.
    fn build_ifd(&self, level: usize, at: u64, next: u64, subifds: &[u64]) -> Vec<u8> {
        let l = &self.levels[level];
        let big = self.options.bigtiff;
        let ts = self.options.tile_size;
        let compression = match self.options.compression {
            TileCompression::None => 1u16,
            TileCompression::Jpeg { .. } => 7,
            TileCompression::Deflate => 8,
        };
        let photometric = match self.options.compression {
            TileCompression::Jpeg { .. } => 6u16,
            _ => 2,
        };
        let mut entries: Vec<Entry> = vec![
            Entry::short(254, vec![if level == 0 { 0 } else { 1 }]),
            Entry::long(256, vec![l.width as u64]),
            Entry::long(257, vec![l.height as u64]),
            Entry::short(258, vec![8, 8, 8]),
            Entry::short(259, vec![compression]),
            Entry::short(262, vec![photometric]),
            Entry::short(277, vec![3]),
            Entry::short(284, vec![1]),
            Entry::short(322, vec![ts as u16]),
            Entry::short(323, vec![ts as u16]),
            Entry::offsets(324, l.offsets.clone(), big),
            Entry::offsets(325, l.counts.clone(), big),
        ];
        if level == 0 {
            if let Some(d) = &self.options.description {
                entries.push(Entry::ascii(270, d));
            }
            entries.push(Entry::ascii(
                305,
                concat!("dirascope ", env!("CARGO_PKG_VERSION")),
            ));
        }
        if let Some(mpp) = self.options.mpp {
            let down = self.levels[0].width as f64 / l.width as f64;
            // pixels per centimetre = 10_000 µm / (µm per pixel)
            entries.push(Entry::rational(282, 10_000.0 / (mpp.x * down)));
            entries.push(Entry::rational(283, 10_000.0 / (mpp.y * down)));
            entries.push(Entry::short(296, vec![3]));
        }
        if photometric == 6 {
            entries.push(Entry::short(530, vec![2, 2]));
        }
        if !subifds.is_empty() {
            entries.push(Entry::offsets(330, subifds.to_vec(), big));
        }
        entries.sort_by_key(|e| e.tag);
        encode_ifd(&entries, at, next, big)
    }
}

/// Averages two rows (2×2 box) into one row of half the width (rounded up).
fn reduce_rows(a: &[u8], b: &[u8]) -> Vec<u8> {
    let w = a.len() / 3;
    let half = w.div_ceil(2);
    let mut out = Vec::with_capacity(half * 3);
    for x in 0..half {
        let x1 = (2 * x + 1).min(w - 1);
        for c in 0..3 {
            let s = a[2 * x * 3 + c] as u32
                + a[x1 * 3 + c] as u32
                + b[2 * x * 3 + c] as u32
                + b[x1 * 3 + c] as u32;
            out.push(((s + 2) / 4) as u8);
        }
    }
    out
}

struct Entry {
    tag: u16,
    typ: u16,
    count: u64,
    data: Vec<u8>,
}

impl Entry {
    fn short(tag: u16, v: Vec<u16>) -> Entry {
        Entry {
            tag,
            typ: 3,
            count: v.len() as u64,
            data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
    fn long(tag: u16, v: Vec<u64>) -> Entry {
        Entry {
            tag,
            typ: 4,
            count: v.len() as u64,
            data: v.iter().flat_map(|&x| (x as u32).to_le_bytes()).collect(),
        }
    }
    fn offsets(tag: u16, v: Vec<u64>, big: bool) -> Entry {
        if big {
            Entry {
                tag,
                typ: 16,
                count: v.len() as u64,
                data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            }
        } else {
            Entry::long(tag, v)
        }
    }
    fn ascii(tag: u16, s: &str) -> Entry {
        let mut data = s.as_bytes().to_vec();
        data.push(0);
        Entry {
            tag,
            typ: 2,
            count: data.len() as u64,
            data,
        }
    }
    fn rational(tag: u16, v: f64) -> Entry {
        let den = 1000u32;
        let num = (v * den as f64).round().clamp(1.0, u32::MAX as f64) as u32;
        Entry {
            tag,
            typ: 5,
            count: 1,
            data: [num.to_le_bytes(), den.to_le_bytes()].concat(),
        }
    }
}

fn encode_ifd(entries: &[Entry], at: u64, next: u64, big: bool) -> Vec<u8> {
    let (count_size, entry_size, inline, next_size) = if big {
        (8usize, 20usize, 8usize, 8usize)
    } else {
        (2, 12, 4, 4)
    };
    let head = count_size + entries.len() * entry_size + next_size;
    let mut out = Vec::with_capacity(head);
    let mut extra: Vec<u8> = Vec::new();
    if big {
        out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    } else {
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    }
    for e in entries {
        out.extend_from_slice(&e.tag.to_le_bytes());
        out.extend_from_slice(&e.typ.to_le_bytes());
        if big {
            out.extend_from_slice(&e.count.to_le_bytes());
        } else {
            out.extend_from_slice(&(e.count as u32).to_le_bytes());
        }
        if e.data.len() <= inline {
            let mut v = e.data.clone();
            v.resize(inline, 0);
            out.extend_from_slice(&v);
        } else {
            let off = at + head as u64 + extra.len() as u64;
            if big {
                out.extend_from_slice(&off.to_le_bytes());
            } else {
                out.extend_from_slice(&(off as u32).to_le_bytes());
            }
            extra.extend_from_slice(&e.data);
            if extra.len() % 2 == 1 {
                extra.push(0);
            }
        }
    }
    if big {
        out.extend_from_slice(&next.to_le_bytes());
    } else {
        out.extend_from_slice(&(next as u32).to_le_bytes());
    }
    out.extend_from_slice(&extra);
    out
}
