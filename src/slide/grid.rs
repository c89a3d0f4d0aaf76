//! Shared by the tiled readers (TIFF, DICOM): copying a rectangle out of a grid of
//! decoded chunks with background padding, and decoding one JPEG chunk into RGB8.
//!
//! It knows chunk geometry and pixels only; it never opens files or reads headers.

use std::path::Path;
use std::sync::Arc;

use image::RgbImage;

use super::jpeg::{self, JpegFault};
use super::{Limits, Rect, SlideError};

/// A level cut into equal chunks (tiles, DICOM frames, or strips as full-width tiles).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkGrid {
    pub width: u64,
    pub height: u64,
    pub chunk_width: u64,
    pub chunk_height: u64,
}

impl ChunkGrid {
    pub fn across(&self) -> u64 {
        self.width.div_ceil(self.chunk_width)
    }

    pub fn down(&self) -> u64 {
        self.height.div_ceil(self.chunk_height)
    }
}

/// Refuses a region request larger than `max_region_pixels` before anything is allocated.
pub(crate) fn check_region(path: &Path, limits: &Limits, rect: Rect) -> Result<(), SlideError> {
    let pixels = rect.width as u64 * rect.height as u64;
    if pixels > limits.max_region_pixels {
        return Err(SlideError::Limit {
            path: path.to_path_buf(),
            what: format!("region {}x{}", rect.width, rect.height),
            value: pixels,
            limit: limits.max_region_pixels,
            name: "max_region_pixels",
        });
    }
    Ok(())
}

/// Copies `rect` out of `grid`, padding outside the grid with `background`.
///
/// `chunk(index)` returns the decoded RGB8 chunk at row-major `index`, `chunk_width`
/// pixels wide and at most `chunk_height` rows (a short last strip is allowed).
/// The caller checks the region size first ([`check_region`]).
pub(crate) fn copy_region(
    grid: ChunkGrid,
    rect: Rect,
    background: [u8; 3],
    mut chunk: impl FnMut(usize) -> Result<Arc<Vec<u8>>, SlideError>,
) -> Result<RgbImage, SlideError> {
    let mut out = RgbImage::from_pixel(rect.width, rect.height, image::Rgb(background));
    let x0 = rect.x.max(0) as u64;
    let y0 = rect.y.max(0) as u64;
    let x1 = ((rect.x + rect.width as i64).max(0) as u64).min(grid.width);
    let y1 = ((rect.y + rect.height as i64).max(0) as u64).min(grid.height);
    if x0 >= x1 || y0 >= y1 {
        return Ok(out);
    }
    let (cw, ch) = (grid.chunk_width, grid.chunk_height);
    let out_w = rect.width as usize;
    let buf: &mut [u8] = &mut out;
    for cy in y0 / ch..=(y1 - 1) / ch {
        for cx in x0 / cw..=(x1 - 1) / cw {
            let index = (cy * grid.across() + cx) as usize;
            let data = chunk(index)?;
            let rows_in_chunk = data.len() as u64 / (cw * 3);
            let sx0 = x0.max(cx * cw);
            let sx1 = x1.min((cx + 1) * cw);
            let sy0 = y0.max(cy * ch);
            let sy1 = y1.min(cy * ch + rows_in_chunk);
            for y in sy0..sy1 {
                let src = ((y - cy * ch) * cw + (sx0 - cx * cw)) as usize * 3;
                let dst =
                    ((y as i64 - rect.y) as usize * out_w + (sx0 as i64 - rect.x) as usize) * 3;
                let n = (sx1 - sx0) as usize * 3;
                buf[dst..dst + n].copy_from_slice(&data[src..src + n]);
            }
        }
    }
    Ok(out)
}

/// Which colour transform a 3-component JPEG chunk needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JpegColour {
    /// The container says the samples are RGB: no transform.
    Rgb,
    /// The container says the samples are YCbCr.
    YCbCr,
    /// The container does not say: follow the stream's own markers (JFIF, Adobe,
    /// component ids), as libjpeg does.
    FromStream,
}

/// Why a JPEG chunk did not decode.
pub(crate) enum JpegError {
    /// The frame header declares more pixels than `max_tile_pixels`.
    TooLarge(u64),
    Bad(String),
}

/// Decodes one JPEG chunk into a `width * rows * 3` RGB8 buffer; a JPEG smaller than
/// the chunk leaves background (white), a larger one is cropped.
///
/// Baseline streams (what scanners write) go through [`jpeg::decode`], which matches
/// libjpeg-turbo pixel for pixel; the rest (progressive, arithmetic, 12-bit...) through
/// jpeg-decoder.
pub(crate) fn decode_jpeg_chunk(
    stream: &[u8],
    colour: JpegColour,
    width: usize,
    rows: usize,
    limits: &Limits,
) -> Result<Vec<u8>, JpegError> {
    decode_jpeg_chunk_with(stream, None, colour, width, rows, limits)
}

/// A TIFF page's JPEGTables: parsed once for the exact decoder (when they
/// parse), the bytes kept for the fallback decoder, which needs them spliced in.
#[derive(Clone)]
pub(crate) struct SharedTables {
    parsed: Option<jpeg::Tables>,
    raw: Vec<u8>,
}

impl std::fmt::Debug for SharedTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SharedTables({} bytes, parsed: {})",
            self.raw.len(),
            self.parsed.is_some()
        )
    }
}

impl SharedTables {
    pub(crate) fn new(raw: Vec<u8>) -> SharedTables {
        SharedTables {
            parsed: jpeg::Tables::parse(&raw).ok(),
            raw,
        }
    }
}

/// `tables` followed by `stream` as one stream: the tables' EOI and the
/// stream's SOI dropped (what a decoder without shared tables needs). Returns
/// `stream` unchanged where either is not a JPEG stream.
fn splice_tables(tables: &[u8], stream: &[u8]) -> Vec<u8> {
    if tables.len() < 4 || stream.len() < 2 || stream[..2] != [0xFF, 0xD8] {
        return stream.to_vec();
    }
    let t_end = if tables.ends_with(&[0xFF, 0xD9]) {
        tables.len() - 2
    } else {
        tables.len()
    };
    let mut s = Vec::with_capacity(t_end + stream.len());
    s.extend_from_slice(&tables[..t_end]);
    s.extend_from_slice(&stream[2..]);
    s
}

/// [`decode_jpeg_chunk`] for a tile of a page with shared JPEGTables.
pub(crate) fn decode_jpeg_chunk_with(
    stream: &[u8],
    tables: Option<&SharedTables>,
    colour: JpegColour,
    width: usize,
    rows: usize,
    limits: &Limits,
) -> Result<Vec<u8>, JpegError> {
    let max = limits.max_tile_pixels;
    // The stream with the tables spliced in, for a decoder that cannot take
    // them parsed (tables that do not parse alone; the fallback decoder).
    let whole = || match tables {
        None => std::borrow::Cow::Borrowed(stream),
        Some(t) => std::borrow::Cow::Owned(splice_tables(&t.raw, stream)),
    };
    let attempt = match tables.and_then(|t| t.parsed.as_ref()) {
        Some(parsed) => jpeg::decode_with(stream, parsed, colour, max),
        None => jpeg::decode(&whole(), colour, max),
    };
    let decoded = match attempt {
        Ok(decoded) => decoded,
        Err(JpegFault::TooLarge(pixels)) => return Err(JpegError::TooLarge(pixels)),
        Err(JpegFault::Bad(reason)) => return Err(JpegError::Bad(reason)),
        Err(JpegFault::Unsupported(_)) => decode_with_jpeg_decoder(&whole(), colour, limits)?,
    };
    let (jw, jh, channels) = (decoded.width, decoded.height, decoded.channels);
    let pixels = decoded.pixels;
    let mut out = vec![255u8; width * rows * 3];
    for y in 0..rows.min(jh) {
        for x in 0..width.min(jw) {
            let s = (y * jw + x) * channels;
            let d = (y * width + x) * 3;
            if channels == 1 {
                out[d..d + 3].fill(pixels[s]);
            } else {
                out[d..d + 3].copy_from_slice(&pixels[s..s + 3]);
            }
        }
    }
    Ok(out)
}

fn decode_with_jpeg_decoder(
    stream: &[u8],
    colour: JpegColour,
    limits: &Limits,
) -> Result<jpeg::Decoded, JpegError> {
    let mut decoder = jpeg_decoder::Decoder::new(stream);
    decoder.set_max_decoding_buffer_size(limits.max_tile_pixels as usize * 4);
    decoder
        .read_info()
        .map_err(|e| JpegError::Bad(e.to_string()))?;
    let info = decoder
        .info()
        .ok_or_else(|| JpegError::Bad("no frame header".into()))?;
    let (width, height) = (info.width as usize, info.height as usize);
    if (width * height) as u64 > limits.max_tile_pixels {
        return Err(JpegError::TooLarge((width * height) as u64));
    }
    if info.pixel_format == jpeg_decoder::PixelFormat::RGB24 {
        match colour {
            JpegColour::Rgb => decoder.set_color_transform(jpeg_decoder::ColorTransform::RGB),
            JpegColour::YCbCr => decoder.set_color_transform(jpeg_decoder::ColorTransform::YCbCr),
            JpegColour::FromStream => {}
        }
    }
    let pixels = decoder
        .decode()
        .map_err(|e| JpegError::Bad(e.to_string()))?;
    let channels = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => 1,
        jpeg_decoder::PixelFormat::RGB24 => 3,
        other => {
            return Err(JpegError::Bad(format!(
                "unsupported JPEG pixel format {other:?}"
            )))
        }
    };
    if pixels.len() < width * height * channels {
        return Err(JpegError::Bad("short decode".into()));
    }
    Ok(jpeg::Decoded {
        width,
        height,
        channels,
        pixels,
    })
}
