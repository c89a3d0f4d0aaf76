//! DICOM whole-slide images: parity of the real DICOM export of CMU-1-Small-Region
//! with its SVS and reference decodes (from `../shared/fixtures/real/`, skipped with a
//! printed reason where absent), round trips through series this test writes itself
//! (explicit and implicit VR, JPEG and native, TILED_FULL and TILED_SPARSE, labels,
//! multi-fragment frames), and mutants that must fail cleanly, never panic or hang.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dirascope::slide::{self, MppSource, OpenOptions, Rect, SlideError, SlideFormat};
use rand::{Rng, SeedableRng};

// ---------------------------------------------------------------- real fixture

fn real_dir() -> Option<PathBuf> {
    common::real_dir("CMU-1-Small-Region-dicom")
}

const LEVEL0: &str = "CMU-1-Small-Region-dicom/level-0-frames-0-30.dcm";

fn mean_abs_diff(a: &image::RgbImage, b: &image::RgbImage) -> [f64; 3] {
    assert_eq!(a.dimensions(), b.dimensions());
    let mut sum = [0f64; 3];
    for (p, q) in a.pixels().zip(b.pixels()) {
        for c in 0..3 {
            sum[c] += (p[c] as f64 - q[c] as f64).abs();
        }
    }
    let n = (a.width() * a.height()) as f64;
    sum.map(|s| s / n)
}

#[test]
fn dicom_level0_matches_the_svs_in_size_and_mpp() {
    let Some(dir) = real_dir() else { return };
    let dicom = slide::open(&dir.join(LEVEL0), &OpenOptions::default()).unwrap();
    let svs = slide::open(&dir.join("CMU-1-Small-Region.svs"), &OpenOptions::default()).unwrap();
    let (d, s) = (dicom.info(), svs.info());
    assert_eq!(d.format, SlideFormat::Dicom);
    assert_eq!((d.width(), d.height()), (s.width(), s.height()));
    assert_eq!((d.width(), d.height()), (2220, 2967));
    let (dm, sm) = (d.mpp.unwrap(), s.mpp.unwrap());
    assert!((dm.x - sm.x).abs() < 1e-9 && (dm.y - sm.y).abs() < 1e-9);
    assert_eq!(d.mpp_source, MppSource::DicomPixelSpacing);
}

#[test]
fn dicom_pyramid_has_12_levels_halving_each_time() {
    let Some(dir) = real_dir() else { return };
    let reader = slide::open(&dir.join(LEVEL0), &OpenOptions::default()).unwrap();
    let info = reader.info();
    assert_eq!(info.levels.len(), 12);
    for (k, l) in info.levels.iter().enumerate() {
        let scale = (1u64 << k) as f64;
        // Each level is the previous one halved and rounded: within a pixel of W / 2^k.
        assert!(
            (l.width as f64 - 2220.0 / scale).abs() < 1.0
                && (l.height as f64 - 2967.0 / scale).abs() < 1.0,
            "level {k}: {}x{}",
            l.width,
            l.height
        );
        // The downsample is 2^k up to the rounding of a level that is a few pixels wide.
        let tolerance = scale * (1.0 / l.width as f64 + 1.0 / l.height as f64);
        assert!(
            (l.downsample - scale).abs() <= tolerance,
            "level {k}: downsample {} vs {scale}",
            l.downsample
        );
    }
    // The fixture holds VOLUME instances only; say so rather than pass silently.
    eprintln!(
        "associated images in the DICOM fixture: {:?}",
        info.associated
    );
    for a in &info.associated {
        let img = reader.read_associated(&a.name).unwrap();
        assert_eq!(
            (img.width() as u64, img.height() as u64),
            (a.width, a.height)
        );
    }
}

#[test]
fn dicom_level0_pixels_match_the_reference_decode() {
    let Some(dir) = real_dir() else { return };
    let reader = slide::open(&dir.join(LEVEL0), &OpenOptions::default()).unwrap();
    // x 800..1312, y 1200..1712 crosses the 500 px frame edges at x 1000 and y 1500.
    let ours = reader
        .read_region(0, Rect::new(800, 1200, 512, 512))
        .unwrap();
    let reference = image::open(dir.join("CMU-1-Small-Region.region-x800-y1200-512.png"))
        .unwrap()
        .to_rgb8();
    let mad = mean_abs_diff(&ours, &reference);
    eprintln!(
        "DICOM level 0 vs reference PNG, mean absolute difference per channel: \
         {:.4} {:.4} {:.4}",
        mad[0], mad[1], mad[2]
    );
    // The DICOM frames are a second JPEG generation of the SVS pixels: the SVS tiles
    // (RGB JPEG, Q=30) were decoded and re-encoded as 500 px YCbCr frames at quality
    // ~80 with 4:2:0 chroma (the frames' DQT and SOF say so). That loss is about 8, 5
    // and 9 per channel here (R and B, which lean on chroma, lose most), so the brief's
    // suggested 3.0 cannot hold. What a reader gets wrong shows differently, and is
    // asserted below: a one-pixel misplacement adds over half again to the difference, a
    // wrong colour transform gives tens, and our decode of a frame agrees with an
    // independent decoder's within 1.0.
    for (c, m) in mad.iter().enumerate() {
        assert!(*m <= 12.0, "channel {c}: mean absolute difference {m:.4}");
    }
    let bias: Vec<f64> = (0..3)
        .map(|c| {
            ours.pixels()
                .zip(reference.pixels())
                .map(|(p, q)| p[c] as f64 - q[c] as f64)
                .sum::<f64>()
                / (512.0 * 512.0)
        })
        .collect();
    eprintln!(
        "mean signed difference: {:.4} {:.4} {:.4}",
        bias[0], bias[1], bias[2]
    );
    assert!(bias.iter().all(|b| b.abs() <= 1.0), "colour shift {bias:?}");
    for (dx, dy) in [(1, 0), (-1, 0), (0, 1), (0, -1)] {
        let shifted = reader
            .read_region(0, Rect::new(800 + dx, 1200 + dy, 512, 512))
            .unwrap();
        let m = mean_abs_diff(&shifted, &reference);
        let (shifted_total, aligned_total) = (m.iter().sum::<f64>(), mad.iter().sum::<f64>());
        assert!(
            shifted_total > 1.5 * aligned_total,
            "shift ({dx}, {dy}) matches as well ({shifted_total:.3} vs {aligned_total:.3}): \
             frames misplaced?"
        );
    }
}

/// The first frame's JPEG bytes: the item after the (empty) Basic Offset Table.
fn first_frame_jpeg(file: &[u8]) -> &[u8] {
    let tag = [
        0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
    ];
    let mut p = file.windows(tag.len()).position(|w| w == tag).unwrap() + tag.len();
    let item_len = |p: usize| u32::from_le_bytes(file[p + 4..p + 8].try_into().unwrap()) as usize;
    p += 8 + item_len(p); // the Basic Offset Table
    &file[p + 8..p + 8 + item_len(p)]
}

#[test]
fn dicom_frame_decode_matches_an_independent_decoder() {
    let Some(dir) = real_dir() else { return };
    let bytes = std::fs::read(dir.join(LEVEL0)).unwrap();
    let theirs =
        image::load_from_memory_with_format(first_frame_jpeg(&bytes), image::ImageFormat::Jpeg)
            .unwrap()
            .to_rgb8();
    assert_eq!(theirs.dimensions(), (500, 500));
    let reader = slide::open(&dir.join(LEVEL0), &OpenOptions::default()).unwrap();
    let ours = reader.read_region(0, Rect::new(0, 0, 500, 500)).unwrap();
    let mad = mean_abs_diff(&ours, &theirs);
    eprintln!(
        "frame 0, jpeg-decoder vs zune-jpeg: {:.4} {:.4} {:.4}",
        mad[0], mad[1], mad[2]
    );
    assert!(mad.iter().all(|m| *m <= 1.0), "{mad:?}");
}

#[test]
fn opening_the_directory_or_one_file_gives_the_same_slide() {
    let Some(dir) = real_dir() else { return };
    let folder = dir.join("CMU-1-Small-Region-dicom");
    let by_dir = slide::open(&folder, &OpenOptions::default()).unwrap();
    for file in ["level-0-frames-0-30.dcm", "level-7-frames-0-1.dcm"] {
        let by_file = slide::open(&folder.join(file), &OpenOptions::default()).unwrap();
        assert_eq!(by_dir.info(), by_file.info(), "{file}");
        for level in [0, 3, 11] {
            let rect = Rect::new(-5, -5, 300, 300);
            assert_eq!(
                by_dir.read_region(level, rect).unwrap(),
                by_file.read_region(level, rect).unwrap(),
                "{file} level {level}"
            );
        }
    }
}

#[test]
fn dicom_regions_cross_frames_and_pad_outside() {
    let Some(dir) = real_dir() else { return };
    let reader = slide::open(&dir.join(LEVEL0), &OpenOptions::default()).unwrap();
    let whole = reader.read_region(1, Rect::new(0, 0, 1110, 1483)).unwrap();
    // Frames are 500 px: this rectangle touches four frames and leaves the image.
    let part = reader.read_region(1, Rect::new(990, 480, 200, 40)).unwrap();
    for y in 0..40 {
        for x in 0..200 {
            let want = if 990 + x < 1110 {
                *whole.get_pixel(990 + x, 480 + y)
            } else {
                image::Rgb(reader.info().background)
            };
            assert_eq!(*part.get_pixel(x, y), want, "({x}, {y})");
        }
    }
    let thumb = reader.thumbnail(256).unwrap();
    assert_eq!(thumb.height(), 256);
}

// ---------------------------------------------------------------- a tiny DICOM writer

/// Element writer for explicit or implicit VR little endian.
struct Writer {
    out: Vec<u8>,
    implicit: bool,
}

fn long_vr(vr: &[u8; 2]) -> bool {
    matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT" | b"OV")
}

impl Writer {
    fn new(implicit: bool) -> Writer {
        Writer {
            out: Vec::new(),
            implicit,
        }
    }

    fn header(&mut self, g: u16, e: u16, vr: &[u8; 2], len: u32) {
        self.out.extend_from_slice(&g.to_le_bytes());
        self.out.extend_from_slice(&e.to_le_bytes());
        if self.implicit {
            self.out.extend_from_slice(&len.to_le_bytes());
        } else if long_vr(vr) {
            self.out.extend_from_slice(vr);
            self.out.extend_from_slice(&[0, 0]);
            self.out.extend_from_slice(&len.to_le_bytes());
        } else {
            self.out.extend_from_slice(vr);
            self.out.extend_from_slice(&(len as u16).to_le_bytes());
        }
    }

    fn bytes(&mut self, g: u16, e: u16, vr: &[u8; 2], value: &[u8]) {
        let mut v = value.to_vec();
        if v.len() % 2 == 1 {
            v.push(if vr == b"UI" || vr == b"OB" { 0 } else { b' ' });
        }
        self.header(g, e, vr, v.len() as u32);
        self.out.extend_from_slice(&v);
    }

    fn str(&mut self, g: u16, e: u16, vr: &[u8; 2], value: &str) {
        self.bytes(g, e, vr, value.as_bytes());
    }

    fn us(&mut self, g: u16, e: u16, v: u16) {
        self.bytes(g, e, b"US", &v.to_le_bytes());
    }

    fn ul(&mut self, g: u16, e: u16, v: u32) {
        self.bytes(g, e, b"UL", &v.to_le_bytes());
    }

    /// A sequence of items, each a data set written by `items`, with defined or
    /// undefined lengths.
    fn sequence(&mut self, g: u16, e: u16, items: &[Vec<u8>], undefined: bool) {
        let mut body = Vec::new();
        for item in items {
            body.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
            if undefined {
                body.extend_from_slice(&u32::MAX.to_le_bytes());
                body.extend_from_slice(item);
                body.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
            } else {
                body.extend_from_slice(&(item.len() as u32).to_le_bytes());
                body.extend_from_slice(item);
            }
        }
        if undefined {
            self.header(g, e, b"SQ", u32::MAX);
            self.out.extend_from_slice(&body);
            self.out
                .extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        } else {
            self.header(g, e, b"SQ", body.len() as u32);
            self.out.extend_from_slice(&body);
        }
    }
}

#[derive(Clone)]
struct Spec {
    series: &'static str,
    image_type: &'static str,
    tile: u32,
    implicit: bool,
    jpeg: bool,
    sparse: bool,
    /// Split each JPEG frame into two fragments and list frames in the offset table.
    two_fragments: bool,
    undefined_sequences: bool,
    mpp_mm: f64,
    /// Write only frames `a..b`, as one part of a concatenation.
    frames: Option<(usize, usize)>,
    /// Which table tells two-fragment frames apart.
    frame_index: FrameIndex,
}

#[derive(Clone, Copy, PartialEq)]
enum FrameIndex {
    BasicOffsetTable,
    ExtendedOffsetTable,
    /// None: the reader must find each frame's JPEG start-of-image marker.
    StartMarkers,
}

impl Default for Spec {
    fn default() -> Spec {
        Spec {
            series: "1.2.3.4",
            image_type: "ORIGINAL\\PRIMARY\\VOLUME\\NONE",
            tile: 64,
            implicit: false,
            jpeg: true,
            sparse: false,
            two_fragments: false,
            undefined_sequences: false,
            mpp_mm: 0.00025,
            frames: None,
            frame_index: FrameIndex::BasicOffsetTable,
        }
    }
}

/// Tiles of `img` that a TILED_SPARSE writer leaves out (every third).
fn skipped_in_sparse(index: usize) -> bool {
    index % 3 == 1
}

fn dicom_instance(spec: &Spec, img: &image::RgbImage) -> Vec<u8> {
    let (w, h, t) = (img.width(), img.height(), spec.tile);
    let (across, down) = (w.div_ceil(t), h.div_ceil(t));
    let mut frames = Vec::new();
    let mut positions = Vec::new();
    for ty in 0..down {
        for tx in 0..across {
            let index = (ty * across + tx) as usize;
            if spec.sparse && skipped_in_sparse(index) {
                continue;
            }
            let tile = image::RgbImage::from_fn(t, t, |x, y| {
                let (sx, sy) = (tx * t + x, ty * t + y);
                if sx < w && sy < h {
                    *img.get_pixel(sx, sy)
                } else {
                    image::Rgb([255, 255, 255])
                }
            });
            let data = if spec.jpeg {
                let mut buf = Vec::new();
                jpeg_encoder::Encoder::new(&mut buf, 95)
                    .encode(
                        tile.as_raw(),
                        t as u16,
                        t as u16,
                        jpeg_encoder::ColorType::Rgb,
                    )
                    .unwrap();
                buf
            } else {
                tile.into_raw()
            };
            frames.push(data);
            positions.push((tx * t + 1, ty * t + 1));
        }
    }
    if let Some((a, b)) = spec.frames {
        frames = frames.drain(a..b).collect();
        positions = positions.drain(a..b).collect();
    }
    let ts = match (spec.implicit, spec.jpeg) {
        (_, true) => "1.2.840.10008.1.2.4.50",
        (true, false) => "1.2.840.10008.1.2",
        (false, false) => "1.2.840.10008.1.2.1",
    };
    let mut meta = Writer::new(false);
    meta.bytes(0x0002, 0x0001, b"OB", &[0, 1]);
    meta.str(0x0002, 0x0002, b"UI", "1.2.840.10008.5.1.4.1.1.77.1.6");
    meta.str(0x0002, 0x0010, b"UI", ts);
    let mut file = vec![0u8; 128];
    file.extend_from_slice(b"DICM");
    let mut group_length = Writer::new(false);
    group_length.ul(0x0002, 0x0000, meta.out.len() as u32);
    file.extend_from_slice(&group_length.out);
    file.extend_from_slice(&meta.out);

    let implicit = spec.implicit && !spec.jpeg;
    let mut d = Writer::new(implicit);
    d.str(0x0008, 0x0008, b"CS", spec.image_type);
    d.str(0x0008, 0x0016, b"UI", "1.2.840.10008.5.1.4.1.1.77.1.6");
    d.str(0x0008, 0x0070, b"LO", "dirascope-test");
    d.str(0x0020, 0x000E, b"UI", spec.series);
    if let Some((a, _)) = spec.frames {
        d.ul(0x0020, 0x9228, a as u32);
    }
    d.str(
        0x0020,
        0x9311,
        b"CS",
        if spec.sparse {
            "TILED_SPARSE"
        } else {
            "TILED_FULL"
        },
    );
    d.us(0x0028, 0x0002, 3);
    d.str(
        0x0028,
        0x0004,
        b"CS",
        if spec.jpeg { "YBR_FULL_422" } else { "RGB" },
    );
    d.us(0x0028, 0x0006, 0);
    d.str(0x0028, 0x0008, b"IS", &frames.len().to_string());
    d.us(0x0028, 0x0010, t as u16);
    d.us(0x0028, 0x0011, t as u16);
    d.us(0x0028, 0x0100, 8);
    d.ul(0x0048, 0x0006, w);
    d.ul(0x0048, 0x0007, h);
    let mut lens = Writer::new(implicit);
    lens.str(0x0048, 0x0112, b"DS", "20");
    d.sequence(0x0048, 0x0105, &[lens.out], spec.undefined_sequences);
    let mut measures = Writer::new(implicit);
    measures.str(
        0x0028,
        0x0030,
        b"DS",
        &format!("{}\\{}", spec.mpp_mm, spec.mpp_mm),
    );
    let mut shared = Writer::new(implicit);
    shared.sequence(0x0028, 0x9110, &[measures.out], spec.undefined_sequences);
    d.sequence(0x5200, 0x9229, &[shared.out], spec.undefined_sequences);
    if spec.sparse {
        let items: Vec<Vec<u8>> = positions
            .iter()
            .map(|&(col, row)| {
                let mut pos = Writer::new(implicit);
                pos.bytes(0x0048, 0x021E, b"SL", &(col as i32).to_le_bytes());
                pos.bytes(0x0048, 0x021F, b"SL", &(row as i32).to_le_bytes());
                let mut group = Writer::new(implicit);
                group.sequence(0x0048, 0x021A, &[pos.out], spec.undefined_sequences);
                group.out
            })
            .collect();
        d.sequence(0x5200, 0x9230, &items, spec.undefined_sequences);
    }
    if spec.jpeg {
        d.header(0x7FE0, 0x0010, b"OB", u32::MAX);
        let mut fragments: Vec<Vec<u8>> = Vec::new();
        let mut bot = Vec::new();
        let mut offset = 0u32;
        for f in &frames {
            bot.extend_from_slice(&offset.to_le_bytes());
            let parts: Vec<&[u8]> = if spec.two_fragments {
                let mid = (f.len() / 2) & !1;
                vec![&f[..mid], &f[mid..]]
            } else {
                vec![&f[..]]
            };
            for p in parts {
                let mut p = p.to_vec();
                if p.len() % 2 == 1 {
                    p.push(0);
                }
                offset += 8 + p.len() as u32;
                fragments.push(p);
            }
        }
        if !spec.two_fragments || spec.frame_index != FrameIndex::BasicOffsetTable {
            bot.clear(); // an empty Basic Offset Table, as most exporters write
        }
        if spec.two_fragments && spec.frame_index == FrameIndex::ExtendedOffsetTable {
            let (mut offsets, mut lengths) = (Vec::new(), Vec::new());
            let mut at = 0u64;
            for f in &frames {
                let padded = (f.len() as u64).div_ceil(2) * 2;
                offsets.extend_from_slice(&at.to_le_bytes());
                lengths.extend_from_slice(&padded.to_le_bytes());
                at += 16 + padded;
            }
            // Written before the pixel data header, as tag order requires.
            let header_at = d.out.len() - 12;
            let pixel_header = d.out.split_off(header_at);
            d.bytes(0x7FE0, 0x0001, b"OV", &offsets);
            d.bytes(0x7FE0, 0x0002, b"OV", &lengths);
            d.out.extend_from_slice(&pixel_header);
        }
        d.out.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
        d.out.extend_from_slice(&(bot.len() as u32).to_le_bytes());
        d.out.extend_from_slice(&bot);
        for p in fragments {
            d.out.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
            d.out.extend_from_slice(&(p.len() as u32).to_le_bytes());
            d.out.extend_from_slice(&p);
        }
        d.out
            .extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    } else {
        let all: Vec<u8> = frames.concat();
        d.bytes(0x7FE0, 0x0010, b"OB", &all);
    }
    file.extend_from_slice(&d.out);
    file
}

fn pattern(width: u32, height: u32) -> image::RgbImage {
    // Smooth enough for JPEG to keep close, varied enough to catch misplaced tiles.
    image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x * 255 / width.max(1)) as u8,
            (y * 255 / height.max(1)) as u8,
            (((x / 16 + y / 16) % 2) * 120 + 60) as u8,
        ])
    })
}

fn half(img: &image::RgbImage) -> image::RgbImage {
    image::imageops::resize(
        img,
        img.width() / 2,
        img.height() / 2,
        image::imageops::FilterType::Triangle,
    )
}

/// Writes a two-level series plus a label into `dir`; returns the level-0 path.
fn write_series(dir: &Path, spec: &Spec, img: &image::RgbImage) -> PathBuf {
    let l0 = dir.join("level0.dcm");
    std::fs::write(&l0, dicom_instance(spec, img)).unwrap();
    let l1 = Spec {
        image_type: "DERIVED\\PRIMARY\\VOLUME\\RESAMPLED",
        mpp_mm: spec.mpp_mm * 2.0,
        ..spec.clone()
    };
    std::fs::write(dir.join("level1.dcm"), dicom_instance(&l1, &half(img))).unwrap();
    let label = Spec {
        image_type: "ORIGINAL\\PRIMARY\\LABEL\\NONE",
        tile: 40,
        sparse: false,
        ..spec.clone()
    };
    std::fs::write(
        dir.join("label.dcm"),
        dicom_instance(&label, &pattern(40, 30)),
    )
    .unwrap();
    // Neither of these belongs to the slide: another series and a text file.
    let other = Spec {
        series: "9.9.9",
        ..spec.clone()
    };
    std::fs::write(
        dir.join("other.dcm"),
        dicom_instance(&other, &pattern(50, 50)),
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), "not DICOM").unwrap();
    l0
}

fn check_round_trip(spec: Spec) {
    let dir = tempfile::tempdir().unwrap();
    let img = pattern(200, 150);
    let l0 = write_series(dir.path(), &spec, &img);
    let reader = slide::open(&l0, &OpenOptions::default()).unwrap();
    let info = reader.info().clone();
    assert_eq!(info.format, SlideFormat::Dicom);
    assert_eq!(info.vendor.as_deref(), Some("dirascope-test"));
    assert_eq!(info.objective_power, Some(20.0));
    assert_eq!(info.levels.len(), 2);
    assert_eq!((info.width(), info.height()), (200, 150));
    assert_eq!((info.levels[1].width, info.levels[1].height), (100, 75));
    assert!((info.levels[1].downsample - 2.0).abs() < 1e-9);
    let mpp = info.mpp.unwrap();
    assert!((mpp.x - 0.25).abs() < 1e-9 && (mpp.y - 0.25).abs() < 1e-9);
    let names: Vec<_> = info.associated.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["label"]);
    assert_eq!(
        reader.read_associated("label").unwrap().dimensions(),
        (40, 30)
    );
    // A region crossing tile edges and leaving the image on the right and bottom.
    let rect = Rect::new(40, 50, 200, 120);
    let got = reader.read_region(0, rect).unwrap();
    let tile = spec.tile;
    let across = 200u32.div_ceil(tile);
    let mut worst = 0i32;
    for y in 0..rect.height {
        for x in 0..rect.width {
            let (sx, sy) = (rect.x as u32 + x, rect.y as u32 + y);
            let outside = sx >= 200 || sy >= 150;
            let skipped =
                spec.sparse && skipped_in_sparse(((sy / tile) * across + sx / tile) as usize);
            let want = if outside || skipped {
                [255, 255, 255]
            } else {
                img.get_pixel(sx, sy).0
            };
            let p = got.get_pixel(x, y).0;
            for c in 0..3 {
                let d = (p[c] as i32 - want[c] as i32).abs();
                if outside || skipped || !spec.jpeg {
                    assert_eq!(d, 0, "({sx}, {sy}) channel {c}");
                }
                worst = worst.max(d);
            }
        }
    }
    assert!(worst <= 40, "worst pixel difference {worst}");
    // The directory opens the same slide (the other series is ignored: it is the
    // odd one out only when opening by file, so open the directory with it removed).
    std::fs::remove_file(dir.path().join("other.dcm")).unwrap();
    let by_dir = slide::open(dir.path(), &OpenOptions::default()).unwrap();
    assert_eq!(by_dir.info(), &info);
}

#[test]
fn explicit_vr_jpeg_tiled_full_round_trips() {
    check_round_trip(Spec::default());
}

#[test]
fn implicit_vr_native_rgb_round_trips_exactly() {
    check_round_trip(Spec {
        implicit: true,
        jpeg: false,
        undefined_sequences: true,
        ..Spec::default()
    });
}

#[test]
fn explicit_vr_native_tiled_sparse_pads_missing_tiles() {
    check_round_trip(Spec {
        jpeg: false,
        sparse: true,
        ..Spec::default()
    });
}

#[test]
fn jpeg_frames_in_two_fragments_found_through_the_offset_table() {
    check_round_trip(Spec {
        two_fragments: true,
        sparse: true,
        undefined_sequences: true,
        ..Spec::default()
    });
}

#[test]
fn inspect_prints_the_dicom_slide() {
    let dir = tempfile::tempdir().unwrap();
    let l0 = write_series(dir.path(), &Spec::default(), &pattern(200, 150));
    let out = assert_cmd::Command::cargo_bin("dirascope")
        .unwrap()
        .args(["inspect", l0.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "format           dicom",
        "vendor           dirascope-test",
        "dimensions       200 x 150",
        "0.2500 x 0.2500 µm/px (dicom-pixel-spacing)",
        "objective power  20x",
        "levels           2",
        "level 1        100 x 75 (downsample 2.000)",
        "label          40 x 30",
    ] {
        assert!(text.contains(want), "'{want}' not in:\n{text}");
    }
    let out = assert_cmd::Command::cargo_bin("dirascope")
        .unwrap()
        .args(["inspect", "--json", l0.to_str().unwrap()])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["format"], "dicom");
    assert_eq!(json["mpp_source"], "dicom-pixel-spacing");
}

#[test]
fn a_level_split_into_a_concatenation_reads_as_one_level() {
    let img = pattern(200, 150);
    let whole = tempfile::tempdir().unwrap();
    let l0 = whole.path().join("whole.dcm");
    std::fs::write(&l0, dicom_instance(&Spec::default(), &img)).unwrap();
    let want = slide::open(&l0, &OpenOptions::default()).unwrap();
    // 4 x 3 tiles of 64 px: frames 0..5 in one instance, 5..12 in another.
    let split = tempfile::tempdir().unwrap();
    for (name, range) in [("part-b.dcm", (5, 12)), ("part-a.dcm", (0, 5))] {
        let spec = Spec {
            frames: Some(range),
            ..Spec::default()
        };
        std::fs::write(split.path().join(name), dicom_instance(&spec, &img)).unwrap();
    }
    // A symlinked instance belongs to the series like a plain file.
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("part-b.dcm");
    std::fs::rename(split.path().join("part-b.dcm"), &target).unwrap();
    std::os::unix::fs::symlink(&target, split.path().join("part-b.dcm")).unwrap();
    let got = slide::open(split.path(), &OpenOptions::default()).unwrap();
    assert_eq!(got.info().levels, want.info().levels);
    let rect = Rect::new(0, 0, 200, 150);
    assert_eq!(
        got.read_region(0, rect).unwrap(),
        want.read_region(0, rect).unwrap()
    );
    // One part alone is missing frames and says so.
    std::fs::remove_file(split.path().join("part-b.dcm")).unwrap();
    let err = slide::open(split.path(), &OpenOptions::default())
        .err()
        .expect("half a concatenation opened");
    assert!(err.to_string().contains("needs 12 frames"), "{err}");
}

#[test]
fn a_directory_whose_only_file_is_broken_reports_that_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = dicom_instance(&Spec::default(), &pattern(64, 64));
    std::fs::write(dir.path().join("cut.dcm"), &bytes[..200]).unwrap();
    let err = slide::open(dir.path(), &OpenOptions::default())
        .err()
        .expect("a truncated file opened");
    assert_eq!(err.kind(), "format");
    assert!(err.to_string().contains("cut.dcm"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let err = slide::open(empty.path(), &OpenOptions::default())
        .err()
        .expect("an empty directory opened");
    assert!(err.to_string().contains("no DICOM files"), "{err}");
}

#[test]
fn two_fragment_frames_found_through_the_extended_offset_table() {
    let spec = Spec {
        two_fragments: true,
        frame_index: FrameIndex::ExtendedOffsetTable,
        ..Spec::default()
    };
    check_round_trip(spec.clone());
    // The table is what the reader follows: an entry off a fragment start is refused
    // (were it ignored, the start markers would still find the frames).
    let mut bytes = dicom_instance(&spec, &pattern(200, 150));
    let header = [0xE0, 0x7F, 0x01, 0x00, b'O', b'V', 0, 0];
    let at = bytes.windows(8).position(|w| w == header).unwrap() + 12;
    bytes[at + 8] = bytes[at + 8].wrapping_add(2); // entry 1, low byte
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eot.dcm");
    std::fs::write(&path, bytes).unwrap();
    let err = slide::open(&path, &OpenOptions::default())
        .err()
        .expect("a broken extended offset table was not noticed");
    assert!(err.to_string().contains("offset table entry 1"), "{err}");
}

#[test]
fn two_fragment_frames_found_by_their_start_markers_without_a_table() {
    check_round_trip(Spec {
        two_fragments: true,
        frame_index: FrameIndex::StartMarkers,
        ..Spec::default()
    });
}

#[test]
fn a_directory_with_two_series_asks_the_user_to_choose() {
    let dir = tempfile::tempdir().unwrap();
    write_series(dir.path(), &Spec::default(), &pattern(100, 80));
    match slide::open(dir.path(), &OpenOptions::default()) {
        Err(e @ SlideError::Unsupported { .. }) => {
            assert!(e.to_string().contains("2 DICOM series"), "{e}")
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened an ambiguous directory"),
    }
}

#[test]
fn jpeg_2000_transfer_syntax_is_refused_as_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = dicom_instance(&Spec::default(), &pattern(64, 64));
    let from = b"1.2.840.10008.1.2.4.50";
    let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
    bytes[at..at + from.len()].copy_from_slice(b"1.2.840.10008.1.2.4.91");
    let path = dir.path().join("j2k.dcm");
    std::fs::write(&path, bytes).unwrap();
    match slide::open(&path, &OpenOptions::default()) {
        Err(e @ SlideError::Unsupported { .. }) => {
            assert!(e.to_string().contains("JPEG 2000"), "{e}")
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened a JPEG 2000 file"),
    }
}

// ---------------------------------------------------------------- mutants

fn exercise(path: &Path) {
    let Ok(reader) = slide::open(path, &OpenOptions::default()) else {
        return;
    };
    let info = reader.info().clone();
    for (level, l) in info.levels.iter().enumerate() {
        let rect = Rect::new(
            -3,
            -3,
            (l.width.min(512) + 6) as u32,
            (l.height.min(512) + 6) as u32,
        );
        let _ = reader.read_region(level, rect);
    }
    for a in &info.associated {
        let _ = reader.read_associated(&a.name);
    }
}

fn check(path: &Path, what: &str) {
    let start = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| exercise(path)));
    let elapsed = start.elapsed();
    if outcome.is_err() {
        let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("crasher-{what}.dcm"));
        let _ = std::fs::copy(path, &keep);
        panic!("panic on {what}; mutant kept at {}", keep.display());
    }
    assert!(
        elapsed < Duration::from_secs(1),
        "{what} took {elapsed:?} (a hang?)"
    );
}

/// Bit flips, truncations, absurd 4-byte values (lengths, counts, offsets) and
/// zeroed runs, biased towards the header where the element lengths live.
fn mutate(seed: &[u8], header_end: usize, rng: &mut impl Rng) -> Vec<u8> {
    let mut m = seed.to_vec();
    let len = m.len();
    let header_end = header_end.clamp(1, len);
    let pick = |rng: &mut dyn rand::RngCore| -> usize {
        if rng.gen_bool(0.8) {
            rng.gen_range(0..header_end)
        } else {
            rng.gen_range(0..len)
        }
    };
    match rng.gen_range(0..4) {
        0 => {
            for _ in 0..rng.gen_range(1..8) {
                let i = pick(rng);
                m[i] ^= 1 << rng.gen_range(0..8);
            }
        }
        1 => m.truncate(rng.gen_range(0..m.len())),
        2 => {
            let i = pick(rng);
            let value: u32 =
                [0, 1, u32::MAX, 0x7FFF_FFFF, 65_535, 0xFFFE_FFFE, rng.gen()][rng.gen_range(0..7)];
            for (k, b) in value.to_le_bytes().iter().enumerate() {
                if let Some(x) = m.get_mut(i + k) {
                    *x = *b;
                }
            }
        }
        _ => {
            let i = pick(rng);
            let n = rng.gen_range(1..16).min(m.len() - i);
            m[i..i + n].fill(0);
        }
    }
    m
}

/// Where the pixel data element starts (mutations concentrate before it).
fn pixel_data_offset(bytes: &[u8]) -> usize {
    bytes
        .windows(4)
        .rposition(|w| w == [0xE0, 0x7F, 0x10, 0x00])
        .map_or(bytes.len(), |i| i + 64)
}

/// Mutates `target` inside a copy of the series in `dir` and opens it, `n` times.
fn run_mutants(name: &str, dir: &Path, target: &str, n: usize, seed: u64) -> usize {
    let path = dir.join(target);
    let original = std::fs::read(&path).unwrap();
    check(&path, &format!("{name}-unmutated"));
    let header_end = pixel_data_offset(&original);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for i in 0..n {
        std::fs::write(&path, mutate(&original, header_end, &mut rng)).unwrap();
        check(&path, &format!("{name}-{i}"));
    }
    std::fs::write(&path, &original).unwrap();
    eprintln!("{name}: {n} mutants of {target}, all Ok or a typed error");
    n
}

#[test]
fn mutated_dicom_series_fail_cleanly() {
    let mut total = 0;
    for (name, spec) in [
        ("explicit-jpeg", Spec::default()),
        (
            "implicit-native",
            Spec {
                implicit: true,
                jpeg: false,
                undefined_sequences: true,
                ..Spec::default()
            },
        ),
        (
            "sparse-fragments",
            Spec {
                sparse: true,
                two_fragments: true,
                ..Spec::default()
            },
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_series(dir.path(), &spec, &pattern(160, 120));
        std::fs::remove_file(dir.path().join("other.dcm")).unwrap();
        total += run_mutants(name, dir.path(), "level0.dcm", 400, 0xD1C0);
        total += run_mutants(
            &format!("{name}-label"),
            dir.path(),
            "label.dcm",
            100,
            0xD1C1,
        );
    }
    if let Some(real) = real_dir() {
        // The real export's small levels, copied into a temporary folder (never into
        // the repository) so the mutated file's siblings are real levels too.
        let dir = tempfile::tempdir().unwrap();
        let src = real.join("CMU-1-Small-Region-dicom");
        for entry in std::fs::read_dir(&src).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("level-0") && !name.starts_with("level-1-") {
                std::fs::copy(entry.path(), dir.path().join(&name)).unwrap();
            }
        }
        total += run_mutants("real-level2", dir.path(), "level-2-frames-0-4.dcm", 300, 2);
        total += run_mutants("real-level9", dir.path(), "level-9-frames-0-1.dcm", 300, 9);
    }
    eprintln!("{total} DICOM mutants in all");
    assert!(total >= 1000);
}

// ------------------------------------------------- folders that mix DICOM and TIFF

/// `dirascope score FOLDER ARGS` with the tiny test model, from the checkout.
fn score_folder(folder: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_dirascope"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["score", "--model", "fixtures/model/tiny-random-64", "--out"])
        .arg(out)
        .arg(folder)
        .args(extra)
        .output()
        .unwrap()
}

fn listed_ids(folder: &Path) -> Vec<String> {
    let o = score_folder(folder, &folder.join("unused"), &["--list"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let mut ids: Vec<String> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// Issue 14, defect 8: a folder holding TIFF slides and a DICOM file was scored as
/// one DICOM slide and the TIFFs were dropped without a row.
#[test]
fn a_folder_of_tiffs_beside_dicom_files_scores_every_slide() {
    let dir = tempfile::tempdir().unwrap();
    let phantoms = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/phantoms");
    let mixed = dir.path().join("mixed");
    std::fs::create_dir(&mixed).unwrap();
    std::fs::copy(phantoms.join("normal-4.tiff"), mixed.join("a.tiff")).unwrap();
    std::fs::copy(phantoms.join("dira-3.tiff"), mixed.join("b.tiff")).unwrap();
    let one = dicom_instance(&Spec::default(), &pattern(200, 150));
    std::fs::write(mixed.join("scan.dcm"), one).unwrap();
    assert_eq!(listed_ids(&mixed), ["a", "b", "scan"]);

    // A whole series beside a TIFF: the series is one slide (named by its largest
    // file), the other series another; the series' other files are listed as skipped.
    let series = dir.path().join("series");
    std::fs::create_dir(&series).unwrap();
    std::fs::copy(phantoms.join("normal-4.tiff"), series.join("a.tiff")).unwrap();
    write_series(&series, &Spec::default(), &pattern(200, 150));
    assert_eq!(listed_ids(&series), ["a", "level0", "other"]);
    let out = dir.path().join("out");
    let o = score_folder(&series, &out, &["--json"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let json: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}; stderr: {stderr}"));
    let mut done: Vec<&str> = ["slides", "errors"]
        .iter()
        .flat_map(|k| json[k].as_array().unwrap())
        .map(|s| s["slide_id"].as_str().unwrap())
        .collect();
    done.sort();
    assert_eq!(done, ["a", "level0", "other"], "{stderr}");
    let skipped: Vec<&str> = json["skipped"]
        .as_array()
        .unwrap_or_else(|| panic!("no skipped list: {json}"))
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    for name in ["label.dcm", "level1.dcm"] {
        assert!(
            skipped.iter().any(|p| p.ends_with(name)),
            "{name}: {skipped:?}"
        );
        assert!(stderr.contains(name), "{name} not on stderr: {stderr}");
    }
    // A folder that is one series and nothing else stays one slide.
    let pure = dir.path().join("pure");
    std::fs::create_dir(&pure).unwrap();
    write_series(&pure, &Spec::default(), &pattern(200, 150));
    std::fs::remove_file(pure.join("other.dcm")).unwrap();
    assert_eq!(listed_ids(&pure), ["pure"]);
}

/// Issue 14, defect 2: a named pipe among a DICOM folder's files is never opened:
/// not when the folder is given through a manifest (its sha256 covers its files),
/// and not when the folder is scanned (the pipe becomes an error row).
#[test]
fn a_fifo_inside_a_dicom_folder_is_never_opened() {
    let dir = tempfile::tempdir().unwrap();
    let series = dir.path().join("series");
    std::fs::create_dir(&series).unwrap();
    write_series(&series, &Spec::default(), &pattern(200, 150));
    std::fs::remove_file(series.join("other.dcm")).unwrap();
    let fifo = series.join("zz.dcm");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let manifest = dir.path().join("m.csv");
    std::fs::write(
        &manifest,
        format!("slide_id,path\nseries,{}\n", series.display()),
    )
    .unwrap();
    let run = |input: &Path, out: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dirascope"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["score", "--model", "fixtures/model/tiny-random-64", "--out"])
            .arg(dir.path().join(out))
            .arg(input)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("score {} hung on the FIFO", input.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    assert_eq!(run(&manifest, "by-manifest"), Some(0));
    assert!(dir.path().join("by-manifest/series/report.json").is_file());
    assert_eq!(run(&series, "scanned"), Some(3));
    let errors = std::fs::read_to_string(dir.path().join("scanned/errors.csv")).unwrap();
    assert!(
        errors.contains("zz.dcm") && errors.contains("not a regular file"),
        "{errors}"
    );
    assert!(dir.path().join("scanned/level0/report.json").is_file());
}
