#!/usr/bin/env bash
# An experiment, not a candidate: does a short fine-tune on synth 1.9 phantoms (hair
# follicles as hidradenitis negatives) stop model 2 reading follicles as hidradenitis,
# and what does it cost elsewhere? From MODEL (default models/dirascope-v2), STEPS
# (default 800) of train.py on 48 synth 1.9 slides of every class (seeds
# 612000-612047, 4 x 3 mm at 1.0 um/px; registered in training/protocol.sh) with the
# real train parts as negatives, nothing else (none of model 2's implant sets: they
# are not rendered here), the rule copied from MODEL; HARD_NEGATIVE_WEIGHT=W samples
# the tiles MODEL gets wrong (over 0.5 for a finding they lack: here mostly follicles
# read as hidradenitis) W times as often; SEED: train.py's seed. Then scored:
#   - the follicle probe's 40 slide pairs (PROBE, training/follicle_probe.sh's OUT),
#     compared as the probe compares them;
#   - the protocol's calibration set (CAL, with CAL_LABELS; training/protocol.sh
#     render cal), calls under MODEL's rule and the DIRA-score gap;
#   - both real fixtures whole (calls; CMU-1's test-part tiles over 0.5).
# GEN=1.10 TRAIN_SEED=616000 OLD=1.9 NEW=1.10 runs the same experiment for synth 1.10's eccrine
# coils (48 synth 1.10 slides, seeds 616000-616047; PROBE the coil probe's OUT). Without CAL the
# calibration set is left out, and said so.
#
#   PROBE=DIR CAL=DIR CAL_LABELS=CSV training/follicle_finetune.sh WORK [STEPS] [MODEL] [BIN]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:?usage: training/follicle_finetune.sh WORK [STEPS] [MODEL] [BIN]}
STEPS=${2:-800}
MODEL=${3:-models/dirascope-v2}
B=${4:-target/release/dirascope}
PY=${PYTHON:-training/.venv/bin/python}
REAL=${REAL:-../shared/fixtures/real}
. training/common.sh
: "${PROBE:?PROBE: the OUT of training/follicle_probe.sh}"
GEN=${GEN:-1.9}
mkdir -p "$WORK"
[ -s "$WORK/train$GEN/labels.csv" ] || "$B" synth --generator "$GEN" --seed "${TRAIN_SEED:-612000}" --count 48 --mpp 1.0 \
    --width-mm 4 --height-mm 3 --tiles --tile-px 224 --tile-mpp 1.0 --out "$WORK/train$GEN" >/dev/null
[ -s "$WORK/model/model.toml" ] || "$PY" training/train.py --init "$MODEL" --train "$WORK/train$GEN" \
    --real-train-parts "$REAL/CMU-1-Small-Region.svs" "$REAL/skin-normal-10x-public-domain.jpg" \
    --real-repeat 30 --lab-augment --steps "$STEPS" --lr 5e-4 --pos-frac 0.01 \
    --pos-frac-for neutrophilic_eccrine_hidradenitis=0.1 psoriasiform=0.01 --arch slim-s2 --threads 2 \
    ${HARD_NEGATIVE_WEIGHT:+--hard-negative-weight "$HARD_NEGATIVE_WEIGHT"} ${SEED:+--seed "$SEED"} \
    --name dirascope-v2 --version "${VERSION:-2.16.0-follicle-experiment}" --rule-from "$MODEL" --out "$WORK/model"
M="$WORK/model"
echo "== probe (${OLD:-1.8} -> ${NEW:-1.9}) under the fine-tuned model"
follicle_probe_under "$B" "$M" "$PROBE" "$WORK" "${OLD:-1.8}" "${NEW:-1.9}"
if [ -z "${CAL:-}" ]; then
    echo "== no CAL: the calibration set left out"
    echo "== real fixtures, whole, and their test parts"
    real_fixtures_under "$B" "$M" "$REAL" "$WORK"
    exit 0
fi
: "${CAL_LABELS:?CAL_LABELS: the labels of the calibration set}"
[ -s "$WORK/cal/summary.csv" ] || "$B" score "$CAL"/*/ --model "$M" --out "$WORK/cal" >/dev/null
echo "== calibration set under $MODEL's rule"
"$PY" training/protocol_tables.py tables "$WORK/cal" "$CAL_LABELS" >"$WORK/cal-tables.md"
head -8 "$WORK/cal-tables.md"
"$PY" - "$WORK/cal/summary.csv" "$CAL_LABELS" <<'PY'
import csv, sys
lab = {r["slide_id"]: r["label"] for r in csv.DictReader(open(sys.argv[2]))}
rows = list(csv.DictReader(open(sys.argv[1])))
dira = [float(r["dira_score"]) for r in rows if lab[r["slide_id"]] == "dira"]
other = [float(r["dira_score"]) for r in rows if lab[r["slide_id"]] != "dira"]
print(f"DIRA-score gap: lowest DIRA {min(dira):.3f} - highest other {max(other):.3f} = {min(dira) - max(other):.3f}")
PY
echo "== real fixtures, whole, and their test parts"
real_fixtures_under "$B" "$M" "$REAL" "$WORK"
