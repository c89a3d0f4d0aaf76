#!/usr/bin/env bash
# tract (cargo bench model_throughput) and onnxruntime (training/ort_bench.py)
# on the same model folder, parity tiles, batch size and thread counts, in
# one run; prints the tract/onnxruntime ratio per thread count.
#   benches/model_compare.sh [MODEL_DIR] [--profile dev]
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-models/dirascope-phantom-v1}"
profile="${2:-}"; shift $(( $# > 1 ? 2 : $# )) || true
batch="${DIRASCOPE_BENCH_BATCH:-1}" # dirascope scores one tile per run (model::DEFAULT_BATCH)
py="${PYTHON:-training/.venv/bin/python}"
tract=$(DIRASCOPE_BENCH_BATCH=$batch cargo bench ${profile:+--profile ${profile#--profile }} --bench model_throughput -- "$dir" 2>/dev/null | grep '^tract')
ort=$("$py" training/ort_bench.py "$dir" --batch "$batch" --threads 1 2 | grep "^onnxruntime")
echo "$tract"; echo "$ort"
for t in 1 2; do
  a=$(echo "$tract" | awk -v t=$t '$0 ~ "workers "t":" {for(i=1;i<=NF;i++) if($i=="tiles/s") print $(i-1)}')
  b=$(echo "$ort" | awk -v t=$t '$0 ~ "threads "t":" {for(i=1;i<=NF;i++) if($i=="tiles/s") print $(i-1)}')
  awk -v a="$a" -v b="$b" -v t=$t 'BEGIN{printf "ratio tract/onnxruntime at %d thread(s): %.2f (%.1f vs %.1f tiles/s)\n", t, a/b, a, b}'
done
