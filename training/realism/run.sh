#!/usr/bin/env bash
# Judges one generator: renders the phantoms (train seeds 100..111, eval seeds
# 900..905, mixed classes, 2 x 1.5 mm at 0.5 um/px as pyramidal TIFF with the
# slide's own JPEG quality), then trains and evaluates the frozen judge.
#   training/realism/run.sh GENERATOR OUTDIR [BIN]
# e.g. training/realism/run.sh 0.3 /tmp/realism-0.3
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
if [ ! -e "$out/eval/manifest.csv" ]; then
    "$bin" synth --generator "$gen" ${SYNTH_ARGS:-} --seed 900 --count 6 --mpp 0.5 --width-mm 2 --height-mm 1.5 --out "$out/eval"
fi
"$py" "$here/judge.py" --train-phantoms "$out/train" --eval-phantoms "$out/eval" --json "$out/judge.json"
