//! `dirascope model check [MODEL_DIR]`: load and check a model folder (or the
//! embedded default), describe it, say which one it is, and run one batch of the phantom tiles kept in its parity fixture.
//! Also reads that fixture (preprocessed tiles plus onnxruntime's outputs on
//! them) for the parity test. It prints nothing itself; the CLI does.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::manifest::is_plain_relative;
use super::{Finding, Model, ModelError, ModelSource, TileClassifier};

/// Folder inside a model folder holding the parity fixture.
pub const PARITY_DIR: &str = "parity";

/// `parity/parity.toml`: shapes and file names of the fixture.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParitySpec {
    /// Number of tiles.
    pub tiles: usize,
    /// Gzip-compressed little-endian f32, NCHW, already preprocessed.
    pub inputs: String,
    /// Little-endian f32, `tiles` x classes: onnxruntime's raw outputs
    /// (before the activation).
    pub outputs: String,
    /// Little-endian f32, one per tile: onnxruntime's OOD distances, for a model
    /// with that output (`[ood]` in its manifest).
    #[serde(default)]
    pub ood_outputs: Option<String>,
    /// Largest absolute difference tract may show against onnxruntime.
    pub tolerance: f32,
    /// Where the tiles came from (free text).
    pub source: String,
}

/// A loaded parity fixture.
pub struct ParityFixture {
    pub spec: ParitySpec,
    pub inputs: Vec<f32>,
    pub outputs: Vec<f32>,
    /// onnxruntime's OOD distances, where the model has that output.
    pub ood: Option<Vec<f32>>,
}

impl ParityFixture {
    /// Read `MODEL_DIR/parity/`, checking sizes against the model's input.
    pub fn load(model: &Model) -> Result<ParityFixture, ModelError> {
        let Some(model_dir) = model.source.dir() else {
            return Err(ModelError::Io {
                path: Path::new(super::bundled::LABEL).join(PARITY_DIR),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the parity fixture is not embedded in the binary; load the model folder",
                ),
            });
        };
        let dir = model_dir.join(PARITY_DIR);
        let spec_path = dir.join("parity.toml");
        let text = std::fs::read_to_string(&spec_path).map_err(|source| ModelError::Io {
            path: spec_path.clone(),
            source,
        })?;
        let spec: ParitySpec = toml::from_str(&text).map_err(|e| ModelError::ManifestParse {
            path: spec_path.clone(),
            message: e.message().to_string(),
        })?;
        for name in [&spec.inputs, &spec.outputs]
            .into_iter()
            .chain(spec.ood_outputs.as_ref())
        {
            if !is_plain_relative(name) {
                return Err(ModelError::OutsideModelDir {
                    path: spec_path.clone(),
                    reference: name.clone(),
                });
            }
        }
        let per_tile = super::values_per_tile(model.engine.input_spec());
        let classes = model.manifest.output.classes.len();
        let inputs = read_f32(&dir.join(&spec.inputs), true, spec.tiles * per_tile)?;
        let outputs = read_f32(&dir.join(&spec.outputs), false, spec.tiles * classes)?;
        let ood = match (&spec.ood_outputs, model.engine.has_ood()) {
            (Some(name), true) => Some(read_f32(&dir.join(name), false, spec.tiles)?),
            (None, false) => None,
            (Some(_), false) => {
                return Err(ModelError::ManifestInvalid {
                    path: spec_path,
                    field: "ood_outputs".into(),
                    reason: "is set, but the model declares no [ood] output".into(),
                })
            }
            (None, true) => {
                return Err(ModelError::ManifestInvalid {
                    path: spec_path,
                    field: "ood_outputs".into(),
                    reason: "is missing: the model has an OOD output, and its parity with onnxruntime must be checked too".into(),
                })
            }
        };
        Ok(ParityFixture {
            spec,
            inputs,
            outputs,
            ood,
        })
    }

    /// Largest |dirascope - onnxruntime| (tract, and the stem kernel where it
    /// runs: `stem.rs`) over all raw outputs: the logits and, where
    /// the model has it, the OOD distance.
    pub fn max_abs_diff(&self, model: &Model) -> Result<f32, ModelError> {
        let (logits, ood) = self.max_abs_diffs(model)?;
        Ok(logits.max(ood.unwrap_or(0.0)))
    }

    /// [`Self::max_abs_diff`] of the logits and of the OOD distance apart (the
    /// latter where both tract and the fixture have it).
    pub fn max_abs_diffs(&self, model: &Model) -> Result<(f32, Option<f32>), ModelError> {
        let tract = raw_outputs(model, &self.inputs)?;
        let largest = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max)
        };
        let ood = match (&tract.ood, &self.ood) {
            (Some(a), Some(b)) => Some(largest(a, b)),
            _ => None,
        };
        Ok((largest(&tract.logits, &self.outputs), ood))
    }
}

/// tract's raw outputs for `inputs`, batch by batch: the logits (no activation)
/// flattened tile by tile, and the OOD distances where the model has them.
pub fn raw_outputs(model: &Model, inputs: &[f32]) -> Result<FlatOutputs, ModelError> {
    let engine = &model.engine;
    let per_tile = super::values_per_tile(engine.input_spec());
    let batch = engine.batch_size();
    let mut out = FlatOutputs {
        logits: Vec::new(),
        ood: engine.has_ood().then(Vec::new),
    };
    for chunk in inputs.chunks(per_tile * batch) {
        let n = chunk.len() / per_tile;
        let mut padded = chunk.to_vec();
        padded.resize(per_tile * batch, 0.0);
        let raw = engine.run_raw(&padded)?;
        out.logits.extend(raw.logits.into_iter().take(n).flatten());
        if let (Some(all), Some(ood)) = (out.ood.as_mut(), raw.ood) {
            all.extend(ood.into_iter().take(n));
        }
    }
    Ok(out)
}

/// [`raw_outputs`]' result.
#[derive(Debug, Clone, PartialEq)]
pub struct FlatOutputs {
    pub logits: Vec<f32>,
    pub ood: Option<Vec<f32>>,
}

fn read_f32(path: &Path, gzip: bool, expected: usize) -> Result<Vec<f32>, ModelError> {
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    // Read one byte past the expected size so an oversized file is caught
    // without inflating it all.
    let limit = (expected as u64 * 4) + 1;
    if gzip {
        flate2::read::GzDecoder::new(file)
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(io)?;
    } else {
        file.take(limit).read_to_end(&mut bytes).map_err(io)?;
    }
    if bytes.len() != expected * 4 {
        return Err(ModelError::ShapeMismatch {
            path: path.to_path_buf(),
            what: "size in bytes".into(),
            expected: (expected * 4).to_string(),
            found: if bytes.len() as u64 == limit {
                format!("more than {}", expected * 4)
            } else {
                bytes.len().to_string()
            },
        });
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// What `model check` found: the report to print and, where the folder has a
/// parity fixture, how far tract is from onnxruntime on it.
pub struct CheckReport {
    pub text: String,
    pub parity: Option<ParityResult>,
}

/// The largest differences between tract and onnxruntime on the parity tiles
/// (logits, and the OOD distance where the model has one), against the
/// fixture's tolerance.
pub struct ParityResult {
    pub logits: f32,
    pub ood: Option<f32>,
    pub tolerance: f32,
    pub tiles: usize,
}

impl ParityResult {
    pub fn max_abs_diff(&self) -> f32 {
        self.logits.max(self.ood.unwrap_or(0.0))
    }

    pub fn passed(&self) -> bool {
        self.max_abs_diff() <= self.tolerance
    }
}

/// Load and check the model `source`, and describe it as the `model check` report.
pub fn run(source: &ModelSource) -> Result<CheckReport, ModelError> {
    let model = Model::load_source(source)?;
    let m = &model.manifest;
    let s = model.engine.summary();
    let mut out = String::new();
    let _ = writeln!(out, "model      {} {} ({})", m.name, m.version, m.precision);
    let _ = writeln!(out, "source     {source}");
    let _ = writeln!(
        out,
        "onnx       {} (sha256 {} ok)",
        model.engine.onnx_path().display(),
        m.sha256
    );
    if let (Some(file), Some(expected), Some(dir)) =
        (&m.checkpoint, &m.checkpoint_sha256, source.dir())
    {
        let path = dir.join(file);
        super::confine(dir, &path)?;
        let bytes = std::fs::read(&path).map_err(|source| ModelError::Io {
            path: path.clone(),
            source,
        })?;
        super::check_sha256(&path, &bytes, expected)?;
        let _ = writeln!(
            out,
            "checkpoint {} (sha256 {} ok; fine-tune from it with training/train.py --init)",
            path.display(),
            expected
        );
    }
    let _ = writeln!(out, "use        {}", m.intended_use);
    let _ = writeln!(out, "trained on {}", m.training_data);
    let i = &m.input;
    let _ = writeln!(
        out,
        "input      {} px at {} um/px ({} um), {:?} {:?}, mean {:?} std {:?} (0..1 scale)",
        i.tile_px,
        i.mpp,
        i.tile_px as f64 * i.mpp,
        i.layout,
        i.channel_order,
        i.mean,
        i.std
    );
    let _ = writeln!(
        out,
        "output     {:?} over [{}]",
        m.output.activation,
        m.output.classes.join(", ")
    );
    if m.output.views.len() > 1 {
        let names: Vec<&str> = m.output.views.iter().map(|v| v.name()).collect();
        let _ = writeln!(
            out,
            "views      {}: {}, logits averaged; OOD from the tile as it is",
            names.join(" + "),
            match m.output.views_min_probability {
                p if p > 0.0 => format!(
                    "each tile with a finding at p >= {p} in the first view runs {} times",
                    names.len()
                ),
                _ => format!("each tile runs {} times", names.len()),
            }
        );
    }
    let a = &m.aggregation;
    let _ = writeln!(
        out,
        "aggregate  {:?}: top {} of tiles (min {}), tile threshold {}, min tissue {}, tile overlap {} px",
        a.method, a.top_k_fraction, a.top_k_min, a.tile_threshold, a.min_tissue, a.overlap_px
    );
    for (key, spec) in &a.per_finding {
        let _ = writeln!(out, "aggregate  {key}: {spec:?}");
    }
    for (key, depth) in &a.max_edge_depth {
        let _ = writeln!(
            out,
            "aggregate  {key}: only tiles within {depth} grid step(s) of the tissue's edge"
        );
    }
    if let Some(ood) = &m.ood {
        let _ = writeln!(
            out,
            "ood        output '{}' ({}): a tile is unlike the training data above {}; a slide is out-of-distribution above {:.0}% of its tissue tiles",
            ood.output,
            ood.method,
            ood.threshold,
            100.0 * ood.max_fraction
        );
        if !ood.fitted_on.is_empty() {
            let _ = writeln!(out, "ood        fitted on {}", ood.fitted_on);
        }
    } else {
        let _ = writeln!(
            out,
            "ood        none: this model cannot abstain on tissue unlike its training data"
        );
    }
    let r = &m.rule;
    let _ = writeln!(
        out,
        "rule       dira >= {}, psoriasiform >= {}, no-call margin {}, min tissue tiles {}",
        r.dira_threshold, r.psoriasiform_threshold, r.no_call_margin, r.min_tissue_tiles
    );
    let _ = writeln!(out, "producer   {} (opset {})", s.producer, s.opset);
    for (name, dims) in &s.inputs {
        let _ = writeln!(out, "onnx in    {name} [{}] float32", dims.join(", "));
    }
    for (name, dims) in &s.outputs {
        let _ = writeln!(out, "onnx out   {name} [{}]", dims.join(", "));
    }
    let _ = writeln!(out, "parameters {}", s.parameters);
    let _ = writeln!(
        out,
        "per tile   {:.1} M multiply-adds ({:.1} MFLOPs){}",
        s.macs_per_tile as f64 / 1e6,
        2.0 * s.macs_per_tile as f64 / 1e6,
        match m.output.views.len() {
            1 => String::new(),
            n => format!(
                " a view, {:.1} M in all",
                n as f64 * s.macs_per_tile as f64 / 1e6
            ),
        }
    );
    let _ = writeln!(out, "engine     {}", model.engine.describe());
    let Some(dir) = source.dir() else {
        let _ = writeln!(
            out,
            "sample     the parity fixture is not embedded: no sample batch run (`dirascope selfcheck` scores phantoms end to end)"
        );
        return Ok(CheckReport {
            text: out,
            parity: None,
        });
    };
    let fixture_dir: PathBuf = dir.join(PARITY_DIR);
    if !fixture_dir.join("parity.toml").exists() {
        let _ = writeln!(
            out,
            "sample     no {} folder: no sample batch run",
            fixture_dir.display()
        );
        return Ok(CheckReport {
            text: out,
            parity: None,
        });
    }
    let fixture = ParityFixture::load(&model)?;
    let per_tile = super::values_per_tile(&m.input);
    let n = fixture.spec.tiles.min(model.engine.batch_size());
    let scored = model.engine.classify(&fixture.inputs[..n * per_tile], n)?;
    let _ = writeln!(
        out,
        "sample     {} tiles from {}: probabilities",
        n, fixture.spec.source
    );
    let mut header: Vec<String> = Finding::ALL
        .iter()
        .map(|f| format!("{:>10.10}", f.key()))
        .collect();
    if model.engine.has_ood() {
        header.push(format!("{:>10}", "ood"));
    }
    let _ = writeln!(out, "  tile {}", header.join(" "));
    for (t, c) in scored.iter().enumerate() {
        let mut cols: Vec<String> = c.probs.0.iter().map(|v| format!("{v:>10.4}")).collect();
        cols.extend(c.ood.map(|d| format!("{d:>10.4}")));
        let _ = writeln!(out, "  {t:>4} {}", cols.join(" "));
    }
    let (logits, ood) = fixture.max_abs_diffs(&model)?;
    let parity = ParityResult {
        logits,
        ood,
        tolerance: fixture.spec.tolerance,
        tiles: fixture.spec.tiles,
    };
    let verdict = if parity.passed() { "ok" } else { "TOO LARGE" };
    let _ = writeln!(
        out,
        "parity     max |dirascope - onnxruntime| = {:.2e} over {} tiles (tolerance {:.0e}) {verdict}{}",
        parity.max_abs_diff(),
        parity.tiles,
        parity.tolerance,
        match ood {
            Some(ood) => format!(" (logits {logits:.2e}, OOD distance {ood:.2e})"),
            None => String::new(),
        }
    );
    Ok(CheckReport {
        text: out,
        parity: Some(parity),
    })
}
