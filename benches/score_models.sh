#!/usr/bin/env bash
# Two model folders on the same slide, same build, same threads, side by side:
# `dirascope score SLIDE --model A` and `--model B` alternate REPS times (A B A B
# ...), so load on this shared machine falls on both; prints each run's wall time,
# the medians and the ratio B / A. The slide is the speed issue's benchmark phantom
# (benches/score_compare.sh: a DIRA phantom at 0.5 um/px, JPEG tiles; MM mm square,
# default 6 to keep the run short; 15 is score_compare's), generated once and cached.
#
#   benches/score_models.sh MODEL_A MODEL_B
# env: DIRASCOPE_COMPARE_DIR (default target/score-compare), MM (6), SEED (7),
#      THREADS (2), REPS (3), BIN (default: builds and uses target/release/dirascope),
#      B_ARGS (more `score` arguments for B's runs only: the same model twice with
#      B_ARGS=--normalise-stain measures what stain normalisation costs)
set -euo pipefail
cd "$(dirname "$0")/.."
a=${1:?usage: benches/score_models.sh MODEL_A MODEL_B}
b=${2:?usage: benches/score_models.sh MODEL_A MODEL_B}
dir=${DIRASCOPE_COMPARE_DIR:-target/score-compare}
mm=${MM:-6}
seed=${SEED:-7}
threads=${THREADS:-2}
reps=${REPS:-3}
if [[ -z ${BIN:-} ]]; then
    cargo build --release --bin dirascope 2>&1 | tail -n 1
    BIN=target/release/dirascope
fi
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), threads $threads"
slides="$dir/slides-${mm}mm"
slide="$slides/dira-$seed.tiff"
if [[ ! -f $slide ]]; then
    "$BIN" synth --class dira --seed "$seed" --mpp 0.5 --width-mm "$mm" --height-mm "$mm" \
        --out "$slides" > /dev/null
fi
run() { # model [score args...] -> wall seconds of one score run (fresh OUT)
    local out model=$1
    shift
    out=$(mktemp -d)
    local start end
    start=$(date +%s.%N)
    "$BIN" score "$slide" --model "$model" --out "$out" --threads "$threads" --quiet "$@" > /dev/null
    end=$(date +%s.%N)
    rm -rf "$out"
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }'
}
median() { tr ' ' '\n' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
cat "$slide" > /dev/null
ta=() tb=()
for i in $(seq 1 "$reps"); do
    ta+=("$(run "$a")")
    # shellcheck disable=SC2086 # B_ARGS is a list of arguments
    tb+=("$(run "$b" ${B_ARGS:-})")
    echo "rep $i: A ${ta[-1]} s, B ${tb[-1]} s"
done
ma=$(echo "${ta[*]}" | median)
mb=$(echo "${tb[*]}" | median)
echo "slide $slide (${mm} x ${mm} mm)"
echo "A $a: median $ma s"
echo "B $b ${B_ARGS:-}: median $mb s"
awk -v a="$ma" -v b="$mb" 'BEGIN { printf "ratio B / A = %.2f\n", b / a }'
