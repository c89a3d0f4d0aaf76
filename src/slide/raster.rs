//! PNG and JPEG exports: one level, decoded whole (under the pixel limit) on first read.
//! JPEG goes through the exact (libjpeg-turbo-equal) decoder the tiled readers use.
//!
//! MPP comes from PNG's pHYs chunk or JPEG's JFIF density when they hold a real scan
//! resolution; otherwise it is unknown and later stages ask for `--mpp`.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use image::RgbImage;

use super::grid::{decode_jpeg_chunk, JpegColour, JpegError};
use super::metadata::{self, MppSource};
use super::{
    LevelInfo, Limits, Mpp, OpenOptions, Rect, SlideError, SlideFormat, SlideInfo, SlideReader,
};

pub struct RasterSlide {
    path: PathBuf,
    info: SlideInfo,
    limits: Limits,
    pixels: OnceLock<Result<RgbImage, String>>,
}

impl RasterSlide {
    pub fn open(path: &Path, file: File, options: &OpenOptions) -> Result<RasterSlide, SlideError> {
        let io = |source| SlideError::Io {
            path: path.to_path_buf(),
            source,
        };
        let format_err = |reason: String| SlideError::Format {
            path: path.to_path_buf(),
            format: "PNG/JPEG",
            reason,
        };
        // Headers only: the first 64 KiB hold IHDR/pHYs or the JFIF/SOF markers.
        let mut head = Vec::new();
        file.take(64 << 10).read_to_end(&mut head).map_err(io)?;
        let is_png = head.starts_with(b"\x89PNG");
        let (width, height) = if is_png {
            png_dimensions(&head).ok_or_else(|| format_err("no PNG IHDR header".into()))?
        } else {
            image::ImageReader::new(std::io::Cursor::new(&head))
                .with_guessed_format()
                .map_err(io)?
                .into_dimensions()
                .map_err(|e| format_err(format!("cannot read the image header: {e}")))?
        };
        let pixels = width as u64 * height as u64;
        if pixels > options.limits.max_whole_image_pixels {
            return Err(SlideError::Limit {
                path: path.to_path_buf(),
                what: format!("image of {width}x{height} pixels"),
                value: pixels,
                limit: options.limits.max_whole_image_pixels,
                name: "max_whole_image_pixels",
            });
        }
        let stored = if is_png {
            png_phys_mpp(&head)
        } else {
            jfif_density_mpp(&head)
        };
        let (mpp, mpp_source) = match (options.mpp_override, stored) {
            (Some(m), _) => (Some(m), MppSource::Override),
            (None, Some(m)) => (Some(m), MppSource::TiffResolution),
            (None, None) => (None, MppSource::Unknown),
        };
        let info = SlideInfo {
            format: if is_png {
                SlideFormat::Png
            } else {
                SlideFormat::Jpeg
            },
            vendor: None,
            levels: vec![LevelInfo {
                width: width as u64,
                height: height as u64,
                downsample: 1.0,
            }],
            mpp,
            mpp_source,
            objective_power: None,
            associated: Vec::new(),
            background: [255, 255, 255],
        };
        Ok(RasterSlide {
            path: path.to_path_buf(),
            info,
            limits: options.limits,
            pixels: OnceLock::new(),
        })
    }

    fn decode(&self) -> Result<&RgbImage, SlideError> {
        let result = self.pixels.get_or_init(|| match self.info.format {
            SlideFormat::Jpeg => self.decode_jpeg(),
            _ => self.decode_with_image_crate(),
        });
        result.as_ref().map_err(|reason| SlideError::Format {
            path: self.path.clone(),
            format: "PNG/JPEG",
            reason: reason.clone(),
        })
    }

    /// A JPEG export through the same decoder as scanners' JPEG tiles: baseline
    /// frames exactly as libjpeg-turbo decodes them (so an export and the slide it
    /// came from give the same pixels), anything else (progressive, arithmetic...)
    /// through the tiles' fallback decoder.
    fn decode_jpeg(&self) -> Result<RgbImage, String> {
        let mut bytes = Vec::new();
        File::open(&self.path)
            .and_then(|f| {
                // A JPEG larger than its raw pixels is not one this reader made sense of.
                f.take(self.limits.max_whole_image_pixels * 3 + (16 << 20))
                    .read_to_end(&mut bytes)
            })
            .map_err(|e| e.to_string())?;
        let level = &self.info.levels[0];
        let (width, height) = (level.width as u32, level.height as u32);
        let limits = Limits {
            max_tile_pixels: self.limits.max_whole_image_pixels,
            ..self.limits
        };
        let pixels = decode_jpeg_chunk(
            &bytes,
            JpegColour::FromStream,
            width as usize,
            height as usize,
            &limits,
        )
        .map_err(|e| match e {
            JpegError::TooLarge(pixels) => format!(
                "the JPEG frame has {pixels} pixels, over max_whole_image_pixels ({})",
                self.limits.max_whole_image_pixels
            ),
            JpegError::Bad(reason) => reason,
        })?;
        RgbImage::from_raw(width, height, pixels)
            .ok_or_else(|| "decoded buffer does not match the image size".to_string())
    }

    fn decode_with_image_crate(&self) -> Result<RgbImage, String> {
        let file = File::open(&self.path).map_err(|e| e.to_string())?;
        let mut reader = image::ImageReader::new(BufReader::new(file))
            .with_guessed_format()
            .map_err(|e| e.to_string())?;
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(self.limits.max_whole_image_pixels * 4 + (16 << 20));
        reader.limits(limits);
        reader
            .decode()
            .map(|img| img.to_rgb8())
            .map_err(|e| e.to_string())
    }
}

impl SlideReader for RasterSlide {
    fn path(&self) -> &Path {
        &self.path
    }

    fn info(&self) -> &SlideInfo {
        &self.info
    }

    fn read_region(&self, level: usize, rect: Rect) -> Result<RgbImage, SlideError> {
        if level != 0 {
            return Err(SlideError::NoSuchLevel {
                path: self.path.clone(),
                level,
                levels: 1,
            });
        }
        let pixels = rect.width as u64 * rect.height as u64;
        if pixels > self.limits.max_region_pixels {
            return Err(SlideError::Limit {
                path: self.path.clone(),
                what: format!("region {}x{}", rect.width, rect.height),
                value: pixels,
                limit: self.limits.max_region_pixels,
                name: "max_region_pixels",
            });
        }
        let image = self.decode()?;
        let mut out =
            RgbImage::from_pixel(rect.width, rect.height, image::Rgb(self.info.background));
        let (w, h) = (image.width() as i64, image.height() as i64);
        for y in rect.y.max(0)..(rect.y + rect.height as i64).min(h) {
            for x in rect.x.max(0)..(rect.x + rect.width as i64).min(w) {
                out.put_pixel(
                    (x - rect.x) as u32,
                    (y - rect.y) as u32,
                    *image.get_pixel(x as u32, y as u32),
                );
            }
        }
        Ok(out)
    }

    fn read_associated(&self, name: &str) -> Result<RgbImage, SlideError> {
        Err(SlideError::NoSuchAssociated {
            path: self.path.clone(),
            name: name.to_string(),
        })
    }
}

/// Width and height from the IHDR chunk that must open every PNG.
fn png_dimensions(head: &[u8]) -> Option<(u32, u32)> {
    if head.len() < 24 || &head[12..16] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(head[16..20].try_into().ok()?);
    let h = u32::from_be_bytes(head[20..24].try_into().ok()?);
    (w > 0 && h > 0).then_some((w, h))
}

/// MPP from a PNG pHYs chunk with unit "metre".
fn png_phys_mpp(head: &[u8]) -> Option<Mpp> {
    let mut i = 8;
    while i + 8 <= head.len() {
        let len = u32::from_be_bytes(head[i..i + 4].try_into().ok()?) as usize;
        let kind = &head[i + 4..i + 8];
        if kind == b"pHYs" && len == 9 && i + 17 <= head.len() {
            let d = &head[i + 8..i + 17];
            let x = u32::from_be_bytes(d[0..4].try_into().ok()?) as f64;
            let y = u32::from_be_bytes(d[4..8].try_into().ok()?) as f64;
            // pixels per metre -> pixels per centimetre
            return (d[8] == 1)
                .then(|| metadata::mpp_from_resolution(x / 100.0, y / 100.0, 3))
                .flatten();
        }
        if kind == b"IDAT" || kind == b"IEND" {
            return None;
        }
        i = i.checked_add(12 + len)?;
    }
    None
}

/// MPP from a JFIF APP0 density with units dots per inch (1) or per cm (2).
fn jfif_density_mpp(head: &[u8]) -> Option<Mpp> {
    if head.len() < 18 || &head[2..4] != b"\xFF\xE0" || &head[6..11] != b"JFIF\0" {
        return None;
    }
    let units = head[13];
    let x = u16::from_be_bytes([head[14], head[15]]) as f64;
    let y = u16::from_be_bytes([head[16], head[17]]) as f64;
    match units {
        1 => metadata::mpp_from_resolution(x, y, 2),
        2 => metadata::mpp_from_resolution(x, y, 3),
        _ => None,
    }
}
