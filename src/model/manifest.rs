//! The model manifest (`models/<name>/model.toml`): parse it and check every
//! field against the contract in DESIGN.md before anything is loaded.
//! It must not read the ONNX file or know about tract; `engine.rs` checks the
//! ONNX graph against what this module accepted.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use super::{Finding, ModelError};

/// Largest `n` a `top-n-mean` may average (a guard against typos; a fixed count
/// is meant to be small).
pub const MAX_TOP_N: u32 = 1000;
/// Largest `aggregation.max_edge_depth` (grid steps; deeper is every tile of any
/// biopsy a slide holds).
pub const MAX_EDGE_DEPTH: u32 = 1000;

/// Plausible range of the model's MPP: from beyond a 60x scan (0.05 µm/px) to a
/// coarse overview (16 µm/px). Outside it a manifest is a typo, and a tiny MPP
/// would ask for a tile grid of astronomical size.
pub const MODEL_MPP_RANGE: std::ops::RangeInclusive<f64> = 0.05..=16.0;

/// Plausible range of each channel's standard deviation on the 0..1 pixel scale
/// (1/255 is a model fed raw 0..255 values).
pub const STD_RANGE: std::ops::RangeInclusive<f32> = 0.001..=10.0;

/// Largest `top_k_min` (never average fewer tiles than this).
pub const MAX_TOP_K_MIN: u32 = 100_000;

/// The manifest as written in `model.toml`, after validation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Model name, e.g. `dirascope-phantom-v1`.
    pub name: String,
    /// Model version (free text, usually semver).
    pub version: String,
    /// ONNX file name, relative to the model folder and inside it.
    pub onnx: String,
    /// Lower-case hex sha256 of the ONNX file; a mismatch is refused.
    pub sha256: String,
    /// Numeric precision of the graph's weights and activations (default fp32).
    #[serde(default)]
    pub precision: Precision,
    /// What the model may be used for (echoed in every report).
    pub intended_use: String,
    /// What the model was trained on (echoed in every report).
    pub training_data: String,
    pub input: InputSpec,
    pub output: OutputSpec,
    pub aggregation: AggregationSpec,
    pub rule: RuleSpec,
    /// The out-of-distribution detector, where the graph has one (`[ood]`).
    #[serde(default)]
    pub ood: Option<OodSpec>,
    /// The model's training stain (`[stain]`: its two stain vectors and their
    /// densities), which `score --normalise-stain` maps each slide onto; measured
    /// with `dirascope model stain` on slides like the training data.
    #[serde(default)]
    pub stain: Option<crate::stain::StainProfile>,
    /// The PyTorch checkpoint shipped for fine-tuning (relative to the folder),
    /// with its sha256; `model check` verifies it. Optional, both or neither.
    #[serde(default)]
    pub checkpoint: Option<String>,
    #[serde(default)]
    pub checkpoint_sha256: Option<String>,
}

/// `[ood]`: the graph's out-of-distribution output and when it makes a slide's
/// call `out-of-distribution`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OodSpec {
    /// Name of the ONNX graph output holding one distance per tile (the logits
    /// are the graph's first output; this one must be another).
    pub output: String,
    /// How the distance is computed (free text, e.g. `mahalanobis`).
    pub method: String,
    /// A tile is unlike the training data when its distance is above this.
    pub threshold: f64,
    /// A slide is out of distribution when more than this fraction of its scored
    /// tissue tiles are (0..=1).
    pub max_fraction: f64,
    /// What the detector and its threshold were fitted on (free text).
    #[serde(default)]
    pub fitted_on: String,
}

/// Numeric precision of a model's graph: fp32, or int8 (a QDQ graph from
/// training/quantize.py).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    Int8,
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        })
    }
}

/// What one tile fed to the model looks like.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Tile edge in pixels (tiles are square).
    pub tile_px: u32,
    /// Microns per pixel the model expects; the tiling stage resamples to it.
    pub mpp: f64,
    /// Tensor layout; only `NCHW` is supported.
    pub layout: Layout,
    /// Order of the three colour channels in the tensor.
    pub channel_order: ChannelOrder,
    /// Per-channel mean on the 0..1 scale (pixel / 255), in `channel_order`.
    pub mean: [f32; 3],
    /// Per-channel standard deviation on the 0..1 scale, in `channel_order`.
    pub std: [f32; 3],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Layout {
    #[serde(rename = "NCHW")]
    Nchw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ChannelOrder {
    #[serde(rename = "RGB")]
    Rgb,
    #[serde(rename = "BGR")]
    Bgr,
}

/// What the model's single output means.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Applied by the engine to the raw output to get probabilities.
    pub activation: Activation,
    /// Finding keys in output order; exactly the four findings, each once.
    pub classes: Vec<String>,
    /// Views of each tile the model is run on (test-time augmentation): the raw
    /// outputs of all views are averaged before the activation, and the OOD
    /// distance is the identity view's. Default: the tile as it is.
    #[serde(default = "identity_only")]
    pub views: Vec<TileView>,
    /// The views after the identity run only for tiles whose identity-view
    /// probability for some finding is at least this (0, the default: every
    /// tile); other tiles keep the identity view's outputs. A tile's outputs do
    /// not depend on the batch it runs in.
    #[serde(default)]
    pub views_min_probability: f32,
}

fn identity_only() -> Vec<TileView> {
    vec![TileView::Identity]
}

/// One of the eight rotations and mirrorings of a square tile, as the model is
/// shown it (`[output] views`). Each names where pixel (y, x) of the view comes
/// from in the tile of edge n: identity (y, x), `transpose` (x, y), `flip-h` (y,
/// n-1-x), `flip-v` (n-1-y, x), `rot90` (x, n-1-y), `rot180` (n-1-y, n-1-x),
/// `rot270` (n-1-x, y), `anti-transpose` (n-1-x, n-1-y). `transpose` is numpy's
/// and torch's swap of the last two axes of an NCHW batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TileView {
    Identity,
    Transpose,
    FlipH,
    FlipV,
    Rot90,
    Rot180,
    Rot270,
    AntiTranspose,
}

impl TileView {
    /// Where pixel (y, x) of this view of a tile of edge `n` comes from.
    pub fn source(self, y: usize, x: usize, n: usize) -> (usize, usize) {
        let last = n - 1;
        match self {
            TileView::Identity => (y, x),
            TileView::Transpose => (x, y),
            TileView::FlipH => (y, last - x),
            TileView::FlipV => (last - y, x),
            TileView::Rot90 => (x, last - y),
            TileView::Rot180 => (last - y, last - x),
            TileView::Rot270 => (last - x, y),
            TileView::AntiTranspose => (last - x, last - y),
        }
    }

    /// The name `model.toml` gives it.
    pub fn name(self) -> &'static str {
        match self {
            TileView::Identity => "identity",
            TileView::Transpose => "transpose",
            TileView::FlipH => "flip-h",
            TileView::FlipV => "flip-v",
            TileView::Rot90 => "rot90",
            TileView::Rot180 => "rot180",
            TileView::Rot270 => "rot270",
            TileView::AntiTranspose => "anti-transpose",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Independent probability per class (multi-label).
    Sigmoid,
    /// Probabilities summing to one across classes.
    Softmax,
    /// The model already outputs probabilities.
    None,
}

/// How tile probabilities become a slide score per finding.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregationSpec {
    pub method: AggregationMethod,
    /// Fraction of tissue tiles averaged for a finding's slide score.
    pub top_k_fraction: f64,
    /// Never average fewer tiles than this (or all tiles, if fewer).
    pub top_k_min: u32,
    /// A tile counts as positive for a finding at or above this probability.
    pub tile_threshold: f64,
    /// Default minimum tissue fraction for a tile to be scored.
    pub min_tissue: f64,
    /// Default overlap between neighbouring tiles, in model pixels (`--overlap`
    /// overrides it). The rule's thresholds hold at the overlap they were fitted
    /// at: `calibrate` writes the overlap of the run it fitted on, and `recall`
    /// refuses a run scored with another. Optional; 0 (tiles edge to edge).
    #[serde(default)]
    pub overlap_px: u32,
    /// Findings whose slide score is not `method`'s, by finding key (a TOML table
    /// `[aggregation.per_finding]`, e.g. `acantholysis = { method = "top-n-mean",
    /// n = 2 }`). Optional; findings not listed use `method`.
    #[serde(default)]
    pub per_finding: BTreeMap<String, FindingScoreSpec>,
    /// Findings read only from tiles at most this many grid steps from the tissue's
    /// edge, by finding key (a TOML table `[aggregation.max_edge_depth]`, e.g.
    /// `acantholysis = 1`: superficial acantholysis from the tiles at the edge).
    /// Optional; findings not listed use every tile.
    #[serde(default)]
    pub max_edge_depth: BTreeMap<String, u32>,
}

/// One finding's slide-score method in `[aggregation.per_finding]`. Variants
/// without parameters are empty struct variants: serde's `deny_unknown_fields`
/// ignores stray keys beside the tag of a unit variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(tag = "method", deny_unknown_fields)]
pub enum FindingScoreSpec {
    /// As `aggregation.method = "top-k-mean"`.
    #[serde(rename = "top-k-mean")]
    TopKMean {},
    /// Mean of the `n` highest-scoring tiles (all of them on a slide with fewer).
    #[serde(rename = "top-n-mean")]
    TopNMean { n: u32 },
    /// The largest mean over a tile and its scored 3 x 3 grid neighbours.
    #[serde(rename = "max-3x3-mean")]
    Max3x3Mean {},
    /// The best lesion (8-connected tiles at or above `tile_threshold`), scored by
    /// the mean of its `top` highest tiles (default 1, its peak), its log-odds
    /// lowered by `ln(n / reference_tiles)` on a slide of `n > reference_tiles`
    /// tiles (default 0: no correction).
    #[serde(rename = "lesion")]
    Lesion {
        #[serde(default = "one")]
        top: u32,
        #[serde(default)]
        reference_tiles: u32,
    },
}

fn one() -> u32 {
    1
}

/// How the DIRA-pattern score combines pustule (P), acantholysis (A) and
/// hidradenitis (H): `rule.dira_rule` in model.toml, absent in manifests up to
/// model 1.2.0 (which get `pustule-and-one`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum DiraRuleSpec {
    /// `sqrt(P * max(A, H))`.
    #[default]
    #[serde(rename = "pustule-and-one")]
    PustuleAndOne,
    /// The second highest of P, A, H: any two of the three findings.
    #[serde(rename = "two-of-three")]
    TwoOfThree,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AggregationMethod {
    #[serde(rename = "top-k-mean")]
    TopKMean,
}

/// Slide-level call thresholds (the aggregate stage applies them).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// The DIRA score's shape (optional; see [`DiraRuleSpec`]).
    #[serde(default)]
    pub dira_rule: DiraRuleSpec,
    /// DIRA-pattern score at or above which the slide is called `dira-pattern`.
    pub dira_threshold: f64,
    /// Psoriasiform score at or above which the slide is `psoriasiform-pattern`.
    pub psoriasiform_threshold: f64,
    /// Scores within this margin of a threshold give no confident call.
    pub no_call_margin: f64,
    /// Fewer scored tissue tiles than this gives `insufficient-tissue`.
    pub min_tissue_tiles: u32,
}

impl Manifest {
    /// Parse and validate manifest text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ModelError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| ModelError::ManifestParse {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        manifest.validate(path)?;
        Ok(manifest)
    }

    /// Read, parse and validate `path`.
    pub fn from_file(path: &Path) -> Result<Manifest, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Manifest::parse(&text, path)
    }

    /// The findings in the model's output order.
    pub fn findings(&self) -> Vec<Finding> {
        // validate() guarantees every key parses.
        self.output
            .classes
            .iter()
            .filter_map(|k| k.parse().ok())
            .collect()
    }

    /// Where the ONNX file lives, given the model folder.
    pub fn onnx_path(&self, model_dir: &Path) -> PathBuf {
        model_dir.join(&self.onnx)
    }

    fn validate(&self, path: &Path) -> Result<(), ModelError> {
        let invalid = |field: &str, reason: String| ModelError::ManifestInvalid {
            path: path.to_path_buf(),
            field: field.to_string(),
            reason,
        };
        if self.name.trim().is_empty() {
            return Err(invalid("name", "is empty".into()));
        }
        if self.version.trim().is_empty() {
            return Err(invalid("version", "is empty".into()));
        }
        if self.intended_use.trim().is_empty() {
            return Err(invalid("intended_use", "is empty".into()));
        }
        if self.training_data.trim().is_empty() {
            return Err(invalid("training_data", "is empty".into()));
        }
        if !is_plain_relative(&self.onnx) {
            return Err(ModelError::OutsideModelDir {
                path: path.to_path_buf(),
                reference: self.onnx.clone(),
            });
        }
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(
                "sha256",
                format!("'{}' is not 64 hex digits", self.sha256),
            ));
        }
        let input = &self.input;
        if !(16..=4096).contains(&input.tile_px) {
            return Err(invalid(
                "input.tile_px",
                format!("{} is outside 16..=4096", input.tile_px),
            ));
        }
        if !MODEL_MPP_RANGE.contains(&input.mpp) {
            return Err(invalid(
                "input.mpp",
                format!(
                    "{} is not in [{}, {}] microns per pixel (a 40x scan is about 0.25)",
                    input.mpp,
                    MODEL_MPP_RANGE.start(),
                    MODEL_MPP_RANGE.end()
                ),
            ));
        }
        if input.mean.iter().any(|m| !(0.0..=1.0).contains(m)) {
            return Err(invalid(
                "input.mean",
                format!(
                    "{:?} must lie in [0, 1] (the pixel / 255 scale)",
                    input.mean
                ),
            ));
        }
        if input.std.iter().any(|s| !STD_RANGE.contains(s)) {
            return Err(invalid(
                "input.std",
                format!(
                    "{:?} must lie in [{}, {}] (the pixel / 255 scale)",
                    input.std,
                    STD_RANGE.start(),
                    STD_RANGE.end()
                ),
            ));
        }
        self.validate_classes(path)?;
        let views = &self.output.views;
        if !views.contains(&TileView::Identity) {
            return Err(invalid(
                "output.views",
                "must include \"identity\" (the OOD distance is the identity view's)".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.output.views_min_probability) {
            return Err(invalid(
                "output.views_min_probability",
                format!(
                    "{} is not a probability in 0..=1",
                    self.output.views_min_probability
                ),
            ));
        }
        if self.output.views_min_probability > 0.0 && views.len() < 2 {
            return Err(invalid(
                "output.views_min_probability",
                "gates the views after \"identity\", and `views` names no other; remove it or add a view".into(),
            ));
        }
        if let Some((i, v)) = views
            .iter()
            .enumerate()
            .find(|(i, v)| views[..*i].contains(v))
        {
            return Err(invalid(
                "output.views",
                format!("\"{}\" appears twice (entry {})", v.name(), i + 1),
            ));
        }
        let agg = &self.aggregation;
        if !(agg.top_k_fraction > 0.0 && agg.top_k_fraction <= 1.0) {
            return Err(invalid(
                "aggregation.top_k_fraction",
                format!("{} is not in (0, 1]", agg.top_k_fraction),
            ));
        }
        if !(1..=MAX_TOP_K_MIN).contains(&agg.top_k_min) {
            return Err(invalid(
                "aggregation.top_k_min",
                format!("{} is outside 1..={MAX_TOP_K_MIN}", agg.top_k_min),
            ));
        }
        for (key, spec) in &agg.per_finding {
            let field = format!("aggregation.per_finding.{key}");
            if !self.output.classes.contains(key) {
                return Err(invalid(
                    &field,
                    format!("'{key}' is not one of output.classes"),
                ));
            }
            if let FindingScoreSpec::TopNMean { n } = spec {
                if !(1..=MAX_TOP_N).contains(n) {
                    return Err(invalid(
                        &field,
                        format!("n = {n} is outside 1..={MAX_TOP_N}"),
                    ));
                }
            }
            if let FindingScoreSpec::Lesion { top, .. } = spec {
                if !(1..=MAX_TOP_N).contains(top) {
                    return Err(invalid(
                        &field,
                        format!("top = {top} is outside 1..={MAX_TOP_N}"),
                    ));
                }
            }
        }
        for (key, &depth) in &agg.max_edge_depth {
            let field = format!("aggregation.max_edge_depth.{key}");
            if !self.output.classes.contains(key) {
                return Err(invalid(
                    &field,
                    format!("'{key}' is not one of output.classes"),
                ));
            }
            if !(1..=MAX_EDGE_DEPTH).contains(&depth) {
                return Err(invalid(
                    &field,
                    format!("{depth} is outside 1..={MAX_EDGE_DEPTH} grid steps"),
                ));
            }
        }
        for (field, value) in [
            ("aggregation.tile_threshold", agg.tile_threshold),
            ("aggregation.min_tissue", agg.min_tissue),
            ("rule.dira_threshold", self.rule.dira_threshold),
            (
                "rule.psoriasiform_threshold",
                self.rule.psoriasiform_threshold,
            ),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(invalid(field, format!("{value} is not in [0, 1]")));
            }
        }
        if agg.overlap_px >= self.input.tile_px {
            return Err(invalid(
                "aggregation.overlap_px",
                format!(
                    "{} is not below the tile size {} px",
                    agg.overlap_px, self.input.tile_px
                ),
            ));
        }
        if !(0.0..0.5).contains(&self.rule.no_call_margin) {
            return Err(invalid(
                "rule.no_call_margin",
                format!("{} is not in [0, 0.5)", self.rule.no_call_margin),
            ));
        }
        if let Some(ood) = &self.ood {
            if ood.output.trim().is_empty() {
                return Err(invalid("ood.output", "is empty".into()));
            }
            if !(ood.threshold.is_finite() && ood.threshold >= 0.0) {
                return Err(invalid(
                    "ood.threshold",
                    format!("{} is not a finite distance >= 0", ood.threshold),
                ));
            }
            if !(0.0..=1.0).contains(&ood.max_fraction) {
                return Err(invalid(
                    "ood.max_fraction",
                    format!("{} is not in [0, 1]", ood.max_fraction),
                ));
            }
        }
        if let Some(stain) = &self.stain {
            stain.check().map_err(|reason| invalid("stain", reason))?;
        }
        match (&self.checkpoint, &self.checkpoint_sha256) {
            (None, None) => {}
            (Some(file), Some(sha)) => {
                if !is_plain_relative(file) {
                    return Err(ModelError::OutsideModelDir {
                        path: path.to_path_buf(),
                        reference: file.clone(),
                    });
                }
                if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(invalid(
                        "checkpoint_sha256",
                        format!("'{sha}' is not 64 hex digits"),
                    ));
                }
            }
            (Some(_), None) => {
                return Err(invalid(
                    "checkpoint_sha256",
                    "is missing; a checkpoint needs its sha256".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "checkpoint",
                    "is missing; checkpoint_sha256 names no file".into(),
                ))
            }
        }
        Ok(())
    }

    fn validate_classes(&self, path: &Path) -> Result<(), ModelError> {
        let classes = &self.output.classes;
        let class_error = |reason: String| ModelError::ClassKeys {
            path: path.to_path_buf(),
            reason,
        };
        let mut seen = Vec::new();
        for key in classes {
            let finding: Finding = key.parse().map_err(|_| {
                class_error(format!(
                    "unknown class key '{key}' (known: {})",
                    Finding::ALL.map(|f| f.key()).join(", ")
                ))
            })?;
            if seen.contains(&finding) {
                return Err(class_error(format!("class key '{key}' appears twice")));
            }
            seen.push(finding);
        }
        let missing: Vec<&str> = Finding::ALL
            .iter()
            .filter(|f| !seen.contains(f))
            .map(|f| f.key())
            .collect();
        if !missing.is_empty() {
            return Err(class_error(format!(
                "output.classes has {} entries, expected {}; missing {}",
                classes.len(),
                Finding::ALL.len(),
                missing.join(", ")
            )));
        }
        Ok(())
    }
}

/// True when `reference` is a relative path that stays inside its folder
/// (no root, no drive prefix, no `..`).
pub(crate) fn is_plain_relative(reference: &str) -> bool {
    let p = Path::new(reference);
    !reference.is_empty()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && p.components().any(|c| matches!(c, Component::Normal(_)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const GOOD: &str = r#"
name = "test-model"
version = "1.0.0"
onnx = "model.onnx"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
intended_use = "research use only"
training_data = "phantoms"

[input]
tile_px = 224
mpp = 1.0
layout = "NCHW"
channel_order = "RGB"
mean = [0.5, 0.5, 0.5]
std = [0.25, 0.25, 0.25]

[output]
activation = "sigmoid"
classes = ["subcorneal_pustule", "acantholysis", "neutrophilic_eccrine_hidradenitis", "psoriasiform"]

[aggregation]
method = "top-k-mean"
top_k_fraction = 0.05
top_k_min = 5
tile_threshold = 0.5
min_tissue = 0.5

[rule]
dira_threshold = 0.5
psoriasiform_threshold = 0.5
no_call_margin = 0.1
min_tissue_tiles = 10
"#;

    fn parse(text: &str) -> Result<Manifest, ModelError> {
        Manifest::parse(text, Path::new("models/x/model.toml"))
    }

    #[test]
    fn ood_table_is_optional_and_checked() {
        assert_eq!(parse(GOOD).unwrap().ood, None);
        let with = |body: &str| format!("{GOOD}\n[ood]\n{body}\n");
        let ok = parse(&with(
            "output = \"ood\"\nmethod = \"mahalanobis\"\nthreshold = 1.8\nmax_fraction = 0.25",
        ))
        .unwrap();
        let ood = ok.ood.unwrap();
        assert_eq!(
            (ood.output.as_str(), ood.threshold, ood.max_fraction),
            ("ood", 1.8, 0.25)
        );
        for (body, field) in [
            (
                "output = \"ood\"\nmethod = \"m\"\nthreshold = 1.0\nmax_fraction = 1.5",
                "ood.max_fraction",
            ),
            (
                "output = \"ood\"\nmethod = \"m\"\nthreshold = -1.0\nmax_fraction = 0.5",
                "ood.threshold",
            ),
            (
                "output = \" \"\nmethod = \"m\"\nthreshold = 1.0\nmax_fraction = 0.5",
                "ood.output",
            ),
        ] {
            match parse(&with(body)) {
                Err(ModelError::ManifestInvalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{body}: {other:?}"),
            }
        }
        assert!(parse(&with(
            "output = \"ood\"\nthreshold = 1.0\nmax_fraction = 0.5"
        ))
        .is_err());
    }

    #[test]
    fn stain_table_is_optional_and_checked() {
        assert_eq!(parse(GOOD).unwrap().stain, None);
        let with = |body: &str| format!("{GOOD}\n[stain]\n{body}\n");
        let ok = parse(&with(
            "hematoxylin = [0.6102, 0.7049, 0.3616]\neosin = [0.1543, 0.9562, 0.2488]\nmax_concentration = [2.48, 1.17]",
        ))
        .unwrap();
        assert_eq!(ok.stain.unwrap().max_concentration, [2.48, 1.17]);
        let parallel = parse(&with(
            "hematoxylin = [0.6102, 0.7049, 0.3616]\neosin = [0.6102, 0.7049, 0.3616]\nmax_concentration = [2.48, 1.17]",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            parallel.contains("stain") && parallel.contains("too close"),
            "{parallel}"
        );
        let flat = parse(&with(
            "hematoxylin = [0.6102, 0.7049, 0.3616]\neosin = [0.1543, 0.9562, 0.2488]\nmax_concentration = [0.0, 1.17]",
        ))
        .unwrap_err()
        .to_string();
        assert!(flat.contains("max_concentration"), "{flat}");
    }

    #[test]
    fn checkpoint_needs_its_sha256() {
        let sha = "ab".repeat(32);
        let text = GOOD.replacen(
            "sha256 =",
            &format!("checkpoint = \"checkpoint.pt\"\ncheckpoint_sha256 = \"{sha}\"\nsha256 ="),
            1,
        );
        assert_eq!(
            parse(&text).unwrap().checkpoint.as_deref(),
            Some("checkpoint.pt")
        );
        let alone = GOOD.replacen("sha256 =", "checkpoint = \"checkpoint.pt\"\nsha256 =", 1);
        assert!(parse(&alone).is_err());
        let outside = text.replace("\"checkpoint.pt\"", "\"../x.pt\"");
        assert!(matches!(
            parse(&outside),
            Err(ModelError::OutsideModelDir { .. })
        ));
    }

    #[test]
    fn views_default_to_the_tile_and_are_checked() {
        assert_eq!(parse(GOOD).unwrap().output.views, vec![TileView::Identity]);
        let with = |views: &str| {
            GOOD.replacen(
                "\n[aggregation]",
                &format!("views = {views}\n\n[aggregation]"),
                1,
            )
        };
        assert_eq!(
            parse(&with(r#"["identity", "transpose"]"#))
                .unwrap()
                .output
                .views,
            vec![TileView::Identity, TileView::Transpose]
        );
        for (views, says) in [
            (r#"["transpose"]"#, "must include \"identity\""),
            (
                r#"["identity", "flip-h", "flip-h"]"#,
                "\"flip-h\" appears twice",
            ),
        ] {
            match parse(&with(views)) {
                Err(e @ ModelError::ManifestInvalid { .. }) => {
                    let text = e.to_string();
                    assert!(
                        text.contains("output.views") && text.contains(says),
                        "{text}"
                    );
                }
                other => panic!("{views}: {other:?}"),
            }
        }
        assert!(parse(&with(r#"["identity", "rot45"]"#)).is_err());
        let floor = |value: &str| {
            parse(&GOOD.replacen(
                "\n[aggregation]",
                &format!("views = [\"identity\", \"transpose\"]\nviews_min_probability = {value}\n\n[aggregation]"),
                1,
            ))
        };
        // A floor without a second view would do nothing: refused.
        match parse(&GOOD.replacen(
            "\n[aggregation]",
            "views_min_probability = 0.02\n\n[aggregation]",
            1,
        )) {
            Err(ModelError::ManifestInvalid { field, .. }) => {
                assert_eq!(field, "output.views_min_probability")
            }
            other => panic!("a floor without views: {other:?}"),
        }
        assert_eq!(parse(GOOD).unwrap().output.views_min_probability, 0.0);
        assert_eq!(floor("0.02").unwrap().output.views_min_probability, 0.02);
        for bad in ["-0.1", "1.5", "nan"] {
            match floor(bad) {
                Err(ModelError::ManifestInvalid { field, .. }) => {
                    assert_eq!(field, "output.views_min_probability", "{bad}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn views_are_the_eight_symmetries_of_a_square() {
        // Each view is a permutation of the tile's pixels, and the eight differ.
        let n = 5;
        let all = [
            TileView::Identity,
            TileView::Transpose,
            TileView::FlipH,
            TileView::FlipV,
            TileView::Rot90,
            TileView::Rot180,
            TileView::Rot270,
            TileView::AntiTranspose,
        ];
        let mut maps = Vec::new();
        for v in all {
            let map: Vec<(usize, usize)> = (0..n)
                .flat_map(|y| (0..n).map(move |x| v.source(y, x, n)))
                .collect();
            let mut sorted = map.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), n * n, "{} is not a permutation", v.name());
            assert!(!maps.contains(&map), "{} repeats another view", v.name());
            maps.push(map);
        }
        // numpy's x.transpose(0, 1, 3, 2) and np.rot90(x, 1, axes=(2, 3)) on NCHW.
        assert_eq!(TileView::Transpose.source(1, 3, n), (3, 1));
        assert_eq!(TileView::Rot90.source(0, 0, n), (0, 4));
    }

    #[test]
    fn precision_defaults_to_fp32_and_reads_int8() {
        assert_eq!(parse(GOOD).unwrap().precision, Precision::Fp32);
        let text = GOOD.replacen("sha256 =", "precision = \"int8\"\nsha256 =", 1);
        assert_eq!(parse(&text).unwrap().precision, Precision::Int8);
        let bad = GOOD.replacen("sha256 =", "precision = \"int4\"\nsha256 =", 1);
        assert!(parse(&bad).is_err());
    }

    #[test]
    fn good_manifest_parses_with_findings_in_output_order() {
        let m = parse(GOOD).expect("valid manifest");
        assert_eq!(m.input.tile_px, 224);
        assert_eq!(m.output.activation, Activation::Sigmoid);
        assert_eq!(m.findings(), Finding::ALL.to_vec());
    }

    #[test]
    fn missing_class_is_refused_naming_the_file_and_key() {
        let text = GOOD.replace("\"acantholysis\", ", "");
        let err = parse(&text).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ModelError::ClassKeys { .. }), "{msg}");
        assert!(msg.contains("models/x/model.toml"), "{msg}");
        assert!(msg.contains("missing acantholysis"), "{msg}");
        assert!(msg.contains("3 entries"), "{msg}");
    }

    #[test]
    fn unknown_and_duplicate_classes_are_refused() {
        let unknown = GOOD.replace("\"psoriasiform\"]", "\"psoriasiform\", \"eczema\"]");
        assert!(parse(&unknown).unwrap_err().to_string().contains("eczema"));
        let dup = GOOD.replace("\"psoriasiform\"]", "\"psoriasiform\", \"acantholysis\"]");
        assert!(parse(&dup).unwrap_err().to_string().contains("twice"));
    }

    #[test]
    fn onnx_outside_the_folder_is_refused() {
        for bad in ["../model.onnx", "/etc/passwd", "", "a/../../b.onnx"] {
            let text = GOOD.replace("\"model.onnx\"", &format!("{bad:?}"));
            let err = parse(&text).unwrap_err();
            assert!(
                matches!(err, ModelError::OutsideModelDir { .. }),
                "{bad}: {err}"
            );
        }
        assert!(is_plain_relative("sub/model.onnx"));
    }

    #[test]
    fn out_of_range_fields_are_refused_by_name() {
        for (from, to, field) in [
            ("mpp = 1.0", "mpp = 0.0", "input.mpp"),
            ("tile_px = 224", "tile_px = 0", "input.tile_px"),
            (
                "std = [0.25, 0.25, 0.25]",
                "std = [0.25, 0.0, 0.25]",
                "input.std",
            ),
            (
                "top_k_fraction = 0.05",
                "top_k_fraction = 1.5",
                "aggregation.top_k_fraction",
            ),
            (
                "dira_threshold = 0.5",
                "dira_threshold = 2.0",
                "rule.dira_threshold",
            ),
        ] {
            let err = parse(&GOOD.replace(from, to)).unwrap_err();
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn the_tile_overlap_defaults_to_none_and_stays_below_the_tile() {
        assert_eq!(parse(GOOD).unwrap().aggregation.overlap_px, 0);
        let at = |px: u32| {
            GOOD.replace(
                "min_tissue = 0.5\n",
                &format!("min_tissue = 0.5\noverlap_px = {px}\n"),
            )
        };
        assert_eq!(parse(&at(112)).unwrap().aggregation.overlap_px, 112);
        let tile = parse(GOOD).unwrap().input.tile_px;
        let err = parse(&at(tile)).unwrap_err();
        assert!(err.to_string().contains("aggregation.overlap_px"), "{err}");
    }

    #[test]
    fn per_finding_scores_parse_and_default_to_none() {
        assert!(parse(GOOD).unwrap().aggregation.per_finding.is_empty());
        let text = GOOD.replace(
            "min_tissue = 0.5\n",
            "min_tissue = 0.5\n\n[aggregation.per_finding]\n\
             subcorneal_pustule = { method = \"top-n-mean\", n = 2 }\n\
             psoriasiform = { method = \"top-k-mean\" }\n\
             acantholysis = { method = \"max-3x3-mean\" }\n",
        );
        let m = parse(&text).expect("valid per_finding");
        assert_eq!(
            m.aggregation.per_finding.get("subcorneal_pustule"),
            Some(&FindingScoreSpec::TopNMean { n: 2 })
        );
        assert_eq!(
            m.aggregation.per_finding.get("psoriasiform"),
            Some(&FindingScoreSpec::TopKMean {})
        );
        assert_eq!(
            m.aggregation.per_finding.get("acantholysis"),
            Some(&FindingScoreSpec::Max3x3Mean {})
        );
    }

    #[test]
    fn bad_per_finding_scores_are_refused() {
        let with = |line: &str| {
            GOOD.replace(
                "min_tissue = 0.5\n",
                &format!("min_tissue = 0.5\n\n[aggregation.per_finding]\n{line}\n"),
            )
        };
        let unknown_key = parse(&with("eczema = { method = \"top-n-mean\", n = 2 }")).unwrap_err();
        assert!(
            unknown_key
                .to_string()
                .contains("aggregation.per_finding.eczema"),
            "{unknown_key}"
        );
        let zero = parse(&with("acantholysis = { method = \"top-n-mean\", n = 0 }")).unwrap_err();
        assert!(zero.to_string().contains("outside 1..=1000"), "{zero}");
        for bad in [
            "acantholysis = { method = \"top-n-max\", n = 2 }",
            "acantholysis = { method = \"top-n-mean\", k = 2 }",
            "acantholysis = { method = \"top-n-mean\" }",
            "acantholysis = { method = \"top-n-mean\", n = 2, extra = 1 }",
            "acantholysis = { method = \"max-3x3-mean\", n = 2 }",
            "acantholysis = { method = \"top-k-mean\", k = 2 }",
        ] {
            assert!(
                matches!(
                    parse(&with(bad)).unwrap_err(),
                    ModelError::ManifestParse { .. }
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn edge_depths_parse_and_bad_ones_are_refused() {
        assert!(parse(GOOD).unwrap().aggregation.max_edge_depth.is_empty());
        let with = |line: &str| {
            GOOD.replace(
                "min_tissue = 0.5\n",
                &format!("min_tissue = 0.5\n\n[aggregation.max_edge_depth]\n{line}\n"),
            )
        };
        let m = parse(&with("acantholysis = 1")).expect("valid edge depth");
        assert_eq!(m.aggregation.max_edge_depth.get("acantholysis"), Some(&1));
        let unknown = parse(&with("eczema = 1")).unwrap_err();
        assert!(
            unknown
                .to_string()
                .contains("aggregation.max_edge_depth.eczema"),
            "{unknown}"
        );
        let zero = parse(&with("acantholysis = 0")).unwrap_err();
        assert!(zero.to_string().contains("outside 1..=1000"), "{zero}");
        assert!(matches!(
            parse(&with("acantholysis = -1")).unwrap_err(),
            ModelError::ManifestParse { .. }
        ));
    }

    #[test]
    fn lesion_scores_and_the_dira_rule_shape_parse() {
        let text = GOOD
            .replace(
                "min_tissue = 0.5\n",
                "min_tissue = 0.5\n\n[aggregation.per_finding]\n\
                 subcorneal_pustule = { method = \"lesion\" }\n\
                 acantholysis = { method = \"lesion\", top = 2, reference_tiles = 60 }\n",
            )
            .replace("[rule]\n", "[rule]\ndira_rule = \"two-of-three\"\n");
        let m = parse(&text).expect("valid lesion manifest");
        let pf = &m.aggregation.per_finding;
        assert_eq!(
            pf.get("subcorneal_pustule"),
            Some(&FindingScoreSpec::Lesion {
                top: 1,
                reference_tiles: 0
            })
        );
        assert_eq!(
            pf.get("acantholysis"),
            Some(&FindingScoreSpec::Lesion {
                top: 2,
                reference_tiles: 60
            })
        );
        assert_eq!(m.rule.dira_rule, DiraRuleSpec::TwoOfThree);
        // Manifests without the field keep the shape of model 1.2.0.
        assert_eq!(
            parse(GOOD).unwrap().rule.dira_rule,
            DiraRuleSpec::PustuleAndOne
        );
        let bad = text.replace("two-of-three", "one-of-three");
        assert!(matches!(
            parse(&bad).unwrap_err(),
            ModelError::ManifestParse { .. }
        ));
        let zero = text.replace("top = 2", "top = 0");
        assert!(parse(&zero).unwrap_err().to_string().contains("top = 0"));
    }

    #[test]
    fn typos_and_bad_enums_are_parse_errors() {
        let typo = GOOD.replace("tile_threshold", "tile_treshold");
        assert!(matches!(
            parse(&typo).unwrap_err(),
            ModelError::ManifestParse { .. }
        ));
        let layout = GOOD.replace("\"NCHW\"", "\"NHWC\"");
        assert!(matches!(
            parse(&layout).unwrap_err(),
            ModelError::ManifestParse { .. }
        ));
    }
}
