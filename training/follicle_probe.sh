#!/usr/bin/env bash
# What hair follicles and sebaceous glands (synth 1.9) do to a model that never saw
# them: the same seeds rendered by synth 1.8 (no follicles) and 1.9 (1.8's pixels
# plus follicles: nothing else changes, unit test
# synth_1_9_adds_follicles_and_sebaceous_glands_and_changes_nothing_else), both
# scored, and compared tile by tile and slide by slide (follicle_probe.py).
#
#   training/follicle_probe.sh OUT [BIN] [MODEL]
#
# Seeds SEED + 100 * class index + 0..N-1 (SEED default 610000, N=${N:-10} a class;
# registered in training/protocol.sh; SEED=995000 is val13's follicle stratum),
# SIZE_MM x SIZE_MM (default 3) at 0.5 um/px. RENDER_ONLY=1 stops after rendering (a
# validation stratum rendered ahead of its scoring). OLD and NEW (default 1.8 and 1.9)
# probe another generator step that redraws one structure the same way: OLD=1.9
# NEW=1.10 SEED=614000 for synth 1.10's eccrine coils (seeds 614000-614399), OLD=1.10
# NEW=1.11 SEED=618000 for synth 1.11's vessels (seeds 618000-618399), OLD=1.11 NEW=1.12
# SEED=619000 for synth 1.12's cells round vessels (seeds 619000-619399), OLD=1.12 NEW=1.13
# for synth 1.13's knife lines on the 619000 seeds (3 of 40 have them; training/knife_probe.sh
# picks 20 that do from 620000-620399 and calls this script on them).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: training/follicle_probe.sh OUT [BIN] [MODEL]}
B=${2:-target/release/dirascope}
MODEL=${3:-models/dirascope-v2}
PY=${PYTHON:-training/.venv/bin/python}
N=${N:-10}
SIZE=${SIZE_MM:-3}
SEED=${SEED:-610000}
OLD=${OLD:-1.8}
NEW=${NEW:-1.9}
mkdir -p "$OUT"
i=0
for class in dira pustular-psoriasis psoriasis normal; do
    for gen in $OLD $NEW; do
        [ -e "$OUT/g$gen/$class.done" ] && continue
        "$B" synth --generator "$gen" --class "$class" --seed $((SEED + 100 * i)) --count "$N" \
            --mpp 0.5 --width-mm "$SIZE" --height-mm "$SIZE" --out "$OUT/g$gen" >/dev/null
        touch "$OUT/g$gen/$class.done"
    done
    i=$((i + 1))
done
[ -n "${RENDER_ONLY:-}" ] && exit 0
for gen in $OLD $NEW; do
    [ -e "$OUT/s$gen/summary.csv" ] || "$B" score "$OUT/g$gen" --model "$MODEL" --out "$OUT/s$gen" >/dev/null
done
"$PY" training/follicle_probe.py "$OUT" "$MODEL" "$OLD" "$NEW"
