#!/usr/bin/env bash
# What synth 1.14's hidradenitis masks (within 35 um of an inflamed coil's tubules,
# not its whole disc) change in the tile labels, and how MODEL scores the tiles:
# renders N DIRA seeds from SEED (default 614000, check 6's coil-probe seeds,
# registered in training/protocol.sh) by OLD (1.13) and NEW (1.14), 3 x 3 mm at 0.5
# um/px, scores both and compares (training/hidradenitis_labels.py).
#
#   training/hidradenitis_labels.sh OUT [BIN] [MODEL]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: training/hidradenitis_labels.sh OUT [BIN] [MODEL]}
B=${2:-target/release/dirascope}
MODEL=${3:-models/dirascope-v2}
PY=${PYTHON:-training/.venv/bin/python}
OLD=${OLD:-1.13}
NEW=${NEW:-1.14}
for gen in $OLD $NEW; do
    if [ ! -e "$OUT/g$gen/dira.done" ]; then
        "$B" synth --generator "$gen" --class dira --seed "${SEED:-614000}" --count "${N:-10}" \
            --mpp 0.5 --width-mm 3 --height-mm 3 --out "$OUT/g$gen" >/dev/null
        touch "$OUT/g$gen/dira.done"
    fi
    [ -e "$OUT/s$gen/summary.csv" ] || "$B" score "$OUT/g$gen" --model "$MODEL" --out "$OUT/s$gen" >/dev/null
done
"$PY" training/hidradenitis_labels.py "$OUT" "$OLD" "$NEW"
