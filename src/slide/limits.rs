//! Decode limits: one budget checked before any allocation sized from a file header.
//!
//! A decompression bomb (a tiny file declaring an enormous image or tile) is refused
//! with a `SlideError::Limit` naming the limit, never obeyed.

/// Budgets for decoding untrusted slide files. Defaults suit whole-slide images
/// on a laptop; raise them deliberately, never to "unlimited".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Pixels of a format that must be decoded whole (PNG, JPEG, stripped TIFF
    /// pages): 64 Mpx by default (192 MiB as RGB8).
    pub max_whole_image_pixels: u64,
    /// Pixels of one TIFF tile or strip once decoded: 16 Mpx (4096 × 4096).
    pub max_tile_pixels: u64,
    /// Compressed bytes of one TIFF tile or strip: 64 MiB.
    pub max_tile_bytes: u64,
    /// Pyramid levels plus associated images: 64.
    pub max_levels: usize,
    /// IFDs followed in one file (main chain and SubIFDs together): 1024.
    pub max_ifds: usize,
    /// Entries in one IFD: 4096.
    pub max_ifd_entries: u64,
    /// Bytes one tag value may occupy (tile offset arrays, descriptions): 256 MiB.
    pub max_tag_bytes: u64,
    /// Pixels of one `read_region` request: 256 Mpx.
    pub max_region_pixels: u64,
    /// Width or height of any level: 2^24 px (16.7 million).
    pub max_dimension: u64,
    /// Frames (tiles) of one DICOM instance, and tiles of one sparse level: 2^22
    /// (4.2 million; a 200,000 px square level in 128 px tiles needs 2.4 million).
    pub max_frames: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_whole_image_pixels: 64 << 20,
            max_tile_pixels: 16 << 20,
            max_tile_bytes: 64 << 20,
            max_levels: 64,
            max_ifds: 1024,
            max_ifd_entries: 4096,
            max_tag_bytes: 256 << 20,
            max_region_pixels: 256 << 20,
            max_dimension: 1 << 24,
            max_frames: 1 << 22,
        }
    }
}
