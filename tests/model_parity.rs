//! tract against onnxruntime on a model folder's parity fixture (32
//! preprocessed tiles and onnxruntime's outputs on them, written at export),
//! and worker-count independence of the product's tile stream. Runs on the random-weight
//! test fixture always and on the bundled model where it is present.

use std::path::PathBuf;

use dirascope::model::check::ParityFixture;
use dirascope::model::{preprocess, Model, TileClassifier, MANIFEST_FILE};
use dirascope::pipeline::TileStream;
use dirascope::wiring::ModelScorer;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/model/tiny-random-64")
}

/// The fixtures (with and without the OOD output), plus the bundled model where
/// present (reason printed if not).
fn models() -> Vec<PathBuf> {
    let ood = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/model/tiny-random-64-ood");
    let mut dirs = vec![fixture(), ood];
    let bundled = PathBuf::from(dirascope::model::BUNDLED_MODEL_DIR);
    if bundled.join(MANIFEST_FILE).exists() {
        dirs.push(bundled);
    } else {
        eprintln!(
            "bundled model absent at {}: fixture only",
            bundled.display()
        );
    }
    // The model 2 candidate (not the default): logits and its OOD output.
    let v2 = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/dirascope-v2");
    if v2.join(MANIFEST_FILE).exists() {
        dirs.push(v2);
    }
    dirs
}

#[test]
fn tract_matches_onnxruntime_within_1e_4() {
    for dir in models() {
        let model = Model::load(&dir).expect("model loads");
        let fixture = ParityFixture::load(&model).expect("parity fixture");
        assert_eq!(fixture.spec.tiles, 32);
        assert!(fixture.spec.tolerance <= 1e-4);
        assert_eq!(fixture.ood.is_some(), model.manifest.ood.is_some());
        let diff = fixture.max_abs_diff(&model).expect("tract runs");
        eprintln!("{}: max |tract - onnxruntime| = {diff:.3e}", dir.display());
        assert!(
            diff <= 1e-4,
            "{}: max |tract - onnxruntime| = {diff}",
            dir.display()
        );
    }
}

#[test]
fn parity_holds_at_another_batch_size_with_padding() {
    // 32 tiles in batches of 5: six full batches and a padded one of 2.
    let model = Model::load_with_batch(&fixture(), 5).expect("model loads at batch 5");
    let fixture = ParityFixture::load(&model).expect("parity fixture");
    let diff = fixture.max_abs_diff(&model).expect("tract runs");
    assert!(diff <= 1e-4, "max |tract - onnxruntime| = {diff}");
}

#[test]
fn one_and_two_workers_give_identical_probabilities() {
    for dir in models() {
        let model = Model::load(&dir).expect("model loads");
        let fixture = ParityFixture::load(&model).expect("parity fixture");
        let spec = model.engine.input_spec().clone();
        let per_tile = dirascope::model::values_per_tile(&spec);
        // The fixture's 32 tiles as RGB, then its first 8 again: 40 tiles.
        let mut tiles: Vec<_> = fixture
            .inputs
            .chunks(per_tile)
            .map(|t| preprocess::tile_from_nchw(t, &spec).expect("tile"))
            .collect();
        tiles.extend_from_within(..8);
        let scorer = ModelScorer::new(model);
        let one = TileStream::new(&scorer, 1)
            .run(&tiles, None)
            .expect("1 worker");
        let two = TileStream::new(&scorer, 2)
            .run(&tiles, None)
            .expect("2 workers");
        assert_eq!(one.probabilities.len(), 40);
        assert_eq!(one.probabilities, two.probabilities);
        assert_eq!(one.laplacians, two.laplacians);
        // The repeated tiles score exactly as they did the first time.
        assert_eq!(one.probabilities[32..40], one.probabilities[0..8]);
        for p in &one.probabilities {
            assert_eq!(p.len(), 4);
            assert!(p.iter().all(|v| (0.0..=1.0).contains(v)), "{p:?}");
        }
    }
}

#[test]
fn manifests_name_the_four_findings_and_say_not_diagnostic() {
    for dir in models() {
        let m = dirascope::model::Manifest::from_file(&dir.join(MANIFEST_FILE)).expect("manifest");
        assert!(m.intended_use.contains("not a diagnostic device"));
        assert_eq!(m.findings().len(), 4);
    }
}

#[test]
fn the_layer_profile_accounts_for_every_multiply_add_and_names_each_conv() {
    // benches/model_layers.rs reads where the time goes from this profile: each
    // of the bundled graph's seven body convolutions must be one row carrying its
    // own multiply-adds, and the rows must add up to the engine's count a tile.
    // Model 2 adds a 1 x 1 classifier convolution on the pooled features (`/head`).
    let bundled = PathBuf::from(dirascope::model::BUNDLED_MODEL_DIR);
    let model = Model::load_with_batch(&bundled, 1).expect("bundled model loads at batch 1");
    let fixture = ParityFixture::load(&model).expect("parity fixture");
    let per_tile = dirascope::model::values_per_tile(model.engine.input_spec());
    let layers = model
        .engine
        .profile_layers(&fixture.inputs[..per_tile], 3)
        .expect("profile runs");
    let convs: Vec<_> = layers
        .iter()
        .filter(|l| l.name.ends_with("/Conv"))
        .collect();
    let body: Vec<_> = convs
        .iter()
        .filter(|l| l.name.starts_with("/body"))
        .collect();
    assert_eq!(body.len(), 7, "{layers:#?}");
    let in_stem = convs
        .iter()
        .filter(|c| c.ops.starts_with("dirascope"))
        .count();
    assert_eq!(in_stem, model.engine.layers_before_tract(), "{layers:#?}");
    for conv in &body {
        assert!(conv.macs >= 5_000_000 && conv.seconds > 0.0, "{conv:?}");
    }
    for conv in &convs {
        // tract's matrix product, or dirascope's kernels for the first three where
        // the CPU has AVX2 and FMA and for more on AVX-512 (src/model/stem.rs,
        // src/model/blocked.rs).
        assert!(
            conv.ops.contains("MatMul") || conv.ops.starts_with("dirascope"),
            "{conv:?}"
        );
    }
    let total: u64 = layers.iter().map(|l| l.macs).sum();
    assert_eq!(total, model.engine.summary().macs_per_tile);
}
