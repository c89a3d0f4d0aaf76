//! Round trips: files written here (by this crate's pyramid writer and by the
//! independent `tiff` and `image` encoders) read back through `slide::open`.

use std::path::Path;

use dirascope::slide::writer::{PyramidLayout, PyramidWriter, TileCompression, WriterOptions};
use dirascope::slide::{self, Mpp, MppSource, OpenOptions, Rect, SlideFormat};
use image::RgbImage;

/// A deterministic test pattern with detail at every scale (smooth for JPEG).
fn pattern(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let r = (128.0 + 100.0 * ((x as f64) / 37.0).sin()) as u8;
        let g = (128.0 + 100.0 * ((y as f64) / 23.0).cos()) as u8;
        let b = ((x / 64 + y / 64) % 2 * 120 + 60) as u8;
        image::Rgb([r, g, b])
    })
}

fn write_pyramid(path: &Path, img: &RgbImage, options: WriterOptions) -> usize {
    let mut w = PyramidWriter::create(path, img.width(), img.height(), options).unwrap();
    let levels = w.level_count();
    // Bands of 100 rows: not aligned with the tiles on purpose.
    for band in img.as_raw().chunks(img.width() as usize * 3 * 100) {
        w.push_rows(band).unwrap();
    }
    w.finish().unwrap();
    levels
}

fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let s: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .sum();
    s / a.as_raw().len() as f64
}

/// Regions crossing tile edges, the border, and entirely inside one tile.
const REGIONS: [(i64, i64, u32, u32); 4] = [
    (0, 0, 64, 64),
    (200, 180, 300, 150),
    (900, 500, 200, 200),
    (-30, -20, 100, 90),
];

fn check_level0(path: &Path, img: &RgbImage, lossless: bool) {
    let reader = slide::open(path, &OpenOptions::default()).unwrap();
    let (w, h) = img.dimensions();
    for (x, y, rw, rh) in REGIONS {
        let got = reader.read_region(0, Rect::new(x, y, rw, rh)).unwrap();
        // Expected: the image where the rect covers it, background elsewhere.
        let mut want = RgbImage::from_pixel(rw, rh, image::Rgb(reader.info().background));
        for yy in 0..rh as i64 {
            for xx in 0..rw as i64 {
                let (sx, sy) = (x + xx, y + yy);
                if sx >= 0 && sy >= 0 && (sx as u32) < w && (sy as u32) < h {
                    want.put_pixel(xx as u32, yy as u32, *img.get_pixel(sx as u32, sy as u32));
                }
            }
        }
        if lossless {
            assert!(
                got == want,
                "{}: region {x},{y} {rw}x{rh} differs",
                path.display()
            );
        } else {
            let d = mean_abs_diff(&got, &want);
            assert!(
                d < 4.0,
                "{}: region {x},{y} mean abs diff {d}",
                path.display()
            );
        }
    }
}

#[test]
fn deflate_pyramid_reads_back_exactly_with_levels_and_mpp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deflate.tif");
    let img = pattern(1000, 700);
    let options = WriterOptions {
        compression: TileCompression::Deflate,
        mpp: Mpp::square(0.25),
        ..WriterOptions::default()
    };
    let levels = write_pyramid(&path, &img, options);
    check_level0(&path, &img, true);
    let reader = slide::open(&path, &OpenOptions::default()).unwrap();
    let info = reader.info();
    assert_eq!(info.format, SlideFormat::Tiff);
    assert_eq!(info.levels.len(), levels);
    assert_eq!(levels, 3, "1000 -> 500 -> 250");
    assert_eq!((info.levels[1].width, info.levels[1].height), (500, 350));
    assert!((info.levels[2].downsample - 4.0).abs() < 0.01);
    let mpp = info.mpp.unwrap();
    assert!((mpp.x - 0.25).abs() < 1e-6, "{mpp:?}");
    assert_eq!(info.mpp_source, MppSource::TiffResolution);
    // Level 1 is the 2x2 box average of level 0.
    let l1 = reader.read_region(1, Rect::new(0, 0, 500, 350)).unwrap();
    let reduced = image::imageops::resize(&img, 500, 350, image::imageops::FilterType::Triangle);
    assert!(mean_abs_diff(&l1, &reduced) < 2.0);
    let thumb = reader.thumbnail(200).unwrap();
    assert_eq!(thumb.dimensions(), (200, 140));
}

#[test]
fn jpeg_pyramid_reads_back_within_jpeg_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jpeg.tif");
    let img = pattern(1000, 700);
    write_pyramid(
        &path,
        &img,
        WriterOptions {
            compression: TileCompression::Jpeg { quality: 95 },
            ..WriterOptions::default()
        },
    );
    check_level0(&path, &img, false);
    let info = slide::open(&path, &OpenOptions::default())
        .unwrap()
        .info()
        .clone();
    assert_eq!(info.mpp, None);
    assert_eq!(info.mpp_source, MppSource::Unknown);
}

#[test]
fn bigtiff_with_subifd_pyramid_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.tif");
    let img = pattern(1000, 700);
    let options = WriterOptions {
        compression: TileCompression::None,
        bigtiff: true,
        layout: PyramidLayout::SubIfds,
        ..WriterOptions::default()
    };
    write_pyramid(&path, &img, options);
    check_level0(&path, &img, true);
    let reader = slide::open(&path, &OpenOptions::default()).unwrap();
    assert_eq!(reader.info().format, SlideFormat::BigTiff);
    assert_eq!(reader.info().levels.len(), 3);
}

#[test]
fn ome_tiff_physical_size_gives_mpp_in_micrometres() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slide.ome.tif");
    let img = pattern(600, 400);
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Instrument ID="Instrument:0"><Objective ID="Objective:0" NominalMagnification="40"/></Instrument><Image ID="Image:0"><Pixels DimensionOrder="XYCZT" ID="Pixels:0" PhysicalSizeX="263" PhysicalSizeXUnit="nm" PhysicalSizeY="0.263" PhysicalSizeYUnit="µm" SizeC="3" SizeT="1" SizeX="600" SizeY="400" SizeZ="1" Type="uint8"></Pixels></Image></OME>"#;
    let options = WriterOptions {
        compression: TileCompression::Deflate,
        layout: PyramidLayout::SubIfds,
        description: Some(xml.to_string()),
        mpp: Mpp::square(9.0), // resolution tags must lose to the OME-XML
        ..WriterOptions::default()
    };
    write_pyramid(&path, &img, options);
    check_level0(&path, &img, true);
    let reader = slide::open(&path, &OpenOptions::default()).unwrap();
    let info = reader.info();
    assert_eq!(info.format, SlideFormat::OmeTiff);
    assert_eq!(info.mpp_source, MppSource::OmeXml);
    let mpp = info.mpp.unwrap();
    assert!((mpp.x - 0.263).abs() < 1e-9 && (mpp.y - 0.263).abs() < 1e-9);
    assert_eq!(info.objective_power, Some(40.0));
    assert_eq!(info.levels.len(), 3, "600 -> 300 -> 150, all SubIFDs");
}

#[test]
fn stripped_tiffs_from_an_independent_encoder_read_back_exactly() {
    use tiff::encoder::{colortype, compression, TiffEncoder};
    let dir = tempfile::tempdir().unwrap();
    let img = pattern(333, 257);
    for (name, kind) in [("none", 0), ("lzw", 1), ("deflate", 2), ("packbits", 3)] {
        let path = dir.path().join(format!("stripped-{name}.tif"));
        let file = std::fs::File::create(&path).unwrap();
        let mut enc = TiffEncoder::new(file).unwrap();
        let raw = img.as_raw();
        match kind {
            0 => enc.write_image::<colortype::RGB8>(333, 257, raw).unwrap(),
            1 => enc
                .write_image_with_compression::<colortype::RGB8, _>(333, 257, compression::Lzw, raw)
                .unwrap(),
            2 => enc
                .write_image_with_compression::<colortype::RGB8, _>(
                    333,
                    257,
                    compression::Deflate::default(),
                    raw,
                )
                .unwrap(),
            _ => enc
                .write_image_with_compression::<colortype::RGB8, _>(
                    333,
                    257,
                    compression::Packbits,
                    raw,
                )
                .unwrap(),
        }
        let reader = slide::open(&path, &OpenOptions::default()).unwrap();
        assert_eq!((reader.info().width(), reader.info().height()), (333, 257));
        let got = reader.read_region(0, Rect::new(0, 0, 333, 257)).unwrap();
        assert!(got == img, "{name}: pixels differ");
        let part = reader.read_region(0, Rect::new(100, 50, 300, 300)).unwrap();
        assert_eq!(part.get_pixel(10, 10), img.get_pixel(110, 60), "{name}");
        assert_eq!(
            part.get_pixel(299, 299).0,
            [255, 255, 255],
            "{name}: padding"
        );
    }
}

#[test]
fn png_and_jpeg_exports_are_single_level_and_need_mpp() {
    let dir = tempfile::tempdir().unwrap();
    let img = pattern(300, 200);
    let png = dir.path().join("export.png");
    img.save(&png).unwrap();
    let reader = slide::open(&png, &OpenOptions::default()).unwrap();
    assert_eq!(reader.info().format, SlideFormat::Png);
    assert_eq!(reader.info().mpp, None);
    assert!(reader.read_region(0, Rect::new(0, 0, 300, 200)).unwrap() == img);
    let with_mpp = OpenOptions {
        mpp_override: Mpp::square(0.5),
        ..OpenOptions::default()
    };
    let reader = slide::open(&png, &with_mpp).unwrap();
    assert_eq!(reader.info().mpp_source, MppSource::Override);

    // Extension is ignored: a JPEG named .png is still read as JPEG.
    let jpg = dir.path().join("actually-jpeg.png");
    image::DynamicImage::ImageRgb8(img.clone())
        .save_with_format(&jpg, image::ImageFormat::Jpeg)
        .unwrap();
    let reader = slide::open(&jpg, &OpenOptions::default()).unwrap();
    assert_eq!(reader.info().format, SlideFormat::Jpeg);
    let got = reader.read_region(0, Rect::new(0, 0, 300, 200)).unwrap();
    assert!(mean_abs_diff(&got, &img) < 4.0);
}

#[test]
fn png_declaring_huge_dimensions_is_refused_by_limits() {
    // A tiny PNG whose header declares 100,000 x 100,000 pixels: a decompression bomb.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.png");
    std::fs::write(&path, png_header_only(100_000, 100_000)).unwrap();
    let err = slide::open(&path, &OpenOptions::default())
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert_eq!(err.kind(), "limits", "{msg}");
    assert!(
        msg.contains("bomb.png") && msg.contains("max_whole_image_pixels"),
        "{msg}"
    );
}

#[test]
fn tiff_tile_claiming_gigabytes_is_refused_by_limits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.tif");
    let img = pattern(256, 256);
    write_pyramid(
        &path,
        &img,
        WriterOptions {
            compression: TileCompression::Deflate,
            min_level_side: 256,
            ..WriterOptions::default()
        },
    );
    // Patch TileWidth/TileLength (SHORT 256) to LONG 65535: a 4 Gpx tile.
    let mut bytes = std::fs::read(&path).unwrap();
    let first = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let n = u16::from_le_bytes(bytes[first..first + 2].try_into().unwrap()) as usize;
    for i in 0..n {
        let e = first + 2 + i * 12;
        let tag = u16::from_le_bytes(bytes[e..e + 2].try_into().unwrap());
        if tag == 322 || tag == 323 {
            bytes[e + 2..e + 4].copy_from_slice(&4u16.to_le_bytes());
            bytes[e + 8..e + 12].copy_from_slice(&65_535u32.to_le_bytes());
        }
    }
    std::fs::write(&path, bytes).unwrap();
    let err = slide::open(&path, &OpenOptions::default())
        .err()
        .expect("refused");
    assert_eq!(err.kind(), "limits", "{err}");
    assert!(err.to_string().contains("max_tile_pixels"), "{err}");
}

/// A PNG signature and IHDR chunk (valid CRC) declaring `w` x `h` RGB8, no pixel data.
pub fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend_from_slice(&13u32.to_be_bytes());
    out.extend_from_slice(&ihdr);
    out.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
