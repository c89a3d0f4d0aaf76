#!/usr/bin/env bash
# The annotation loop end to end, on phantoms, as a research group runs it on
# their own slides: slides + QuPath GeoJSON -> `dirascope tiles` -> a few seeded
# fine-tuning steps from the bundled model (CPU) -> export -> `dirascope model
# check` -> `dirascope score` with the new folder -> `dirascope validate
# --truth-geojson`. Phantoms stand in for the slides, and `synth` writes their
# truth as the QuPath GeoJSON a pathologist would export.
#
#   training/loop_test.sh [WORK_DIR]
#
# Needs a built binary (cargo build; DIRASCOPE=path overrides) and Python with
# training/requirements.txt (PYTHON=path overrides). CI runs the Rust part of the
# loop only (tests/annotations_loop.rs); PyTorch is too large for every CI run.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${DIRASCOPE:-target/debug/dirascope}
PY=${PYTHON:-python3}
WORK=${1:-$(mktemp -d)}
MAPPING=fixtures/annotations/phantom-mapping.toml
mkdir -p "$WORK"
echo "work folder: $WORK"

step() {
    local name=$1
    shift
    local start=$SECONDS
    echo "== $name: $*"
    "$@"
    echo "== $name took $((SECONDS - start)) s"
}

# 1. Slides with annotations: 4 for training, 2 held out (seeds unused elsewhere).
step synth-train "$BIN" synth --count 4 --seed 880000 --width-mm 1.5 --height-mm 1.2 --out "$WORK/train"
step synth-heldout "$BIN" synth --count 2 --seed 880100 --width-mm 1.5 --height-mm 1.2 --out "$WORK/heldout"
ls "$WORK/train"/*.geojson

# 2. Labelled tiles at the model's MPP and tile size.
step tiles "$BIN" tiles --slides "$WORK/train" --annotations "$WORK/train" --mapping "$MAPPING" \
    --out "$WORK/data" --threads 2
step tiles-heldout "$BIN" tiles --slides "$WORK/heldout" --annotations "$WORK/heldout" \
    --mapping "$MAPPING" --out "$WORK/data-heldout" --threads 2
head -3 "$WORK/data/labels.csv"

# 3. A few seeded fine-tuning steps from the bundled model's checkpoint, export.
step train "$PY" training/train.py --train "$WORK/data" --heldout "$WORK/data-heldout" \
    --init models/dirascope-phantom-v1 --steps 6 --batch 8 --lr 3e-4 --threads 2 --seed 1 \
    --name dirascope-loop-test --version 0.0.1 --out "$WORK/model"

# 4. The new folder passes the product's own checks, then scores slides.
step model-check "$BIN" model check "$WORK/model"
step score "$BIN" score "$WORK/heldout" --model "$WORK/model" --out "$WORK/scored" --threads 2

# 5. Tile AUROCs against the annotations (slide labels from the set's manifest).
{ echo "slide_id,label"; tail -n +2 "$WORK/heldout/manifest.csv" | cut -d, -f1,3; } > "$WORK/labels.csv"
step validate "$BIN" validate --results "$WORK/scored" --labels "$WORK/labels.csv" \
    --truth-geojson "$WORK/heldout" --mapping "$MAPPING" --resamples 200 --out "$WORK/validation"
echo "loop finished in $SECONDS s"
