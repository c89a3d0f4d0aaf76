#!/usr/bin/env bash
# What synth 1.13's knife lines do to a model: only a fifth of slides have them, so
# training/follicle_probe.sh's consecutive seeds hold few (3 of its 40 at SEED=619000).
# This picks, for each class, the first N seeds from SEED + 100 * class index that have
# knife lines (read from truth.json of a tiny render: whether a slide has them does not
# depend on its size), renders each 3 x 3 mm at 0.5 um/px with synth 1.12 and 1.13 into
# OUT/g1.12 and OUT/g1.13, and hands them to follicle_probe.sh (scores and comparison).
#
#   training/knife_probe.sh OUT [BIN] [MODEL]      (N default 5, SEED default 620000;
#                                                   seeds 620000-620399 registered in protocol.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: training/knife_probe.sh OUT [BIN] [MODEL]}
B=${2:-target/release/dirascope}
MODEL=${3:-models/dirascope-v2}
N=${N:-5}
SEED=${SEED:-620000}
mkdir -p "$OUT"
i=0
for class in dira pustular-psoriasis psoriasis normal; do
    first=$((SEED + 100 * i))
    i=$((i + 1))
    [ -e "$OUT/g1.13/$class.done" ] && [ -e "$OUT/g1.12/$class.done" ] && continue
    seek="$OUT/seek-$class"
    rm -rf "$seek"
    "$B" synth --class "$class" --seed "$first" --count 40 --mpp 8 --width-mm 3 --height-mm 3 --out "$seek" >/dev/null
    seeds=$(grep -l knife_lines "$seek"/*.truth.json | sed 's/.*-\([0-9]*\)\.truth\.json/\1/' | sort -n | head -n "$N")
    rm -rf "$seek"
    echo "$class: seeds with knife lines $(echo $seeds)"
    for gen in 1.12 1.13; do
        for s in $seeds; do
            "$B" synth --generator "$gen" --class "$class" --seed "$s" --mpp 0.5 --width-mm 3 --height-mm 3 \
                --out "$OUT/g$gen" >/dev/null
        done
        touch "$OUT/g$gen/$class.done"
    done
done
OLD=1.12 NEW=1.13 training/follicle_probe.sh "$OUT" "$B" "$MODEL"
