#!/usr/bin/env bash
# Model 2, stage 3: fine-tunes a model folder (default models/dirascope-v2, the
# stage-2 candidate) on the synth 1.0 phantoms, the textured phantoms and the
# lesions implanted into the real train parts in the newer implant look
# (model2_data.sh train2), with the real train parts as negatives; evaluates on
# held-out phantoms and implants (held, held2) and sets the OOD threshold on the
# oodcal sets only, so the OOD rates reported on the held-out sets are not
# measured on the tiles the threshold was set on.
#
#   training/model2_finetune.sh DATA OUT [STEPS] [INIT]     (env REAL_REPEAT, default 30; PSORIASIFORM_POS_FRAC, default 0.01; VERSION;
#   OOD_DESC: the [ood] held-out description when the oodcal sets differ from the default (OOD_SYNTH: the generator
#   that rendered them, default 1.9, the default generator 2026-12-06 to 2026-12-07 (2.16.0-2.20.0's sets; say OOD_SYNTH=1.10
#   for sets rendered by the default since); 2.2.0-2.15.0 had synth 1.0 or 1.4 sets);
#   EXTRA_TRAIN: more export names under DATA, e.g. "train3-implant-cmu train3-implant-pd", each weighted EXTRA_WEIGHT, default 2,
#   or NAME=W for a weight of its own, e.g. "train5-dira=1 train10-fol-1.0=4";
#   HEAD_POOL: train.py --head-pool, e.g. lse:2 to turn INIT's average-pooled head into a log-mean-exp one;
#   THREADS: torch threads, default 2; HARD_NEGATIVE_WEIGHT: train.py --hard-negative-weight;
#   REAL_CROPS: train.py --real-crops, random crops per real train part instead of the grid x REAL_REPEAT;
#   SEED: train.py --seed, default 1, for replicates of one recipe;
#   IMPLANT_WEIGHTS: the train2 implant sets' weights, default "train2-implant-cmu=3 train2-implant-pd=2";
#   RULE_FROM: the model folder whose [output] views, [aggregation], [rule] and [stain] tables the new folder
#   starts from, default INIT; the bundled one when INIT is an older folder, as for 2.19.0 and 2.20.0)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
D=${1:?usage: training/model2_finetune.sh DATA OUT [STEPS] [INIT]}
OUT=${2:?usage: training/model2_finetune.sh DATA OUT [STEPS] [INIT]}
STEPS=${3:-1500}
INIT=${4:-models/dirascope-v2}
REAL=${REAL:-../shared/fixtures/real}
# Phantom sets model2_data.sh skipped (SKIP) are left out, and said so.
PHANTOMS=()
for e in train-mixed-1.0 train-dira-1.0 train-mixed-0.5 train-dira-0.5 train-dira-0.25 \
    train-tex-cmu train-tex-pd; do
    if [ -s "$D/$e/labels.csv" ]; then PHANTOMS+=("$D/$e"); else echo "model2_finetune: $D/$e not rendered, left out" >&2; fi
done
. training/common.sh
"$PY" training/train.py --init "$INIT" \
    --train "${PHANTOMS[@]}" \
        "$D/train2-implant-cmu" "$D/train2-implant-pd" \
        ${EXTRA_TRAIN:+$(for e in $EXTRA_TRAIN; do printf '%s ' "$D/${e%%=*}"; done)} \
    --export-weight ${IMPLANT_WEIGHTS:-train2-implant-cmu=3 train2-implant-pd=2} \
        ${EXTRA_TRAIN:+$(for e in $EXTRA_TRAIN; do [[ $e == *=* ]] || e="$e=${EXTRA_WEIGHT:-2}"; printf '%s ' "$e"; done)} \
    --real-train-parts "$REAL/CMU-1-Small-Region.svs" "$REAL/skin-normal-10x-public-domain.jpg" \
    --real-repeat "${REAL_REPEAT:-30}" ${REAL_CROPS:+--real-crops "$REAL_CROPS"} --lab-augment \
    --heldout $(held_sets "$D" held-1.0 held-mixed-1.0 held-dira-1.0) \
        $(held_sets "$D" held-0.5 held-mixed-0.5 held-dira-0.5) \
        $(held_sets "$D" held-0.25 held-mixed-0.25 held-dira-0.25) \
        $(held_sets "$D" implants held2-implant-cmu held2-implant-pd) \
        $(held_sets "$D" implants-extra held2-implant-cmu-extra held2-implant-pd-extra) \
        $(held_sets "$D" oodcal oodcal-mixed-1.0 oodcal-dira-0.5 oodcal-mixed-0.25 oodcal-implant-cmu oodcal-implant-pd) \
    --ood --ood-taps=-1,3 --ood-threshold-from oodcal \
    --ood-heldout-desc "${OOD_DESC:-oodcal: phantoms never trained on (model2_data.sh oodcal, synth ${OOD_SYNTH:-1.9}: seeds 914000-914003 at source MPP 1.0, 914100-914103 at 0.5, 914200-914203 at 0.25) and lesions implanted into the real test parts (seeds 914600-915399; CMU-1 rows y >= 1484, PD columns x >= 1024)}" \
    ${HARD_NEGATIVE_WEIGHT:+--hard-negative-weight "$HARD_NEGATIVE_WEIGHT"} \
    --steps "$STEPS" --lr 5e-4 --pos-frac 0.01 ${SEED:+--seed "$SEED"} \
    --pos-frac-for neutrophilic_eccrine_hidradenitis=0.1 ${PSORIASIFORM_POS_FRAC:+psoriasiform=$PSORIASIFORM_POS_FRAC} \
    --arch slim-s2 ${HEAD_POOL:+--head-pool "$HEAD_POOL"} --threads "${THREADS:-2}" \
    --name dirascope-v2 --version "${VERSION:-2.0.0}" --rule-from "${RULE_FROM:-$INIT}" \
    --intended-use "research use only; trained on phantom slides and on lesions implanted into real normal skin; not a diagnostic device" \
    --out "$OUT"
