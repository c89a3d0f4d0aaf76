//! Mutated slide files (bit flips, truncations, absurd tag values, IFD loops,
//! zero-size tiles) must give Ok or a typed error quickly: never a panic or a hang.
//! Crashers found once are kept in `fixtures/regressions/slide/` and replayed forever.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use dirascope::slide::writer::{PyramidLayout, PyramidWriter, TileCompression, WriterOptions};
use dirascope::slide::{self, OpenOptions, Rect};
use rand::{Rng, SeedableRng};

const MUTANTS_PER_FORMAT: usize = 1500;

fn pattern(width: u32, height: u32) -> image::RgbImage {
    image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x * 7 % 256) as u8,
            (y * 5 % 256) as u8,
            ((x ^ y) % 256) as u8,
        ])
    })
}

fn pyramid(options: WriterOptions) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seed.tif");
    let img = pattern(300, 200);
    let mut w = PyramidWriter::create(
        &path,
        300,
        200,
        WriterOptions {
            tile_size: 64,
            min_level_side: 64,
            ..options
        },
    )
    .unwrap();
    w.push_rows(img.as_raw()).unwrap();
    w.finish().unwrap();
    std::fs::read(path).unwrap()
}

fn stripped_lzw() -> Vec<u8> {
    use tiff::encoder::{colortype, compression, TiffEncoder};
    let mut cursor = std::io::Cursor::new(Vec::new());
    let img = pattern(120, 90);
    TiffEncoder::new(&mut cursor)
        .unwrap()
        .write_image_with_compression::<colortype::RGB8, _>(120, 90, compression::Lzw, img.as_raw())
        .unwrap();
    cursor.into_inner()
}

fn encoded(format: image::ImageFormat) -> Vec<u8> {
    let mut cursor = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(pattern(96, 64))
        .write_to(&mut cursor, format)
        .unwrap();
    cursor.into_inner()
}

/// Opens the file and reads every level (bounded regions) plus associated images.
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
    // A thumbnail decodes the smallest level whole; bounded here by the 512 px cap above
    // for pyramids, and skipped for single-level slides larger than that.
    if info
        .levels
        .last()
        .is_some_and(|l| l.width.max(l.height) <= 2048)
        && info.levels.len() > 1
    {
        let _ = reader.thumbnail(64);
    }
}

fn check(path: &Path, what: &str) -> Duration {
    let start = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| exercise(path)));
    let elapsed = start.elapsed();
    if outcome.is_err() {
        let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("crasher-{what}"));
        let _ = std::fs::copy(path, &keep);
        panic!("panic on {what}; mutant kept at {}", keep.display());
    }
    // A hang guard, not a speed check: a mutant takes milliseconds, but these
    // machines are shared and a loaded one stretched a single read past 1 s.
    assert!(
        elapsed < Duration::from_secs(30),
        "{what} took {elapsed:?} (a hang?)"
    );
    elapsed
}

/// Mutation kinds: flip bits, truncate, overwrite a 4-byte word with an absurd value,
/// point an IFD's next-offset back at itself, zero a tile's byte count.
fn mutate(seed_file: &[u8], rng: &mut impl Rng) -> Vec<u8> {
    let mut m = seed_file.to_vec();
    match rng.gen_range(0..5) {
        0 => {
            for _ in 0..rng.gen_range(1..8) {
                let i = rng.gen_range(0..m.len());
                m[i] ^= 1 << rng.gen_range(0..8);
            }
        }
        1 => m.truncate(rng.gen_range(0..m.len())),
        2 => {
            // Absurd values, biased towards the header and IFDs at the file's ends.
            let i = if rng.gen_bool(0.5) {
                rng.gen_range(0..m.len().min(64))
            } else {
                rng.gen_range(m.len().saturating_sub(2048)..m.len())
            };
            let value: u32 = [0, 1, u32::MAX, 0x7FFF_FFFF, 65_535, rng.gen()][rng.gen_range(0..6)];
            for (k, b) in value.to_le_bytes().iter().enumerate() {
                if let Some(x) = m.get_mut(i + k) {
                    *x = *b;
                }
            }
        }
        3 => {
            // IFD loop: any 4-byte word near the end pointing at the first IFD.
            if m.starts_with(b"II*\0") && m.len() > 8 {
                let first = m[4..8].to_vec();
                let i =
                    rng.gen_range(m.len().saturating_sub(512)..m.len().saturating_sub(4).max(1));
                m[i..i + 4].copy_from_slice(&first);
            }
        }
        _ => {
            // Zero a run of bytes (zero-size tiles, zero dimensions, empty tables).
            let i = rng.gen_range(0..m.len());
            let n = rng.gen_range(1..16).min(m.len() - i);
            m[i..i + n].fill(0);
        }
    }
    m
}

fn run_format(name: &str, seed_file: Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("mutant-{name}"));
    std::fs::write(&path, &seed_file).unwrap();
    check(&path, &format!("{name}-unmutated"));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0xD12A);
    let mut slowest = Duration::ZERO;
    for i in 0..MUTANTS_PER_FORMAT {
        std::fs::write(&path, mutate(&seed_file, &mut rng)).unwrap();
        slowest = slowest.max(check(&path, &format!("{name}-{i}")));
    }
    eprintln!("{name}: {MUTANTS_PER_FORMAT} mutants, slowest {slowest:?}");
}

#[test]
fn mutated_jpeg_tiled_pyramids_fail_cleanly() {
    run_format(
        "jpeg-pyramid.tif",
        pyramid(WriterOptions {
            compression: TileCompression::Jpeg { quality: 80 },
            ..WriterOptions::default()
        }),
    );
}

#[test]
fn mutated_deflate_bigtiff_subifds_fail_cleanly() {
    run_format(
        "deflate-bigtiff.tif",
        pyramid(WriterOptions {
            compression: TileCompression::Deflate,
            bigtiff: true,
            layout: PyramidLayout::SubIfds,
            ..WriterOptions::default()
        }),
    );
}

#[test]
fn mutated_stripped_lzw_tiffs_fail_cleanly() {
    run_format("stripped-lzw.tif", stripped_lzw());
}

#[test]
fn mutated_png_exports_fail_cleanly() {
    run_format("export.png", encoded(image::ImageFormat::Png));
}

#[test]
fn mutated_jpeg_exports_fail_cleanly() {
    run_format("export.jpg", encoded(image::ImageFormat::Jpeg));
}

#[test]
fn mutated_real_svs_headers_fail_cleanly() {
    // The real SVS's IFDs sit in its first and last bytes; mutate only those regions
    // and read a few regions, since the whole file is 1.9 MB.
    let real = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/real/CMU-1-Small-Region.svs");
    let Ok(seed_file) = std::fs::read(&real) else {
        eprintln!("skipped: {} is absent", real.display());
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mutant.svs");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for i in 0..300 {
        let mut m = seed_file.clone();
        if rng.gen_bool(0.3) {
            m.truncate(rng.gen_range(0..m.len()));
        } else {
            for _ in 0..rng.gen_range(1..6) {
                let j = if rng.gen_bool(0.5) {
                    rng.gen_range(0..4096)
                } else {
                    rng.gen_range(m.len() - 4096..m.len())
                };
                m[j] ^= 1 << rng.gen_range(0..8);
            }
        }
        std::fs::write(&path, &m).unwrap();
        check(&path, &format!("svs-{i}"));
    }
}

#[test]
fn committed_crashers_stay_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/regressions/slide");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        if entry.file_name() == "README.md" {
            continue;
        }
        check(&entry.path(), &entry.file_name().to_string_lossy());
        n += 1;
    }
    eprintln!("{n} committed crashers replayed");
}
