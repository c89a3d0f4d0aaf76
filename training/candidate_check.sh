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
set -euo pipefail
cd "$(dirname "$0")/.."
CAND=${1:?usage: training/candidate_check.sh CAND BASE WORK}
BASE=${2:?usage: training/candidate_check.sh CAND BASE WORK}
WORK=${3:?usage: training/candidate_check.sh CAND BASE WORK}
B=${B:-target/release/dirascope}
PY=${PYTHON:-training/.venv/bin/python}
REAL=${REAL:-../shared/fixtures/real}
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
held() { # NAME=DIR,DIR of the rendered sets only
    local name=$1 dirs=() e
    shift
    for e in "$@"; do [ -s "$D/$e/labels.csv" ] && dirs+=("$D/$e"); done
    [ ${#dirs[@]} -gt 0 ] && (IFS=,; echo "$name=${dirs[*]}")
}
"$PY" training/eval_heldout.py "$BASE" "$WORK/model" \
    --heldout $(held implants held2-implant-cmu held2-implant-pd) \
        $(held implants-extra held2-implant-cmu-extra held2-implant-pd-extra) \
        $(held oodcal oodcal-mixed-1.0 oodcal-dira-0.5 oodcal-mixed-0.25 oodcal-implant-cmu oodcal-implant-pd) \
    --pos-frac-for neutrophilic_eccrine_hidradenitis=0.1 psoriasiform=0.01 --json "$WORK/heldout.json"

echo "== 4. follicle probe ($PROBE) under the candidate"
mkdir -p "$WORK/probe"
for g in 1.8 1.9; do
    ln -sfn "$(realpath "$PROBE/g$g")" "$WORK/probe/g$g"
    [ -s "$WORK/probe/s$g/summary.csv" ] || "$B" score "$PROBE/g$g" --model "$WORK/model" --out "$WORK/probe/s$g" >/dev/null
done
"$PY" training/follicle_probe.py "$WORK/probe" "$WORK/model"

echo "== 5. real fixtures, whole, and their test parts"
[ -s "$WORK/cmu/summary.csv" ] || "$B" score "$REAL/CMU-1-Small-Region.svs" --model "$WORK/model" --out "$WORK/cmu" >/dev/null
[ -s "$WORK/pd/summary.csv" ] || "$B" score "$REAL/skin-normal-10x-public-domain.jpg" --mpp 0.75 --model "$WORK/model" --out "$WORK/pd" >/dev/null
"$PY" - "$WORK/cmu" "$WORK/pd" <<'PY'
import csv, sys
from pathlib import Path

FINDINGS = ["subcorneal_pustule", "acantholysis", "neutrophilic_eccrine_hidradenitis", "psoriasiform"]
# The test parts of training/real_split.toml: CMU-1 rows y >= 1484, PD columns x >= 1024 (level 0).
TEST = [lambda r: int(r["y"]) + int(r["height"]) / 2 >= 1484, lambda r: int(r["x"]) + int(r["width"]) / 2 >= 1024]
for run, in_test in zip(sys.argv[1:], TEST):
    s = next(csv.DictReader(open(Path(run) / "summary.csv")))
    print(f"{s['slide_id']}: {s['call']} (DIRA {float(s['dira_score']):.3f}, psoriasiform {float(s['psoriasiform_score']):.3f})")
    slide = next(p for p in Path(run).iterdir() if p.is_dir())
    tiles = [r for r in csv.DictReader(open(slide / "tiles.csv")) if in_test(r)]
    rates = ", ".join(f"{f} {sum(float(r[f]) > 0.5 for r in tiles) / max(len(tiles), 1):.1%}" for f in FINDINGS)
    print(f"  test part ({len(tiles)} tiles) over 0.5: {rates}")
PY
