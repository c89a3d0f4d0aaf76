//! The one-core peak of fused multiply-adds on this machine: a loop of independent
//! f32 FMAs on the widest vector unit the CPU has (chosen at run time: AVX-512F,
//! else AVX2 + FMA, else NEON on aarch64, else plain scalar multiply-add), best of
//! five runs. `benches/model_compare.sh` divides a model's multiply-adds per tile by
//! it to print the physical limit in tiles/s per core. Also names the CPU.
//!
//!     cargo bench --bench fma_peak
//!
//! Prints `cpu: NAME` and `fma peak: UNIT G multiply-adds/s on one core (...)`.

use std::hint::black_box;
use std::time::Instant;

/// Independent accumulators: enough to cover FMA latency (4-5 cycles) on two FMA
/// ports, few enough to stay in registers with the two constants (AVX2 has 16 vector
/// registers: with 16 accumulators the loop spills, and measured one FMA a cycle on
/// an AMD EPYC instead of two). Each count is timed and the best kept.
const CHAINS: [usize; 3] = [8, 10, 12];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return;
    }
    println!("cpu: {}", cpu_name());
    let (unit, lanes, kernels) = widest();
    let iters: u64 = 20_000_000;
    let (mut best, mut best_chains) = (0.0f64, 0);
    for (chains, kernel) in CHAINS.iter().zip(kernels) {
        for _ in 0..5 {
            let start = Instant::now();
            black_box(kernel(black_box(iters)));
            let fmas = iters as f64 * *chains as f64 * lanes as f64;
            let rate = fmas / start.elapsed().as_secs_f64();
            if rate > best {
                (best, best_chains) = (rate, *chains);
            }
        }
    }
    println!(
        "fma peak: {unit} {:.1} G multiply-adds/s on one core ({best_chains} chains x {lanes} f32 lanes, best of 5 runs at each of {CHAINS:?} chains)",
        best / 1e9
    );
}

/// The CPU's model name, from /proc/cpuinfo where there is one.
fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name") || l.starts_with("Model"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

type Kernel = fn(u64) -> f32;

/// The widest FMA this CPU runs: (name, f32 lanes, a kernel for each of `CHAINS`).
fn widest() -> (&'static str, usize, [Kernel; CHAINS.len()]) {
    #[cfg(target_arch = "x86_64")]
    {
        use x86::{avx2, avx512};
        // DIRASCOPE_STEM=avx2 keeps an AVX-512 CPU on AVX2 here too, as it does
        // dirascope's kernels: the peak their AVX2 figures are a fraction of.
        let avx2_only = std::env::var("DIRASCOPE_STEM").is_ok_and(|v| v == "avx2");
        if std::arch::is_x86_feature_detected!("avx512f") && !avx2_only {
            return ("AVX-512F", 16, [avx512::<8>, avx512::<10>, avx512::<12>]);
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return ("AVX2+FMA", 8, [avx2::<8>, avx2::<10>, avx2::<12>]);
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        use arm::neon;
        return ("NEON", 4, [neon::<8>, neon::<10>, neon::<12>]);
    }
    #[allow(unreachable_code)]
    ("scalar", 1, [scalar::<8>, scalar::<10>, scalar::<12>])
}

fn scalar<const N: usize>(iters: u64) -> f32 {
    let mut acc = [1.0f32; N];
    let (a, b) = (black_box(0.999_999f32), black_box(1e-6f32));
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = x.mul_add(a, b);
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    pub fn avx512<const N: usize>(iters: u64) -> f32 {
        // SAFETY: chosen only after `is_x86_feature_detected!("avx512f")`.
        unsafe { avx512_loop::<N>(iters) }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn avx512_loop<const N: usize>(iters: u64) -> f32 {
        let a = _mm512_set1_ps(std::hint::black_box(0.999_999));
        let b = _mm512_set1_ps(std::hint::black_box(1e-6));
        let mut acc = [_mm512_set1_ps(1.0); N];
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm512_fmadd_ps(*x, a, b);
            }
        }
        let mut sum = _mm512_setzero_ps();
        for x in acc {
            sum = _mm512_add_ps(sum, x);
        }
        _mm512_reduce_add_ps(sum)
    }

    pub fn avx2<const N: usize>(iters: u64) -> f32 {
        // SAFETY: chosen only after detecting avx2 and fma.
        unsafe { avx2_loop::<N>(iters) }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2_loop<const N: usize>(iters: u64) -> f32 {
        let a = _mm256_set1_ps(std::hint::black_box(0.999_999));
        let b = _mm256_set1_ps(std::hint::black_box(1e-6));
        let mut acc = [_mm256_set1_ps(1.0); N];
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm256_fmadd_ps(*x, a, b);
            }
        }
        let mut out = [0.0f32; 8];
        let mut sum = _mm256_setzero_ps();
        for x in acc {
            sum = _mm256_add_ps(sum, x);
        }
        _mm256_storeu_ps(out.as_mut_ptr(), sum);
        out.iter().sum()
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use std::arch::aarch64::*;

    pub fn neon<const N: usize>(iters: u64) -> f32 {
        // SAFETY: NEON is part of the aarch64 baseline.
        unsafe {
            let a = vdupq_n_f32(std::hint::black_box(0.999_999));
            let b = vdupq_n_f32(std::hint::black_box(1e-6));
            let mut acc = [vdupq_n_f32(1.0); N];
            for _ in 0..iters {
                for x in acc.iter_mut() {
                    *x = vfmaq_f32(b, *x, a);
                }
            }
            let mut sum = vdupq_n_f32(0.0);
            for x in acc {
                sum = vaddq_f32(sum, x);
            }
            vaddvq_f32(sum)
        }
    }
}
