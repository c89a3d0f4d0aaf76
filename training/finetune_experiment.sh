#!/usr/bin/env bash
# The fine-tuning experiment of the annotation issue: tiles of 8 phantom slides
# re-stained in a style absent from all training data (training/restain.py),
# fine-tuned from the bundled model's checkpoint, evaluated on 8 held-out
# slides of that style before and after, with the AUROC gain's 95% interval
# from resampling held-out slides (training/finetune_gain.py).
#
#   training/finetune_experiment.sh [WORK_DIR] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${DIRASCOPE:-target/debug/dirascope}
PY=${PYTHON:-python3}
WORK=${1:-$(mktemp -d)}
STEPS=${2:-150}
POS="--pos-frac 0.01 --pos-frac-for neutrophilic_eccrine_hidradenitis=0.1"
mkdir -p "$WORK"
start=$SECONDS
[ -f "$WORK/train-src/labels.csv" ] || "$BIN" synth --count 8 --seed 970000 --width-mm 2 --height-mm 1.5 \
    --tiles --tile-px 224 --tile-mpp 1.0 --out "$WORK/train-src"
[ -f "$WORK/held-src/labels.csv" ] || "$BIN" synth --count 8 --seed 970100 --width-mm 2 --height-mm 1.5 \
    --tiles --tile-px 224 --tile-mpp 1.0 --out "$WORK/held-src"
echo "synth: $((SECONDS - start)) s"
[ -f "$WORK/train/labels.csv" ] || "$PY" training/restain.py "$WORK/train-src" "$WORK/train"
[ -f "$WORK/held/labels.csv" ] || "$PY" training/restain.py "$WORK/held-src" "$WORK/held"
echo "restain: $((SECONDS - start)) s"
# shellcheck disable=SC2086
[ -f "$WORK/before/model.onnx" ] || "$PY" training/train.py --init models/dirascope-phantom-v1 --steps 0 $POS --threads 2 \
    --train "$WORK/train" --heldout "styled=$WORK/held" --name ft-before --out "$WORK/before"
# shellcheck disable=SC2086
"$PY" training/train.py --init models/dirascope-phantom-v1 --steps "$STEPS" --batch 32 --lr 1e-3 $POS \
    --threads 2 --seed 1 --train "$WORK/train" --heldout "styled=$WORK/held" --name ft-after --out "$WORK/after"
echo "train: $((SECONDS - start)) s"
# shellcheck disable=SC2086
"$PY" training/finetune_gain.py --before /tmp/ft-before.heldout-probs.npz --after /tmp/ft-after.heldout-probs.npz \
    --set styled --heldout "$WORK/held" $POS --json "$WORK/gain.json"
"$BIN" model check "$WORK/after" | tail -3
echo "experiment finished in $((SECONDS - start)) s"
