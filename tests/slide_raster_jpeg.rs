//! Plain JPEG exports read through the slide reader decode exactly as libjpeg-turbo
//! does (the reference decodes in `fixtures/jpeg/`), like scanners' JPEG tiles; the
//! real public-domain JPEG in `../shared/fixtures/real/` opens and reads (skipped
//! with a printed reason where that folder is absent).

use std::path::{Path, PathBuf};

use dirascope::slide::{self, Mpp, OpenOptions, Rect, SlideFormat};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/jpeg")
}

fn options() -> OpenOptions {
    OpenOptions {
        mpp_override: Mpp::square(0.5),
        ..OpenOptions::default()
    }
}

/// The whole image through `slide::open` and `read_region`, and libjpeg-turbo's decode.
fn read_both(name: &str) -> (image::RgbImage, image::RgbImage) {
    let path = fixtures().join(format!("{name}.jpg"));
    let reader = slide::open(&path, &options()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let info = reader.info();
    assert_eq!(info.format, SlideFormat::Jpeg, "{name}");
    let rect = Rect::new(0, 0, info.width() as u32, info.height() as u32);
    let got = reader
        .read_region(0, rect)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let reference = image::open(fixtures().join(format!("{name}.libjpeg-turbo.png")))
        .unwrap()
        .to_rgb8();
    (got, reference)
}

/// The fixtures the exact decoder does not take (progressive, 4:1:1 sampling): they
/// go to the fallback decoder.
const FALLBACK: [&str; 2] = ["ycbcr-420-progressive-77x53", "ycbcr-411-q90-77x53"];

#[test]
fn baseline_jpeg_slides_decode_equal_to_libjpeg_turbo() {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".jpg").map(str::to_string)
        })
        .filter(|name| !FALLBACK.contains(&name.as_str()))
        .collect();
    names.sort();
    assert!(names.len() >= 9, "baseline fixtures: {names:?}");
    for name in &names {
        let (got, reference) = read_both(name);
        assert_eq!(got.dimensions(), reference.dimensions(), "{name}");
        let differing = got
            .as_raw()
            .iter()
            .zip(reference.as_raw())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            differing, 0,
            "{name}: samples differ from libjpeg-turbo's decode"
        );
    }
}

#[test]
fn progressive_jpeg_slides_fall_back_and_stay_close() {
    for name in FALLBACK {
        let (got, reference) = read_both(name);
        assert_eq!(got.dimensions(), reference.dimensions(), "{name}");
        let total: u64 = got
            .as_raw()
            .iter()
            .zip(reference.as_raw())
            .map(|(a, b)| a.abs_diff(*b) as u64)
            .sum();
        let mean = total as f64 / got.as_raw().len() as f64;
        assert!(mean < 2.0, "{name}: mean difference {mean:.3}");
    }
}

#[test]
fn real_public_domain_jpeg_opens_and_reads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/real/skin-normal-10x-public-domain.jpg");
    if !path.is_file() {
        eprintln!(
            "skipped: {} is absent (real slide fixtures live beside the project, not in it)",
            path.display()
        );
        return;
    }
    let plain = slide::open(&path, &OpenOptions::default()).unwrap();
    assert_eq!(plain.info().format, SlideFormat::Jpeg);
    assert_eq!((plain.info().width(), plain.info().height()), (2048, 1536));
    let reader = slide::open(
        &path,
        &OpenOptions {
            mpp_override: Mpp::square(0.75),
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let region = reader
        .read_region(0, Rect::new(1024, 512, 512, 512))
        .unwrap();
    // The same pixels as a second, independent decoder within JPEG decoder noise
    // (IDCT and chroma upsampling differ by a level or two).
    let other = image::open(&path).unwrap().to_rgb8();
    let mut total = 0u64;
    for (x, y, p) in region.enumerate_pixels() {
        let q = other.get_pixel(1024 + x, 512 + y);
        total += (0..3).map(|c| p[c].abs_diff(q[c]) as u64).sum::<u64>();
    }
    let mean = total as f64 / (512.0 * 512.0 * 3.0);
    assert!(
        mean < 1.5,
        "mean difference from a second decoder {mean:.3}"
    );
    let tissue = region.pixels().filter(|p| p[1] < 200).count();
    assert!(tissue > 512 * 512 / 10, "stained tissue in the region");
}
