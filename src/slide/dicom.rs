//! DICOM whole-slide images (VL Whole Slide Microscopy Image IOD), parsed in pure Rust.
//!
//! Owns the DICOM file format: the preamble and File Meta group, explicit and implicit
//! VR little endian data sets with nested sequences, encapsulated (JPEG baseline) and
//! native pixel data, and gathering the instances of one series into pyramid levels and
//! associated images. At open it records where each frame lies in its file; it never
//! loads pixel data before `read_region` asks and never decodes a level whole.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;

use super::cache::ChunkCache;
use super::grid::{check_region, copy_region, decode_jpeg_chunk, ChunkGrid, JpegColour, JpegError};
use super::metadata::MppSource;
use super::{
    read_exact_at, AssociatedInfo, LevelInfo, Limits, Mpp, OpenOptions, Rect, SlideError,
    SlideFormat, SlideInfo, SlideReader,
};

const FORMAT: &str = "DICOM";

/// Sequences nest at most this deep; deeper nesting is refused (stack safety, not memory).
const MAX_SEQUENCE_DEPTH: usize = 16;

/// VL Whole Slide Microscopy Image Storage.
const WSI_SOP_CLASS: &str = "1.2.840.10008.5.1.4.1.1.77.1.6";

const TS_IMPLICIT_LE: &str = "1.2.840.10008.1.2";
const TS_EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const TS_JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";

/// A tag as `(group << 16) | element`.
type Tag = u32;

const fn tag(group: u16, element: u16) -> Tag {
    ((group as u32) << 16) | element as u32
}

const TRANSFER_SYNTAX: Tag = tag(0x0002, 0x0010);
const IMAGE_TYPE: Tag = tag(0x0008, 0x0008);
const SOP_CLASS: Tag = tag(0x0008, 0x0016);
const MANUFACTURER: Tag = tag(0x0008, 0x0070);
const SERIES_UID: Tag = tag(0x0020, 0x000E);
const CONCATENATION_FRAME_OFFSET: Tag = tag(0x0020, 0x9228);
const DIMENSION_ORGANIZATION_TYPE: Tag = tag(0x0020, 0x9311);
const SAMPLES_PER_PIXEL: Tag = tag(0x0028, 0x0002);
const PHOTOMETRIC: Tag = tag(0x0028, 0x0004);
const PLANAR_CONFIGURATION: Tag = tag(0x0028, 0x0006);
const NUMBER_OF_FRAMES: Tag = tag(0x0028, 0x0008);
const ROWS: Tag = tag(0x0028, 0x0010);
const COLUMNS: Tag = tag(0x0028, 0x0011);
const PIXEL_SPACING: Tag = tag(0x0028, 0x0030);
const BITS_ALLOCATED: Tag = tag(0x0028, 0x0100);
const PIXEL_MEASURES_SEQUENCE: Tag = tag(0x0028, 0x9110);
const IMAGED_VOLUME_WIDTH: Tag = tag(0x0048, 0x0001);
const IMAGED_VOLUME_HEIGHT: Tag = tag(0x0048, 0x0002);
const TOTAL_COLUMNS: Tag = tag(0x0048, 0x0006);
const TOTAL_ROWS: Tag = tag(0x0048, 0x0007);
const OPTICAL_PATH_SEQUENCE: Tag = tag(0x0048, 0x0105);
const OBJECTIVE_LENS_POWER: Tag = tag(0x0048, 0x0112);
const PLANE_POSITION_SLIDE_SEQUENCE: Tag = tag(0x0048, 0x021A);
const COLUMN_POSITION: Tag = tag(0x0048, 0x021E);
const ROW_POSITION: Tag = tag(0x0048, 0x021F);
const SHARED_FUNCTIONAL_GROUPS: Tag = tag(0x5200, 0x9229);
const PER_FRAME_FUNCTIONAL_GROUPS: Tag = tag(0x5200, 0x9230);
const EXTENDED_OFFSET_TABLE: Tag = tag(0x7FE0, 0x0001);
const EXTENDED_OFFSET_TABLE_LENGTHS: Tag = tag(0x7FE0, 0x0002);
const PIXEL_DATA: Tag = tag(0x7FE0, 0x0010);
const ITEM: Tag = tag(0xFFFE, 0xE000);
const ITEM_DELIMITATION: Tag = tag(0xFFFE, 0xE00D);
const SEQUENCE_DELIMITATION: Tag = tag(0xFFFE, 0xE0DD);

const UNDEFINED_LENGTH: u32 = 0xFFFF_FFFF;

/// True when `prefix` (the file's first bytes) has `DICM` after the 128-byte preamble.
pub fn has_magic(prefix: &[u8]) -> bool {
    prefix.len() >= 132 && &prefix[128..132] == b"DICM"
}

/// The VR implicit VR little endian files leave out, for the tags this reader uses.
/// Tags not listed are skipped by length, or walked as sequences when the length is
/// undefined (PS3.5 7.5: an undefined length outside pixel data means a sequence).
fn implicit_vr(t: Tag) -> [u8; 2] {
    match t {
        IMAGE_TYPE | PHOTOMETRIC | DIMENSION_ORGANIZATION_TYPE => *b"CS",
        SOP_CLASS | SERIES_UID | TRANSFER_SYNTAX => *b"UI",
        MANUFACTURER => *b"LO",
        SAMPLES_PER_PIXEL | PLANAR_CONFIGURATION | ROWS | COLUMNS | BITS_ALLOCATED => *b"US",
        NUMBER_OF_FRAMES => *b"IS",
        PIXEL_SPACING | OBJECTIVE_LENS_POWER => *b"DS",
        IMAGED_VOLUME_WIDTH | IMAGED_VOLUME_HEIGHT => *b"FL",
        TOTAL_COLUMNS | TOTAL_ROWS | CONCATENATION_FRAME_OFFSET => *b"UL",
        COLUMN_POSITION | ROW_POSITION => *b"SL",
        EXTENDED_OFFSET_TABLE | EXTENDED_OFFSET_TABLE_LENGTHS => *b"OV",
        PIXEL_DATA => *b"OW",
        SHARED_FUNCTIONAL_GROUPS
        | PER_FRAME_FUNCTIONAL_GROUPS
        | PIXEL_MEASURES_SEQUENCE
        | OPTICAL_PATH_SEQUENCE
        | PLANE_POSITION_SLIDE_SEQUENCE => *b"SQ",
        _ => *b"UN",
    }
}

/// Explicit VRs whose length field is 4 bytes after 2 reserved bytes (PS3.5 7.1.2).
const LONG_VRS: [&[u8; 2]; 13] = [
    b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV",
];

/// The other VRs of PS3.5 6.2, with a 2-byte length.
const SHORT_VRS: [&[u8; 2]; 21] = [
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN",
    b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
];

fn has_long_length(vr: [u8; 2]) -> bool {
    LONG_VRS.contains(&&vr)
}

fn is_known_vr(vr: [u8; 2]) -> bool {
    has_long_length(vr) || SHORT_VRS.contains(&&vr)
}

/// How a frame's compressed bytes are stored in the pixel data element.
#[derive(Debug, Clone, Default)]
enum PixelData {
    #[default]
    Absent,
    /// Encapsulated: the Basic Offset Table, then fragments (file offset, length).
    Encapsulated {
        basic_offsets: Vec<u64>,
        fragments: Vec<(u64, u32)>,
        /// Offset of each fragment's item tag relative to the first fragment's.
        fragment_starts: Vec<u64>,
    },
    /// Native: frames back to back from `offset`, `len` bytes in all.
    Native { offset: u64, len: u64 },
}

/// What one instance's header says, before any check.
#[derive(Debug, Clone, Default)]
struct Header {
    transfer_syntax: String,
    sop_class: Option<String>,
    image_type: Option<String>,
    series_uid: Option<String>,
    manufacturer: Option<String>,
    samples: Option<i64>,
    photometric: Option<String>,
    planar: Option<i64>,
    frames: Option<i64>,
    rows: Option<i64>,
    columns: Option<i64>,
    bits_allocated: Option<i64>,
    total_columns: Option<i64>,
    total_rows: Option<i64>,
    organization: Option<String>,
    shared_spacing: Option<(f64, f64)>,
    first_frame_spacing: Option<(f64, f64)>,
    imaged_volume: (Option<f64>, Option<f64>),
    objective_power: Option<f64>,
    concatenation_offset: Option<i64>,
    /// 1-based (column, row) of each frame's top-left pixel in the total pixel matrix,
    /// from PerFrameFunctionalGroupsSequence > PlanePositionSlideSequence.
    positions: Vec<(Option<i64>, Option<i64>)>,
    extended_offsets: Option<Vec<u64>>,
    extended_lengths: Option<Vec<u64>>,
    pixel_data: PixelData,
}

/// Buffered, bounds-checked sequential reading of one file's header.
struct Source<'a> {
    path: &'a Path,
    reader: BufReader<&'a File>,
    pos: u64,
    len: u64,
    limits: &'a Limits,
}

impl Source<'_> {
    fn format_err(&self, reason: impl Into<String>) -> SlideError {
        format_err(self.path, reason)
    }

    fn io_err(&self, source: std::io::Error) -> SlideError {
        SlideError::Io {
            path: self.path.to_path_buf(),
            source,
        }
    }

    fn ensure(&self, n: u64) -> Result<(), SlideError> {
        if self.pos.checked_add(n).is_none_or(|end| end > self.len) {
            return Err(self.format_err(format!(
                "{n} bytes at offset {} run past the end of the {}-byte file (truncated?)",
                self.pos, self.len
            )));
        }
        Ok(())
    }

    fn bytes(&mut self, n: u64) -> Result<Vec<u8>, SlideError> {
        self.ensure(n)?;
        if n > self.limits.max_tag_bytes {
            return Err(SlideError::Limit {
                path: self.path.to_path_buf(),
                what: format!("DICOM element at offset {} length", self.pos),
                value: n,
                limit: self.limits.max_tag_bytes,
                name: "max_tag_bytes",
            });
        }
        let mut buf = vec![0u8; n as usize];
        self.reader
            .read_exact(&mut buf)
            .map_err(|e| self.io_err(e))?;
        self.pos += n;
        Ok(buf)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SlideError> {
        self.ensure(N as u64)?;
        let mut buf = [0u8; N];
        self.reader
            .read_exact(&mut buf)
            .map_err(|e| self.io_err(e))?;
        self.pos += N as u64;
        Ok(buf)
    }

    fn u16(&mut self) -> Result<u16, SlideError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, SlideError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn tag(&mut self) -> Result<Tag, SlideError> {
        let group = self.u16()?;
        let element = self.u16()?;
        Ok(tag(group, element))
    }

    fn skip(&mut self, n: u64) -> Result<(), SlideError> {
        self.ensure(n)?;
        let delta = i64::try_from(n).map_err(|_| self.format_err("absurd element length"))?;
        self.reader
            .seek_relative(delta)
            .map_err(|e| self.io_err(e))?;
        self.pos += n;
        Ok(())
    }

    fn peek_tag(&mut self) -> Result<Option<Tag>, SlideError> {
        if self.pos + 4 > self.len {
            return Ok(None);
        }
        let t = self.tag()?;
        self.reader.seek_relative(-4).map_err(|e| self.io_err(e))?;
        self.pos -= 4;
        Ok(Some(t))
    }
}

fn format_err(path: &Path, reason: impl Into<String>) -> SlideError {
    SlideError::Format {
        path: path.to_path_buf(),
        format: FORMAT,
        reason: reason.into(),
    }
}

fn unsupported(path: &Path, reason: impl Into<String>) -> SlideError {
    SlideError::Unsupported {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// A text value without its padding (trailing spaces and NULs).
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_end_matches(['\0', ' '])
        .trim_start()
        .to_string()
}

/// Every numeric value of an element, whatever VR stores it.
fn numbers(vr: [u8; 2], bytes: &[u8]) -> Vec<f64> {
    match &vr {
        b"US" => bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as f64)
            .collect(),
        b"SS" => bytes
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]) as f64)
            .collect(),
        b"UL" => bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect(),
        b"SL" => bytes
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect(),
        b"FL" => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect(),
        b"FD" => bytes
            .chunks_exact(8)
            .filter_map(|c| c.try_into().ok().map(f64::from_le_bytes))
            .collect(),
        // IS, DS and anything else held as text: backslash-separated decimals.
        _ => text(bytes)
            .split('\\')
            .filter_map(|v| v.trim().parse::<f64>().ok())
            .collect(),
    }
}

/// The first value as an integer, when it is one.
fn integer(vr: [u8; 2], bytes: &[u8]) -> Option<i64> {
    let v = *numbers(vr, bytes).first()?;
    (v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15).then_some(v as i64)
}

fn u64_array(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .filter_map(|c| c.try_into().ok().map(u64::from_le_bytes))
        .collect()
}

/// Where the parser is: the sequence tags and item numbers above the current element.
type Stack = Vec<(Tag, u64)>;

struct Parser<'a, 'b> {
    src: Source<'a>,
    implicit: bool,
    header: &'b mut Header,
    /// Stop at the first top-level element past this tag (a cheap look at the series).
    stop_after: Option<Tag>,
}

impl Parser<'_, '_> {
    /// Reads an element header: (tag, VR, length); items and delimiters have VR `b"  "`.
    fn element_header(&mut self, implicit: bool) -> Result<(Tag, [u8; 2], u32), SlideError> {
        let t = self.src.tag()?;
        if t >> 16 == 0xFFFE {
            return Ok((t, *b"  ", self.src.u32()?));
        }
        if implicit {
            return Ok((t, implicit_vr(t), self.src.u32()?));
        }
        let vr: [u8; 2] = self.src.array()?;
        if !is_known_vr(vr) {
            return Err(self.src.format_err(format!(
                "element ({:04X},{:04X}) at offset {} has an unknown VR {:?}",
                t >> 16,
                t & 0xFFFF,
                self.src.pos - 6,
                String::from_utf8_lossy(&vr)
            )));
        }
        let len = if has_long_length(vr) {
            self.src.skip(2)?;
            self.src.u32()?
        } else {
            self.src.u16()? as u32
        };
        Ok((t, vr, len))
    }

    /// Elements until `end` (defined length) or an item delimiter (undefined length).
    fn data_set(
        &mut self,
        end: Option<u64>,
        stack: &mut Stack,
        implicit: bool,
    ) -> Result<(), SlideError> {
        loop {
            match end {
                Some(e) if self.src.pos == e => return Ok(()),
                Some(e) if self.src.pos > e => {
                    return Err(self
                        .src
                        .format_err(format!("an element overruns its item ending at {e}")))
                }
                None if self.src.pos >= self.src.len => {
                    return Err(self
                        .src
                        .format_err("an item without a delimiter runs to the end of the file"))
                }
                _ => {}
            }
            let start = self.src.pos;
            let (t, vr, len) = self.element_header(implicit)?;
            if t == ITEM_DELIMITATION && end.is_none() {
                return Ok(());
            }
            if t >> 16 == 0xFFFE {
                return Err(self.src.format_err(format!(
                    "unexpected item tag (FFFE,{:04X}) at offset {start}",
                    t & 0xFFFF
                )));
            }
            if stack.is_empty() {
                if let Some(stop) = self.stop_after {
                    if t > stop {
                        return Ok(());
                    }
                }
            }
            if t == PIXEL_DATA {
                // Pixel data nested in a sequence (an icon image) is stepped over.
                self.pixel_data(len, stack.is_empty())?;
                continue;
            }
            let sequence = &vr == b"SQ" || (len == UNDEFINED_LENGTH && &vr == b"UN");
            if sequence {
                if stack.len() >= MAX_SEQUENCE_DEPTH {
                    return Err(self
                        .src
                        .format_err(format!("sequences nested deeper than {MAX_SEQUENCE_DEPTH}")));
                }
                // A UN sequence is always implicit VR little endian (PS3.5 6.2.2).
                let inner_implicit = implicit || &vr == b"UN";
                self.sequence(t, len, stack, inner_implicit)?;
                continue;
            }
            if len == UNDEFINED_LENGTH {
                return Err(self.src.format_err(format!(
                    "element ({:04X},{:04X}) at offset {start} has an undefined length",
                    t >> 16,
                    t & 0xFFFF
                )));
            }
            if self.wants(stack, t) {
                let value = self.src.bytes(len as u64)?;
                self.store(stack, t, vr, &value)?;
            } else {
                self.src.skip(len as u64)?;
            }
        }
    }

    fn sequence(
        &mut self,
        seq: Tag,
        len: u32,
        stack: &mut Stack,
        implicit: bool,
    ) -> Result<(), SlideError> {
        let end = (len != UNDEFINED_LENGTH).then(|| self.src.pos + len as u64);
        if end.is_some() {
            self.src.ensure(len as u64)?;
        }
        let mut item = 0u64;
        loop {
            if let Some(e) = end {
                if self.src.pos == e {
                    return Ok(());
                }
                if self.src.pos > e {
                    return Err(self.src.format_err("an item overruns its sequence"));
                }
            }
            let start = self.src.pos;
            let (t, _, item_len) = self.element_header(implicit)?;
            match t {
                SEQUENCE_DELIMITATION if end.is_none() => return Ok(()),
                ITEM => {
                    let item_end =
                        (item_len != UNDEFINED_LENGTH).then(|| self.src.pos + item_len as u64);
                    if item_end.is_some() {
                        self.src.ensure(item_len as u64)?;
                    }
                    stack.push((seq, item));
                    let result = self.data_set(item_end, stack, implicit);
                    stack.pop();
                    result?;
                    item += 1;
                }
                _ => {
                    return Err(self.src.format_err(format!(
                        "expected an item in sequence ({:04X},{:04X}) at offset {start}",
                        seq >> 16,
                        seq & 0xFFFF
                    )))
                }
            }
        }
    }

    fn wants(&self, stack: &Stack, t: Tag) -> bool {
        let outer = stack.first().map(|s| s.0);
        let inner = stack.get(1).map(|s| s.0);
        match (stack.len(), outer, inner) {
            (0, _, _) => matches!(
                t,
                IMAGE_TYPE
                    | SOP_CLASS
                    | MANUFACTURER
                    | SERIES_UID
                    | CONCATENATION_FRAME_OFFSET
                    | DIMENSION_ORGANIZATION_TYPE
                    | SAMPLES_PER_PIXEL
                    | PHOTOMETRIC
                    | PLANAR_CONFIGURATION
                    | NUMBER_OF_FRAMES
                    | ROWS
                    | COLUMNS
                    | BITS_ALLOCATED
                    | IMAGED_VOLUME_WIDTH
                    | IMAGED_VOLUME_HEIGHT
                    | TOTAL_COLUMNS
                    | TOTAL_ROWS
                    | OBJECTIVE_LENS_POWER
                    | EXTENDED_OFFSET_TABLE
                    | EXTENDED_OFFSET_TABLE_LENGTHS
            ),
            (
                2,
                Some(SHARED_FUNCTIONAL_GROUPS | PER_FRAME_FUNCTIONAL_GROUPS),
                Some(PIXEL_MEASURES_SEQUENCE),
            ) => t == PIXEL_SPACING,
            (2, Some(PER_FRAME_FUNCTIONAL_GROUPS), Some(PLANE_POSITION_SLIDE_SEQUENCE)) => {
                t == COLUMN_POSITION || t == ROW_POSITION
            }
            (1, Some(OPTICAL_PATH_SEQUENCE), _) => t == OBJECTIVE_LENS_POWER,
            _ => false,
        }
    }

    fn store(&mut self, stack: &Stack, t: Tag, vr: [u8; 2], v: &[u8]) -> Result<(), SlideError> {
        let h = &mut *self.header;
        let int = || integer(vr, v);
        let pair = || {
            let n = numbers(vr, v);
            (n.len() >= 2).then(|| (n[0], n[1]))
        };
        match (stack.first(), t) {
            (Some(&(SHARED_FUNCTIONAL_GROUPS, 0)), PIXEL_SPACING) => h.shared_spacing = pair(),
            (Some(&(PER_FRAME_FUNCTIONAL_GROUPS, 0)), PIXEL_SPACING) => {
                h.first_frame_spacing = pair()
            }
            (Some(_), PIXEL_SPACING) => {}
            (Some(&(PER_FRAME_FUNCTIONAL_GROUPS, frame)), COLUMN_POSITION | ROW_POSITION) => {
                if frame >= self.src.limits.max_frames {
                    return Err(SlideError::Limit {
                        path: self.src.path.to_path_buf(),
                        what: "per-frame functional group items".into(),
                        value: frame + 1,
                        limit: self.src.limits.max_frames,
                        name: "max_frames",
                    });
                }
                let frame = frame as usize;
                if h.positions.len() <= frame {
                    h.positions.resize(frame + 1, (None, None));
                }
                if t == COLUMN_POSITION {
                    h.positions[frame].0 = int();
                } else {
                    h.positions[frame].1 = int();
                }
            }
            (_, OBJECTIVE_LENS_POWER) => {
                if h.objective_power.is_none() {
                    h.objective_power = numbers(vr, v)
                        .first()
                        .copied()
                        .filter(|p| p.is_finite() && *p > 0.0);
                }
            }
            (Some(_), _) => {}
            (None, IMAGE_TYPE) => h.image_type = Some(text(v)),
            (None, SOP_CLASS) => h.sop_class = Some(text(v)),
            (None, MANUFACTURER) => h.manufacturer = Some(text(v)).filter(|s| !s.is_empty()),
            (None, SERIES_UID) => h.series_uid = Some(text(v)),
            (None, CONCATENATION_FRAME_OFFSET) => h.concatenation_offset = int(),
            (None, DIMENSION_ORGANIZATION_TYPE) => h.organization = Some(text(v)),
            (None, SAMPLES_PER_PIXEL) => h.samples = int(),
            (None, PHOTOMETRIC) => h.photometric = Some(text(v)),
            (None, PLANAR_CONFIGURATION) => h.planar = int(),
            (None, NUMBER_OF_FRAMES) => h.frames = int(),
            (None, ROWS) => h.rows = int(),
            (None, COLUMNS) => h.columns = int(),
            (None, BITS_ALLOCATED) => h.bits_allocated = int(),
            (None, IMAGED_VOLUME_WIDTH) => h.imaged_volume.0 = numbers(vr, v).first().copied(),
            (None, IMAGED_VOLUME_HEIGHT) => h.imaged_volume.1 = numbers(vr, v).first().copied(),
            (None, TOTAL_COLUMNS) => h.total_columns = int(),
            (None, TOTAL_ROWS) => h.total_rows = int(),
            (None, EXTENDED_OFFSET_TABLE) => h.extended_offsets = Some(u64_array(v)),
            (None, EXTENDED_OFFSET_TABLE_LENGTHS) => h.extended_lengths = Some(u64_array(v)),
            (None, _) => {}
        }
        Ok(())
    }

    /// Pixel data: records where frames lie (when `record`), reading no pixels.
    fn pixel_data(&mut self, len: u32, record: bool) -> Result<(), SlideError> {
        if len != UNDEFINED_LENGTH {
            let offset = self.src.pos;
            self.src.skip(len as u64)?;
            if record {
                self.header.pixel_data = PixelData::Native {
                    offset,
                    len: len as u64,
                };
            }
            return Ok(());
        }
        // Encapsulated (PS3.5 A.4): the Basic Offset Table item, then one item per
        // fragment, then a sequence delimiter. Items here are always explicit LE.
        let (t, _, bot_len) = self.element_header(false)?;
        if t != ITEM {
            return Err(self
                .src
                .format_err("encapsulated pixel data does not start with an offset table item"));
        }
        let max_frames = self.src.limits.max_frames;
        if bot_len as u64 > max_frames * 4 {
            return Err(SlideError::Limit {
                path: self.src.path.to_path_buf(),
                what: "Basic Offset Table entries".into(),
                value: bot_len as u64 / 4,
                limit: max_frames,
                name: "max_frames",
            });
        }
        let bot = self.src.bytes(bot_len as u64)?;
        let basic_offsets = bot
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u64)
            .collect();
        let first = self.src.pos;
        let mut fragments = Vec::new();
        let mut fragment_starts = Vec::new();
        loop {
            let start = self.src.pos;
            let (t, _, n) = self.element_header(false)?;
            match t {
                SEQUENCE_DELIMITATION => break,
                ITEM if n != UNDEFINED_LENGTH => {
                    if fragments.len() as u64 >= max_frames {
                        return Err(SlideError::Limit {
                            path: self.src.path.to_path_buf(),
                            what: "pixel data fragments".into(),
                            value: fragments.len() as u64 + 1,
                            limit: max_frames,
                            name: "max_frames",
                        });
                    }
                    fragment_starts.push(start - first);
                    fragments.push((self.src.pos, n));
                    self.src.skip(n as u64)?;
                }
                _ => {
                    return Err(self.src.format_err(format!(
                        "bad item in encapsulated pixel data at offset {start}"
                    )))
                }
            }
        }
        if record {
            self.header.pixel_data = PixelData::Encapsulated {
                basic_offsets,
                fragments,
                fragment_starts,
            };
        }
        Ok(())
    }
}

/// Parses one file's header. With `series_only` it stops once the SeriesInstanceUID
/// is behind it (a cheap look at a sibling file).
fn parse_header(
    path: &Path,
    file: &File,
    limits: &Limits,
    series_only: bool,
) -> Result<Header, SlideError> {
    let len = file
        .metadata()
        .map_err(|source| SlideError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    let mut src = Source {
        path,
        reader: BufReader::with_capacity(64 << 10, file),
        pos: 0,
        len,
        limits,
    };
    src.reader.rewind().map_err(|source| SlideError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    src.skip(128)?;
    if &src.array::<4>()? != b"DICM" {
        return Err(src.format_err("no DICM signature after the 128-byte preamble"));
    }
    let mut header = Header::default();
    let mut parser = Parser {
        src,
        implicit: false,
        header: &mut header,
        stop_after: None,
    };
    // File Meta Information: group 0002, always explicit VR little endian.
    while let Some(t) = parser.src.peek_tag()? {
        if t >> 16 != 0x0002 {
            break;
        }
        let (t, _, n) = parser.element_header(false)?;
        if n == UNDEFINED_LENGTH {
            return Err(parser
                .src
                .format_err("file meta element with undefined length"));
        }
        if t == TRANSFER_SYNTAX {
            let v = parser.src.bytes(n as u64)?;
            parser.header.transfer_syntax = text(&v);
        } else {
            parser.src.skip(n as u64)?;
        }
    }
    parser.implicit = match parser.header.transfer_syntax.as_str() {
        TS_IMPLICIT_LE => true,
        TS_EXPLICIT_LE | TS_JPEG_BASELINE => false,
        "" => {
            return Err(parser
                .src
                .format_err("no transfer syntax in the file meta group"))
        }
        other => return Err(unsupported(path, transfer_syntax_reason(other))),
    };
    if series_only {
        parser.stop_after = Some(SERIES_UID);
    }
    let implicit = parser.implicit;
    let mut stack = Stack::new();
    parser.data_set(Some(len), &mut stack, implicit)?;
    Ok(header)
}

fn transfer_syntax_reason(uid: &str) -> String {
    let name = match uid {
        "1.2.840.10008.1.2.4.51" => "JPEG extended (12-bit)",
        "1.2.840.10008.1.2.4.57" | "1.2.840.10008.1.2.4.70" => "JPEG lossless",
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => "JPEG-LS",
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => "JPEG 2000",
        "1.2.840.10008.1.2.4.201" | "1.2.840.10008.1.2.4.202" | "1.2.840.10008.1.2.4.203" => {
            "High-Throughput JPEG 2000"
        }
        "1.2.840.10008.1.2.4.110" | "1.2.840.10008.1.2.4.111" | "1.2.840.10008.1.2.4.112" => {
            "JPEG XL"
        }
        "1.2.840.10008.1.2.1.99" => "deflated explicit VR little endian",
        "1.2.840.10008.1.2.2" => "explicit VR big endian",
        "1.2.840.10008.1.2.5" => "RLE lossless",
        _ => "an unknown transfer syntax",
    };
    format!(
        "DICOM transfer syntax {uid} ({name}) is not supported; this reader reads JPEG \
         baseline (1.2.840.10008.1.2.4.50) and uncompressed little endian"
    )
}

/// What a DICOM instance holds in the slide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Volume,
    Label,
    Overview,
    Thumbnail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Jpeg(JpegColour),
    /// Uncompressed 8-bit samples: 3 (RGB, interleaved or planar) or 1 (grey).
    Native {
        samples: u8,
        planar: bool,
    },
}

/// One image (a level or an associated image) of the slide: its frames and files.
struct Image {
    role: Role,
    /// The files holding its frames: one, or several for a concatenation.
    files: Vec<(PathBuf, File)>,
    grid: ChunkGrid,
    codec: Codec,
    /// Each frame: (file index, fragments' (offset, length) in that file).
    frames: Vec<(u16, Vec<(u64, u32)>)>,
    /// Frame index of each tile (row-major); `None` for tiles no frame covers.
    tiles: TileMap,
    mpp: Option<(Mpp, MppSource)>,
    series: String,
    manufacturer: Option<String>,
    objective_power: Option<f64>,
    concatenation_offset: Option<u64>,
}

enum TileMap {
    /// TILED_FULL: tile i is frame i.
    Full,
    /// TILED_SPARSE: positions from the per-frame functional groups.
    Sparse(HashMap<u64, usize>),
}

impl Image {
    fn frame_for_tile(&self, tile: u64) -> Option<usize> {
        match &self.tiles {
            TileMap::Full => Some(tile as usize).filter(|&f| f < self.frames.len()),
            TileMap::Sparse(map) => map.get(&tile).copied(),
        }
    }
}

fn role(image_type: Option<&str>) -> Role {
    let value3 = image_type
        .and_then(|t| t.split('\\').nth(2))
        .map(|v| v.trim().to_ascii_uppercase());
    match value3.as_deref() {
        Some("LABEL") => Role::Label,
        Some("OVERVIEW") => Role::Overview,
        Some("THUMBNAIL") => Role::Thumbnail,
        _ => Role::Volume,
    }
}

/// Checks one instance's header and works out where its frames are.
fn build_image(path: &Path, file: File, h: Header, limits: &Limits) -> Result<Image, SlideError> {
    let bad = |reason: String| format_err(path, reason);
    if let Some(class) = h.sop_class.as_deref() {
        if class != WSI_SOP_CLASS {
            return Err(unsupported(
                path,
                format!(
                    "DICOM SOP class {class} is not a VL Whole Slide Microscopy Image \
                     ({WSI_SOP_CLASS})"
                ),
            ));
        }
    }
    let positive = |v: Option<i64>, what: &str| -> Result<u64, SlideError> {
        match v {
            Some(v) if v > 0 => Ok(v as u64),
            Some(v) => Err(bad(format!("{what} is {v}"))),
            None => Err(bad(format!("no {what}"))),
        }
    };
    let rows = positive(h.rows, "Rows (0028,0010)")?;
    let columns = positive(h.columns, "Columns (0028,0011)")?;
    let frame_pixels = rows.saturating_mul(columns);
    let frames = positive(Some(h.frames.unwrap_or(1)), "NumberOfFrames (0028,0008)")?;
    let width = positive(
        h.total_columns.or(h.columns),
        "TotalPixelMatrixColumns (0048,0006)",
    )?;
    let height = positive(h.total_rows.or(h.rows), "TotalPixelMatrixRows (0048,0007)")?;
    let limit = |what: String, value: u64, limit: u64, name: &'static str| SlideError::Limit {
        path: path.to_path_buf(),
        what,
        value,
        limit,
        name,
    };
    for (what, v) in [("total pixel matrix width", width), ("height", height)] {
        if v > limits.max_dimension {
            return Err(limit(
                format!("DICOM {what}"),
                v,
                limits.max_dimension,
                "max_dimension",
            ));
        }
    }
    if frame_pixels > limits.max_tile_pixels {
        return Err(limit(
            format!("frame of {columns}x{rows} pixels"),
            frame_pixels,
            limits.max_tile_pixels,
            "max_tile_pixels",
        ));
    }
    if frames > limits.max_frames {
        return Err(limit(
            "NumberOfFrames".into(),
            frames,
            limits.max_frames,
            "max_frames",
        ));
    }
    if h.bits_allocated.unwrap_or(8) != 8 {
        return Err(unsupported(
            path,
            format!(
                "BitsAllocated {} (only 8-bit samples are read)",
                h.bits_allocated.unwrap_or(0)
            ),
        ));
    }
    let samples = h.samples.unwrap_or(3);
    let photometric = h.photometric.clone().unwrap_or_default();
    let codec = match (&h.pixel_data, photometric.as_str(), samples) {
        (PixelData::Encapsulated { .. }, "YBR_FULL_422" | "YBR_FULL", 3) => {
            Codec::Jpeg(JpegColour::YCbCr)
        }
        // Exporters write RGB both for YCbCr-coded (JFIF) and for true-RGB JPEG
        // streams; the stream's own markers tell them apart, as libjpeg reads them.
        (PixelData::Encapsulated { .. }, "RGB", 3) => Codec::Jpeg(JpegColour::FromStream),
        (PixelData::Encapsulated { .. }, "MONOCHROME2", 1) => Codec::Jpeg(JpegColour::FromStream),
        (PixelData::Native { .. }, "RGB", 3) => Codec::Native {
            samples: 3,
            planar: h.planar.unwrap_or(0) == 1,
        },
        (PixelData::Native { .. }, "MONOCHROME2", 1) => Codec::Native {
            samples: 1,
            planar: false,
        },
        (PixelData::Absent, _, _) => return Err(bad("no pixel data (7FE0,0010)".into())),
        (_, p, s) => {
            return Err(unsupported(
                path,
                format!("DICOM photometric interpretation {p:?} with {s} samples per pixel"),
            ))
        }
    };
    if matches!(codec, Codec::Jpeg(_)) && h.transfer_syntax != TS_JPEG_BASELINE {
        return Err(bad(format!(
            "encapsulated pixel data under transfer syntax {}",
            h.transfer_syntax
        )));
    }
    if matches!(codec, Codec::Native { .. }) && h.transfer_syntax == TS_JPEG_BASELINE {
        return Err(bad("native pixel data under a JPEG transfer syntax".into()));
    }
    let frame_list = locate_frames(
        path,
        &file,
        &h,
        frames,
        frame_pixels * samples as u64,
        limits,
    )?;
    let grid = ChunkGrid {
        width,
        height,
        chunk_width: columns,
        chunk_height: rows,
    };
    let sparse = h.organization.as_deref() == Some("TILED_SPARSE")
        || (h.organization.as_deref() != Some("TILED_FULL") && !h.positions.is_empty());
    let tiles = if sparse {
        let mut map = HashMap::new();
        for (frame, pos) in h.positions.iter().enumerate().take(frame_list.len()) {
            let (Some(col), Some(row)) = *pos else {
                continue;
            };
            // Positions are 1-based; frames off the tile grid are not supported.
            let (x, y) = (col - 1, row - 1);
            if x < 0 || y < 0 || x as u64 >= width || y as u64 >= height {
                continue;
            }
            if !(x as u64).is_multiple_of(columns) || !(y as u64).is_multiple_of(rows) {
                return Err(unsupported(
                    path,
                    format!("TILED_SPARSE frame {frame} at ({col}, {row}) is off the tile grid"),
                ));
            }
            let tile = (y as u64 / rows) * grid.across() + x as u64 / columns;
            // The first frame at a position wins (other focal planes and optical paths).
            map.entry(tile).or_insert(frame);
        }
        TileMap::Sparse(map)
    } else {
        // Whether the frames cover every tile is checked once concatenations are joined.
        TileMap::Full
    };
    let mpp = pixel_spacing_mpp(&h, width, height);
    Ok(Image {
        role: role(h.image_type.as_deref()),
        files: vec![(path.to_path_buf(), file)],
        grid,
        codec,
        frames: frame_list.into_iter().map(|f| (0, f)).collect(),
        tiles,
        mpp,
        series: h.series_uid.clone().unwrap_or_default(),
        manufacturer: h.manufacturer.clone(),
        objective_power: h.objective_power,
        concatenation_offset: h.concatenation_offset.and_then(|v| u64::try_from(v).ok()),
    })
}

/// MPP from PixelSpacing (row spacing \ column spacing, in mm), else from the imaged
/// volume's size over the pixel matrix.
fn pixel_spacing_mpp(h: &Header, width: u64, height: u64) -> Option<(Mpp, MppSource)> {
    if let Some((row, column)) = h.shared_spacing.or(h.first_frame_spacing) {
        if let Some(m) = Mpp::new(column * 1000.0, row * 1000.0) {
            return Some((m, MppSource::DicomPixelSpacing));
        }
    }
    if let (Some(w), Some(hh)) = h.imaged_volume {
        if let Some(m) = Mpp::new(w * 1000.0 / width as f64, hh * 1000.0 / height as f64) {
            return Some((m, MppSource::DicomImagedVolume));
        }
    }
    None
}

/// Each frame's bytes as fragments (file offset, length).
fn locate_frames(
    path: &Path,
    file: &File,
    h: &Header,
    frames: u64,
    native_frame_bytes: u64,
    limits: &Limits,
) -> Result<Vec<Vec<(u64, u32)>>, SlideError> {
    let bad = |reason: String| format_err(path, reason);
    let frames = frames as usize;
    match &h.pixel_data {
        PixelData::Absent => Err(bad("no pixel data (7FE0,0010)".into())),
        PixelData::Native { offset, len } => {
            let needed = native_frame_bytes.saturating_mul(frames as u64);
            if *len < needed {
                return Err(bad(format!(
                    "native pixel data holds {len} bytes, {frames} frames need {needed}"
                )));
            }
            if native_frame_bytes > u32::MAX as u64 {
                return Err(bad("native frame larger than 4 GiB".into()));
            }
            Ok((0..frames as u64)
                .map(|i| vec![(offset + i * native_frame_bytes, native_frame_bytes as u32)])
                .collect())
        }
        PixelData::Encapsulated {
            basic_offsets,
            fragments,
            fragment_starts,
        } => {
            if fragments.is_empty() {
                return Err(bad("encapsulated pixel data without fragments".into()));
            }
            // Frame starts, as offsets relative to the first fragment's item tag:
            // the Extended Offset Table, else the Basic Offset Table, else one
            // fragment a frame, else every fragment for a single frame, else the
            // fragments that open with a JPEG start-of-image marker.
            let starts: Vec<u64> = if let Some(eot) = h.extended_offsets.as_ref() {
                eot.clone()
            } else if !basic_offsets.is_empty() {
                basic_offsets.clone()
            } else if fragments.len() == frames {
                fragment_starts.clone()
            } else if frames == 1 {
                vec![0]
            } else {
                let mut starts = Vec::new();
                for (i, &(offset, len)) in fragments.iter().enumerate() {
                    let mut soi = [0u8; 2];
                    if len >= 2 {
                        read_exact_at(file, &mut soi, offset).map_err(|source| SlideError::Io {
                            path: path.to_path_buf(),
                            source,
                        })?;
                    }
                    if soi == [0xFF, 0xD8] {
                        starts.push(fragment_starts[i]);
                    }
                }
                if starts.len() != frames || starts.first() != Some(&0) {
                    return Err(unsupported(
                        path,
                        format!(
                            "{} fragments for {frames} frames, no offset table, and {} of \
                             them start a JPEG image",
                            fragments.len(),
                            starts.len()
                        ),
                    ));
                }
                starts
            };
            if starts.len() < frames {
                return Err(bad(format!(
                    "offset table lists {} frames, NumberOfFrames is {frames}",
                    starts.len()
                )));
            }
            let index: HashMap<u64, usize> = fragment_starts
                .iter()
                .enumerate()
                .map(|(i, &s)| (s, i))
                .collect();
            let mut first_fragment = Vec::with_capacity(frames);
            for (f, s) in starts.iter().take(frames).enumerate() {
                let i = *index.get(s).ok_or_else(|| {
                    bad(format!(
                        "offset table entry {f} ({s}) is not the start of a fragment"
                    ))
                })?;
                if first_fragment.last().is_some_and(|&prev| i <= prev) {
                    return Err(bad(format!("offset table entry {f} goes backwards")));
                }
                first_fragment.push(i);
            }
            let mut out = Vec::with_capacity(frames);
            for f in 0..frames {
                let end = first_fragment
                    .get(f + 1)
                    .copied()
                    .unwrap_or(fragments.len());
                let parts = fragments[first_fragment[f]..end].to_vec();
                let bytes: u64 = parts.iter().map(|p| p.1 as u64).sum();
                if bytes > limits.max_tile_bytes {
                    return Err(SlideError::Limit {
                        path: path.to_path_buf(),
                        what: format!("DICOM frame {f} compressed size"),
                        value: bytes,
                        limit: limits.max_tile_bytes,
                        name: "max_tile_bytes",
                    });
                }
                out.push(parts);
            }
            Ok(out)
        }
    }
}

/// A DICOM whole-slide image: the instances of one series, as levels and associated images.
pub struct DicomSlide {
    path: PathBuf,
    info: SlideInfo,
    /// Levels first (largest first), then associated images in `info.associated` order.
    images: Vec<Image>,
    limits: Limits,
    cache: ChunkCache,
}

/// The regular files of `dir` that carry the DICM signature, sorted by name.
fn dicom_files_in(dir: &Path) -> Result<Vec<PathBuf>, SlideError> {
    let io = |source| SlideError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let p = entry.path();
        // `Path::is_file` follows symlinks: data managers often link slide files in.
        if !p.is_file() {
            continue;
        }
        let Ok(f) = File::open(&p) else { continue };
        let mut prefix = [0u8; 132];
        if read_exact_at(&f, &mut prefix, 0).is_ok() && has_magic(&prefix) {
            paths.push(p);
        }
    }
    paths.sort();
    Ok(paths)
}

fn open_instance(path: &Path, limits: &Limits) -> Result<Image, SlideError> {
    let file = File::open(path).map_err(|source| SlideError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let header = parse_header(path, &file, limits, false)?;
    build_image(path, file, header, limits)
}

pub(super) fn series_of(path: &Path, limits: &Limits) -> Option<String> {
    let file = File::open(path).ok()?;
    parse_header(path, &file, limits, true).ok()?.series_uid
}

impl DicomSlide {
    /// Opens the series `path` belongs to, gathering its siblings in the same folder.
    pub fn open_file(path: &Path, options: &OpenOptions) -> Result<DicomSlide, SlideError> {
        let limits = &options.limits;
        let first = open_instance(path, limits)?;
        let series = first.series.clone();
        let mut images = vec![first];
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let me = std::fs::canonicalize(path).ok();
        if !series.is_empty() {
            for sibling in dicom_files_in(dir)? {
                if std::fs::canonicalize(&sibling).ok() == me {
                    continue;
                }
                if series_of(&sibling, limits).as_deref() != Some(series.as_str()) {
                    continue;
                }
                images.push(open_instance(&sibling, limits)?);
                if images.len() > limits.max_levels {
                    return Err(too_many_instances(path, images.len(), limits));
                }
            }
        }
        DicomSlide::assemble(path, images, options)
    }

    /// Opens the one DICOM series held in directory `dir`.
    pub fn open_dir(dir: &Path, options: &OpenOptions) -> Result<DicomSlide, SlideError> {
        let limits = &options.limits;
        let files = dicom_files_in(dir)?;
        if files.is_empty() {
            return Err(unsupported(
                dir,
                "a directory, and it holds no DICOM files (DICM signature)",
            ));
        }
        // Files whose series cannot be read group under "": they make the slide only
        // when nothing else does, so that their own error reaches the user.
        let mut by_series: Vec<(String, Vec<PathBuf>)> = Vec::new();
        for f in files {
            let s = series_of(&f, limits).unwrap_or_default();
            match by_series.iter_mut().find(|(k, _)| *k == s) {
                Some((_, v)) => v.push(f),
                None => by_series.push((s, vec![f])),
            }
        }
        if by_series.len() > 1 {
            by_series.retain(|(s, _)| !s.is_empty());
        }
        if by_series.len() > 1 {
            return Err(unsupported(
                dir,
                format!(
                    "the directory holds {} DICOM series; open one of its files to choose \
                     a slide",
                    by_series.len()
                ),
            ));
        }
        let paths = by_series.pop().map(|(_, p)| p).unwrap_or_default();
        if paths.len() > limits.max_levels {
            return Err(too_many_instances(dir, paths.len(), limits));
        }
        let images = paths
            .iter()
            .map(|p| open_instance(p, limits))
            .collect::<Result<Vec<_>, _>>()?;
        DicomSlide::assemble(dir, images, options)
    }

    fn assemble(
        path: &Path,
        images: Vec<Image>,
        options: &OpenOptions,
    ) -> Result<DicomSlide, SlideError> {
        let limits = options.limits;
        let (mut volumes, others): (Vec<Image>, Vec<Image>) =
            images.into_iter().partition(|i| i.role == Role::Volume);
        if volumes.is_empty() {
            return Err(format_err(
                path,
                "the series has no VOLUME image (only labels, overviews or thumbnails)",
            ));
        }
        volumes.sort_by(|a, b| {
            (b.grid.width, b.grid.height, a.concatenation_offset).cmp(&(
                a.grid.width,
                a.grid.height,
                b.concatenation_offset,
            ))
        });
        let mut levels: Vec<Image> = Vec::new();
        for v in volumes {
            match levels.last_mut() {
                Some(prev)
                    if prev.grid.width == v.grid.width && prev.grid.height == v.grid.height =>
                {
                    merge_concatenation(prev, v);
                }
                _ => levels.push(v),
            }
        }
        let (w0, h0) = (levels[0].grid.width, levels[0].grid.height);
        for l in levels.iter().chain(&others) {
            check_frames_cover_tiles(l)?;
        }
        for l in &levels[1..] {
            let (w, h) = (l.grid.width as f64, l.grid.height as f64);
            // Reduced levels round their sides: allow one level pixel of drift.
            let same_aspect = (h - h0 as f64 * w / w0 as f64).abs() <= 1.0
                || (w - w0 as f64 * h / h0 as f64).abs() <= 1.0;
            if !same_aspect {
                return Err(format_err(
                    path,
                    format!(
                        "level of {}x{} does not have the aspect ratio of level 0 ({w0}x{h0})",
                        l.grid.width, l.grid.height
                    ),
                ));
            }
        }
        let level_info = levels
            .iter()
            .map(|l| LevelInfo {
                width: l.grid.width,
                height: l.grid.height,
                downsample: (w0 as f64 / l.grid.width as f64 + h0 as f64 / l.grid.height as f64)
                    / 2.0,
            })
            .collect();
        let mut associated = Vec::new();
        let mut images = levels;
        let level_count = images.len();
        for o in others {
            let name = match o.role {
                Role::Label => "label",
                Role::Overview => "macro",
                Role::Thumbnail => "thumbnail",
                Role::Volume => continue,
            };
            if associated.iter().any(|a: &AssociatedInfo| a.name == name) {
                continue;
            }
            associated.push(AssociatedInfo {
                name: name.to_string(),
                width: o.grid.width,
                height: o.grid.height,
            });
            images.push(o);
        }
        if images.len() > limits.max_levels {
            return Err(too_many_instances(path, images.len(), &limits));
        }
        let l0 = &images[0];
        let (mut mpp, mut mpp_source) = match l0.mpp {
            Some((m, s)) => (Some(m), s),
            None => (None, MppSource::Unknown),
        };
        if let Some(m) = options.mpp_override {
            mpp = Some(m);
            mpp_source = MppSource::Override;
        }
        let info = SlideInfo {
            format: SlideFormat::Dicom,
            vendor: l0.manufacturer.clone(),
            levels: level_info,
            mpp,
            mpp_source,
            objective_power: images[..level_count].iter().find_map(|i| i.objective_power),
            associated,
            background: [255, 255, 255],
        };
        Ok(DicomSlide {
            path: path.to_path_buf(),
            info,
            images,
            limits,
            cache: ChunkCache::new(options.cache_bytes),
        })
    }

    /// Decoded RGB8 pixels of one tile of image `index`, a whole frame in size.
    fn tile(&self, index: usize, tile: usize) -> Result<Arc<Vec<u8>>, SlideError> {
        self.cache.get_or_decode((index, tile), || {
            let image = &self.images[index];
            let (w, h) = (
                image.grid.chunk_width as usize,
                image.grid.chunk_height as usize,
            );
            match image.frame_for_tile(tile as u64) {
                // A tile no frame covers (TILED_SPARSE) is empty glass.
                None => Ok(self.info.background.repeat(w * h)),
                Some(frame) => decode_frame(image, frame, &self.limits),
            }
        })
    }

    fn read_image(&self, index: usize, rect: Rect) -> Result<RgbImage, SlideError> {
        check_region(&self.path, &self.limits, rect)?;
        let image = &self.images[index];
        copy_region(image.grid, rect, self.info.background, |tile| {
            self.tile(index, tile)
        })
    }
}

/// A TILED_FULL image needs a frame for every tile of its (first) plane.
fn check_frames_cover_tiles(image: &Image) -> Result<(), SlideError> {
    let g = image.grid;
    let tiles = g.across().saturating_mul(g.down());
    if matches!(image.tiles, TileMap::Full) && (image.frames.len() as u64) < tiles {
        let path = image.files.first().map_or(Path::new(""), |f| f.0.as_path());
        return Err(format_err(
            path,
            format!(
                "TILED_FULL image of {}x{} in {}x{} frames needs {tiles} frames, it has {}",
                g.width,
                g.height,
                g.chunk_width,
                g.chunk_height,
                image.frames.len()
            ),
        ));
    }
    Ok(())
}

fn too_many_instances(path: &Path, n: usize, limits: &Limits) -> SlideError {
    SlideError::Limit {
        path: path.to_path_buf(),
        what: "DICOM instances in the series".into(),
        value: n as u64,
        limit: limits.max_levels as u64,
        name: "max_levels",
    }
}

/// Appends a concatenation part's frames to the instance holding its earlier frames;
/// an instance of the same size that is not a concatenation (another focal plane or
/// optical path) is dropped.
fn merge_concatenation(into: &mut Image, part: Image) {
    let (Some(a), Some(b)) = (into.concatenation_offset, part.concatenation_offset) else {
        return;
    };
    if b != a + into.frames.len() as u64
        || !matches!((&into.tiles, &part.tiles), (TileMap::Full, TileMap::Full))
        || into.grid.chunk_width != part.grid.chunk_width
        || into.grid.chunk_height != part.grid.chunk_height
        || into.codec != part.codec
        || into.files.len() >= u16::MAX as usize
    {
        return;
    }
    let file_index = into.files.len() as u16;
    into.files.extend(part.files);
    into.frames.extend(
        part.frames
            .into_iter()
            .map(|(_, fragments)| (file_index, fragments)),
    );
}

fn decode_frame(image: &Image, frame: usize, limits: &Limits) -> Result<Vec<u8>, SlideError> {
    let (file_index, fragments) = &image.frames[frame];
    let (path, file) = &image.files[*file_index as usize];
    let total: u64 = fragments.iter().map(|f| f.1 as u64).sum();
    if total > limits.max_tile_bytes {
        return Err(SlideError::Limit {
            path: path.clone(),
            what: format!("DICOM frame {frame} compressed size"),
            value: total,
            limit: limits.max_tile_bytes,
            name: "max_tile_bytes",
        });
    }
    let mut data = vec![0u8; total as usize];
    let mut at = 0usize;
    for &(offset, len) in fragments {
        let end = at + len as usize;
        read_exact_at(file, &mut data[at..end], offset).map_err(|source| SlideError::Io {
            path: path.clone(),
            source,
        })?;
        at = end;
    }
    let (w, h) = (
        image.grid.chunk_width as usize,
        image.grid.chunk_height as usize,
    );
    match image.codec {
        Codec::Jpeg(colour) => {
            decode_jpeg_chunk(&data, colour, w, h, limits).map_err(|e| match e {
                JpegError::TooLarge(pixels) => SlideError::Limit {
                    path: path.clone(),
                    what: format!("JPEG frame {frame} pixels"),
                    value: pixels,
                    limit: limits.max_tile_pixels,
                    name: "max_tile_pixels",
                },
                JpegError::Bad(reason) => format_err(path, format!("JPEG frame {frame}: {reason}")),
            })
        }
        Codec::Native { samples: 1, .. } => Ok(data.iter().flat_map(|&g| [g, g, g]).collect()),
        Codec::Native { planar: false, .. } => Ok(data),
        Codec::Native { planar: true, .. } => {
            let plane = w * h;
            Ok((0..plane)
                .flat_map(|i| [data[i], data[plane + i], data[2 * plane + i]])
                .collect())
        }
    }
}

impl SlideReader for DicomSlide {
    fn path(&self) -> &Path {
        &self.path
    }

    fn info(&self) -> &SlideInfo {
        &self.info
    }

    fn read_region(&self, level: usize, rect: Rect) -> Result<RgbImage, SlideError> {
        if level >= self.info.levels.len() {
            return Err(SlideError::NoSuchLevel {
                path: self.path.clone(),
                level,
                levels: self.info.levels.len(),
            });
        }
        self.read_image(level, rect)
    }

    fn read_associated(&self, name: &str) -> Result<RgbImage, SlideError> {
        let position = self
            .info
            .associated
            .iter()
            .position(|a| a.name == name)
            .ok_or_else(|| SlideError::NoSuchAssociated {
                path: self.path.clone(),
                name: name.to_string(),
            })?;
        let index = self.info.levels.len() + position;
        let grid = self.images[index].grid;
        let pixels = grid.width * grid.height;
        if pixels > self.limits.max_whole_image_pixels {
            return Err(SlideError::Limit {
                path: self.path.clone(),
                what: format!("associated image '{name}' pixels"),
                value: pixels,
                limit: self.limits.max_whole_image_pixels,
                name: "max_whole_image_pixels",
            });
        }
        self.read_image(
            index,
            Rect::new(0, 0, grid.width as u32, grid.height as u32),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Preamble, DICM and a File Meta group naming `transfer_syntax`.
    fn preamble(transfer_syntax: &str) -> Vec<u8> {
        let mut out = vec![0u8; 128];
        out.extend_from_slice(b"DICM");
        let mut ts = transfer_syntax.as_bytes().to_vec();
        if ts.len() % 2 == 1 {
            ts.push(0);
        }
        out.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
        out.extend_from_slice(&(ts.len() as u16).to_le_bytes());
        out.extend_from_slice(&ts);
        out
    }

    fn parse(bytes: &[u8]) -> Result<Header, SlideError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.dcm");
        std::fs::write(&path, bytes).unwrap();
        let file = File::open(&path).unwrap();
        parse_header(&path, &file, &Limits::default(), false)
    }

    #[test]
    fn values_read_whatever_vr_stores_them() {
        assert_eq!(
            numbers(*b"DS", b"0.000499\\0.000499 "),
            [0.000499, 0.000499]
        );
        assert_eq!(integer(*b"IS", b"30"), Some(30));
        assert_eq!(integer(*b"US", &500u16.to_le_bytes()), Some(500));
        assert_eq!(integer(*b"SL", &(-7i32).to_le_bytes()), Some(-7));
        assert_eq!(integer(*b"DS", b"1.5"), None);
        assert_eq!(integer(*b"UL", &[1, 2]), None, "short value");
        assert_eq!(text(b"TILED_FULL\0"), "TILED_FULL");
    }

    #[test]
    fn image_type_value_3_tells_levels_from_associated_images() {
        assert_eq!(
            role(Some("DERIVED\\PRIMARY\\VOLUME\\RESAMPLED")),
            Role::Volume
        );
        assert_eq!(role(Some("ORIGINAL\\PRIMARY\\LABEL\\NONE")), Role::Label);
        assert_eq!(
            role(Some("ORIGINAL\\PRIMARY\\OVERVIEW\\NONE")),
            Role::Overview
        );
        assert_eq!(role(Some("ORIGINAL\\PRIMARY\\THUMBNAIL")), Role::Thumbnail);
        assert_eq!(role(None), Role::Volume);
    }

    #[test]
    fn pixel_spacing_is_row_then_column_in_millimetres() {
        let h = Header {
            shared_spacing: Some((0.0005, 0.00025)),
            ..Header::default()
        };
        let (mpp, source) = pixel_spacing_mpp(&h, 100, 100).unwrap();
        assert_eq!((mpp.x, mpp.y), (0.25, 0.5));
        assert_eq!(source, MppSource::DicomPixelSpacing);
        let h = Header {
            imaged_volume: (Some(1.0), Some(2.0)),
            ..Header::default()
        };
        let (mpp, source) = pixel_spacing_mpp(&h, 2000, 4000).unwrap();
        assert_eq!((mpp.x, mpp.y), (0.5, 0.5));
        assert_eq!(source, MppSource::DicomImagedVolume);
    }

    #[test]
    fn deeply_nested_sequences_are_refused_not_recursed() {
        let mut bytes = preamble(TS_EXPLICIT_LE);
        for _ in 0..10_000 {
            // (0040,A730) SQ, undefined length, then an undefined-length item.
            bytes.extend_from_slice(&[0x40, 0x00, 0x30, 0xA7, b'S', b'Q', 0, 0]);
            bytes.extend_from_slice(&[0xFF; 4]);
            bytes.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        let err = parse(&bytes).unwrap_err();
        assert!(err.to_string().contains("nested deeper"), "{err}");
    }

    #[test]
    fn unsupported_transfer_syntaxes_are_named() {
        let err = parse(&preamble("1.2.840.10008.1.2.4.90")).unwrap_err();
        assert_eq!(err.kind(), "unsupported");
        assert!(err.to_string().contains("JPEG 2000"), "{err}");
        let err = parse(&preamble("1.2.840.10008.1.2.2")).unwrap_err();
        assert!(err.to_string().contains("big endian"), "{err}");
    }

    #[test]
    fn truncated_elements_and_lengths_past_the_end_are_format_errors() {
        let mut bytes = preamble(TS_EXPLICIT_LE);
        // (0008,0070) LO claiming 40 bytes with 3 present.
        bytes.extend_from_slice(&[0x08, 0x00, 0x70, 0x00, b'L', b'O', 40, 0, b'a', b'b', b'c']);
        assert_eq!(parse(&bytes).unwrap_err().kind(), "format");
        let mut bytes = preamble(TS_EXPLICIT_LE);
        // An OB element claiming 4 GiB.
        bytes.extend_from_slice(&[
            0x09, 0x00, 0x10, 0x00, b'O', b'B', 0, 0, 0xFE, 0xFF, 0xFF, 0xFF,
        ]);
        assert_eq!(parse(&bytes).unwrap_err().kind(), "format");
        assert_eq!(parse(&bytes[..100]).unwrap_err().kind(), "format");
    }

    #[test]
    fn implicit_vr_data_sets_are_read_by_dictionary() {
        let mut bytes = preamble(TS_IMPLICIT_LE);
        // Rows = 256 (US by dictionary), NumberOfFrames "12" (IS), unknown tag skipped.
        bytes.extend_from_slice(&[0x09, 0x00, 0x01, 0x00, 4, 0, 0, 0, 1, 2, 3, 4]);
        bytes.extend_from_slice(&[0x28, 0x00, 0x08, 0x00, 2, 0, 0, 0, b'1', b'2']);
        bytes.extend_from_slice(&[0x28, 0x00, 0x10, 0x00, 2, 0, 0, 0, 0x00, 0x01]);
        let h = parse(&bytes).unwrap();
        assert_eq!((h.rows, h.frames), (Some(256), Some(12)));
    }
}
