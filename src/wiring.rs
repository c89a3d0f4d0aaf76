//! How the `score` command joins the model stage to the score pipeline: a loaded
//! model as a [`TileScorer`], and the manifest's values as pipeline options.
//!
//! The stages stay ignorant of each other; only this file knows both.

use image::RgbImage;

use crate::aggregate::{DiraRule, FindingScore, OodParams};
use crate::model::manifest::{DiraRuleSpec, FindingScoreSpec, Manifest};
use crate::model::{self, ClassifierSession, Model, TileClassifier};
use crate::pipeline::{ScorerError, ScorerSession, TileOutput, TileScorer};
use crate::report::ModelInfo;
use crate::score::ScoreOptions;

/// A checked model, scoring RGB tiles through its own preprocessing.
pub struct ModelScorer {
    model: Model,
    classes: Vec<String>,
}

impl ModelScorer {
    pub fn new(model: Model) -> ModelScorer {
        let classes = model
            .manifest
            .findings()
            .iter()
            .map(|f| f.key().to_string())
            .collect();
        ModelScorer { model, classes }
    }

    /// The model's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.model.manifest
    }

    /// Name, version, sha256, classes and input of the model, for every report.
    pub fn info(&self) -> ModelInfo {
        let m = &self.model.manifest;
        ModelInfo {
            name: m.name.clone(),
            version: m.version.clone(),
            sha256: m.sha256.to_ascii_lowercase(),
            classes: self.classes.clone(),
            tile_px: m.input.tile_px,
            mpp: m.input.mpp,
        }
    }

    /// The pipeline's options with the manifest's aggregation, rule and tissue defaults.
    pub fn options(&self, base: ScoreOptions) -> ScoreOptions {
        manifest_options(&self.model.manifest, base)
    }
}

/// `base` with a manifest's aggregation, rule and tissue defaults (`recall` and
/// `calibrate` use it without loading the ONNX graph).
pub fn manifest_options(m: &Manifest, mut base: ScoreOptions) -> ScoreOptions {
    base.min_tissue = m.aggregation.min_tissue;
    base.overlap_px = m.aggregation.overlap_px;
    base.rule_fitted_at = Some(crate::score::RuleTiling {
        overlap_px: m.aggregation.overlap_px,
        min_tissue: m.aggregation.min_tissue,
    });
    base.aggregate.top_k_fraction = m.aggregation.top_k_fraction;
    base.aggregate.top_k_min = m.aggregation.top_k_min as usize;
    base.aggregate.finding_scores = m
        .aggregation
        .per_finding
        .iter()
        .map(|(key, spec)| {
            let method = match *spec {
                FindingScoreSpec::TopKMean {} => FindingScore::TopKMean,
                FindingScoreSpec::TopNMean { n } => FindingScore::TopNMean { n: n as usize },
                FindingScoreSpec::Max3x3Mean {} => FindingScore::Max3x3Mean,
                FindingScoreSpec::Lesion {
                    top,
                    reference_tiles,
                } => FindingScore::Lesion {
                    top: top as usize,
                    reference_tiles: reference_tiles as usize,
                },
            };
            (key.clone(), method)
        })
        .collect();
    base.aggregate.max_edge_depth = m.aggregation.max_edge_depth.clone();
    base.aggregate.tile_threshold = m.aggregation.tile_threshold;
    base.aggregate.dira_rule = match m.rule.dira_rule {
        DiraRuleSpec::PustuleAndOne => DiraRule::PustuleAndOne,
        DiraRuleSpec::TwoOfThree => DiraRule::TwoOfThree,
    };
    base.aggregate.dira_threshold = m.rule.dira_threshold;
    base.aggregate.psoriasiform_threshold = m.rule.psoriasiform_threshold;
    base.aggregate.no_call_margin = m.rule.no_call_margin;
    base.qc.min_tiles = m.rule.min_tissue_tiles as usize;
    base.aggregate.ood = m.ood.as_ref().map(|o| OodParams {
        threshold: o.threshold,
        max_fraction: o.max_fraction,
    });
    base
}

impl TileScorer for ModelScorer {
    fn tile_px(&self) -> u32 {
        self.model.manifest.input.tile_px
    }

    fn mpp(&self) -> f64 {
        self.model.manifest.input.mpp
    }

    fn classes(&self) -> &[String] {
        &self.classes
    }

    fn batch_size(&self) -> usize {
        self.model.engine.batch_size()
    }

    /// A one-off session: for single calls, not for the tile stream.
    fn score_batch(&self, tiles: &[RgbImage]) -> Result<Vec<TileOutput>, ScorerError> {
        self.session()?.score_batch(tiles)
    }

    /// The engine's inference state and an input buffer, both reused per batch.
    fn session(&self) -> Result<Box<dyn ScorerSession + '_>, ScorerError> {
        Ok(Box::new(ModelSession {
            scorer: self,
            session: self.model.engine.session()?,
            input: Vec::new(),
        }))
    }
}

/// One tile stream worker's model session.
struct ModelSession<'a> {
    scorer: &'a ModelScorer,
    session: Box<dyn ClassifierSession + 'a>,
    input: Vec<f32>,
}

impl ScorerSession for ModelSession<'_> {
    fn score_batch(&mut self, tiles: &[RgbImage]) -> Result<Vec<TileOutput>, ScorerError> {
        let manifest = &self.scorer.model.manifest;
        let per_tile = model::values_per_tile(&manifest.input);
        self.input.resize(per_tile * tiles.len(), 0.0);
        for (tile, dst) in tiles.iter().zip(self.input.chunks_mut(per_tile)) {
            model::preprocess::tile_into(tile, &manifest.input, dst)?;
        }
        let findings = manifest.findings();
        let scored = self.session.classify(&self.input, tiles.len())?;
        Ok(scored
            .iter()
            .map(|c| TileOutput {
                probabilities: findings.iter().map(|f| c.probs.get(*f)).collect(),
                ood: c.ood,
            })
            .collect())
    }
}
