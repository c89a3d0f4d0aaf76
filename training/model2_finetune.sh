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
#   EXTRA_TRAIN: more export names under DATA, e.g. "train3-implant-cmu train3-implant-pd", each weighted EXTRA_WEIGHT, default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
D=${1:?usage: training/model2_finetune.sh DATA OUT [STEPS] [INIT]}
OUT=${2:?usage: training/model2_finetune.sh DATA OUT [STEPS] [INIT]}
STEPS=${3:-1500}
INIT=${4:-models/dirascope-v2}
REAL=${REAL:-../shared/fixtures/real}
"$PY" training/train.py --init "$INIT" \
    --train "$D/train-mixed-1.0" "$D/train-dira-1.0" "$D/train-mixed-0.5" "$D/train-dira-0.5" \
        "$D/train-dira-0.25" "$D/train-tex-cmu" "$D/train-tex-pd" \
        "$D/train2-implant-cmu" "$D/train2-implant-pd" \
        ${EXTRA_TRAIN:+$(for e in $EXTRA_TRAIN; do printf '%s ' "$D/$e"; done)} \
    --export-weight train2-implant-cmu=3 train2-implant-pd=2 \
        ${EXTRA_TRAIN:+$(for e in $EXTRA_TRAIN; do printf '%s ' "$e=${EXTRA_WEIGHT:-2}"; done)} \
    --real-train-parts "$REAL/CMU-1-Small-Region.svs" "$REAL/skin-normal-10x-public-domain.jpg" \
    --real-repeat "${REAL_REPEAT:-30}" --lab-augment \
    --heldout "held-1.0=$D/held-mixed-1.0,$D/held-dira-1.0" \
        "held-0.5=$D/held-mixed-0.5,$D/held-dira-0.5" \
        "held-0.25=$D/held-mixed-0.25,$D/held-dira-0.25" \
        "implants=$D/held2-implant-cmu,$D/held2-implant-pd" \
        "implants-extra=$D/held2-implant-cmu-extra,$D/held2-implant-pd-extra" \
        "oodcal=$D/oodcal-mixed-1.0,$D/oodcal-dira-0.5,$D/oodcal-mixed-0.25,$D/oodcal-implant-cmu,$D/oodcal-implant-pd" \
    --ood --ood-taps=-1,3 --ood-threshold-from oodcal \
    --ood-heldout-desc "oodcal: synth 1.0 phantoms never trained on (seeds 914000-914203) at source MPP 1.0, 0.5 and 0.25 and lesions implanted into the real test parts (seeds 914600-915399; CMU-1 rows y >= 1484, PD columns x >= 1024)" \
    --steps "$STEPS" --lr 5e-4 --pos-frac 0.01 \
    --pos-frac-for neutrophilic_eccrine_hidradenitis=0.1 ${PSORIASIFORM_POS_FRAC:+psoriasiform=$PSORIASIFORM_POS_FRAC} \
    --arch slim-s2 --threads 2 \
    --name dirascope-v2 --version "${VERSION:-2.0.0}" --rule-from "$INIT" \
    --intended-use "research use only; trained on phantom slides and on lesions implanted into real normal skin; not a diagnostic device" \
    --out "$OUT"
