#!/usr/bin/env bash
# Judges one generator: renders the phantoms (train seeds 100..111, eval seeds
# 900..905, mixed classes, 2 x 1.5 mm at 0.5 um/px as pyramidal TIFF with the
# slide's own JPEG quality), then trains and evaluates the frozen judge.
#   training/realism/run.sh GENERATOR OUTDIR [BIN]
# e.g. training/realism/run.sh 0.3 /tmp/realism-0.3
# SELECT=1 judges for choosing between variants without the real test parts (below).
# SYNTH_ARGS adds synth options, e.g. leave-one-image-out texture:
#   SYNTH_ARGS="--texture-from ../shared/fixtures/real/CMU-1-Small-Region.svs" \
#       training/realism/run.sh 1.0 /tmp/realism-tex-cmu
set -euo pipefail
gen=${1:?generator (0.3 or 1.0)}
out=${2:?output folder}
bin=${3:-target/debug/dirascope}
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-$here/../.venv/bin/python}
mkdir -p "$out"
if [ ! -e "$out/train/manifest.csv" ]; then
    "$bin" synth --generator "$gen" ${SYNTH_ARGS:-} --seed 100 --count 12 --mpp 0.5 --width-mm 2 --height-mm 1.5 --out "$out/train"
fi
# SELECT=1: the judge for choosing between variants (judge.py --select: real crops
# from the train parts only), against phantoms of tuning seeds 800-805.
if [ -n "${SELECT:-}" ]; then
    eval_seed=800 eval_dir="$out/select" select=--select json="$out/judge-select.json"
else
    eval_seed=900 eval_dir="$out/eval" select= json="$out/judge.json"
fi
if [ ! -e "$eval_dir/manifest.csv" ]; then
    "$bin" synth --generator "$gen" ${SYNTH_ARGS:-} --seed "$eval_seed" --count 6 --mpp 0.5 --width-mm 2 --height-mm 1.5 --out "$eval_dir"
fi
"$py" "$here/judge.py" --train-phantoms "$out/train" --eval-phantoms "$eval_dir" $select --json "$json"
