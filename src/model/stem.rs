//! The first convolutions of a tile, run here instead of in tract, for speed.
//!
//! tract runs every convolution as an im2col gather and a matrix product. For the
//! thin convolutions at the top of the bundled models (3 -> 16 and 16 -> 24
//! channels, 3x3, stride 2, on 224 and 112 px planes) the gather is most of the
//! cost: they took 1.2 and 1.1 ms a tile, 9% and 20% of the machine's FMA peak,
//! two thirds of a tile's inference (`benches/model_layers.rs`). Here they run as
//! direct convolutions: each input row is split into its even and odd columns (so
//! a stride-2 tap reads consecutive outputs' inputs with one load), then each
//! output row is summed for a block of output channels and columns at a time in
//! vector registers, and written already split for the next layer. Two kernels
//! ([`Kernel`]): AVX2 (4 channels x 16 columns in eight registers) and AVX-512
//! (8 channels x 32 columns in sixteen). Layers run row by row, each as soon as
//! the rows it reads exist, so a layer's input is a few rows in a ring ([`RING`])
//! that stays in cache. Same products, summed in another order: outputs move only
//! by float rounding (parity with onnxruntime is checked by the parity tests and
//! `dirascope model check`).
//!
//! Applies where the CPU has AVX2 and FMA and the graph begins with such a layer:
//! a plain `Conv` (3x3, stride 2, pads 1, group 1, no dilation, weights and bias
//! inline) reading the tile input, read only by a `Relu`; the layers of the same
//! shape that follow, each reading the last one's `Relu`, are taken too, up to
//! [`MAX_LAYERS`]. The plain 3x3 layers after those (stride 1 or 2, channels in
//! multiples of 16, each output read only by the next layer) run here too,
//! channel-blocked (`blocked.rs`, in the same kernel family: AVX-512 or AVX2): for
//! the bundled fp32 model that is its whole convolution stack, and tract runs only
//! the pooling and the classifier.
//! Other graphs (the int8 folder starts with QDQ nodes) and other
//! CPUs run entirely in tract, as does every graph when `DIRASCOPE_STEM=tract` is
//! set (for comparisons; `DIRASCOPE_STEM=avx2` keeps an AVX-512 CPU on the AVX2
//! kernels, `avx2-columns` on the AVX2 column kernel alone, the rest in tract).

use super::blocked::{self, BlockedLayer};
use tract_onnx::pb;

/// How many leading stride-2 layers run in the column kernels at most: the bundled
/// models' leading chain of stride-2 layers is three long (their fourth layer has
/// stride 1). Taking the third too (24 -> 32 channels) gave 1.1x the tiles/s of taking two
/// (`model_throughput`, one worker, three runs each, alternating, AMD EPYC).
pub const MAX_LAYERS: usize = 3;

/// Output channels summed together in the AVX2 kernel.
const CO: usize = 4;
/// Eight-float registers of output columns summed together (16 columns).
const XG: usize = 2;
/// Floats in an AVX2 register.
const LANES: usize = 8;
/// Output channels whose weights are stored together: the AVX-512 kernel's block
/// of channels; the AVX2 kernel reads each group as two blocks of [`CO`].
const PACK: usize = 8;
/// Output columns the plane layout is rounded to: the AVX2 kernel's step, and the
/// AVX-512 kernel's narrow step (it takes 32 columns where more than 16 remain).
const STEP: usize = LANES * XG;
/// Padded input rows a layer's column planes hold, in turn. An output row reads
/// three (`2 oy` to `2 oy + 2`); layers run row by row (`Stem::run`), so the two
/// rows written for the next output row may reuse the slots of the two the last
/// one read first. Four rows keep each layer's planes within L1 and L2 (a whole
/// 112 x 112 x 16 plane set is twice a core's L2).
const RING: usize = 4;

/// ONNX element type code for float32.
const ONNX_FLOAT: i32 = 1;

/// Which of dirascope's kernels runs the leading layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// 256-bit AVX2 and FMA: 4 output channels x 16 columns in 8 registers.
    Avx2,
    /// 512-bit AVX-512F: 8 output channels x 32 columns in 16 registers (16
    /// columns at a row's end).
    Avx512,
}

impl Kernel {
    /// What the kernel is called in `dirascope model check`'s engine line.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx2 => "AVX2",
            Kernel::Avx512 => "AVX-512",
        }
    }

    /// The kernels this CPU can run, widest first.
    pub fn available() -> Vec<Kernel> {
        [Kernel::Avx512, Kernel::Avx2]
            .into_iter()
            .filter(|k| k.cpu_has())
            .collect()
    }

    fn cpu_has(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma");
            match self {
                Kernel::Avx2 => avx2,
                Kernel::Avx512 => avx2 && std::arch::is_x86_feature_detected!("avx512f"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }
}

/// The kernel leading layers run in: the widest the CPU has, or none where it has
/// neither or `DIRASCOPE_STEM` is `tract` (`avx2` keeps AVX-512 CPUs on AVX2, for
/// comparisons; `avx2-columns` too, with only the stride-2 column layers here).
pub fn kernel() -> Option<Kernel> {
    let choice = std::env::var("DIRASCOPE_STEM").unwrap_or_default();
    match choice.as_str() {
        "tract" => None,
        "avx2" | "avx2-columns" => Some(Kernel::Avx2).filter(|k| k.cpu_has()),
        _ => Kernel::available().first().copied(),
    }
}

/// Whether the layers after the column layers run here, channel-blocked: yes
/// unless `DIRASCOPE_STEM=avx2-columns` (the AVX2 path as it was before the AVX2
/// blocked kernel, kept for side-by-side figures on AVX2 CPUs).
fn blocked_enabled() -> bool {
    std::env::var("DIRASCOPE_STEM").map_or(true, |v| v != "avx2-columns")
}

/// Whether leading layers may run here: [`kernel`] found one.
pub fn enabled() -> bool {
    kernel().is_some()
}

/// One 3x3 stride-2 convolution with pads 1, its bias and a ReLU, on planes of
/// `h` x `w`; weights regrouped by groups of [`PACK`] output channels.
#[derive(Debug, Clone)]
pub struct StemLayer {
    /// The ONNX `Conv` node's name.
    pub name: String,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    /// `[cout / PACK][cin][3 * 3][PACK]`, zero for the channels past `cout`.
    weights: Vec<f32>,
    /// One per output channel, zero past `cout`.
    bias: Vec<f32>,
}

impl StemLayer {
    /// A layer from ONNX's `[cout][cin][3][3]` weights and `cout` biases.
    fn new(name: String, cin: usize, h: usize, w: usize, weights: &[f32], bias: &[f32]) -> Self {
        let cout = bias.len();
        let groups = cout.div_ceil(PACK);
        let mut packed = vec![0.0; groups * cin * 9 * PACK];
        for o in 0..cout {
            for c in 0..cin {
                for k in 0..9 {
                    packed[(((o / PACK) * cin + c) * 9 + k) * PACK + o % PACK] =
                        weights[(o * cin + c) * 9 + k];
                }
            }
        }
        let mut padded_bias = bias.to_vec();
        padded_bias.resize(groups * PACK, 0.0);
        StemLayer {
            name,
            cin,
            cout,
            h,
            w,
            weights: packed,
            bias: padded_bias,
        }
    }

    /// Output rows and columns: `(n + 2 - 3) / 2 + 1`.
    pub fn out_hw(&self) -> (usize, usize) {
        ((self.h - 1) / 2 + 1, (self.w - 1) / 2 + 1)
    }

    /// Input rows output row `oy` reads (pads aside): up to row `2 oy + 1`.
    fn rows_read(&self, oy: usize) -> usize {
        (2 * oy + 2).min(self.h)
    }

    /// Zeros in padded row `row`'s slot of every channel's column planes.
    fn zero_row(&self, even: &mut [f32], odd: &mut [f32], row: usize) {
        let pw = self.plane_w();
        for c in 0..self.cin {
            let at = self.row_at(c, row);
            even[at..][..pw].fill(0.0);
            odd[at..][..pw].fill(0.0);
        }
    }

    /// Values a tile in and out.
    fn in_len(&self) -> usize {
        self.cin * self.h * self.w
    }

    fn out_len(&self) -> usize {
        let (oh, ow) = self.out_hw();
        self.cout * oh * ow
    }

    /// Multiply-adds a tile.
    pub fn macs(&self) -> u64 {
        (self.out_len() * self.cin * 9) as u64
    }

    /// Width of a column plane: the output columns rounded up to whole kernel
    /// steps, plus room for the odd plane's one-column shift and a step's overrun.
    fn plane_w(&self) -> usize {
        let (_, ow) = self.out_hw();
        ow.div_ceil(STEP) * STEP + LANES
    }

    /// Values of one column plane set: [`RING`] rows of each input channel.
    fn planes_len(&self) -> usize {
        self.cin * RING * self.plane_w()
    }

    /// Where padded input row `row` (input row `row - 1`) of channel `c` starts in
    /// the column planes: rows take turns in [`RING`] slots.
    fn row_at(&self, c: usize, row: usize) -> usize {
        (c * RING + row % RING) * self.plane_w()
    }
}

/// The leading layers of a graph that run here, and where tract takes over.
#[derive(Debug, Clone)]
pub struct Stem {
    pub layers: Vec<StemLayer>,
    /// The kernel that runs them.
    pub kernel: Kernel,
    /// The 3x3 layers after them that run channel-blocked (`blocked.rs`), in order.
    pub blocked: Vec<BlockedLayer>,
    /// The tensor tract reads instead (the last layer's `Relu` output).
    cut: String,
    /// Its shape for one tile: `[channels, rows, columns]`.
    cut_shape: [usize; 3],
    /// Whether other nodes read the tile input too (it is then fed beside the cut).
    keeps_tiles: bool,
    /// The outputs of the ONNX nodes (each layer's `Conv` and `Relu`) the rewrite
    /// removes: output names are unique in a graph, node names need not be.
    removed: Vec<String>,
}

/// Per-worker buffers: each layer's even and odd column planes, [`RING`] rows of
/// each input channel. The columns past a row's end are never written (the right
/// pad); the pad rows above and below are zeroed for every tile.
#[derive(Debug, Default)]
pub struct StemScratch {
    planes: Vec<(Vec<f32>, Vec<f32>)>,
    /// Where blocked layers follow: the last column layer's output (NCHW), then
    /// each blocked layer's input and the last one's output, blocked with a zero
    /// border (never written, so zeroed once at allocation).
    handover: Vec<f32>,
    blocked: Vec<Vec<f32>>,
}

/// Where a layer writes: the next layer's column planes, or the cut (NCHW).
enum Output<'a> {
    Planes {
        layer: &'a StemLayer,
        even: &'a mut [f32],
        odd: &'a mut [f32],
    },
    Nchw {
        out: &'a mut [f32],
        /// The layer's output rows and columns.
        hw: (usize, usize),
    },
}

/// Where a row's last output columns (`x0` to the row's end) go, each slice exactly
/// as long as the values that exist there: the kernels' masked stores write that
/// many lanes.
enum RowEnd<'a> {
    Nchw(&'a mut [f32]),
    /// The next layer's column planes: the even columns, then the odd ones.
    Planes {
        even: &'a mut [f32],
        odd: &'a mut [f32],
    },
}

impl Output<'_> {
    /// Columns `x0 ..` of output channel `channel`, row `oy`, to the row's end.
    fn row_end(&mut self, channel: usize, oy: usize, x0: usize) -> RowEnd<'_> {
        match self {
            Output::Nchw { out, hw: (oh, ow) } => {
                RowEnd::Nchw(&mut out[(channel * *oh + oy) * *ow + x0..][..*ow - x0])
            }
            Output::Planes { layer, even, odd } => {
                let n = layer.w - x0;
                let at = layer.row_at(channel, oy + 1) + x0 / 2;
                RowEnd::Planes {
                    even: &mut even[at..][..n.div_ceil(2)],
                    odd: &mut odd[at + 1..][..n / 2],
                }
            }
        }
    }
}

impl Stem {
    /// The leading layers of `graph` that can run here in `kernel`, for tiles of
    /// `channels` x `px` x `px`; `None` where the graph does not begin with one.
    pub fn detect(
        graph: &pb::GraphProto,
        channels: usize,
        px: usize,
        kernel: Kernel,
    ) -> Option<Stem> {
        let tiles = first_real_input(graph)?;
        let readers = |name: &str| -> Vec<&pb::NodeProto> {
            graph
                .node
                .iter()
                .filter(|n| n.input.iter().any(|i| i == name))
                .collect()
        };
        let is_output = |name: &str| graph.output.iter().any(|o| o.name == name);
        let mut layers: Vec<StemLayer> = Vec::new();
        let mut blocked = Vec::new();
        let mut removed = Vec::new();
        let (mut input, mut cin, mut size) = (tiles.name.clone(), channels, px);
        loop {
            let conv = match readers(&input).as_slice() {
                [conv] => *conv,
                // The tile input may have other readers (input statistics); only
                // the conv's reader chain must be its own.
                many if layers.is_empty() => match many
                    .iter()
                    .filter(|n| n.op_type == "Conv")
                    .collect::<Vec<_>>()
                    .as_slice()
                {
                    [conv] => **conv,
                    _ => break,
                },
                _ => break,
            };
            let Some((weights, bias, stride)) = plain_conv(graph, conv, &input, cin) else {
                break;
            };
            let conv_out = conv.output.first()?;
            let conv_readers = readers(conv_out);
            let [relu] = conv_readers.as_slice() else {
                break;
            };
            if relu.op_type != "Relu" || relu.input.len() != 1 || is_output(conv_out) {
                break;
            }
            let relu_out = relu.output.first()?;
            if is_output(relu_out) {
                break;
            }
            // Stride-2 layers in the column kernel while they last (up to
            // MAX_LAYERS), then the layers the blocked kernel takes.
            let (name, shape) = (conv.name.clone(), (cin, size, size));
            (cin, size) = if stride == 2 && blocked.is_empty() && layers.len() < MAX_LAYERS {
                let layer = StemLayer::new(name, cin, size, size, &weights, &bias);
                let out = (layer.cout, layer.out_hw().0);
                layers.push(layer);
                out
            } else if !layers.is_empty() && blocked_enabled() {
                let Some(layer) = BlockedLayer::new(name, shape, stride, &weights, &bias) else {
                    break;
                };
                let out = (layer.cout(), layer.out_hw().0);
                blocked.push(layer);
                out
            } else {
                break;
            };
            input = relu_out.clone();
            removed.push(conv_out.clone());
            removed.push(relu_out.clone());
        }
        let last = layers.last()?;
        let cut_shape = match blocked.last() {
            Some(b) => [b.cout(), b.out_hw().0, b.out_hw().1],
            None => [last.cout, last.out_hw().0, last.out_hw().1],
        };
        let keeps_tiles = readers(&tiles.name).len() > 1;
        Some(Stem {
            cut_shape,
            layers,
            kernel,
            blocked,
            cut: input,
            keeps_tiles,
            removed,
        })
    }

    /// Values a tile of the tensor tract reads.
    pub fn cut_len(&self) -> usize {
        self.cut_shape.iter().product()
    }

    /// Shape of that tensor for `batch` tiles.
    pub fn cut_shape(&self, batch: usize) -> [usize; 4] {
        let [c, h, w] = self.cut_shape;
        [batch, c, h, w]
    }

    /// Whether tract still reads the tiles themselves (input 0; the cut is input 1).
    pub fn keeps_tiles(&self) -> bool {
        self.keeps_tiles
    }

    /// Multiply-adds a tile of the layers run here.
    pub fn macs(&self) -> u64 {
        self.named_macs().iter().map(|(_, macs)| macs).sum()
    }

    /// The layers run here, column layers then blocked ones: their `Conv` nodes'
    /// names and multiply-adds a tile.
    pub fn named_macs(&self) -> Vec<(String, u64)> {
        let columns = self.layers.iter().map(|l| (l.name.clone(), l.macs()));
        let blocked = self.blocked.iter().map(|l| (l.name.clone(), l.macs()));
        columns.chain(blocked).collect()
    }

    /// `proto` without the layers run here: the cut becomes a graph input (in the
    /// tiles' place, or beside them where other nodes read them).
    pub fn rewrite(&self, proto: &mut pb::ModelProto) {
        let Some(graph) = proto.graph.as_mut() else {
            return;
        };
        let Some(tiles) = first_real_input(graph).cloned() else {
            return;
        };
        graph
            .node
            .retain(|n| !n.output.first().is_some_and(|o| self.removed.contains(o)));
        let mut cut = tiles.clone();
        cut.name = self.cut.clone();
        if let Some(pb::type_proto::Value::TensorType(t)) =
            cut.r#type.as_mut().and_then(|t| t.value.as_mut())
        {
            t.elem_type = ONNX_FLOAT;
            if let Some(shape) = t.shape.as_mut() {
                shape.dim.truncate(1);
                for value in self.cut_shape {
                    shape.dim.push(pb::tensor_shape_proto::Dimension {
                        value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(
                            value as i64,
                        )),
                        ..Default::default()
                    });
                }
            }
        }
        if self.keeps_tiles {
            graph.input.push(cut);
        } else if let Some(slot) = graph.input.iter_mut().find(|i| i.name == tiles.name) {
            *slot = cut;
        }
    }

    /// Run the layers on the first `n` tiles of `tiles` (NCHW, back to back) into
    /// `out` (`n * cut_len()` values). `seconds`, where given, gains each layer's time.
    pub fn run(
        &self,
        tiles: &[f32],
        n: usize,
        scratch: &mut StemScratch,
        out: &mut Vec<f32>,
        mut seconds: Option<&mut [f64]>,
    ) {
        let first = &self.layers[0];
        assert!(tiles.len() >= n * first.in_len(), "stem input too short");
        assert!(self.kernel.cpu_has(), "the CPU lacks the stem's kernel");
        if scratch.planes.len() != self.layers.len()
            || scratch.blocked.len() != self.blocked.len() + 1
        {
            scratch.planes = self
                .layers
                .iter()
                .map(|l| (vec![0.0; l.planes_len()], vec![0.0; l.planes_len()]))
                .collect();
            scratch.blocked = match self.blocked.first() {
                Some(first) => std::iter::once(first.in_len())
                    .chain(self.blocked.iter().map(BlockedLayer::out_len))
                    .map(|n| vec![0.0; n])
                    .collect(),
                None => vec![Vec::new()],
            };
            let handover = self
                .blocked
                .first()
                .map_or(0, |_| self.layers[self.layers.len() - 1].out_len());
            scratch.handover = vec![0.0; handover];
        }
        out.clear();
        out.resize(n * self.cut_len(), 0.0);
        let last = self.layers.len() - 1;
        for (t, dst) in out.chunks_exact_mut(self.cut_len()).enumerate() {
            let tile = &tiles[t * first.in_len()..][..first.in_len()];
            // Row by row, each layer as soon as the rows it reads are done, so the
            // rows a layer writes are read again while they are still in cache
            // (a tile's planes are larger than a core's L2).
            let mut done = vec![0; self.layers.len()];
            let mut split = 0;
            // The top pad row of every layer's input; the bottom one once the
            // rows above it are written.
            for (layer, (even, odd)) in self.layers.iter().zip(&mut scratch.planes) {
                layer.zero_row(even, odd, 0);
            }
            while done[last] < self.layers[last].out_hw().0 {
                let i = (0..=last)
                    .rev()
                    .find(|&i| {
                        let layer = &self.layers[i];
                        done[i] < layer.out_hw().0
                            && (i == 0 || layer.rows_read(done[i]) <= done[i - 1])
                    })
                    .unwrap_or(0);
                let layer = &self.layers[i];
                let start = seconds.is_some().then(std::time::Instant::now);
                let (mine, next) = scratch.planes.split_at_mut(i + 1);
                let (even, odd) = &mut mine[i];
                if i == 0 && split < layer.rows_read(done[0]) {
                    let rows = split..layer.rows_read(done[0]);
                    split_columns(layer, tile, even, odd, rows.clone());
                    split = rows.end;
                    if split == layer.h {
                        layer.zero_row(even, odd, layer.h + 1);
                    }
                }
                // Layer i writes layer i + 1's planes, or the cut.
                let output = match (next.first_mut(), self.layers.get(i + 1)) {
                    (Some((next_even, next_odd)), Some(next_layer)) => Output::Planes {
                        layer: next_layer,
                        even: next_even,
                        odd: next_odd,
                    },
                    // The cut, or the blocked layers' input.
                    _ if self.blocked.is_empty() => Output::Nchw {
                        out: &mut *dst,
                        hw: layer.out_hw(),
                    },
                    _ => Output::Nchw {
                        out: &mut scratch.handover,
                        hw: layer.out_hw(),
                    },
                };
                conv(self.kernel, layer, even, odd, output, done[i]);
                done[i] += 1;
                if let (Some((next_even, next_odd)), Some(next_layer)) =
                    (next.first_mut(), self.layers.get(i + 1))
                {
                    if done[i] == next_layer.h {
                        next_layer.zero_row(next_even, next_odd, next_layer.h + 1);
                    }
                }
                if let (Some(seconds), Some(start)) = (seconds.as_deref_mut(), start) {
                    seconds[i] += start.elapsed().as_secs_f64();
                }
            }
            self.run_blocked(scratch, dst, seconds.as_deref_mut());
        }
    }

    /// The blocked layers on the column layers' output (`scratch.handover`), the
    /// last one's output unblocked into `dst`; nothing where there are none.
    fn run_blocked(
        &self,
        scratch: &mut StemScratch,
        dst: &mut [f32],
        mut seconds: Option<&mut [f64]>,
    ) {
        if self.blocked.is_empty() {
            return;
        }
        let last = &self.layers[self.layers.len() - 1];
        let (h, w) = last.out_hw();
        let start = seconds.is_some().then(std::time::Instant::now);
        blocked::block(
            &scratch.handover,
            (last.cout, h, w),
            &mut scratch.blocked[0],
        );
        for (i, layer) in self.blocked.iter().enumerate() {
            let start = if i == 0 {
                start
            } else {
                seconds.is_some().then(std::time::Instant::now)
            };
            let (before, after) = scratch.blocked.split_at_mut(i + 1);
            layer.run(self.kernel, &before[i], &mut after[0]);
            if i + 1 == self.blocked.len() {
                let (oh, ow) = layer.out_hw();
                blocked::unblock(&after[0], (layer.cout(), oh, ow), dst);
            }
            if let (Some(seconds), Some(start)) = (seconds.as_deref_mut(), start) {
                seconds[self.layers.len() + i] += start.elapsed().as_secs_f64();
            }
        }
    }
}

/// The first layer's input split into its column planes.
fn split_columns(
    layer: &StemLayer,
    input: &[f32],
    even: &mut [f32],
    odd: &mut [f32],
    rows: std::ops::Range<usize>,
) {
    assert!(rows.end <= layer.h, "stem input rows");
    assert_eq!(input.len(), layer.in_len(), "stem layer input");
    assert_eq!(even.len(), layer.planes_len(), "stem column planes");
    assert_eq!(odd.len(), layer.planes_len(), "stem column planes");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `Stem::run` checked that the CPU has the kernel's features, AVX2 and
    // FMA at least.
    unsafe {
        split_columns_avx2(layer, input, even, odd, rows)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("Stem::detect is only called where the kernel runs");
}

/// Output row `oy` of a layer's convolution, from its column planes into `output`.
fn conv(kernel: Kernel, layer: &StemLayer, even: &[f32], odd: &[f32], output: Output, oy: usize) {
    assert!(oy < layer.out_hw().0, "stem output row");
    assert_eq!(even.len(), layer.planes_len(), "stem column planes");
    assert_eq!(odd.len(), layer.planes_len(), "stem column planes");
    match &output {
        Output::Nchw { out, hw } => {
            assert_eq!(*hw, layer.out_hw());
            assert_eq!(out.len(), layer.out_len(), "stem layer output");
        }
        Output::Planes {
            layer: next,
            even,
            odd,
        } => {
            assert_eq!(
                (next.cin, next.h, next.w),
                (layer.cout, layer.out_hw().0, layer.out_hw().1)
            );
            assert_eq!(even.len(), next.planes_len(), "next column planes");
            assert_eq!(odd.len(), next.planes_len(), "next column planes");
        }
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `Stem::run` checked that the CPU has the kernel's features; the
    // lengths the kernels index by are the ones asserted above and in the kernels.
    unsafe {
        match kernel {
            Kernel::Avx2 => conv_avx2(layer, even, odd, output, oy),
            Kernel::Avx512 => conv_avx512(layer, even, odd, output, oy),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("Stem::detect is only called where the kernel runs");
}

/// Input rows `rows` into their row slots: even columns (`even[j] = row[2j]`) and
/// odd columns (`odd[j + 1] = row[2j + 1]`, so that `odd[j]` is column `2j - 1`).
/// The columns past the row's end stay zero (the right pad, never written); the
/// pad rows above and below are zeroed by `Stem::run`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn split_columns_avx2(
    layer: &StemLayer,
    input: &[f32],
    even: &mut [f32],
    odd: &mut [f32],
    rows: std::ops::Range<usize>,
) {
    use std::arch::x86_64::*;
    let (h, w, pw) = (layer.h, layer.w, layer.plane_w());
    let whole = w / 16 * 16;
    for c in 0..layer.cin {
        for y in rows.clone() {
            let row = &input[(c * h + y) * w..][..w];
            let at = layer.row_at(c, y + 1);
            let e = &mut even[at..][..pw];
            let o = &mut odd[at..][..pw];
            for j in (0..whole).step_by(16) {
                let a = _mm256_loadu_ps(row[j..][..8].as_ptr());
                let b = _mm256_loadu_ps(row[j + 8..][..8].as_ptr());
                let (ev, od) = split_lanes(a, b);
                _mm256_storeu_ps(e[j / 2..][..8].as_mut_ptr(), ev);
                _mm256_storeu_ps(o[j / 2 + 1..][..8].as_mut_ptr(), od);
            }
            for x in whole..w {
                if x.is_multiple_of(2) {
                    e[x / 2] = row[x];
                } else {
                    o[x / 2 + 1] = row[x];
                }
            }
        }
    }
}

/// The convolution over the column planes: output row `oy` reads padded rows
/// `2 oy + ky`; tap `kx` of output column `x` is input column `2x + kx - 1`, that
/// is `odd[x]`, `even[x]` and `odd[x + 1]`. Bias, sums, then the ReLU.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn conv_avx2(layer: &StemLayer, even: &[f32], odd: &[f32], mut output: Output, oy: usize) {
    use std::arch::x86_64::*;
    let (pw, cin) = (layer.plane_w(), layer.cin);
    let (oh, ow) = layer.out_hw();
    // The furthest a load reaches: the last channel's last row slot, the last
    // column step, the odd plane's shift, eight lanes.
    let step = STEP;
    let last_step = (ow - 1) / step * step;
    let reach = (cin * RING - 1) * pw + last_step + (XG - 1) * LANES + 1 + LANES;
    assert!(
        reach <= even.len() && reach <= odd.len(),
        "stem plane reads in bounds"
    );
    let (even, odd) = (even.as_ptr(), odd.as_ptr());
    let zero = _mm256_setzero_ps();
    for x0 in (0..ow).step_by(step) {
        for block in 0..layer.cout.div_ceil(CO) {
            let mut acc = [[zero; XG]; CO];
            for (co, row) in acc.iter_mut().enumerate() {
                *row = [_mm256_set1_ps(layer.bias[block * CO + co]); XG];
            }
            // Block `block` is half `block % 2` of weight group `block / 2`.
            let group = &layer.weights[block / 2 * cin * 9 * PACK..][..cin * 9 * PACK];
            let weights = group[block % 2 * CO..].as_ptr();
            for c in 0..cin {
                for ky in 0..3 {
                    let at = layer.row_at(c, 2 * oy + ky) + x0;
                    let (e, o) = (even.add(at), odd.add(at));
                    for kx in 0..3 {
                        let tap = match kx {
                            0 => o,
                            1 => e,
                            _ => o.add(1),
                        };
                        let w = weights.add((c * 9 + ky * 3 + kx) * PACK);
                        let mut v = [zero; XG];
                        for (g, v) in v.iter_mut().enumerate() {
                            *v = _mm256_loadu_ps(tap.add(g * LANES));
                        }
                        for (co, row) in acc.iter_mut().enumerate() {
                            let wv = _mm256_broadcast_ss(&*w.add(co));
                            for (a, v) in row.iter_mut().zip(&v) {
                                *a = _mm256_fmadd_ps(wv, *v, *a);
                            }
                        }
                    }
                }
            }
            for (co, row) in acc.iter().enumerate().take(layer.cout - block * CO) {
                let relu = row.map(|a| _mm256_max_ps(a, zero));
                let channel = block * CO + co;
                let whole = x0 + step <= ow;
                match &mut output {
                    Output::Nchw { out, .. } if whole => {
                        let dst = &mut out[(channel * oh + oy) * ow + x0..][..step];
                        for (g, v) in relu.iter().enumerate() {
                            _mm256_storeu_ps(dst[g * LANES..].as_mut_ptr(), *v);
                        }
                    }
                    Output::Planes {
                        layer: next,
                        even,
                        odd,
                    } if whole => {
                        // Sixteen columns from x0 (even): their even and odd
                        // columns, as `split_columns_avx2` splits a row.
                        let at = next.row_at(channel, oy + 1) + x0 / 2;
                        let (ev, od) = split_lanes(relu[0], relu[1]);
                        _mm256_storeu_ps(even[at..][..LANES].as_mut_ptr(), ev);
                        _mm256_storeu_ps(odd[at + 1..][..LANES].as_mut_ptr(), od);
                    }
                    // A row's last columns (fewer than sixteen).
                    _ => store_row_end_avx2(&mut output, channel, oy, x0, &relu),
                }
            }
        }
    }
}

/// Output columns `x0 ..` of channel `channel`, row `oy`, where fewer than
/// sixteen remain in the row: the whole step's stores, masked to the columns that
/// exist, so the planes' right pad stays zero (masked-off lanes are neither written
/// nor faulted on). Out of line, away from the kernel's accumulator loop.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
unsafe fn store_row_end_avx2(
    output: &mut Output,
    channel: usize,
    oy: usize,
    x0: usize,
    relu: &[std::arch::x86_64::__m256; XG],
) {
    use std::arch::x86_64::*;
    // Lanes below `n` have their top bit set.
    let first = |n: usize| {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    };
    match output.row_end(channel, oy, x0) {
        RowEnd::Nchw(dst) => {
            for (g, v) in relu.iter().enumerate() {
                let lanes = dst.len().saturating_sub(g * LANES).min(LANES);
                _mm256_maskstore_ps(dst.as_mut_ptr().add(g * LANES), first(lanes), *v);
            }
        }
        RowEnd::Planes { even, odd } => {
            let (ev, od) = split_lanes(relu[0], relu[1]);
            _mm256_maskstore_ps(even.as_mut_ptr(), first(even.len()), ev);
            _mm256_maskstore_ps(odd.as_mut_ptr(), first(odd.len()), od);
        }
    }
}

/// [`conv_avx2`] with 512-bit registers: 32 output columns at a time while more
/// than 16 remain, then 16 (so the planes keep [`STEP`]'s layout), for each group
/// of [`PACK`] output channels.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn conv_avx512(layer: &StemLayer, even: &[f32], odd: &[f32], mut output: Output, oy: usize) {
    let (_, ow) = layer.out_hw();
    let mut x0 = 0;
    while x0 < ow {
        if ow - x0 > STEP {
            conv_avx512_columns::<2>(layer, even, odd, &mut output, oy, x0);
            x0 += 2 * STEP;
        } else {
            conv_avx512_columns::<1>(layer, even, odd, &mut output, oy, x0);
            x0 += STEP;
        }
    }
}

/// Output columns `x0 .. x0 + 16 G` of row `oy`, every output channel.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
unsafe fn conv_avx512_columns<const G: usize>(
    layer: &StemLayer,
    even: &[f32],
    odd: &[f32],
    output: &mut Output,
    oy: usize,
    x0: usize,
) {
    use std::arch::x86_64::*;
    const WIDE: usize = 16;
    let (pw, cin) = (layer.plane_w(), layer.cin);
    let (oh, ow) = layer.out_hw();
    // The furthest a load reaches: the last channel's last row slot, these
    // columns, the odd plane's shift.
    let reach = (cin * RING - 1) * pw + x0 + G * WIDE + 1;
    assert!(
        reach <= even.len() && reach <= odd.len(),
        "stem plane reads in bounds"
    );
    let (even, odd) = (even.as_ptr(), odd.as_ptr());
    let zero = _mm512_setzero_ps();
    let width = G * WIDE;
    let whole = x0 + width <= ow;
    for group in 0..layer.cout.div_ceil(PACK) {
        let mut acc = [[zero; G]; PACK];
        for (co, row) in acc.iter_mut().enumerate() {
            *row = [_mm512_set1_ps(layer.bias[group * PACK + co]); G];
        }
        let weights = layer.weights[group * cin * 9 * PACK..][..cin * 9 * PACK].as_ptr();
        for c in 0..cin {
            for ky in 0..3 {
                let at = layer.row_at(c, 2 * oy + ky) + x0;
                let (e, o) = (even.add(at), odd.add(at));
                for kx in 0..3 {
                    let tap = match kx {
                        0 => o,
                        1 => e,
                        _ => o.add(1),
                    };
                    let w = weights.add((c * 9 + ky * 3 + kx) * PACK);
                    let mut v = [zero; G];
                    for (g, v) in v.iter_mut().enumerate() {
                        *v = _mm512_loadu_ps(tap.add(g * WIDE));
                    }
                    for (co, row) in acc.iter_mut().enumerate() {
                        let wv = _mm512_set1_ps(*w.add(co));
                        for (a, v) in row.iter_mut().zip(&v) {
                            *a = _mm512_fmadd_ps(wv, *v, *a);
                        }
                    }
                }
            }
        }
        for (co, row) in acc.iter().enumerate().take(layer.cout - group * PACK) {
            let relu = row.map(|a| _mm512_max_ps(a, zero));
            let channel = group * PACK + co;
            match output {
                Output::Nchw { out, .. } if whole => {
                    let dst = &mut out[(channel * oh + oy) * ow + x0..][..width];
                    for (g, v) in relu.iter().enumerate() {
                        _mm512_storeu_ps(dst[g * WIDE..].as_mut_ptr(), *v);
                    }
                }
                Output::Planes {
                    layer: next,
                    even,
                    odd,
                } if whole => {
                    // The columns from x0 (even) as their even and odd columns, as
                    // `split_columns_avx2` splits a row.
                    let at = next.row_at(channel, oy + 1) + x0 / 2;
                    let half = width / 2;
                    store_split_512(
                        &relu,
                        even[at..][..half].as_mut_ptr(),
                        odd[at + 1..][..half].as_mut_ptr(),
                    );
                }
                // A row's last columns (fewer than `width`).
                _ => store_row_end_512(output, channel, oy, x0, &relu),
            }
        }
    }
}

/// `G` registers of consecutive values stored as their even-indexed values at
/// `even` and odd-indexed ones at `odd` (8 `G` each).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
unsafe fn store_split_512<const G: usize>(
    values: &[std::arch::x86_64::__m512; G],
    even: *mut f32,
    odd: *mut f32,
) {
    use std::arch::x86_64::*;
    match values.as_slice() {
        [a] => {
            // One register: its evens into the low half, odds into the high half.
            let index = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
            let both = _mm512_castps_pd(_mm512_permutexvar_ps(index, *a));
            _mm256_storeu_ps(even, _mm256_castpd_ps(_mm512_castpd512_pd256(both)));
            _mm256_storeu_ps(odd, _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(both)));
        }
        [a, b] => {
            let (ev, od) = split_512(*a, *b);
            _mm512_storeu_ps(even, ev);
            _mm512_storeu_ps(odd, od);
        }
        _ => unreachable!("the AVX-512 kernel sums one or two registers of columns"),
    }
}

/// Output columns `x0 ..` of channel `channel`, row `oy`, where fewer than the
/// `G` registers' columns remain in the row: the same stores as a whole step's,
/// masked to the columns that exist, so the planes' right pad stays zero
/// (masked-off lanes are neither written nor faulted on). Kept out of line, away
/// from the kernel's accumulator loop.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline(never)]
unsafe fn store_row_end_512<const G: usize>(
    output: &mut Output,
    channel: usize,
    oy: usize,
    x0: usize,
    relu: &[std::arch::x86_64::__m512; G],
) {
    use std::arch::x86_64::*;
    const WIDE: usize = 16;
    match output.row_end(channel, oy, x0) {
        RowEnd::Nchw(dst) => {
            for (g, v) in relu.iter().enumerate() {
                let lanes = dst.len().saturating_sub(g * WIDE).min(WIDE);
                _mm512_mask_storeu_ps(dst.as_mut_ptr().add(g * WIDE), low_lanes(lanes), *v);
            }
        }
        RowEnd::Planes { even, odd } => {
            let b = if G == 2 {
                relu[G - 1]
            } else {
                _mm512_setzero_ps()
            };
            let (ev, od) = split_512(relu[0], b);
            _mm512_mask_storeu_ps(even.as_mut_ptr(), low_lanes(even.len()), ev);
            _mm512_mask_storeu_ps(odd.as_mut_ptr(), low_lanes(odd.len()), od);
        }
    }
}

/// Thirty-two consecutive values (`a` then `b`) as their sixteen even-indexed and
/// sixteen odd-indexed values, in order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
unsafe fn split_512(
    a: std::arch::x86_64::__m512,
    b: std::arch::x86_64::__m512,
) -> (std::arch::x86_64::__m512, std::arch::x86_64::__m512) {
    use std::arch::x86_64::*;
    let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    (
        _mm512_permutex2var_ps(a, evens, b),
        _mm512_permutex2var_ps(a, odds, b),
    )
}

/// The AVX-512 mask of the first `n` of sixteen lanes.
#[inline]
fn low_lanes(n: usize) -> u16 {
    debug_assert!(n <= 16);
    ((1u32 << n) - 1) as u16
}

/// Sixteen consecutive values (`a` then `b`) as their eight even-indexed and
/// eight odd-indexed values, in order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn split_lanes(
    a: std::arch::x86_64::__m256,
    b: std::arch::x86_64::__m256,
) -> (std::arch::x86_64::__m256, std::arch::x86_64::__m256) {
    use std::arch::x86_64::*;
    // The shuffle interleaves 128-bit halves (a0 a2 b0 b2 | a4 a6 b4 b6); the
    // permute puts a's four before b's four.
    let ev = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
    let od = _mm256_shuffle_ps::<0b11_01_11_01>(a, b);
    let ev = _mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(ev));
    let od = _mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(od));
    (_mm256_castpd_ps(ev), _mm256_castpd_ps(od))
}

/// Weights `[cout, cin, 3, 3]`, bias `[cout]` and stride of `conv` where it is a
/// plain 3x3 pads-1 convolution of stride 1 or 2 and `cin` channels reading `input`.
fn plain_conv(
    graph: &pb::GraphProto,
    conv: &pb::NodeProto,
    input: &str,
    cin: usize,
) -> Option<(Vec<f32>, Vec<f32>, usize)> {
    if conv.op_type != "Conv" || conv.input.first().map(String::as_str) != Some(input) {
        return None;
    }
    for attr in &conv.attribute {
        let plain = match attr.name.as_str() {
            "group" => attr.i == 1,
            "dilations" => attr.ints.iter().all(|&d| d == 1),
            "auto_pad" => attr.s.is_empty() || attr.s == b"NOTSET",
            "kernel_shape" => attr.ints == [3, 3],
            "strides" => attr.ints == [2, 2] || attr.ints == [1, 1],
            "pads" => attr.ints == [1, 1, 1, 1],
            _ => false,
        };
        if !plain {
            return None;
        }
    }
    // Pads must be stated: ONNX's default is 0 (strides default to 1).
    if !conv.attribute.iter().any(|a| a.name == "pads") {
        return None;
    }
    let initializer = |name: &String| graph.initializer.iter().find(|t| &t.name == name);
    let weight = initializer(conv.input.get(1)?)?;
    let cout = *weight.dims.first()? as usize;
    if weight.dims != [cout as i64, cin as i64, 3, 3] || cout == 0 {
        return None;
    }
    let weights = floats(weight)?;
    let bias = match conv.input.get(2).filter(|b| !b.is_empty()) {
        Some(name) => {
            let bias = initializer(name)?;
            if bias.dims != [cout as i64] {
                return None;
            }
            floats(bias)?
        }
        None => vec![0.0; cout],
    };
    let stride = conv
        .attribute
        .iter()
        .find(|a| a.name == "strides")
        .map_or(1, |a| a.ints[0] as usize);
    Some((weights, bias, stride))
}

/// A float initializer's values, where they are stored inline.
fn floats(t: &pb::TensorProto) -> Option<Vec<f32>> {
    if t.data_type != ONNX_FLOAT || !t.external_data.is_empty() {
        return None;
    }
    let count: i64 = t.dims.iter().product();
    let values: Vec<f32> = if t.raw_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    (values.len() as i64 == count).then_some(values)
}

/// The graph's first input that is not an initializer (the tiles).
fn first_real_input(graph: &pb::GraphProto) -> Option<&pb::ValueInfoProto> {
    graph
        .input
        .iter()
        .find(|i| !graph.initializer.iter().any(|t| t.name == i.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Model 1.2.0's graph (`models/dirascope-phantom-v1`, the bundled model until
    /// model 2): the stem's layer counts and multiply-adds below are its; model 2's
    /// graph is checked through the engine (`engine.rs`'s tests).
    fn bundled_graph() -> pb::ModelProto {
        use tract_onnx::prelude::Framework;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/dirascope-phantom-v1/model.onnx"
        );
        let bytes = std::fs::read(path).expect("model 1.2.0's ONNX is in the source tree");
        tract_onnx::onnx()
            .proto_model_for_read(&mut &bytes[..])
            .expect("model 1.2.0's ONNX decodes")
    }

    #[test]
    fn the_bundled_graph_gives_up_its_three_leading_layers_and_nothing_else() {
        let mut proto = bundled_graph();
        // Unnamed nodes (allowed by ONNX) must not confuse the rewrite.
        for node in &mut proto.graph.as_mut().unwrap().node {
            node.name.clear();
        }
        let graph = proto.graph.as_ref().unwrap();
        let before = graph.node.len();
        // With either kernel the four later convolutions run channel-blocked too.
        for kernel in [Kernel::Avx512, Kernel::Avx2] {
            let all = Stem::detect(graph, 3, 224, kernel).expect("detected");
            assert_eq!((all.layers.len(), all.blocked.len()), (3, 4), "{kernel:?}");
            assert_eq!(all.cut_shape(1), [1, 128, 7, 7]);
            assert_eq!(all.macs(), 21_676_032 + 2 * (10_838_016 + 5_419_008));
        }
        let stem = Stem::detect(graph, 3, 224, Kernel::Avx2).expect("the bundled stem is detected");
        assert_eq!(
            stem.layers.iter().map(StemLayer::macs).sum::<u64>(),
            5_419_008 + 10_838_016 + 5_419_008
        );
        assert_eq!(stem.cut_shape(2), [2, 128, 7, 7]);
        assert!(!stem.keeps_tiles());
        stem.rewrite(&mut proto);
        let graph = proto.graph.as_ref().unwrap();
        assert_eq!(
            graph.node.len(),
            before - 14,
            "seven Conv and seven Relu removed"
        );
        assert_eq!(graph.input[0].name, stem.cut, "the cut replaces the tiles");
        assert!(graph.node.iter().any(|n| n.input.contains(&stem.cut)));

        // A first layer of another stride, dilation or group is left to tract.
        for (attr, value) in [("strides", vec![1, 1]), ("dilations", vec![2, 2])] {
            let mut proto = bundled_graph();
            let conv = &mut proto.graph.as_mut().unwrap().node[0];
            conv.attribute
                .iter_mut()
                .find(|a| a.name == attr)
                .unwrap()
                .ints = value;
            assert!(
                Stem::detect(proto.graph.as_ref().unwrap(), 3, 224, Kernel::Avx2).is_none(),
                "{attr}"
            );
        }
        let mut proto = bundled_graph();
        let conv = &mut proto.graph.as_mut().unwrap().node[0];
        conv.attribute
            .iter_mut()
            .find(|a| a.name == "group")
            .unwrap()
            .i = 3;
        assert!(Stem::detect(proto.graph.as_ref().unwrap(), 3, 224, Kernel::Avx2).is_none());
        // A second layer that is not plain ends the chain after the first.
        let mut proto = bundled_graph();
        let second = &mut proto.graph.as_mut().unwrap().node[2];
        assert_eq!(second.op_type, "Conv");
        second
            .attribute
            .iter_mut()
            .find(|a| a.name == "strides")
            .unwrap()
            .ints = vec![1, 1];
        let stem = Stem::detect(proto.graph.as_ref().unwrap(), 3, 224, Kernel::Avx2).unwrap();
        assert_eq!(stem.cut_shape(1), [1, 16, 112, 112]);
    }

    use crate::model::blocked::tests::{reference, values, worst_relative_diff};

    /// A stem of the given layers (channels, height, width of each layer's input),
    /// with weights and biases that give positive and negative sums.
    /// One layer's weights and biases, as ONNX lays them out.
    type Params = (Vec<f32>, Vec<f32>);

    fn stem_of(shapes: &[(usize, usize, usize, usize)], kernel: Kernel) -> (Stem, Vec<Params>) {
        let mut params = Vec::new();
        let layers: Vec<StemLayer> = shapes
            .iter()
            .enumerate()
            .map(|(i, &(cin, cout, h, w))| {
                let weights = values(cout * cin * 9, 2 * i + 1);
                let bias = values(cout, 2 * i + 2);
                params.push((weights.clone(), bias.clone()));
                StemLayer::new(format!("conv{i}"), cin, h, w, &weights, &bias)
            })
            .collect();
        let last = layers.last().unwrap();
        let (oh, ow) = last.out_hw();
        let stem = Stem {
            cut_shape: [last.cout, oh, ow],
            layers,
            kernel,
            blocked: Vec::new(),
            cut: "cut".into(),
            keeps_tiles: false,
            removed: Vec::new(),
        };
        (stem, params)
    }

    #[test]
    fn the_kernel_gives_the_direct_convolution_on_any_plane_size_and_channel_count() {
        let kernels = Kernel::available();
        if kernels.is_empty() {
            println!("skipped: this CPU lacks AVX2 or FMA, so the stem runs in tract");
            return;
        }
        if !kernels.contains(&Kernel::Avx512) {
            println!("AVX-512 kernel not checked: this CPU lacks AVX-512F");
        }
        // One layer and two; widths that are and are not multiples of the split's
        // 16 columns and the kernels' 16- and 32-column steps; odd heights; channel
        // counts that are not multiples of the kernels' blocks of output channels.
        let cases: &[&[(usize, usize, usize, usize)]] = &[
            &[(3, 16, 224, 224), (16, 24, 112, 112)],
            &[(3, 5, 17, 9)],
            &[(3, 5, 17, 9), (5, 7, 9, 5)],
            &[(2, 7, 6, 40), (7, 3, 3, 20)],
            &[(5, 4, 1, 1)],
            &[(1, 1, 3, 33)],
            &[(3, 6, 66, 50), (6, 13, 33, 25)],
            // Three layers: the row order and the row slots' reuse across two handovers.
            &[(3, 8, 70, 64), (8, 5, 35, 32), (5, 9, 18, 16)],
            // 50 output columns: a 32-column step, then 18 columns past 16.
            &[(3, 12, 9, 100), (12, 9, 5, 50)],
        ];
        let mut first_kernel_out: Vec<Vec<f32>> = Vec::new();
        for (case, (shapes, &kernel)) in cases
            .iter()
            .flat_map(|s| kernels.iter().map(move |k| (s, k)))
            .enumerate()
        {
            let (stem, params) = stem_of(shapes, kernel);
            let first = &stem.layers[0];
            let tiles = [values(first.in_len(), 3), values(first.in_len(), 4)].concat();
            let mut want = Vec::new();
            for tile in tiles.chunks_exact(first.in_len()) {
                let mut x = tile.to_vec();
                for (layer, (weights, bias)) in stem.layers.iter().zip(&params) {
                    x = reference((layer.cin, layer.h, layer.w), 2, weights, bias, &x);
                }
                want.extend(x);
            }
            let mut scratch = StemScratch::default();
            let mut out = vec![f32::NAN; 7];
            // Twice through the same scratch: the second run must not see the first.
            for _ in 0..2 {
                let mut seconds = vec![0.0; stem.layers.len()];
                stem.run(&tiles, 2, &mut scratch, &mut out, Some(&mut seconds));
                assert_eq!(out.len(), want.len());
                let worst = worst_relative_diff(&out, &want);
                assert!(
                    worst <= 1e-5,
                    "{kernel:?} {shapes:?}: max relative diff {worst}"
                );
                assert!(
                    out.iter().any(|&v| v > 0.0) && out.iter().all(|&v| v >= 0.0),
                    "{kernel:?} {shapes:?}"
                );
                assert!(seconds.iter().all(|&s| s > 0.0));
            }
            // Both kernels sum each output in the same order (bias, then channel,
            // row and column of the taps, one FMA each): the same bits.
            if case % kernels.len() == 0 {
                first_kernel_out.push(out);
            } else {
                let first = first_kernel_out.last().unwrap();
                assert!(
                    first
                        .iter()
                        .zip(&out)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{kernel:?} {shapes:?}: not the bits of {:?}",
                    kernels[0]
                );
            }
        }
    }

    #[test]
    fn blocked_layers_after_the_column_layers_give_the_direct_convolution() {
        let kernels = Kernel::available();
        if kernels.is_empty() {
            println!("skipped: this CPU lacks AVX2 and FMA, so no layer runs channel-blocked");
            return;
        }
        for kernel in kernels {
            blocked_layers_after_column_layers(kernel);
        }
    }

    fn blocked_layers_after_column_layers(kernel: Kernel) {
        // A column layer, then stride-1 and stride-2 blocked layers (15 px planes:
        // not a multiple of the blocked kernels' 7 or 6 columns).
        let (mut stem, mut params) = stem_of(&[(3, 16, 30, 30)], kernel);
        for (i, &(cin, cout, size, stride)) in [(16, 32, 15, 1), (32, 16, 15, 2)].iter().enumerate()
        {
            let (weights, bias) = (values(cout * cin * 9, 20 + i), values(cout, 30 + i));
            let layer =
                BlockedLayer::new(format!("b{i}"), (cin, size, size), stride, &weights, &bias)
                    .unwrap();
            params.push((weights, bias));
            stem.blocked.push(layer);
        }
        stem.cut_shape = [16, 8, 8];
        let tiles = [values(3 * 30 * 30, 5), values(3 * 30 * 30, 6)].concat();
        let mut want = Vec::new();
        for tile in tiles.chunks_exact(3 * 30 * 30) {
            let mut x = tile.to_vec();
            for ((shape, stride), (weights, bias)) in
                [((3, 30, 30), 2), ((16, 15, 15), 1), ((32, 15, 15), 2)]
                    .iter()
                    .zip(&params)
            {
                x = reference(*shape, *stride, weights, bias, &x);
            }
            want.extend(x);
        }
        let mut scratch = StemScratch::default();
        let mut out = Vec::new();
        for _ in 0..2 {
            let mut seconds = vec![0.0; 3];
            stem.run(&tiles, 2, &mut scratch, &mut out, Some(&mut seconds));
            assert_eq!(out.len(), want.len());
            let worst = worst_relative_diff(&out, &want);
            // Three layers of f32 sums (values grow to a few hundred).
            assert!(worst <= 1e-4, "{kernel:?}: max relative diff {worst}");
            assert!(out.iter().any(|&v| v > 0.0));
            assert!(seconds.iter().all(|&s| s > 0.0), "{kernel:?}: {seconds:?}");
        }
    }
}
