//! The 3x3 convolutions after the stem's stride-2 layers, run here instead of in
//! tract, for speed, on AVX-512 and on AVX2 CPUs.
//!
//! After the stem (`stem.rs`) the bundled models have four more 3x3 convolutions,
//! 32 -> 48 -> 64 -> 96 -> 128 channels on 28, 14 and 7 px planes (32.5 of the 54.2 M
//! multiply-adds a tile). tract runs them at 33-43% of an AVX-512 core's FMA peak,
//! 1.6-2.1x onnxruntime's time (`benches/model_layers.rs`, Intel Xeon, 2026-12-03).
//! Planes this small are poor rows for vectors of 16 columns, so here the vectors
//! run along the channels instead: a layer's input is kept channel-blocked with a
//! zero border, `[cin / 16][h + 2][w + 2][16]`, so one input value of a tap is one
//! broadcast and the tap's weights for 16 output channels one load; seven output
//! columns x 16-64 output channels (1-4 [`GROUP`]s) are summed at a time in up to
//! 28 of the 32 registers, then ReLU'd and stored blocked for the next layer. Each output is
//! the bias plus its products in channel, row, column order, one FMA each. On AVX2
//! CPUs (16 registers of 8 floats) the layout is the same and a group of 16 channels
//! is two registers: up to [`COLUMNS_AVX2`] columns x 16 channels in 12 registers,
//! the tap's weights in two, the broadcast input in one; the same sums in the same
//! order, so the same bits as AVX-512.
//!
//! This module owns the kernels and the layout; `stem.rs` decides which layers run
//! here (plain 3x3, pads 1, stride 1 or 2, channels in multiples of 16, each read
//! only by a `Relu` that only the next layer reads) and feeds them.

/// Output (and input) channels a register holds.
pub const GROUP: usize = 16;
/// Output columns summed together (AVX-512).
const COLUMNS: usize = 7;
/// Output columns summed together at most (AVX2).
const COLUMNS_AVX2: usize = 6;

use super::stem::Kernel;

/// One 3x3 convolution with pads 1, its bias and a ReLU, on channel-blocked planes.
#[derive(Debug, Clone)]
pub struct BlockedLayer {
    /// The ONNX `Conv` node's name.
    pub name: String,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    stride: usize,
    /// `[cout / 16][cin][3 * 3][16]`.
    weights: Vec<f32>,
    bias: Vec<f32>,
}

impl BlockedLayer {
    /// A layer from ONNX's `[cout][cin][3][3]` weights and `cout` biases; `None`
    /// where the channel counts are not multiples of [`GROUP`] or the stride is not
    /// 1 or 2.
    pub fn new(
        name: String,
        (cin, h, w): (usize, usize, usize),
        stride: usize,
        weights: &[f32],
        bias: &[f32],
    ) -> Option<Self> {
        let cout = bias.len();
        let fits = cin > 0 && cout > 0 && cin.is_multiple_of(GROUP) && cout.is_multiple_of(GROUP);
        if !fits || !(1..=2).contains(&stride) || h == 0 || w == 0 {
            return None;
        }
        if weights.len() != cout * cin * 9 {
            return None;
        }
        let mut packed = vec![0.0; cout * cin * 9];
        for o in 0..cout {
            for c in 0..cin {
                for k in 0..9 {
                    packed[(((o / GROUP) * cin + c) * 9 + k) * GROUP + o % GROUP] =
                        weights[(o * cin + c) * 9 + k];
                }
            }
        }
        Some(BlockedLayer {
            name,
            cin,
            cout,
            h,
            w,
            stride,
            weights: packed,
            bias: bias.to_vec(),
        })
    }

    /// Output channels.
    pub fn cout(&self) -> usize {
        self.cout
    }

    /// Output rows and columns: `(n + 2 - 3) / stride + 1`.
    pub fn out_hw(&self) -> (usize, usize) {
        (
            (self.h - 1) / self.stride + 1,
            (self.w - 1) / self.stride + 1,
        )
    }

    /// Multiply-adds a tile.
    pub fn macs(&self) -> u64 {
        let (oh, ow) = self.out_hw();
        (oh * ow * self.cout * self.cin * 9) as u64
    }

    /// Values of the blocked input with its border.
    pub fn in_len(&self) -> usize {
        blocked_len(self.cin, self.h, self.w)
    }

    /// Values of the blocked output with its border (the next layer's input).
    pub fn out_len(&self) -> usize {
        let (oh, ow) = self.out_hw();
        blocked_len(self.cout, oh, ow)
    }

    /// The convolution of `input` into the inside of `output` (both blocked with
    /// borders; the borders are never written, so zeroed once they stay zero).
    /// The kernels' bounds: output row `oy`, columns `ox .. ox + n` and channel
    /// groups `g .. g + groups` exist, and the furthest input they read (the last
    /// channel's group, padded row s oy + 2, padded column s (ox + n - 1) + 2; within
    /// the border since s (oh - 1) <= h - 1) lies within `input_len`.
    fn assert_in_bounds(
        &self,
        input_len: usize,
        (oy, ox, n): (usize, usize, usize),
        (g, groups): (usize, usize),
    ) {
        let (h, w, s, cin) = (self.h, self.w, self.stride, self.cin);
        let (oh, ow) = self.out_hw();
        assert!(oy < oh && n > 0 && ox + n <= ow && (g + groups) * GROUP <= self.cout);
        let last = (((cin - 1) / GROUP * (h + 2) + s * oy + 2) * (w + 2) + s * (ox + n - 1) + 2)
            * GROUP
            + (cin - 1) % GROUP;
        assert!(last < input_len, "blocked input reads in bounds");
    }

    /// Both kernels sum each output in the same order (bias, then channel, row
    /// and column of the taps, one FMA each), so they give the same bits.
    pub fn run(&self, kernel: Kernel, input: &[f32], output: &mut [f32]) {
        assert_eq!(input.len(), self.in_len(), "blocked layer input");
        assert_eq!(output.len(), self.out_len(), "blocked layer output");
        #[cfg(target_arch = "x86_64")]
        match kernel {
            Kernel::Avx512 => {
                assert!(
                    std::arch::is_x86_feature_detected!("avx512f"),
                    "the AVX-512 blocked kernel needs AVX-512F"
                );
                // SAFETY: AVX-512F is checked above; the kernel reads and writes
                // within the lengths asserted above (see `sum`).
                unsafe { conv_avx512(self, input, output) }
            }
            Kernel::Avx2 => {
                assert!(
                    std::arch::is_x86_feature_detected!("avx2")
                        && std::arch::is_x86_feature_detected!("fma"),
                    "the AVX2 blocked kernel needs AVX2 and FMA"
                );
                // SAFETY: AVX2 and FMA are checked above; the kernel reads and
                // writes within the lengths asserted above (see `sum_avx2`).
                unsafe { conv_avx2(self, input, output) }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("blocked layers are only chosen where AVX2 or AVX-512 runs ({kernel:?})");
    }
}

/// Values of `c` channels of `h` x `w` planes, blocked, with a one-pixel border.
pub fn blocked_len(c: usize, h: usize, w: usize) -> usize {
    c * (h + 2) * (w + 2)
}

/// Where value (channel `c`, row `y`, column `x`) of a `h` x `w` plane set sits in
/// its blocked layout (inside the border).
fn blocked_at(c: usize, y: usize, x: usize, h: usize, w: usize) -> usize {
    ((c / GROUP * (h + 2) + y + 1) * (w + 2) + x + 1) * GROUP + c % GROUP
}

/// NCHW planes (`c` x `h` x `w`, one tile) into the inside of a blocked layout.
pub fn block(nchw: &[f32], (c, h, w): (usize, usize, usize), out: &mut [f32]) {
    assert_eq!(nchw.len(), c * h * w, "planes to block");
    assert_eq!(out.len(), blocked_len(c, h, w), "blocked planes");
    for (i, row) in nchw.chunks_exact(w).enumerate() {
        let start = blocked_at(i / h, i % h, 0, h, w);
        for (x, &v) in row.iter().enumerate() {
            out[start + x * GROUP] = v;
        }
    }
}

/// The inside of a blocked layout back into NCHW planes.
pub fn unblock(blocked: &[f32], (c, h, w): (usize, usize, usize), nchw: &mut [f32]) {
    assert_eq!(nchw.len(), c * h * w, "planes to unblock");
    assert_eq!(blocked.len(), blocked_len(c, h, w), "blocked planes");
    for (i, row) in nchw.chunks_exact_mut(w).enumerate() {
        let start = blocked_at(i / h, i % h, 0, h, w);
        for (x, v) in row.iter_mut().enumerate() {
            *v = blocked[start + x * GROUP];
        }
    }
}

/// Every output row, [`COLUMNS`] columns at a time (then one at a time at a row's
/// end), for groups of output channels taken 4, 3, 2 or 1 at a time. Four groups
/// (28 accumulators) beat two for the 64- and 128-channel layers: 0.103 -> 0.077
/// and 0.107 -> 0.082 ms a tile (`model_layers`, alternating runs, Intel Xeon,
/// 2026-12-03).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn conv_avx512(layer: &BlockedLayer, input: &[f32], output: &mut [f32]) {
    let (oh, ow) = layer.out_hw();
    let groups = layer.cout / GROUP;
    let take = if groups.is_multiple_of(4) {
        4
    } else if groups.is_multiple_of(3) {
        3
    } else if groups.is_multiple_of(2) {
        2
    } else {
        1
    };
    for oy in 0..oh {
        let mut ox = 0;
        while ox < ow {
            let n = if ow - ox >= COLUMNS { COLUMNS } else { 1 };
            for g in (0..groups).step_by(take) {
                match (n, take) {
                    (COLUMNS, 4) => sum::<COLUMNS, 4>(layer, input, output, oy, ox, g),
                    (COLUMNS, 3) => sum::<COLUMNS, 3>(layer, input, output, oy, ox, g),
                    (COLUMNS, 2) => sum::<COLUMNS, 2>(layer, input, output, oy, ox, g),
                    (COLUMNS, _) => sum::<COLUMNS, 1>(layer, input, output, oy, ox, g),
                    (_, 4) => sum::<1, 4>(layer, input, output, oy, ox, g),
                    (_, 3) => sum::<1, 3>(layer, input, output, oy, ox, g),
                    (_, 2) => sum::<1, 2>(layer, input, output, oy, ox, g),
                    _ => sum::<1, 1>(layer, input, output, oy, ox, g),
                }
            }
            ox += n;
        }
    }
}

/// Output columns `ox .. ox + N` of row `oy`, channel groups `g .. g + G`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn sum<const N: usize, const G: usize>(
    layer: &BlockedLayer,
    input: &[f32],
    output: &mut [f32],
    oy: usize,
    ox: usize,
    g: usize,
) {
    use std::arch::x86_64::*;
    let (h, w, s, cin) = (layer.h, layer.w, layer.stride, layer.cin);
    let (oh, ow) = layer.out_hw();
    layer.assert_in_bounds(input.len(), (oy, ox, N), (g, G));
    let input = input.as_ptr();
    let (row_pitch, plane_pitch) = ((w + 2) * GROUP, (h + 2) * (w + 2) * GROUP);
    let mut acc = [[_mm512_setzero_ps(); G]; N];
    for row in acc.iter_mut() {
        for (j, a) in row.iter_mut().enumerate() {
            *a = _mm512_loadu_ps(layer.bias[(g + j) * GROUP..][..GROUP].as_ptr());
        }
    }
    let weights: [*const f32; G] =
        std::array::from_fn(|j| layer.weights[(g + j) * cin * 9 * GROUP..].as_ptr());
    for c in 0..cin {
        let channel = input.add(c / GROUP * plane_pitch + c % GROUP);
        for ky in 0..3 {
            let row = channel.add((s * oy + ky) * row_pitch);
            for kx in 0..3 {
                let tap = (c * 9 + ky * 3 + kx) * GROUP;
                let wv: [__m512; G] = std::array::from_fn(|j| _mm512_loadu_ps(weights[j].add(tap)));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x = _mm512_set1_ps(*row.add((s * (ox + r) + kx) * GROUP));
                    for (a, wv) in acc.iter_mut().zip(&wv) {
                        *a = _mm512_fmadd_ps(x, *wv, *a);
                    }
                }
            }
        }
    }
    let zero = _mm512_setzero_ps();
    for (r, acc) in acc.iter().enumerate() {
        for (j, a) in acc.iter().enumerate() {
            let at = blocked_at((g + j) * GROUP, oy, ox + r, oh, ow);
            _mm512_storeu_ps(output[at..][..GROUP].as_mut_ptr(), _mm512_max_ps(*a, zero));
        }
    }
}

/// Every output row, up to [`COLUMNS_AVX2`] columns at a time in steps of about
/// equal width, one group of 16 output channels at a time (two registers each).
/// AVX2 has 16 registers: 12 accumulators, two for the tap's weights and one for
/// the broadcast input.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn conv_avx2(layer: &BlockedLayer, input: &[f32], output: &mut [f32]) {
    let (oh, ow) = layer.out_hw();
    for oy in 0..oh {
        let mut ox = 0;
        while ox < ow {
            // Rows in steps of about equal width (7 columns as 4 + 3, not 6 + 1):
            // a narrow step has too few independent sums to cover the FMA latency.
            let left = ow - ox;
            let n = left.div_ceil(left.div_ceil(COLUMNS_AVX2));
            for g in 0..layer.cout / GROUP {
                match n {
                    6 => sum_avx2::<6>(layer, input, output, oy, ox, g),
                    5 => sum_avx2::<5>(layer, input, output, oy, ox, g),
                    4 => sum_avx2::<4>(layer, input, output, oy, ox, g),
                    3 => sum_avx2::<3>(layer, input, output, oy, ox, g),
                    2 => sum_avx2::<2>(layer, input, output, oy, ox, g),
                    _ => sum_avx2::<1>(layer, input, output, oy, ox, g),
                }
            }
            ox += n;
        }
    }
}

/// Output columns `ox .. ox + N` of row `oy`, channel group `g`, in two halves of
/// eight channels.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn sum_avx2<const N: usize>(
    layer: &BlockedLayer,
    input: &[f32],
    output: &mut [f32],
    oy: usize,
    ox: usize,
    g: usize,
) {
    use std::arch::x86_64::*;
    const HALF: usize = GROUP / 2;
    let (h, w, s, cin) = (layer.h, layer.w, layer.stride, layer.cin);
    let (oh, ow) = layer.out_hw();
    layer.assert_in_bounds(input.len(), (oy, ox, N), (g, 1));
    let input = input.as_ptr();
    let (row_pitch, plane_pitch) = ((w + 2) * GROUP, (h + 2) * (w + 2) * GROUP);
    let bias = layer.bias[g * GROUP..][..GROUP].as_ptr();
    let mut acc = [[_mm256_loadu_ps(bias), _mm256_loadu_ps(bias.add(HALF))]; N];
    let weights = layer.weights[g * cin * 9 * GROUP..].as_ptr();
    for c in 0..cin {
        let channel = input.add(c / GROUP * plane_pitch + c % GROUP);
        for ky in 0..3 {
            let row = channel.add((s * oy + ky) * row_pitch);
            for kx in 0..3 {
                let tap = weights.add((c * 9 + ky * 3 + kx) * GROUP);
                let (lo, hi) = (_mm256_loadu_ps(tap), _mm256_loadu_ps(tap.add(HALF)));
                for (r, [a_lo, a_hi]) in acc.iter_mut().enumerate() {
                    let x = _mm256_set1_ps(*row.add((s * (ox + r) + kx) * GROUP));
                    *a_lo = _mm256_fmadd_ps(x, lo, *a_lo);
                    *a_hi = _mm256_fmadd_ps(x, hi, *a_hi);
                }
            }
        }
    }
    let zero = _mm256_setzero_ps();
    for (r, [a_lo, a_hi]) in acc.iter().enumerate() {
        let at = blocked_at(g * GROUP, oy, ox + r, oh, ow);
        let out = output[at..][..GROUP].as_mut_ptr();
        _mm256_storeu_ps(out, _mm256_max_ps(*a_lo, zero));
        _mm256_storeu_ps(out.add(HALF), _mm256_max_ps(*a_hi, zero));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The direct convolution in f64, NCHW, with the ReLU: the reference the
    /// kernels here and in `stem.rs` are checked against.
    pub(crate) fn reference(
        (cin, h, w): (usize, usize, usize),
        stride: usize,
        weights: &[f32],
        bias: &[f32],
        input: &[f32],
    ) -> Vec<f32> {
        let (oh, ow) = ((h - 1) / stride + 1, (w - 1) / stride + 1);
        let mut out = vec![0.0; bias.len() * oh * ow];
        for (o, b) in bias.iter().enumerate() {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut sum = *b as f64;
                    for c in 0..cin {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let iy = (stride * oy + ky).wrapping_sub(1);
                                let ix = (stride * ox + kx).wrapping_sub(1);
                                if iy < h && ix < w {
                                    sum += weights[((o * cin + c) * 3 + ky) * 3 + kx] as f64
                                        * input[(c * h + iy) * w + ix] as f64;
                                }
                            }
                        }
                    }
                    out[(o * oh + oy) * ow + ox] = (sum as f32).max(0.0);
                }
            }
        }
        out
    }

    /// The largest difference between `got` and `want`, relative to the wanted
    /// value's size (at least 1): float sums in another order.
    pub(crate) fn worst_relative_diff(got: &[f32], want: &[f32]) -> f32 {
        got.iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
            .fold(0.0, f32::max)
    }

    /// Values in [-1, 1) that give positive and negative sums.
    pub(crate) fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 + seed * 11) % 101) as f32 / 50.0 - 1.0)
            .collect()
    }

    #[test]
    fn blocking_and_unblocking_give_the_planes_back_inside_a_zero_border() {
        let (c, h, w) = (32, 3, 5);
        let planes = values(c * h * w, 1);
        let mut blocked = vec![0.0; blocked_len(c, h, w)];
        block(&planes, (c, h, w), &mut blocked);
        let inside: f32 = planes.iter().map(|v| v.abs()).sum();
        assert_eq!(blocked.iter().map(|v| v.abs()).sum::<f32>(), inside);
        let mut back = vec![f32::NAN; c * h * w];
        unblock(&blocked, (c, h, w), &mut back);
        assert_eq!(back, planes);
    }

    #[test]
    fn the_kernels_give_the_direct_convolution_on_any_plane_size_stride_and_group_count() {
        let kernels = Kernel::available();
        if kernels.is_empty() {
            println!("skipped: this CPU lacks AVX2 and FMA, so these layers run in tract");
            return;
        }
        if !kernels.contains(&Kernel::Avx512) {
            println!("AVX-512 kernel not checked: this CPU lacks AVX-512F");
        }
        // Widths with and without a multiple of the 7-column (AVX-512) and 6-column
        // (AVX2) steps, and every AVX2 remainder (1-5 columns); 1, 2, 3 and 4
        // groups of output channels at a time; strides 1 and 2; one-pixel planes.
        for &((cin, h, w), cout, stride) in &[
            ((16, 3, 5), 32, 1),
            ((16, 4, 17), 16, 1),
            ((32, 28, 28), 48, 1),
            ((48, 28, 28), 64, 2),
            ((16, 9, 11), 16, 1),
            ((16, 9, 11), 80, 2),
            ((32, 1, 1), 96, 1),
            ((16, 8, 15), 32, 2),
            ((16, 9, 11), 64, 1),
        ] {
            let weights = values(cout * cin * 9, 2);
            let bias = values(cout, 3);
            let layer =
                BlockedLayer::new("conv".into(), (cin, h, w), stride, &weights, &bias).unwrap();
            let input = values(cin * h * w, 4);
            let want = reference((cin, h, w), stride, &weights, &bias, &input);
            let mut blocked_in = vec![0.0; layer.in_len()];
            block(&input, (cin, h, w), &mut blocked_in);
            let mut first_kernel_out: Option<Vec<f32>> = None;
            for &kernel in &kernels {
                let mut blocked_out = vec![0.0; layer.out_len()];
                // Twice into the same output: nothing of the first run may remain.
                for _ in 0..2 {
                    layer.run(kernel, &blocked_in, &mut blocked_out);
                    let (oh, ow) = layer.out_hw();
                    let mut got = vec![f32::NAN; cout * oh * ow];
                    unblock(&blocked_out, (cout, oh, ow), &mut got);
                    let worst = worst_relative_diff(&got, &want);
                    assert!(
                        worst <= 1e-5,
                        "{kernel:?} {cin}x{h}x{w} -> {cout}, stride {stride}: max relative diff {worst}"
                    );
                    assert!(got.iter().any(|&v| v > 0.0) && got.contains(&0.0));
                }
                let border: f32 = (0..layer.out_len())
                    .filter(|&i| {
                        let (oh, ow) = layer.out_hw();
                        let (y, x) = (i / GROUP / (ow + 2) % (oh + 2), i / GROUP % (ow + 2));
                        y == 0 || x == 0 || y == oh + 1 || x == ow + 1
                    })
                    .map(|i| blocked_out[i].abs())
                    .sum();
                assert_eq!(border, 0.0, "{kernel:?}: the border stays zero");
                // The same sums in the same order: the same bits from each kernel.
                match &first_kernel_out {
                    None => first_kernel_out = Some(blocked_out),
                    Some(first) => assert!(
                        first
                            .iter()
                            .zip(&blocked_out)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{kernel:?} {cin}x{h}x{w} -> {cout}: not the bits of {:?}",
                        kernels[0]
                    ),
                }
            }
        }
        assert!(
            BlockedLayer::new("c".into(), (24, 4, 4), 1, &[0.0; 16 * 24 * 9], &[0.0; 16]).is_none()
        );
        assert!(
            BlockedLayer::new("c".into(), (16, 4, 4), 3, &[0.0; 16 * 16 * 9], &[0.0; 16]).is_none()
        );
    }
}
