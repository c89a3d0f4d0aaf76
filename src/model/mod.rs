//! The model stage: a checked manifest plus an inference engine that turns
//! batches of preprocessed tiles into per-finding probabilities.
//! It owns loading and checking a model folder and running it; it must not
//! read slides, choose tiles or decide slide-level calls (aggregate does).

pub mod blocked;
pub mod check;
pub mod engine;
pub mod manifest;
pub mod preprocess;
pub mod stem;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use crate::finding::Finding;
pub use engine::{LayerTime, OnnxSummary, RawOutputs, TractEngine};
pub use manifest::{Activation, InputSpec, Manifest, Precision, TileView};

/// Manifest file name inside a model folder.
pub const MANIFEST_FILE: &str = "model.toml";

/// The bundled model's folder in the source tree. The binary does not read it: the
/// default model is embedded ([`bundled`]); tests and benches use the folder.
pub const BUNDLED_MODEL_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/dirascope-v2");

/// The default model's files, embedded in the binary at build time, so a binary
/// copied or installed away from the source tree still has its model. Only the
/// manifest and the ONNX file it names (no external data, no parity fixture).
pub mod bundled {
    /// `model.toml`.
    pub const MANIFEST: &str = include_str!("../../models/dirascope-v2/model.toml");
    /// The file the manifest's `onnx` names.
    pub const ONNX_FILE: &str = "model.onnx";
    /// Its bytes (the manifest's sha256 is checked at every load).
    pub const ONNX: &[u8] = include_bytes!("../../models/dirascope-v2/model.onnx");
    /// What error messages name as the embedded model's folder.
    pub const LABEL: &str = "(bundled model)";
}

/// Where a model comes from: the embedded default, or a folder given with `--model`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    Bundled,
    Folder(PathBuf),
}

impl ModelSource {
    /// The folder when one was given, else the bundled model.
    pub fn from_option(dir: Option<PathBuf>) -> ModelSource {
        dir.map_or(ModelSource::Bundled, ModelSource::Folder)
    }

    /// The model folder on disk, if the model has one.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            ModelSource::Bundled => None,
            ModelSource::Folder(dir) => Some(dir),
        }
    }
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelSource::Bundled => f.write_str("bundled, embedded in the binary"),
            ModelSource::Folder(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// Batch size the engine is optimised for; the last batch is padded. One tile per
/// run: tract's plan keeps a single tile's activations in cache, and on the bundled
/// model that is about twice as fast as batches of 16 (`cargo bench --bench
/// model_throughput` with DIRASCOPE_BENCH_BATCH=1, 2 and 16: 260-284, 195 and 138-140
/// tiles/s per worker); parallelism comes from the tile stream's workers
/// (`pipeline::TileStream`), one session each.
pub const DEFAULT_BATCH: usize = 1;

/// One tile's probabilities, indexed in [`Finding::ALL`] order whatever the
/// model's output order.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FindingProbs(pub [f32; 4]);

/// One tile's model output: its probabilities, and its out-of-distribution
/// distance where the model has that output (`[ood]` in the manifest).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Classified {
    pub probs: FindingProbs,
    pub ood: Option<f32>,
}

impl FindingProbs {
    pub fn get(&self, finding: Finding) -> f32 {
        self.0[finding.index()]
    }
}

/// Everything that can go wrong loading or running a model. Each variant
/// names the file at fault; the CLI maps all of them to exit code 4.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a valid model manifest: {message}", path.display())]
    ManifestParse { path: PathBuf, message: String },
    #[error("{}: field {field} {reason}", path.display())]
    ManifestInvalid {
        path: PathBuf,
        field: String,
        reason: String,
    },
    #[error("{}: bad class keys: {reason}", path.display())]
    ClassKeys { path: PathBuf, reason: String },
    #[error("{}: refers to '{reference}', which is outside the model folder; keep every model file inside it", path.display())]
    OutsideModelDir { path: PathBuf, reference: String },
    #[error("{}: sha256 is {actual} but the manifest says {expected}; the file was changed or the manifest is stale", path.display())]
    ChecksumMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{}: not an ONNX model: {reason}", path.display())]
    NotOnnx { path: PathBuf, reason: String },
    #[error("{}: {what} is {found} but the manifest expects {expected}", path.display())]
    ShapeMismatch {
        path: PathBuf,
        what: String,
        expected: String,
        found: String,
    },
    #[error("{}: the manifest's [ood] names the graph output '{name}', but the graph's outputs are: {outputs}; export the model with its OOD output or remove [ood]", path.display())]
    OutputMissing {
        path: PathBuf,
        name: String,
        outputs: String,
    },
    #[error("{}: tract cannot load or optimise the model: {message}", path.display())]
    Engine { path: PathBuf, message: String },
    #[error("inference failed: {message}")]
    Inference { message: String },
    #[error("tile is {width}x{height} px but the model takes {expected}x{expected} px tiles")]
    TileSize {
        width: u32,
        height: u32,
        expected: u32,
    },
    #[error("batch has {got} values but {n} tiles of {per_tile} values were announced (at most {max} tiles per batch)")]
    BatchShape {
        got: usize,
        n: usize,
        per_tile: usize,
        max: usize,
    },
}

/// Scores batches of preprocessed tiles. Compiled once and shared between
/// worker threads; each thread opens its own [`ClassifierSession`].
pub trait TileClassifier: Send + Sync {
    /// What one input tile must look like.
    fn input_spec(&self) -> &InputSpec;
    /// Most tiles one `classify` call accepts (the plan's fixed batch size).
    fn batch_size(&self) -> usize;
    /// Per-thread inference state; cheap compared with one batch.
    fn session(&self) -> Result<Box<dyn ClassifierSession + '_>, ModelError>;

    /// Score up to `batch_size()` tiles (`n` tiles of NCHW f32, back to back)
    /// with a one-off session.
    fn classify(&self, batch: &[f32], n: usize) -> Result<Vec<Classified>, ModelError> {
        self.session()?.classify(batch, n)
    }
}

/// One worker thread's inference state.
pub trait ClassifierSession {
    /// Score `n <= batch_size()` tiles laid out NCHW back to back in `batch`.
    fn classify(&mut self, batch: &[f32], n: usize) -> Result<Vec<Classified>, ModelError>;
}

/// Number of f32 values in one preprocessed tile.
pub fn values_per_tile(spec: &InputSpec) -> usize {
    3 * spec.tile_px as usize * spec.tile_px as usize
}

/// A loaded, checked model: its manifest and its engine.
pub struct Model {
    pub source: ModelSource,
    pub manifest: Manifest,
    pub engine: TractEngine,
}

impl Model {
    /// Load and check the model in `dir` for the default batch size.
    pub fn load(dir: &Path) -> Result<Model, ModelError> {
        Model::load_with_batch(dir, DEFAULT_BATCH)
    }

    /// Load and check the model `source` for the default batch size.
    pub fn load_source(source: &ModelSource) -> Result<Model, ModelError> {
        match source {
            ModelSource::Bundled => Model::bundled(DEFAULT_BATCH),
            ModelSource::Folder(dir) => Model::load(dir),
        }
    }

    /// Only the manifest of `source`, checked, without loading the ONNX: for
    /// commands that need the model's tile size and MPP but run no inference.
    pub fn manifest_of(source: &ModelSource) -> Result<Manifest, ModelError> {
        match source {
            ModelSource::Bundled => Manifest::parse(
                bundled::MANIFEST,
                &Path::new(bundled::LABEL).join(MANIFEST_FILE),
            ),
            ModelSource::Folder(dir) => Manifest::from_file(&dir.join(MANIFEST_FILE)),
        }
    }

    /// Load and check the model in `dir`, optimised for `batch` tiles a run:
    /// the manifest, the ONNX file's sha256, its external data references
    /// and its input/output shapes.
    pub fn load_with_batch(dir: &Path, batch: usize) -> Result<Model, ModelError> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest = Manifest::from_file(&manifest_path)?;
        let onnx_path = manifest.onnx_path(dir);
        confine(dir, &onnx_path)?;
        let bytes = std::fs::read(&onnx_path).map_err(|source| ModelError::Io {
            path: onnx_path.clone(),
            source,
        })?;
        let source = ModelSource::Folder(dir.to_path_buf());
        Model::checked(source, manifest, &bytes, &onnx_path, batch)
    }

    /// The embedded default model ([`bundled`]), checked like a folder's.
    pub fn bundled(batch: usize) -> Result<Model, ModelError> {
        let label = Path::new(bundled::LABEL);
        let manifest = Manifest::parse(bundled::MANIFEST, &label.join(MANIFEST_FILE))?;
        let onnx_path = label.join(&manifest.onnx);
        if manifest.onnx != bundled::ONNX_FILE {
            return Err(ModelError::Io {
                path: onnx_path,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("only {} is embedded in the binary", bundled::ONNX_FILE),
                ),
            });
        }
        Model::checked(
            ModelSource::Bundled,
            manifest,
            bundled::ONNX,
            &onnx_path,
            batch,
        )
    }

    /// The sha256 check against the manifest, then the engine's own checks.
    fn checked(
        source: ModelSource,
        manifest: Manifest,
        bytes: &[u8],
        onnx_path: &Path,
        batch: usize,
    ) -> Result<Model, ModelError> {
        check_sha256(onnx_path, bytes, &manifest.sha256)?;
        let engine = TractEngine::load(bytes, onnx_path, source.dir(), &manifest, batch)?;
        Ok(Model {
            source,
            manifest,
            engine,
        })
    }
}

/// Refuses a model file that is not a regular file inside the model folder once
/// every link is resolved (its canonical path under the folder's canonical path):
/// the sha256 in the manifest vouches for the folder, not for wherever a link points.
pub fn confine(dir: &Path, file: &Path) -> Result<(), ModelError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ModelError::Io { path, source }
    };
    let folder = dir.canonicalize().map_err(io(dir))?;
    let resolved = file.canonicalize().map_err(io(file))?;
    if !resolved.starts_with(&folder) {
        return Err(ModelError::OutsideModelDir {
            path: file.to_path_buf(),
            reference: resolved.display().to_string(),
        });
    }
    if !std::fs::metadata(&resolved).map_err(io(file))?.is_file() {
        return Err(ModelError::NotOnnx {
            path: file.to_path_buf(),
            reason: "not a regular file".into(),
        });
    }
    Ok(())
}

/// Refuses `bytes` (the file at `path`) unless their sha256 is `expected`.
pub fn check_sha256(path: &Path, bytes: &[u8], expected: &str) -> Result<(), ModelError> {
    let actual = sha256_hex(bytes);
    if actual.eq_ignore_ascii_case(expected) {
        return Ok(());
    }
    Err(ModelError::ChecksumMismatch {
        path: path.to_path_buf(),
        expected: expected.to_string(),
        actual,
    })
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finding_keys_round_trip() {
        for f in Finding::ALL {
            assert_eq!(f.key().parse::<Finding>(), Ok(f));
            assert_eq!(Finding::ALL[f.index()], f);
        }
        assert!("eczema".parse::<Finding>().is_err());
    }

    #[test]
    fn the_embedded_model_loads_with_its_hash_checked() {
        let model = Model::bundled(DEFAULT_BATCH).unwrap();
        assert_eq!(model.source, ModelSource::Bundled);
        assert_eq!(model.source.to_string(), "bundled, embedded in the binary");
        assert_eq!(model.manifest.sha256, sha256_hex(bundled::ONNX));
    }
}
