#!/usr/bin/env bash
# Go/no-go checks of a fine-tuned model 2 candidate, run before its validation set is
# rendered (the criteria are written beforehand: protocol/predeclared-2.16.0.md):
#   1. the pool (the protocol sets a rule is fitted on) scored with CAND, thresholds refitted
#      by `dirascope calibrate` into WORK/model, the pool's calls under them;
#   2-3. held-out tile AUROCs of BASE and WORK/model on the same tile sets (onnxruntime);
#   4. the follicle probe's slides (training/follicle_probe.sh OUT) under WORK/model;
#   5. both real fixtures whole, and their test parts' tiles over 0.5.
#
#   POOL="cal val7 val8 val9 val10" P=PROTOCOL_DATA D=MODEL2_DATA PROBE=PROBE_OUT VERSION=2.16.0 \
#       training/candidate_check.sh CAND BASE WORK
#
# P holds the rendered pool sets (training/protocol.sh render) and their SET-labels.csv; D the
# model2_data.sh sets (held2, oodcal); CAND a model folder from model2_finetune.sh.
# PSORIASIFORM_CHECK_FRAC: the mask cover from which a tile is a psoriasiform positive in
# checks 2-3 (tiles with less, but some, left out); default 0.01, as every declaration up
# to 2.23.0 wrote; 0.1 from predeclared-2.24.0.md on, the cover training labels use.
set -euo pipefail
cd "$(dirname "$0")/.."
CAND=${1:?usage: training/candidate_check.sh CAND BASE WORK}
BASE=${2:?usage: training/candidate_check.sh CAND BASE WORK}
WORK=${3:?usage: training/candidate_check.sh CAND BASE WORK}
B=${B:-target/release/dirascope}
PY=${PYTHON:-training/.venv/bin/python}
REAL=${REAL:-../shared/fixtures/real}
. training/common.sh
: "${P:?P: the protocol data folder}" "${D:?D: the model2_data.sh folder}" "${PROBE:?PROBE: the follicle probe OUT}"
POOL=${POOL:-cal val7 val8 val9 val10}
mkdir -p "$WORK/pool"

echo "== 1. pool ($POOL) scored with $CAND, thresholds refitted"
runs=()
: >"$WORK/pool-labels.csv"
for s in $POOL; do
    [ -s "$WORK/pool/$s/summary.csv" ] || "$B" score "$P/$s"/*/ --model "$CAND" --out "$WORK/pool/$s" --threads 2 >/dev/null
    runs+=("$WORK/pool/$s")
    if [ -s "$WORK/pool-labels.csv" ]; then tail -n +2 "$P/$s-labels.csv"; else cat "$P/$s-labels.csv"; fi >>"$WORK/pool-labels.csv"
done
rm -rf "$WORK/pool-all"
"$B" merge "${runs[@]}" --out "$WORK/pool-all" >/dev/null
if [ ! -s "$WORK/model/model.toml" ]; then
    rm -rf "$WORK/model"
    "$B" calibrate --results "$WORK/pool-all" --labels "$WORK/pool-labels.csv" --model "$CAND" --out "$WORK/model" \
        --target-sensitivity 0.95 --target-specificity 1.0 ${VERSION:+--version "$VERSION"}
fi
"$B" recall "$WORK/pool-all" --model "$WORK/model" >/dev/null
"$PY" training/protocol_tables.py tables "$WORK/pool-all" "$WORK/pool-labels.csv" | awk "NR <= 12"
grep -E "^(dira_threshold|psoriasiform_threshold|no_call_margin) " "$WORK/model/model.toml"

echo "== 2-3. held-out tiles: $BASE against the candidate"
"$PY" training/eval_heldout.py "$BASE" "$WORK/model" \
    --heldout $(held_sets "$D" implants held2-implant-cmu held2-implant-pd) \
        $(held_sets "$D" implants-extra held2-implant-cmu-extra held2-implant-pd-extra) \
        $(held_sets "$D" oodcal oodcal-mixed-1.0 oodcal-dira-0.5 oodcal-mixed-0.25 oodcal-implant-cmu oodcal-implant-pd) \
    --pos-frac-for neutrophilic_eccrine_hidradenitis=0.1 psoriasiform=${PSORIASIFORM_CHECK_FRAC:-0.01} --json "$WORK/heldout.json"

echo "== 4. follicle probe ($PROBE) under the candidate"
follicle_probe_under "$B" "$WORK/model" "$PROBE" "$WORK"

echo "== 5. real fixtures, whole, and their test parts"
real_fixtures_under "$B" "$WORK/model" "$REAL" "$WORK"
