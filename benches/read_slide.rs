//! Guards the slide reader's throughput and its bounded memory: reading a whole
//! 60,000 × 60,000 pyramidal slide region by region at level 0 must keep peak RSS
//! under 300 MiB. Prints regions/s and peak RSS for dirascope and, side by side in
//! the same run, OpenSlide's Python binding on the same file and regions.
//!
//! Run: `cargo bench --bench read_slide` (env `DIRASCOPE_BENCH_SIDE`, default 60000;
//! `DIRASCOPE_BENCH_DIR` for the generated slide, default target/bench-slides).
//! OpenSlide runs where `benches/compare/.venv` has `openslide-python` and
//! `openslide-bin` (see benches/compare/README.md).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use dirascope::slide::writer::{PyramidWriter, TileCompression, WriterOptions};
use dirascope::slide::{self, Mpp, OpenOptions, Rect};

const REGION: u32 = 1024;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--generate") {
        generate(Path::new(&args[i + 1]), args[i + 2].parse().expect("side"));
        return;
    }
    if args.iter().any(|a| a == "--list") || args.iter().any(|a| a == "--test") {
        return; // `cargo test --benches` smoke-runs benches; this one is too heavy for that
    }
    let side: u32 = std::env::var("DIRASCOPE_BENCH_SIDE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60_000);
    let dir = std::env::var("DIRASCOPE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-slides"));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let path = dir.join(format!("pyramid-{side}.tif"));
    if !path.exists() {
        // Generate in a child process so its memory does not count towards ours.
        let started = Instant::now();
        let status = Command::new(std::env::current_exe().expect("exe"))
            .args([
                "--generate",
                path.to_str().expect("utf-8 path"),
                &side.to_string(),
            ])
            .status()
            .expect("spawn generator");
        assert!(status.success(), "generator failed");
        eprintln!(
            "generated {} in {:.1} s",
            path.display(),
            started.elapsed().as_secs_f64()
        );
    }
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "slide: {} ({side} x {side}, {:.0} MiB, 256 px JPEG tiles)",
        path.display(),
        size as f64 / (1 << 20) as f64
    );

    let started = Instant::now();
    let reader = slide::open(&path, &OpenOptions::default()).expect("open");
    let mut regions = 0u64;
    let mut checksum = 0u64;
    for y in (0..side).step_by(REGION as usize) {
        for x in (0..side).step_by(REGION as usize) {
            let img = reader
                .read_region(0, Rect::new(x as i64, y as i64, REGION, REGION))
                .expect("read");
            checksum = checksum.wrapping_add(img.as_raw()[img.as_raw().len() / 2] as u64);
            regions += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let ours_rate = regions as f64 / secs;
    let ours_rss = peak_rss_mib();
    println!("dirascope: {regions} regions of {REGION}x{REGION} in {secs:.1} s = {ours_rate:.1} regions/s, peak RSS {ours_rss:.0} MiB (checksum {checksum})");

    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/compare/.venv/bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/compare/openslide_read.py");
    if !python.exists() {
        println!(
            "openslide: skipped ({} absent; see benches/compare/README.md)",
            python.display()
        );
        return;
    }
    let out = Command::new(&python)
        .arg(&script)
        .arg(&path)
        .arg(side.to_string())
        .arg(REGION.to_string())
        .output()
        .expect("run python");
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    if !out.status.success() {
        println!(
            "openslide: failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let field = |name: &str| -> Option<f64> {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse().ok())
    };
    if let (Some(rate), Some(rss)) = (field("rate="), field("rss_mib=")) {
        println!(
            "ratio: dirascope/openslide regions/s = {:.2}, peak RSS = {:.2}",
            ours_rate / rate,
            ours_rss / rss
        );
    }
}

fn generate(path: &Path, side: u32) {
    let options = WriterOptions {
        compression: TileCompression::Jpeg { quality: 80 },
        mpp: Mpp::square(0.25),
        ..WriterOptions::default()
    };
    let tmp = path.with_extension("partial");
    let mut writer = PyramidWriter::create(&tmp, side, side, options).expect("create");
    let band = 256usize;
    let mut rows = vec![0u8; side as usize * 3 * band];
    let mut y0 = 0usize;
    while y0 < side as usize {
        let n = band.min(side as usize - y0);
        for (i, px) in rows[..n * side as usize * 3]
            .chunks_exact_mut(3)
            .enumerate()
        {
            let (x, y) = (i % side as usize, y0 + i / side as usize);
            // Tissue-like texture: smooth stain fields plus fine grain, so JPEG sizes are realistic.
            let t = ((x as f64 / 97.0).sin() + (y as f64 / 131.0).cos()) * 0.5;
            let grain = ((x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503)) >> 7) as u8 % 24;
            px[0] = (190.0 + 40.0 * t) as u8 - grain / 2;
            px[1] = (120.0 + 50.0 * t) as u8 - grain;
            px[2] = (170.0 + 30.0 * t) as u8 - grain / 2;
        }
        writer
            .push_rows(&rows[..n * side as usize * 3])
            .expect("push");
        y0 += n;
    }
    writer.finish().expect("finish");
    std::fs::rename(&tmp, path).expect("rename");
}

/// Peak resident set size of this process (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
