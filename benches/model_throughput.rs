//! Guards the model stage's throughput: tiles/s of the tract engine at its
//! fixed batch size with 1 and 2 workers, on a model folder's parity tiles.
//! A regression here (a slower plan, a lost optimisation, workers that stop
//! scaling) turns seconds per biopsy into minutes. `benches/model_compare.sh`
//! runs onnxruntime on the same tiles in the same run and prints the ratio.
//!
//!     cargo bench --bench model_throughput -- [MODEL_DIR ...]
//!
//! Environment: DIRASCOPE_BENCH_BATCH (default: the engine's, `DEFAULT_BATCH`), DIRASCOPE_BENCH_SECONDS
//! (default 3), DIRASCOPE_BENCH_WORKERS (default "1 2").

use std::path::PathBuf;
use std::time::Instant;

use dirascope::model::check::ParityFixture;
use dirascope::model::{classify_all, Model, BUNDLED_MODEL_DIR, DEFAULT_BATCH};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // cargo bench passes "--bench"; everything else is a model folder.
    let mut dirs: Vec<PathBuf> = std::env::args()
        .skip(1)
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
    for dir in dirs {
        let model = Model::load_with_batch(&dir, batch)?;
        let fixture = ParityFixture::load(&model)?;
        let n = fixture.spec.tiles;
        let macs = model.engine.summary().macs_per_tile;
        classify_all(&model.engine, &fixture.inputs, 1)?; // warm-up
        for &w in &workers {
            let start = Instant::now();
            let mut done = 0usize;
            while start.elapsed().as_secs_f64() < seconds {
                let probs = classify_all(&model.engine, &fixture.inputs, w)?;
                done += probs.len();
            }
            let rate = done as f64 / start.elapsed().as_secs_f64();
            println!(
                "tract {} batch {batch} workers {w}: {rate:.1} tiles/s ({n} tiles/pass, {:.1} M MACs/tile, {:.1} GMAC/s)",
                model.manifest.name,
                macs as f64 / 1e6,
                rate * macs as f64 / 1e9
            );
        }
    }
    Ok(())
}
