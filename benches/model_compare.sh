#!/usr/bin/env bash
# The model stage against onnxruntime and against the machine's physical limit, in
# one run (the machines here are shared and noisy: only figures from the same run
# are compared). Prints:
#   - the CPU and its one-core FMA peak (benches/fma_peak.rs: the widest vector unit
#     it has, detected at run time);
#   - the model stage through the product's tile stream (cargo bench model_throughput:
#     one session per worker, preprocessing included; the first convolutions in
#     dirascope's own kernel where the graph and CPU allow, src/model/stem.rs, the rest
#     in tract), the same with the whole graph in tract (DIRASCOPE_STEM=tract, "tract
#     alone"), on AVX-512 CPUs the same with the AVX2 kernel (DIRASCOPE_STEM=avx2,
#     "avx2-kernel"), on AVX2 CPUs the AVX2 column kernel with the later layers in
#     tract (DIRASCOPE_STEM=avx2-columns, "avx2-columns") and onnxruntime (training/ort_bench.py, preprocessed tiles) on the same
#     parity tiles at batch 1, with 1 and 2 workers / threads, and their ratio;
#   - the limit: multiply-adds a tile over the FMA peak (tiles/s a core), the decode
#     lower bound (one thread reading and resampling a phantom slide's tiles), the
#     stream's limit with both, and the fraction of each that tract and the whole
#     stream reach;
#   - where the time goes: tract's time, multiply-adds and fraction of the peak per
#     layer (cargo bench model_layers) and onnxruntime's per-node kernel times
#     (ort_bench.py --layers), one tile on one thread, so a gap can be named by layer.
#   benches/model_compare.sh [MODEL_DIR] [--profile dev]
# env: PYTHON (default training/.venv/bin/python), DIRASCOPE_BENCH_* (see
# benches/model_throughput.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-models/dirascope-phantom-v1}"
profile=release
[[ "${2:-}" == --profile ]] && profile="${3:?--profile needs a name}"
batch="${DIRASCOPE_BENCH_BATCH:-1}" # dirascope scores one tile per run (model::DEFAULT_BATCH)
py="${PYTHON:-training/.venv/bin/python}"
bench() { cargo bench --profile "$profile" --bench "$@" 2>/dev/null; }
# Build first, at low priority, so the timed runs below start on a built tree.
nice -n 10 cargo bench --profile "$profile" --bench fma_peak --bench model_throughput --bench model_layers --no-run 2>&1 | tail -n 1
echo "note: shared machine; other jobs may run during this script, so compare ratios from one run"
peak=$(bench fma_peak)
tract=$(DIRASCOPE_BENCH_BATCH=$batch bench model_throughput -- "$dir")
# The same without dirascope's stem kernel (src/model/stem.rs): the whole graph in tract.
alone=$(DIRASCOPE_STEM=tract DIRASCOPE_BENCH_BATCH=$batch DIRASCOPE_BENCH_SLIDE=none bench model_throughput -- "$dir" | sed 's/^tract /tract-alone /')
avx2=""
if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
  # The same on the narrower of dirascope's two kernels.
  avx2=$(DIRASCOPE_STEM=avx2 DIRASCOPE_BENCH_BATCH=$batch DIRASCOPE_BENCH_SLIDE=none bench model_throughput -- "$dir" | sed 's/^tract /avx2-kernel /')
fi
columns=""
if grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
  # The AVX2 column kernel alone, the later layers in tract (as before the AVX2
  # blocked kernel): what the blocked layers gain on this CPU.
  columns=$(DIRASCOPE_STEM=avx2-columns DIRASCOPE_BENCH_BATCH=$batch DIRASCOPE_BENCH_SLIDE=none bench model_throughput -- "$dir" | sed 's/^tract /avx2-columns /')
fi
ort=$("$py" training/ort_bench.py "$dir" --batch "$batch" --threads 1 2 | grep "^onnxruntime")
echo "$peak"; echo "$tract"; echo "$alone"; [[ -n "$avx2" ]] && echo "$avx2"; [[ -n "$columns" ]] && echo "$columns"; echo "$ort"
field() { awk -v key="$2" '{for(i=1;i<=NF;i++) if($i==key) print $(i-1)}' <<< "$1" | head -n 1; }
rate_at() { grep -E "$2 $3:" <<< "$1" | head -n 1; }
for t in 1 2; do
  a=$(field "$(rate_at "$tract" '^tract .* workers' $t)" tiles/s)
  b=$(field "$(rate_at "$ort" 'threads' $t)" tiles/s)
  awk -v a="$a" -v b="$b" -v t=$t 'BEGIN{printf "ratio tract/onnxruntime at %d thread(s): %.2f (%.1f vs %.1f tiles/s)\n", t, a/b, a, b}'
done
gmacs=$(field "$(grep '^fma peak' <<< "$peak")" G)
macs=$(awk '{for(i=1;i<=NF;i++) if($i=="M" && $(i+1)=="MACs/tile,") print $(i-1)}' <<< "$tract" | head -n 1)
decode=$(field "$(grep '^decode' <<< "$tract")" ms/tile)
t1=$(field "$(rate_at "$tract" '^tract .* workers' 1)" tiles/s)
a1=$(field "$(rate_at "$alone" '^tract-alone .* workers' 1)" tiles/s)
o1=$(field "$(rate_at "$ort" 'threads' 1)" tiles/s)
v1=""; [[ -n "$avx2" ]] && v1=$(field "$(rate_at "$avx2" '^avx2-kernel .* workers' 1)" tiles/s)
c1=""; [[ -n "$columns" ]] && c1=$(field "$(rate_at "$columns" '^avx2-columns .* workers' 1)" tiles/s)
g2=""; [[ -n "$avx2" ]] && g2=$(field "$(DIRASCOPE_STEM=avx2 bench fma_peak | grep '^fma peak')" G)
s1=$(field "$(rate_at "$tract" '^stream .* workers' 1)" tiles/s)
s2=$(field "$(rate_at "$tract" '^stream .* workers' 2)" tiles/s)
awk -v g="$gmacs" -v m="${macs%(}" -v d="${decode:-0}" -v t1="$t1" -v a1="${a1:-0}" -v o1="$o1" -v v1="${v1:-0}" -v c1="${c1:-0}" -v g2="${g2:-0}" -v s1="${s1:-0}" -v s2="${s2:-0}" 'BEGIN{
  m = m + 0; lim = g * 1e3 / m;
  printf "limit: %.1f M multiply-adds a tile / %.1f G/s one-core FMA peak = %.0f tiles/s a core for the model\n", m, g, lim;
  printf "fraction of that limit on one core: dirascope (stem kernel + tract) %.0f%% (%.1f tiles/s), tract alone %.0f%% (%.1f tiles/s), onnxruntime %.0f%% (%.1f tiles/s)\n", 100*t1/lim, t1, 100*a1/lim, a1, 100*o1/lim, o1;
  if (v1 > 0) printf "with the AVX2 kernel instead of the AVX-512 one: %.0f%% (%.1f tiles/s)\n", 100*v1/lim, v1;
  if (v1 > 0 && g2 > 0) printf "  the AVX2 kernel against the AVX2 one-core peak (%.1f G/s, limit %.0f tiles/s): %.0f%%\n", g2, g2 * 1e3 / m, 100*v1/(g2 * 1e3 / m);
  if (c1 > 0) printf "with the AVX2 column kernel alone, the later layers in tract (DIRASCOPE_STEM=avx2-columns): %.0f%% (%.1f tiles/s)\n", 100*c1/lim, c1;
  if (d > 0) {
    slim = 1 / (1/lim + d/1e3);
    printf "decode lower bound: %.3f ms a tile (read and resample, one thread); stream limit %.0f tiles/s a core\n", d, slim;
    printf "whole stream: %.1f tiles/s with 1 worker (%.0f%% of its limit), %.1f with 2 (%.2fx 1 worker)\n", s1, 100*s1/slim, s2, (s1 > 0 ? s2/s1 : 0);
  }
}'
DIRASCOPE_FMA_PEAK_G="$gmacs" bench model_layers -- "$dir"
"$py" training/ort_bench.py "$dir" --layers 300
