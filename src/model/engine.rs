//! The tract backend: decode and inspect the ONNX protobuf (external data,
//! declared shapes, parameter count), then optimise one plan for a fixed
//! batch size and hand out cheap per-thread sessions over it.
//! Every tract type stays inside this file; nothing here reads the manifest
//! file or touches pixels.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_onnx::pb;
use tract_onnx::prelude::*;

use super::manifest::{is_plain_relative, Activation, InputSpec, Manifest, TileView};
use super::stem::{self, Kernel, Stem, StemScratch};
use super::{Classified, ClassifierSession, Finding, FindingProbs, ModelError, TileClassifier};

type Plan = TypedSimplePlan;
type TileState = TypedSimpleState;

/// ONNX element type code for float32.
const ONNX_FLOAT: i32 = 1;
/// `TensorProto.DataLocation.EXTERNAL`.
const ONNX_EXTERNAL: i32 = 1;

/// What the ONNX file declares, for `model check` and the model card.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxSummary {
    pub producer: String,
    pub opset: i64,
    /// (name, dims) of each graph input that is not an initializer.
    pub inputs: Vec<(String, Vec<String>)>,
    /// (name, dims) of each graph output.
    pub outputs: Vec<(String, Vec<String>)>,
    /// Whether the single input is declared float32.
    pub input_is_f32: bool,
    /// Number of values in all initializers (weights and biases).
    pub parameters: u64,
    /// Multiply-accumulates per tile, from tract's cost model.
    pub macs_per_tile: u64,
}

/// A compiled tract plan shared by all worker threads.
pub struct TractEngine {
    plan: Arc<Plan>,
    spec: InputSpec,
    batch: usize,
    /// `output_to_finding[j]` is the finding of the model's output column j.
    output_to_finding: Vec<Finding>,
    /// Index among the graph's outputs of the out-of-distribution distance, where
    /// the manifest declares one (`[ood]`); the logits are output 0.
    ood_output: Option<usize>,
    activation: Activation,
    /// Views of each tile run through the graph (`[output] views`); their raw
    /// outputs are averaged.
    views: Vec<TileView>,
    /// Tiles whose identity-view probabilities are all below this keep that view's
    /// outputs alone (`[output] views_min_probability`).
    views_min_probability: f32,
    onnx_path: PathBuf,
    summary: OnnxSummary,
    /// Multiply-adds a tile of each ONNX node that has any, in graph order.
    layer_macs: Vec<(String, u64)>,
    /// The leading convolutions run by `stem.rs` before tract, where the graph
    /// and the CPU allow it.
    stem: Option<Stem>,
}

/// One ONNX node's share of a tile's inference: the plan nodes tract turned it
/// into (pad, matrix product, activation...), their time and its multiply-adds.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerTime {
    /// The ONNX node's name.
    pub name: String,
    /// The plan's operators for it, in order ("Pad+OptMatMul+OptMaxByScalar").
    pub ops: String,
    /// Mean seconds a tile.
    pub seconds: f64,
    /// Multiply-adds a tile (0 for reshapes, pools, activations).
    pub macs: u64,
}

impl TractEngine {
    /// Check `bytes` (the ONNX file at `onnx_path`, inside `model_dir`; `None` for
    /// the embedded model, which may have no external data) against `manifest`, then
    /// optimise it for `batch` tiles per run.
    pub fn load(
        bytes: &[u8],
        onnx_path: &Path,
        model_dir: Option<&Path>,
        manifest: &Manifest,
        batch: usize,
    ) -> Result<TractEngine, ModelError> {
        TractEngine::load_with_stem(bytes, onnx_path, model_dir, manifest, batch, stem::kernel())
    }

    /// As [`TractEngine::load`], with the leading layers in `kernel` where the graph
    /// allows; `None` runs the whole graph in tract.
    fn load_with_stem(
        bytes: &[u8],
        onnx_path: &Path,
        model_dir: Option<&Path>,
        manifest: &Manifest,
        batch: usize,
        kernel: Option<Kernel>,
    ) -> Result<TractEngine, ModelError> {
        let batch = batch.max(1);
        let not_onnx = |reason: String| ModelError::NotOnnx {
            path: onnx_path.to_path_buf(),
            reason,
        };
        let mut proto = onnx()
            .proto_model_for_read(&mut &bytes[..])
            .map_err(|e| not_onnx(format!("protobuf does not decode: {e}")))?;
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| not_onnx("no graph".into()))?;
        if graph.node.is_empty() || graph.output.is_empty() {
            return Err(not_onnx("graph has no nodes or no outputs".into()));
        }
        check_external_data(graph, onnx_path, model_dir)?;
        let classes = manifest.findings();
        let mut summary = summarise(&proto, graph);
        let ood_output = check_declared_shapes(&summary, manifest, onnx_path)?;

        let engine_err = |e: TractError| ModelError::Engine {
            path: onnx_path.to_path_buf(),
            message: format!("{e:#}"),
        };
        let dir = model_dir.and_then(|d| d.to_str());
        let px = manifest.input.tile_px as usize;
        let stem = kernel.and_then(|k| Stem::detect(graph, 3, px, k));
        if let Some(stem) = &stem {
            stem.rewrite(&mut proto);
        }
        let parsed = onnx().parse(&proto, dir).map_err(engine_err)?;
        if !parsed.unresolved_inputs.is_empty() {
            return Err(not_onnx(format!(
                "unresolved inputs {:?}",
                parsed.unresolved_inputs
            )));
        }
        let mut model = parsed.model;
        let tiles = f32::fact([batch, 3, px, px]).into();
        match &stem {
            None => model.set_input_fact(0, tiles),
            Some(stem) if stem.keeps_tiles() => model
                .set_input_fact(0, tiles)
                .and_then(|_| model.set_input_fact(1, f32::fact(stem.cut_shape(batch)).into())),
            Some(stem) => model.set_input_fact(0, f32::fact(stem.cut_shape(batch)).into()),
        }
        .map_err(engine_err)?;
        let typed = model
            .into_typed()
            .and_then(|m| m.into_decluttered())
            .map_err(engine_err)?;
        let out_shape = output_dims(&typed, 0).map_err(engine_err)?;
        let want = vec![batch.to_string(), classes.len().to_string()];
        if out_shape != want {
            return Err(ModelError::ShapeMismatch {
                path: onnx_path.to_path_buf(),
                what: "output shape for a batch".into(),
                expected: format!("[{}]", want.join(", ")),
                found: format!("[{}]", out_shape.join(", ")),
            });
        }
        if let Some(index) = ood_output {
            let dims = output_dims(&typed, index).map_err(engine_err)?;
            let b = batch.to_string();
            if dims != [b.clone()] && dims != [b.clone(), "1".to_string()] {
                return Err(ModelError::ShapeMismatch {
                    path: onnx_path.to_path_buf(),
                    what: format!(
                        "shape of the OOD output '{}' for a batch",
                        summary.outputs[index].0
                    ),
                    expected: format!("[{b}, 1] (one distance per tile)"),
                    found: format!("[{}]", dims.join(", ")),
                });
            }
        }
        let mut layer_macs = layer_macs(&typed, batch).map_err(engine_err)?;
        if let Some(stem) = &stem {
            layer_macs.splice(0..0, stem.named_macs());
        }
        summary.macs_per_tile = layer_macs.iter().map(|(_, macs)| macs).sum();
        let plan = typed
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(engine_err)?;
        Ok(TractEngine {
            plan,
            spec: manifest.input.clone(),
            batch,
            output_to_finding: classes,
            ood_output,
            activation: manifest.output.activation,
            views: manifest.output.views.clone(),
            views_min_probability: manifest.output.views_min_probability,
            onnx_path: onnx_path.to_path_buf(),
            summary,
            layer_macs,
            stem,
        })
    }

    /// Which code runs the graph, for `model check`.
    pub fn describe(&self) -> String {
        let tract = "tract";
        match &self.stem {
            None if stem::enabled() => format!("{tract} (the whole graph)"),
            None => format!("{tract} (the whole graph; DIRASCOPE_STEM=tract or no AVX2 and FMA)"),
            Some(stem) => format!(
                "first {} convolutions ({:.1} M multiply-adds) in dirascope's {} kernel{}, the rest in {tract}",
                stem.layers.len() + stem.blocked.len(),
                stem.macs() as f64 / 1e6,
                stem.kernel.name(),
                if stem.blocked.is_empty() { "" } else { "s (stride-2 columns, then channel-blocked)" }
            ),
        }
    }

    /// How many leading convolutions run in dirascope's own kernel (`stem.rs`)
    /// rather than in tract: 0 where the graph or the CPU does not allow it.
    pub fn layers_before_tract(&self) -> usize {
        self.stem
            .as_ref()
            .map_or(0, |s| s.layers.len() + s.blocked.len())
    }

    /// Where a tile's inference time goes: each ONNX node's plan nodes timed over
    /// `passes` runs of `batch` (exactly `batch_size()` tiles), after one warm-up
    /// run, in graph order. For `benches/model_layers.rs`: the timing wrapper adds a
    /// clock read per plan node, so the sum is a little above a plain run's time.
    pub fn profile_layers(
        &self,
        batch: &[f32],
        passes: usize,
    ) -> Result<Vec<LayerTime>, ModelError> {
        let (mut scratch, mut cut) = (StemScratch::default(), Vec::new());
        let mut state = TileState::new(&self.plan).map_err(inference_err)?;
        state
            .run(self.inputs(batch, &mut scratch, &mut cut, None)?)
            .map_err(inference_err)?;
        let stem_layers = self.layers_before_tract();
        let mut stem_seconds = vec![0.0; stem_layers];
        // Plan node name -> the ONNX node it came from: the longest ONNX name that
        // prefixes it ("/0/0.0/Conv.pad" -> "/0/0.0/Conv"); other nodes stand alone.
        let owner = |plan_name: &str| -> String {
            self.layer_macs
                .iter()
                .map(|(name, _)| name)
                .filter(|name| {
                    plan_name == name.as_str() || plan_name.starts_with(&format!("{name}."))
                })
                .max_by_key(|name| name.len())
                .cloned()
                .unwrap_or_else(|| plan_name.to_string())
        };
        let mut layers: Vec<LayerTime> = Vec::new();
        // Plan node id -> index in `layers`, filled the first time a node runs, so
        // the name matching above happens once per node, not once per node a pass.
        let mut layer_of_node: std::collections::HashMap<usize, usize> =
            std::collections::HashMap::new();
        for _ in 0..passes {
            let inputs = self.inputs(batch, &mut scratch, &mut cut, Some(&mut stem_seconds))?;
            state
                .run_plan_with_eval(inputs, |ctx, op_state, node, inputs| {
                    let start = std::time::Instant::now();
                    let out = tract_onnx::tract_core::plan::eval(ctx, op_state, node, inputs);
                    let seconds = start.elapsed().as_secs_f64();
                    let index = *layer_of_node.entry(node.id).or_insert_with(|| {
                        let name = owner(&node.name);
                        let op = node.op().name().to_string();
                        match layers.iter().position(|l| l.name == name) {
                            Some(index) => {
                                let layer = &mut layers[index];
                                if !layer.ops.split('+').any(|o| o == op) {
                                    layer.ops = format!("{}+{op}", layer.ops);
                                }
                                index
                            }
                            None => {
                                let macs = self
                                    .layer_macs
                                    .iter()
                                    .find(|(n, _)| *n == name)
                                    .map_or(0, |(_, m)| *m);
                                layers.push(LayerTime {
                                    name,
                                    ops: op,
                                    macs,
                                    seconds: 0.0,
                                });
                                layers.len() - 1
                            }
                        }
                    });
                    layers[index].seconds += seconds;
                    out
                })
                .map_err(inference_err)?;
        }
        if let Some(stem) = &self.stem {
            let columns = stem.layers.len();
            let ahead = stem
                .named_macs()
                .into_iter()
                .zip(&stem_seconds)
                .enumerate()
                .map(|(i, ((name, macs), s))| LayerTime {
                    name,
                    ops: if i < columns {
                        "dirascope stem (direct conv + ReLU)".into()
                    } else {
                        "dirascope blocked (direct conv + ReLU)".into()
                    },
                    macs,
                    seconds: *s,
                });
            layers.splice(0..0, ahead);
        }
        let per_tile = (passes * self.batch).max(1) as f64;
        for layer in &mut layers {
            layer.seconds /= per_tile;
        }
        Ok(layers)
    }

    /// What the ONNX file declares, with parameter and MAC counts.
    pub fn summary(&self) -> &OnnxSummary {
        &self.summary
    }

    /// The ONNX file this engine was loaded from.
    pub fn onnx_path(&self) -> &Path {
        &self.onnx_path
    }

    /// Run the raw model (no activation) on exactly `batch_size()` tiles and
    /// return the raw outputs row by row, with the OOD distance of each tile where
    /// the model has that output. For parity checks.
    pub fn run_raw(&self, batch: &[f32]) -> Result<RawOutputs, ModelError> {
        let mut session = TractSession::new(self)?;
        session.run(batch, self.batch)
    }

    /// tract's inputs for `values` (exactly `batch_size()` tiles): the tiles, or the
    /// stem's output computed here (beside the tiles where the graph reads both).
    fn inputs(
        &self,
        values: &[f32],
        scratch: &mut StemScratch,
        cut: &mut Vec<f32>,
        seconds: Option<&mut [f64]>,
    ) -> Result<TVec<TValue>, ModelError> {
        let px = self.spec.tile_px as usize;
        let tiles = || Tensor::from_shape(&[self.batch, 3, px, px], values).map_err(inference_err);
        let Some(stem) = &self.stem else {
            return Ok(tvec!(tiles()?.into()));
        };
        stem.run(values, self.batch, scratch, cut, seconds);
        let cut = Tensor::from_shape(&stem.cut_shape(self.batch), cut).map_err(inference_err)?;
        Ok(if stem.keeps_tiles() {
            tvec!(tiles()?.into(), cut.into())
        } else {
            tvec!(cut.into())
        })
    }

    /// Whether the graph has the out-of-distribution output.
    pub fn has_ood(&self) -> bool {
        self.ood_output.is_some()
    }

    /// The views of each tile the graph is run on (`[output] views`).
    pub fn views(&self) -> &[TileView] {
        &self.views
    }
}

impl TileClassifier for TractEngine {
    fn input_spec(&self) -> &InputSpec {
        &self.spec
    }

    fn batch_size(&self) -> usize {
        self.batch
    }

    fn session(&self) -> Result<Box<dyn ClassifierSession + '_>, ModelError> {
        Ok(Box::new(TractSession::new(self)?))
    }
}

/// Raw outputs for a batch: the logits row of each tile, and its OOD distance
/// where the model has that output.
#[derive(Debug, Clone, PartialEq)]
pub struct RawOutputs {
    pub logits: Vec<Vec<f32>>,
    pub ood: Option<Vec<f32>>,
}

/// One worker's tract state plus reusable buffers: the padded input, and the
/// stem's scratch and output.
struct TractSession<'a> {
    engine: &'a TractEngine,
    state: TileState,
    padded: Vec<f32>,
    /// The batch in a view other than the identity (`[output] views`).
    viewed: Vec<f32>,
    stem_scratch: StemScratch,
    stem_out: Vec<f32>,
}

fn inference_err(e: TractError) -> ModelError {
    ModelError::Inference {
        message: format!("{e:#}"),
    }
}

impl<'a> TractSession<'a> {
    fn new(engine: &'a TractEngine) -> Result<Self, ModelError> {
        let state = TileState::new(&engine.plan).map_err(inference_err)?;
        Ok(TractSession {
            engine,
            state,
            padded: Vec::new(),
            viewed: Vec::new(),
            stem_scratch: StemScratch::default(),
            stem_out: Vec::new(),
        })
    }

    /// Raw output rows for the first `n` tiles of `batch`, padding the rest
    /// of the fixed-size batch with zeros.
    fn run(&mut self, batch: &[f32], n: usize) -> Result<RawOutputs, ModelError> {
        let e = self.engine;
        let px = e.spec.tile_px as usize;
        let per_tile = 3 * px * px;
        if n > e.batch || batch.len() != n * per_tile {
            return Err(ModelError::BatchShape {
                got: batch.len(),
                n,
                per_tile,
                max: e.batch,
            });
        }
        // A full batch goes in as it is; a short one is padded with zeros.
        let values = if n == e.batch {
            batch
        } else {
            self.padded.clear();
            self.padded.extend_from_slice(batch);
            self.padded.resize(e.batch * per_tile, 0.0);
            &self.padded
        };
        let inputs = e.inputs(values, &mut self.stem_scratch, &mut self.stem_out, None)?;
        let outputs = self.state.run(inputs).map_err(inference_err)?;
        let out = outputs
            .first()
            .ok_or_else(|| ModelError::Inference {
                message: "model produced no output".into(),
            })?
            .to_plain_array_view::<f32>()
            .map_err(inference_err)?;
        let k = e.output_to_finding.len();
        let flat: Vec<f32> = out.iter().copied().collect();
        if flat.len() != e.batch * k {
            return Err(ModelError::Inference {
                message: format!("output has {} values, expected {}", flat.len(), e.batch * k),
            });
        }
        let logits = flat.chunks(k).take(n).map(|row| row.to_vec()).collect();
        let ood = match e.ood_output {
            None => None,
            Some(index) => {
                let values: Vec<f32> = outputs
                    .get(index)
                    .ok_or_else(|| ModelError::Inference {
                        message: format!("model produced no output {index} (its OOD distance)"),
                    })?
                    .to_plain_array_view::<f32>()
                    .map_err(inference_err)?
                    .iter()
                    .copied()
                    .collect();
                if values.len() != e.batch {
                    return Err(ModelError::Inference {
                        message: format!(
                            "OOD output has {} values, expected {}",
                            values.len(),
                            e.batch
                        ),
                    });
                }
                Some(values.into_iter().take(n).collect())
            }
        };
        Ok(RawOutputs { logits, ood })
    }
}

impl ClassifierSession for TractSession<'_> {
    fn classify(&mut self, batch: &[f32], n: usize) -> Result<Vec<Classified>, ModelError> {
        let e = self.engine;
        let mut raw = self.run(batch, n)?;
        // Test-time views: the raw outputs of every view averaged, for the tiles
        // whose identity-view probability for some finding reaches the manifest's
        // floor; the OOD distance stays the identity view's (the first run).
        let viewed_tiles: Vec<bool> = match e.views.len() {
            1 => Vec::new(),
            _ => raw
                .logits
                .iter()
                .map(|row| {
                    let mut probs = row.clone();
                    activate(e.activation, &mut probs);
                    probs.iter().any(|&p| p >= e.views_min_probability)
                })
                .collect(),
        };
        if viewed_tiles.contains(&true) {
            let px = e.spec.tile_px as usize;
            let mut viewed = std::mem::take(&mut self.viewed);
            for &view in e.views.iter().filter(|&&v| v != TileView::Identity) {
                view_batch(view, batch, px, &mut viewed);
                // (On an error the buffer is dropped; the next batch makes another.)
                let other = self.run(&viewed, n)?;
                for ((sum, row), &on) in raw.logits.iter_mut().zip(other.logits).zip(&viewed_tiles)
                {
                    if on {
                        for (s, v) in sum.iter_mut().zip(row) {
                            *s += v;
                        }
                    }
                }
            }
            self.viewed = viewed;
            let scale = 1.0 / e.views.len() as f32;
            for (row, &on) in raw.logits.iter_mut().zip(&viewed_tiles) {
                if on {
                    row.iter_mut().for_each(|v| *v *= scale);
                }
            }
        }
        Ok(raw
            .logits
            .into_iter()
            .enumerate()
            .map(|(i, mut row)| {
                activate(e.activation, &mut row);
                let mut probs = FindingProbs::default();
                for (value, finding) in row.iter().zip(&e.output_to_finding) {
                    probs.0[finding.index()] = *value;
                }
                Classified {
                    probs,
                    ood: raw.ood.as_ref().map(|d| d[i]),
                }
            })
            .collect())
    }
}

/// `batch` (NCHW planes of `px` x `px`) shown in `view`, into `out`.
fn view_batch(view: TileView, batch: &[f32], px: usize, out: &mut Vec<f32>) {
    out.clear();
    out.reserve(batch.len());
    for plane in batch.chunks_exact(px * px) {
        for y in 0..px {
            for x in 0..px {
                let (sy, sx) = view.source(y, x, px);
                out.push(plane[sy * px + sx]);
            }
        }
    }
}

/// Apply the manifest's activation to one output row in place.
pub(crate) fn activate(activation: Activation, row: &mut [f32]) {
    match activation {
        Activation::None => {}
        Activation::Sigmoid => {
            for v in row.iter_mut() {
                *v = 1.0 / (1.0 + (-*v).exp());
            }
        }
        Activation::Softmax => {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            for v in row.iter_mut() {
                *v /= sum;
            }
        }
    }
}

/// Refuse any tensor whose data lives in a file outside `model_dir`, and any
/// external data at all for a model without a folder (the embedded one).
fn check_external_data(
    graph: &pb::GraphProto,
    onnx_path: &Path,
    model_dir: Option<&Path>,
) -> Result<(), ModelError> {
    let mut tensors: Vec<&pb::TensorProto> = Vec::new();
    collect_tensors(graph, &mut tensors);
    let Some(model_dir) = model_dir else {
        return match tensors.iter().find(|t| is_external(t)) {
            Some(t) => Err(ModelError::NotOnnx {
                path: onnx_path.to_path_buf(),
                reason: format!(
                    "tensor '{}' keeps its data in another file, which an embedded model cannot have",
                    t.name
                ),
            }),
            None => Ok(()),
        };
    };
    let canonical_dir = model_dir.canonicalize().map_err(|source| ModelError::Io {
        path: model_dir.to_path_buf(),
        source,
    })?;
    for tensor in tensors {
        if !is_external(tensor) {
            continue;
        }
        let outside = |reference: String| ModelError::OutsideModelDir {
            path: onnx_path.to_path_buf(),
            reference,
        };
        let location = tensor
            .external_data
            .iter()
            .find(|e| e.key == "location")
            .map(|e| e.value.clone())
            .ok_or_else(|| ModelError::NotOnnx {
                path: onnx_path.to_path_buf(),
                reason: format!("tensor '{}' is external but has no location", tensor.name),
            })?;
        if !is_plain_relative(&location) {
            return Err(outside(location));
        }
        let target = model_dir.join(&location);
        let resolved = target.canonicalize().map_err(|source| ModelError::Io {
            path: target.clone(),
            source,
        })?;
        if !resolved.starts_with(&canonical_dir) {
            // A symlink inside the folder pointing out of it.
            return Err(outside(location));
        }
    }
    Ok(())
}

fn is_external(tensor: &pb::TensorProto) -> bool {
    tensor.data_location == Some(ONNX_EXTERNAL) || !tensor.external_data.is_empty()
}

/// Every TensorProto in `graph`: initializers, constant attributes and
/// subgraphs.
fn collect_tensors<'g>(graph: &'g pb::GraphProto, out: &mut Vec<&'g pb::TensorProto>) {
    out.extend(graph.initializer.iter());
    out.extend(
        graph
            .sparse_initializer
            .iter()
            .filter_map(|s| s.values.as_ref()),
    );
    for node in &graph.node {
        for attr in &node.attribute {
            out.extend(attr.t.iter());
            out.extend(attr.tensors.iter());
            for sub in attr.g.iter().chain(attr.graphs.iter()) {
                collect_tensors(sub, out);
            }
        }
    }
}

fn dims_of(info: &pb::ValueInfoProto) -> Vec<String> {
    let Some(pb::type_proto::Value::TensorType(t)) =
        info.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Vec::new();
    };
    t.shape
        .as_ref()
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) => v.to_string(),
                    Some(pb::tensor_shape_proto::dimension::Value::DimParam(p)) => p.clone(),
                    None => "?".to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn elem_type(info: &pb::ValueInfoProto) -> Option<i32> {
    let pb::type_proto::Value::TensorType(t) = info.r#type.as_ref()?.value.as_ref()?;
    Some(t.elem_type)
}

fn summarise(proto: &pb::ModelProto, graph: &pb::GraphProto) -> OnnxSummary {
    let init_names: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let real_inputs: Vec<&pb::ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !init_names.contains(&i.name.as_str()))
        .collect();
    let input_is_f32 = real_inputs
        .first()
        .is_some_and(|i| elem_type(i) == Some(ONNX_FLOAT));
    let inputs = real_inputs
        .iter()
        .map(|i| (i.name.clone(), dims_of(i)))
        .collect();
    let outputs = graph
        .output
        .iter()
        .map(|o| (o.name.clone(), dims_of(o)))
        .collect();
    let parameters = graph
        .initializer
        .iter()
        .map(|t| t.dims.iter().map(|d| (*d).max(0) as u64).product::<u64>())
        .sum();
    let opset = proto
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .unwrap_or(0);
    OnnxSummary {
        producer: format!("{} {}", proto.producer_name, proto.producer_version)
            .trim()
            .to_string(),
        opset,
        inputs,
        outputs,
        input_is_f32,
        parameters,
        macs_per_tile: 0,
    }
}

/// Compare the shapes the ONNX file declares with the manifest. Symbolic
/// dimensions (e.g. a named batch axis) are accepted; fixed ones must match.
/// Checks the declared input and outputs against the manifest; returns the index
/// of the OOD output where the manifest declares one.
fn check_declared_shapes(
    summary: &OnnxSummary,
    manifest: &Manifest,
    onnx_path: &Path,
) -> Result<Option<usize>, ModelError> {
    let mismatch = |what: &str, expected: String, found: String| ModelError::ShapeMismatch {
        path: onnx_path.to_path_buf(),
        what: what.to_string(),
        expected,
        found,
    };
    if summary.inputs.len() != 1 {
        return Err(mismatch(
            "number of inputs",
            "1".into(),
            summary.inputs.len().to_string(),
        ));
    }
    let names: Vec<&str> = summary.outputs.iter().map(|(n, _)| n.as_str()).collect();
    let ood_output = match &manifest.ood {
        None if names.len() == 1 => None,
        None => {
            return Err(mismatch(
                "number of outputs",
                "1 (the manifest declares no [ood] output)".into(),
                format!("{} ({})", names.len(), names.join(", ")),
            ))
        }
        Some(ood) => match names.iter().position(|n| *n == ood.output) {
            Some(i) if i > 0 && names.len() == 2 => Some(i),
            Some(0) => {
                return Err(mismatch(
                    "first output (the logits)",
                    "the class logits".into(),
                    format!("'{}', which [ood] names as the OOD distance", ood.output),
                ))
            }
            _ => {
                return Err(ModelError::OutputMissing {
                    path: onnx_path.to_path_buf(),
                    name: ood.output.clone(),
                    outputs: names.join(", "),
                })
            }
        },
    };
    if !summary.input_is_f32 {
        return Err(mismatch(
            "input element type",
            "float32".into(),
            "another type".into(),
        ));
    }
    let px = manifest.input.tile_px.to_string();
    let k = manifest.output.classes.len().to_string();
    let fits = |declared: &[String], want: &[Option<&str>]| {
        declared.is_empty()
            || (declared.len() == want.len()
                && declared.iter().zip(want).all(|(d, w)| match w {
                    Some(w) => d == w || d.parse::<i64>().is_err(),
                    None => true,
                }))
    };
    let (_, in_dims) = &summary.inputs[0];
    if !fits(in_dims, &[None, Some("3"), Some(&px), Some(&px)]) {
        return Err(mismatch(
            "input shape",
            format!("[N, 3, {px}, {px}] (NCHW, tile_px = {px})"),
            format!("[{}]", in_dims.join(", ")),
        ));
    }
    let (_, out_dims) = &summary.outputs[0];
    if !fits(out_dims, &[None, Some(&k)]) {
        return Err(mismatch(
            "output shape",
            format!("[N, {k}] ({k} classes)"),
            format!("[{}]", out_dims.join(", ")),
        ));
    }
    Ok(ood_output)
}

/// The dimensions of output `index` of the typed graph, as text.
fn output_dims(model: &TypedModel, index: usize) -> TractResult<Vec<String>> {
    Ok(model
        .output_fact(index)?
        .shape
        .iter()
        .map(|d| d.to_string())
        .collect())
}

/// Multiply-adds a tile of each node of `model` (run on `batch` tiles) that has any.
fn layer_macs(model: &TypedModel, batch: usize) -> TractResult<Vec<(String, u64)>> {
    let mut layers = Vec::new();
    for id in model.eval_order()? {
        let node = model.node(id);
        let inputs = model.node_input_facts(id)?;
        let macs: u64 = node
            .op
            .cost(&inputs)?
            .iter()
            .filter(|(cost, _)| matches!(cost, tract_onnx::tract_core::ops::Cost::FMA(_)))
            .map(|(_, count)| count.to_i64().unwrap_or(0).max(0) as u64)
            .sum();
        layers.push((node.name.clone(), macs / batch as u64));
    }
    Ok(layers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph_with_external(location: &str) -> pb::GraphProto {
        pb::GraphProto {
            initializer: vec![pb::TensorProto {
                name: "w".into(),
                dims: vec![4],
                data_type: 1,
                data_location: Some(ONNX_EXTERNAL),
                external_data: vec![pb::StringStringEntryProto {
                    key: "location".into(),
                    value: location.into(),
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// Every model folder in the repository scores its parity tiles the same with the
    /// first convolutions in `stem.rs` (each kernel the CPU has) as with the whole
    /// graph in tract (float rounding apart), logits and OOD distances; the folders
    /// whose graphs begin with the stem's layers use it, the int8 one (QDQ first)
    /// does not.
    #[test]
    fn the_stem_kernel_gives_tracts_outputs_on_every_bundled_folder() {
        if !stem::enabled() {
            println!("skipped: no AVX2 and FMA here (or DIRASCOPE_STEM=tract): the whole graph runs in tract");
            return;
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        // Layers run here with either kernel: the leading stride-2 layers, then the
        // later convolutions, channel-blocked, up to the first whose output another
        // branch reads (v2's OOD head reads the fourth layer's).
        for (folder, avx2_layers, avx512_layers) in [
            ("dirascope-phantom-v1", 7, 7),
            ("dirascope-v2", 4, 4),
            ("dirascope-phantom-v1-int8", 0, 0),
        ] {
            let dir = root.join(folder);
            let model = crate::model::Model::load_with_batch(&dir, 4).expect("model loads");
            let fixture = crate::model::check::ParityFixture::load(&model).expect("parity tiles");
            let onnx = model.manifest.onnx_path(&dir);
            let bytes = std::fs::read(&onnx).expect("onnx");
            let load = |kernel| {
                TractEngine::load_with_stem(&bytes, &onnx, Some(&dir), &model.manifest, 4, kernel)
                    .expect("engine loads")
            };
            let without = load(None);
            assert_eq!(without.layers_before_tract(), 0, "{folder}");
            for kernel in Kernel::available() {
                let with = load(Some(kernel));
                let folder = format!("{folder} ({kernel:?})");
                let layers_here = match kernel {
                    Kernel::Avx2 => avx2_layers,
                    Kernel::Avx512 => avx512_layers,
                };
                assert_eq!(with.layers_before_tract(), layers_here, "{folder}");
                assert_eq!(
                    with.summary().macs_per_tile,
                    without.summary().macs_per_tile,
                    "{folder}"
                );
                let per_tile = crate::model::values_per_tile(&model.manifest.input);
                for batch in fixture.inputs.chunks_exact(4 * per_tile).take(2) {
                    let (a, b) = (
                        with.run_raw(batch).unwrap(),
                        without.run_raw(batch).unwrap(),
                    );
                    let (a_flat, b_flat): (Vec<f32>, Vec<f32>) =
                        (a.logits.concat(), b.logits.concat());
                    let worst = a_flat
                        .iter()
                        .zip(&b_flat)
                        .map(|(x, y)| (x - y).abs())
                        .fold(0.0, f32::max);
                    assert!(worst <= 1e-4, "{folder}: logits differ by {worst}");
                    assert_eq!(a.ood.is_some(), b.ood.is_some(), "{folder}");
                    if let (Some(x), Some(y)) = (a.ood, b.ood) {
                        let worst = x
                            .iter()
                            .zip(&y)
                            .map(|(p, q)| (p - q).abs() / q.abs().max(1.0))
                            .fold(0.0, f32::max);
                        assert!(worst <= 1e-4, "{folder}: OOD distances differ by {worst}");
                    }
                }
            }
        }
    }

    /// `[output] views`: each tile's logits are the mean of its views' logits (here
    /// the tile and its transpose, run as two plain batches), and the OOD distance
    /// is the tile's own.
    #[test]
    fn views_average_the_logits_of_each_view_and_keep_the_tiles_ood() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/dirascope-v2");
        let model = crate::model::Model::load_with_batch(&dir, 4).expect("model loads");
        let fixture = crate::model::check::ParityFixture::load(&model).expect("parity tiles");
        let onnx = model.manifest.onnx_path(&dir);
        let bytes = std::fs::read(&onnx).expect("onnx");
        let mut manifest = model.manifest.clone();
        manifest.output.views = vec![TileView::Identity, TileView::Transpose];
        manifest.output.views_min_probability = 0.0;
        let engine = TractEngine::load(&bytes, &onnx, Some(&dir), &manifest, 4).expect("loads");
        assert_eq!(engine.views(), [TileView::Identity, TileView::Transpose]);
        let px = manifest.input.tile_px as usize;
        let per_tile = crate::model::values_per_tile(&manifest.input);
        let batch = &fixture.inputs[..3 * per_tile]; // a short batch: padding too
        let mut transposed = Vec::new();
        view_batch(TileView::Transpose, batch, px, &mut transposed);
        let mut back = Vec::new();
        view_batch(TileView::Transpose, &transposed, px, &mut back);
        assert!(back == batch, "transposing twice gives the tile back");
        let mut session = TractSession::new(&engine).unwrap();
        let (plain, other) = (
            session.run(batch, 3).unwrap(),
            session.run(&transposed, 3).unwrap(),
        );
        let got = session.classify(batch, 3).unwrap();
        assert_eq!(got.len(), 3);
        for (i, tile) in got.iter().enumerate() {
            for (j, finding) in engine.output_to_finding.iter().enumerate() {
                let mean = 0.5 * (plain.logits[i][j] + other.logits[i][j]);
                let want = 1.0 / (1.0 + (-mean).exp());
                let value = tile.probs.0[finding.index()];
                assert!(
                    (value - want).abs() < 1e-6,
                    "tile {i} {finding:?}: {value} vs {want}"
                );
            }
            assert_eq!(
                tile.ood,
                plain.ood.as_ref().map(|d| d[i]),
                "tile {i}: OOD is the tile's own"
            );
            assert_ne!(
                plain.logits[i], other.logits[i],
                "the views differ (tile {i})"
            );
        }
        // With a probability floor: tiles reaching it get the mean, the others keep
        // their identity view alone (the floor is the middle tile's best probability,
        // so both kinds are here).
        let best: Vec<f32> = plain
            .logits
            .iter()
            .map(|row| {
                let mut p = row.clone();
                activate(Activation::Sigmoid, &mut p);
                p.into_iter().fold(0.0, f32::max)
            })
            .collect();
        let mut sorted = best.clone();
        sorted.sort_by(f32::total_cmp);
        manifest.output.views_min_probability = sorted[1];
        let floored = TractEngine::load(&bytes, &onnx, Some(&dir), &manifest, 4).expect("loads");
        let got = TractSession::new(&floored)
            .unwrap()
            .classify(batch, 3)
            .unwrap();
        for (i, tile) in got.iter().enumerate() {
            let viewed = best[i] >= sorted[1];
            for (j, finding) in floored.output_to_finding.iter().enumerate() {
                let logit = if viewed {
                    0.5 * (plain.logits[i][j] + other.logits[i][j])
                } else {
                    plain.logits[i][j]
                };
                let want = 1.0 / (1.0 + (-logit).exp());
                let value = tile.probs.0[finding.index()];
                assert!(
                    (value - want).abs() < 1e-6,
                    "floored tile {i} (viewed {viewed}) {finding:?}"
                );
            }
        }
    }

    #[test]
    fn external_data_outside_the_model_folder_is_refused() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("model");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(tmp.path().join("secret.bin"), [0u8; 16]).expect("write");
        std::fs::write(dir.join("weights.bin"), [0u8; 16]).expect("write");
        let onnx = dir.join("model.onnx");
        for bad in ["../secret.bin", "/etc/passwd"] {
            let err =
                check_external_data(&graph_with_external(bad), &onnx, Some(&dir)).unwrap_err();
            assert!(
                matches!(err, ModelError::OutsideModelDir { .. }),
                "{bad}: {err}"
            );
            assert!(err.to_string().contains("model.onnx"), "{err}");
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(tmp.path().join("secret.bin"), dir.join("link.bin"))
                .expect("symlink");
            let err = check_external_data(&graph_with_external("link.bin"), &onnx, Some(&dir))
                .unwrap_err();
            assert!(matches!(err, ModelError::OutsideModelDir { .. }), "{err}");
        }
        check_external_data(&graph_with_external("weights.bin"), &onnx, Some(&dir))
            .expect("data inside the folder is fine");
        let err = check_external_data(&graph_with_external("weights.bin"), &onnx, None)
            .expect_err("an embedded model has no folder to hold external data");
        assert!(err.to_string().contains("embedded"), "{err}");
    }

    #[test]
    fn sigmoid_and_softmax_match_their_definitions() {
        let mut row = [0.0f32, 2.0, -2.0];
        activate(Activation::Sigmoid, &mut row);
        assert!((row[0] - 0.5).abs() < 1e-7);
        assert!((row[1] - 0.880_797).abs() < 1e-5);
        assert!((row[1] + row[2] - 1.0).abs() < 1e-6);
        let mut row = [1.0f32, 1.0, 1.0, 1.0];
        activate(Activation::Softmax, &mut row);
        assert!(row.iter().all(|v| (v - 0.25).abs() < 1e-7));
    }
}
