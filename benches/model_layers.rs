//! Where the model's time goes, layer by layer: each ONNX node of a model folder's
//! graph as tract plans it (pad, matrix product, activation), its mean time a tile
//! at batch 1 on one thread, its multiply-adds and the rate it reaches. With
//! DIRASCOPE_FMA_PEAK_G (the one-core peak `benches/fma_peak.rs` measures, in G
//! multiply-adds/s; `benches/model_compare.sh` passes it) each layer's fraction
//! of that peak too. `model_compare.sh` prints onnxruntime's own per-node times
//! beside it, which says which layers make tract slower than onnxruntime.
//! Where the first convolutions run in dirascope's own kernel (`src/model/stem.rs`)
//! they are listed first, as "dirascope stem" (and, on AVX-512, the later ones
//! run channel-blocked, `src/model/blocked.rs`, as "dirascope blocked");
//! `DIRASCOPE_STEM=tract` lists the whole graph as tract runs it.
//! Every pass runs the same input tile, so a layer that reads the graph input
//! directly can look cheaper here than in the tile stream (a stem rewritten as a
//! 1x1 convolution showed 0.23 ms here and cost about 1 ms a tile in the stream):
//! `model_throughput` is the figure to trust for the whole model.
//!
//!     cargo bench --bench model_layers -- [MODEL_DIR]
//!
//! Environment: DIRASCOPE_BENCH_PASSES (default 300).

use std::path::PathBuf;

use dirascope::model::check::ParityFixture;
use dirascope::model::{Model, TileClassifier, BUNDLED_MODEL_DIR};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> BenchResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return Ok(()); // `cargo test --benches` smoke-runs benches: too heavy for that
    }
    let dir = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(BUNDLED_MODEL_DIR));
    let passes: usize = std::env::var("DIRASCOPE_BENCH_PASSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let peak: Option<f64> = std::env::var("DIRASCOPE_FMA_PEAK_G")
        .ok()
        .and_then(|v| v.parse().ok());
    let model = Model::load_with_batch(&dir, 1)?;
    let fixture = ParityFixture::load(&model)?;
    let per_tile = dirascope::model::values_per_tile(model.engine.input_spec());
    let tile = &fixture.inputs[..per_tile];
    let layers = model.engine.profile_layers(tile, passes)?;
    let total: f64 = layers.iter().map(|l| l.seconds).sum();
    println!(
        "layers {}: batch 1, one thread, {passes} passes; {:.3} ms a tile in all",
        model.manifest.name,
        total * 1e3
    );
    for l in layers
        .iter()
        .filter(|l| l.seconds * 1e6 >= 1.0 || l.macs > 0)
    {
        let rate = l.macs as f64 / l.seconds / 1e9;
        let of_peak = peak.map_or(String::new(), |p| {
            format!(" {:5.1}% of peak", 100.0 * rate / p)
        });
        println!(
            "layer {:28} {:7.3} ms {:5.1}% {:6.2} M MACs {:6.1} GMAC/s{of_peak}  {}",
            l.name,
            l.seconds * 1e3,
            100.0 * l.seconds / total,
            l.macs as f64 / 1e6,
            rate,
            l.ops
        );
    }
    Ok(())
}
