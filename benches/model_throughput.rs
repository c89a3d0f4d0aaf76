//! Guards the model stage's throughput through the product's own tile stream
//! (`pipeline::TileStream` with the `score` command's `ModelScorer`: one tract
//! session per worker, preprocessing included): tiles/s with 1 and 2 workers on a
//! model folder's parity tiles (recovered as RGB), at the engine's batch size. Then,
//! on a phantom slide, the decode lower bound (one thread reading and resampling each
//! tile) and the whole stream's tiles/s (read, resample, QC, model) per worker count.
//! A regression here (a slower plan, a lost optimisation, workers that stop
//! scaling) turns seconds per biopsy into minutes. `benches/model_compare.sh`
//! runs onnxruntime on the same tiles in the same run and prints the ratios and the
//! machine's limit (with `benches/fma_peak.rs`).
//!
//!     cargo bench --bench model_throughput -- [MODEL_DIR ...]
//!
//! Environment: DIRASCOPE_BENCH_BATCH (default: the engine's, `DEFAULT_BATCH`), DIRASCOPE_BENCH_SECONDS
//! (default 3), DIRASCOPE_BENCH_WORKERS (default "1 2"), DIRASCOPE_BENCH_SLIDE (default
//! fixtures/phantoms/dira-3.tiff; "none" skips the slide figures).

use std::path::{Path, PathBuf};
use std::time::Instant;

use dirascope::model::check::ParityFixture;
use dirascope::model::{preprocess, Model, TileClassifier, BUNDLED_MODEL_DIR, DEFAULT_BATCH};
use dirascope::pipeline::TileScorer;
use dirascope::pipeline::{GridSource, ReadTimes, TileSource, TileStream};
use dirascope::slide::{self, OpenOptions};
use dirascope::tiling::{TileGrid, TilingOptions};
use dirascope::wiring::ModelScorer;

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Tiles/s of `stream` over `source`, run again and again for `seconds` after a warm-up.
fn rate(stream: &TileStream, source: &dyn TileSource, seconds: f64) -> BenchResult<f64> {
    stream.run(source, None)?;
    let start = Instant::now();
    let mut done = 0usize;
    while start.elapsed().as_secs_f64() < seconds {
        done += stream.run(source, None)?.probabilities.len();
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

fn main() -> BenchResult<()> {
    // cargo bench passes "--bench"; everything else is a model folder.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return Ok(()); // `cargo test --benches` smoke-runs benches: too heavy for that
    }
    let mut dirs: Vec<PathBuf> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .collect();
    if dirs.is_empty() {
        dirs.push(PathBuf::from(BUNDLED_MODEL_DIR));
    }
    let batch: usize = env_or("DIRASCOPE_BENCH_BATCH", DEFAULT_BATCH);
    let seconds: f64 = env_or("DIRASCOPE_BENCH_SECONDS", 3.0);
    let workers: Vec<usize> = std::env::var("DIRASCOPE_BENCH_WORKERS")
        .unwrap_or_else(|_| "1 2".into())
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let slide = std::env::var("DIRASCOPE_BENCH_SLIDE").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/phantoms/dira-3.tiff").into()
    });
    for dir in dirs {
        let model = Model::load_with_batch(&dir, batch)?;
        let fixture = ParityFixture::load(&model)?;
        let spec = model.engine.input_spec().clone();
        let per_tile = dirascope::model::values_per_tile(&spec);
        let macs = model.engine.summary().macs_per_tile;
        let name = model.manifest.name.clone();
        println!("engine {name}: {}", model.engine.describe());
        let mut tiles = Vec::new();
        while tiles.len() < 64 {
            for t in fixture.inputs.chunks(per_tile) {
                tiles.push(preprocess::tile_from_nchw(t, &spec)?);
            }
        }
        let n = tiles.len();
        let scorer = ModelScorer::new(model);
        for &w in &workers {
            let rate = rate(&TileStream::new(&scorer, w), &tiles, seconds)?;
            println!(
                "tract {name} batch {batch} workers {w}: {rate:.1} tiles/s ({n} tiles/pass, {:.1} M MACs/tile, {:.1} GMAC/s)",
                macs as f64 / 1e6,
                rate * macs as f64 / 1e9
            );
        }
        if slide != "none" {
            slide_figures(Path::new(&slide), &scorer, &workers, seconds)?;
        }
    }
    Ok(())
}

/// The decode lower bound and the whole stream's rate on one slide.
fn slide_figures(
    path: &Path,
    scorer: &ModelScorer,
    workers: &[usize],
    seconds: f64,
) -> BenchResult<()> {
    let reader = slide::open(path, &OpenOptions::default())?;
    let tiling = TilingOptions {
        tile_px: scorer.tile_px(),
        model_mpp: scorer.mpp(),
        ..TilingOptions::default()
    };
    let grid = TileGrid::build(path, reader.info(), None, &tiling)?;
    let source = GridSource {
        reader: reader.as_ref(),
        grid: &grid,
    };
    // Best of three passes over every tile on this thread: decode and resample only.
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let mut times = ReadTimes::default();
        let start = Instant::now();
        for i in 0..source.len() {
            source.read(i, &mut times)?;
        }
        best = best.min(start.elapsed().as_secs_f64() / source.len() as f64);
    }
    println!(
        "decode {}: {:.3} ms/tile read and resampled on one thread ({} tiles at level {})",
        path.display(),
        best * 1e3,
        source.len(),
        grid.level
    );
    for &w in workers {
        let rate = rate(&TileStream::new(scorer, w), &source, seconds)?;
        println!(
            "stream {} workers {w}: {rate:.1} tiles/s (read, resample, QC, model)",
            path.display()
        );
    }
    Ok(())
}
