//! tract against onnxruntime on the bundled model's parity fixture (32
//! preprocessed phantom tiles and onnxruntime's outputs, written at export),
//! and worker-count independence of the engine.

use std::path::{Path, PathBuf};

use dirascope::model::check::ParityFixture;
use dirascope::model::{classify_all, Model, TileClassifier, MANIFEST_FILE};

fn bundled() -> PathBuf {
    PathBuf::from(dirascope::model::BUNDLED_MODEL_DIR)
}

#[test]
fn tract_matches_onnxruntime_within_1e_4() {
    let model = Model::load(&bundled()).expect("bundled model loads");
    let fixture = ParityFixture::load(&model).expect("parity fixture");
    assert_eq!(fixture.spec.tiles, 32);
    let diff = fixture.max_abs_diff(&model).expect("tract runs");
    assert!(diff <= 1e-4, "max |tract - onnxruntime| = {diff}");
    assert!(fixture.spec.tolerance <= 1e-4);
}

#[test]
fn parity_holds_at_other_batch_sizes_with_padding() {
    // 32 tiles in batches of 5: six full batches and a padded one of 2.
    let model = Model::load_with_batch(&bundled(), 5).expect("model loads at batch 5");
    let fixture = ParityFixture::load(&model).expect("parity fixture");
    let diff = fixture.max_abs_diff(&model).expect("tract runs");
    assert!(diff <= 1e-4, "max |tract - onnxruntime| = {diff}");
}

#[test]
fn one_and_two_workers_give_identical_probabilities() {
    let model = Model::load(&bundled()).expect("bundled model loads");
    let fixture = ParityFixture::load(&model).expect("parity fixture");
    // 40 tiles: two full batches of 16 and a padded batch of 8.
    let per_tile = dirascope::model::values_per_tile(model.engine.input_spec());
    let mut tiles = fixture.inputs.clone();
    tiles.extend_from_slice(&fixture.inputs[..8 * per_tile]);
    let one = classify_all(&model.engine, &tiles, 1).expect("1 worker");
    let two = classify_all(&model.engine, &tiles, 2).expect("2 workers");
    assert_eq!(one.len(), 40);
    assert_eq!(one, two);
    // The repeated tiles score exactly as they did the first time.
    assert_eq!(one[32..40], one[0..8]);
    for p in &one {
        assert!(p.0.iter().all(|v| (0.0..=1.0).contains(v)), "{p:?}");
    }
}

#[test]
fn bundled_manifest_names_the_four_findings_and_research_use() {
    let m = dirascope::model::Manifest::from_file(&bundled().join(MANIFEST_FILE))
        .expect("manifest");
    assert!(m.intended_use.contains("not a diagnostic device"));
    assert_eq!(m.findings().len(), 4);
    assert!(Path::new(&bundled().join(&m.onnx)).exists());
}
