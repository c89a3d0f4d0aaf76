#!/usr/bin/env bash
# The slide-call validation protocol (issue 12): phantom sets stratified by biopsy
# size, source MPP, class, DIRA variant and artefact; calibration and validation
# disjoint by seed; the rule fitted on calibration only, validation run once.
#
#   training/protocol.sh render SET      # synth every stratum of SET into $DATA/SET
#   training/protocol.sh score SET       # dirascope score -> $DATA/SET-scored, labels.csv
#   training/protocol.sh calibrate       # dirascope calibrate on cal -> $DATA/model-cal
#   training/protocol.sh validate SET    # recall SET under $DATA/model-cal, validate, tables
#   training/protocol.sh all             # render+score cal and val, calibrate, validate val
#
# SET is one of:
#   cal      seeds 800000-809999  (calibration: the rule is chosen here only)
#   val      seeds 810000-819999  (validation: run once, after the rule is fixed)
#   val2     seeds 820000-829999  (RESERVED for model 2's validation: do not render
#                                  or look at it before model 2 and its rule exist)
#   val3     seeds 830000-839999  (model 2.3's validation, synth 1.1: val2 was
#                                  spent on 2.2.0; never run, 2.3.0 was dropped)
#   val4     seeds 840000-849999  (synth 1.2; spent 2026-12-04 on the log-mean-exp
#                                  candidate with hard negatives, not shipped:
#                                  models/dirascope-v2/MODEL_CARD.md)
#   val5     seeds 850000-859999  (synth 1.2; spent 2026-12-04 on 2.6.0, the
#                                  acantholysis-from-the-edge rule: MODEL_CARD.md)
#   val6     seeds 860000-869999  (synth 1.2; spent 2026-12-05 on 2.7.0, two views
#                                  of each tile: MODEL_CARD.md)
#   val7     seeds 870000-879999  (synth 1.4; spent 2026-12-05 on 2.9.0, fine-tuned
#                                  on synth 1.4: MODEL_CARD.md)
#   val8     seeds 890000-899999  (synth 1.4; spent 2026-12-05 on rule 2.10.0,
#                                  2.9.0's weights with acantholysis from its best
#                                  tile, not shipped: MODEL_CARD.md)
#   val9     seeds 930000-939999  (synth 1.4; spent 2026-12-05 on 2.12.0, 2.9.0
#                                  fine-tuned with fold, pen and DIRA phantoms: MODEL_CARD.md)
#   val10    seeds 940000-949999  (synth 1.4; spent 2026-12-05: candidate t10 not
#                                  shipped (DIRA 11/13), so it is 2.12.0's
#                                  validation: MODEL_CARD.md)
#   val11    seeds 960000-969999  (synth 1.4; spent 2026-12-06 on 2.15.0, 2.12.0's
#                                  weights with a rule refitted on cal and val7-val10:
#                                  MODEL_CARD.md)
#   val12    seeds 980000-989999  (synth 1.4, SCALE=1, all 12 strata; spent 2026-12-06
#                                  on 2.15.0 once more, at the protocol's full scale:
#                                  models/dirascope-v2/protocol/predeclared-val12.md)
#   val13    seeds 990000-999999  (synth 1.4, SCALE=0.34, 11 strata, and 995000-995309
#                                  its follicle stratum, synth 1.8/1.9 pairs by
#                                  training/follicle_probe.sh; rendered for candidate
#                                  2.16.0, which failed its checks; spent 2026-12-06 on
#                                  2.20.0: protocol/validation-val13-set.md)
#   val14    seeds 1000000-1009999 (the next candidate's validation; never rendered:
#                                  render and run once after its rule exists, with the
#                                  generator of the calibration set its rule was fitted
#                                  on: GENERATOR=1.4 for 2.20.0's 260-slide pool; its
#                                  follicle stratum SEED=1005000 follicle_probe.sh, and
#                                  a coil stratum OLD=1.9 NEW=1.10 SEED=1006000)
# Seeds used elsewhere and never here: training 1000-2107, held-out tiles
# 900000-900115, the 1.x calibration 950000-950039 and validation 700000-700039,
# training/loop_test.sh 880000-880101 (hence val8 skips to 890000), model 2's
# held-out sets 900000-928999 (training/model2_data.sh; hence val9 at 930000), the 1.x
# calibration 950000- (hence val10 stops at 949999 and val11 starts at 960000),
# training/finetune_experiment.sh 970000-970107 (hence val12 at 980000),
# training/follicle_probe.sh 610000-610399 (and OLD=1.9 NEW=1.10, the coil probe,
# 614000-614399; OLD=1.10 NEW=1.11, the vessel probe, 618000-618399; OLD=1.11 NEW=1.12, the
# perivascular probe, 619000-619399; OLD=1.12 NEW=1.13, training/knife_probe.sh,
# 620000-620399; training/hidradenitis_labels.sh, OLD=1.13 NEW=1.14, the coil probe's
# DIRA seeds 614000-614009), training/follicle_finetune.sh 612000-612047 (GEN=1.10, the coil
# experiment: 616000-616047), model2_data.sh train10 12400-12599 and train12 12600-12799.
#
# Environment:
#   B        dirascope binary (default target/debug/dirascope)
#   DATA     where sets and runs go (default /tmp/dirascope-protocol)
#   MODEL    model folder scored with (default models/dirascope-phantom-v1)
#   GENERATOR  synth renderer of the phantoms (default 0.3, what model 1.x was
#            trained on; 1.0 for model 2)
#   SCALE    fraction of the full slide counts (default 1 = the protocol; each
#            stratum keeps at least 4 slides, one per class)
#   ONLY     space-separated stratum names to render (default: all)
#   THREADS  --threads for score (default 1)
#   PY       python with numpy (default training/.venv/bin/python)
#   TARGET_SENS / TARGET_SPEC  calibrate's targets (default 0.95 / 1.0)
#   SCORE_ARGS  more `score` arguments (e.g. --normalise-stain), with RUN naming
#            the run: scores go to $DATA/SET-scored-RUN and `validate` reads them
#            there, so one set is scored with and without an option side by side
#
# Every stratum is one synth command of 4k slides starting at a seed = 0 mod 4, so it
# holds k slides of each class (class = seed mod 4). DIRA variants (full,
# no-pustules, no-acantholysis, no-hidradenitis) and psoriasiform change are drawn by
# synth per seed; the tables report them from each slide's truth.json.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-target/debug/dirascope}
DATA=${DATA:-/tmp/dirascope-protocol}
MODEL=${MODEL:-models/dirascope-phantom-v1}
SCALE=${SCALE:-1}
THREADS=${THREADS:-1}
PY=${PY:-training/.venv/bin/python}
TARGET_SENS=${TARGET_SENS:-0.95}
TARGET_SPEC=${TARGET_SPEC:-1.0}

# name width_mm height_mm mpp full_count artefacts
# Sizes: 2 x 1.5 (shave), 3 x 3 and 4 x 4 (punch), 6 x 6, 8 x 8 (incisional), 15 x 15
# (excision); each size >= 20 slides (15 x 15: >= 8). Source MPP 0.25 / 0.5 / 1.0
# spread over sizes (finer scans of the largest sizes would take hours to render
# and resample to the same 1.0 um/px tiles). Artefact strata on 3 x 3 mm.
STRATA="
s2x1.5-0.5   2 1.5 0.5  12 none
s2x1.5-0.25  2 1.5 0.25 8  none
s3x3-0.5     3 3   0.5  12 none
s3x3-1.0     3 3   1.0  8  none
s4x4-1.0     4 4   1.0  12 none
s4x4-0.5     4 4   0.5  8  none
s6x6-1.0     6 6   1.0  20 none
s8x8-1.0     8 8   1.0  20 none
s15x15-1.0   15 15 1.0  8  none
a3x3-pen     3 3   1.0  8  pen
a3x3-fold    3 3   1.0  8  fold
a3x3-blur    3 3   1.0  8  blur
"

base_seed() {
    case $1 in
        cal) echo 800000 ;;
        val) echo 810000 ;;
        val2) echo 820000 ;;
        val3) echo 830000 ;;
        val4) echo 840000 ;;
        val5) echo 850000 ;;
        val6) echo 860000 ;;
        val7) echo 870000 ;;
        val8) echo 890000 ;;
        val9) echo 930000 ;;
        val10) echo 940000 ;;
        val11) echo 960000 ;;
        val12) echo 980000 ;;
        val13) echo 990000 ;;
        val14) echo 1000000 ;;
        *) echo "unknown set '$1' (cal, val, val2, val3, val4, val5, val6, val7, val8, val9, val10, val11, val12, val13, val14)" >&2; exit 2 ;;
    esac
}

scaled() { # full count -> count at SCALE, a multiple of 4, at least 4
    awk -v n="$1" -v s="$SCALE" 'BEGIN { k = int(n * s / 4 + 0.5) * 4; if (k < 4) k = 4; print k }'
}

render() {
    local set=$1 base i=0
    base=$(base_seed "$set")
    while read -r name w h mpp count art; do
        [ -z "$name" ] && continue
        local seed=$((base + 100 * i)) n
        i=$((i + 1))
        n=$(scaled "$count")
        if [ -n "${ONLY:-}" ] && ! grep -qw -- "$name" <<<"$ONLY"; then continue; fi
        local out=$DATA/$set/$name
        if [ -f "$out/manifest.csv" ]; then echo "$out: already rendered"; continue; fi
        local extra=()
        [ "$art" != none ] && extra=(--artefacts "$art")
        echo "render $set/$name: $n slides ${w}x${h} mm at $mpp um/px, seeds $seed-$((seed + n - 1)) $art"
        # GENERATOR: the phantoms the model under test was trained on (model 1.x: synth 0.3).
        "$B" synth --count "$n" --seed "$seed" --mpp "$mpp" --width-mm "$w" --height-mm "$h" \
            --generator "${GENERATOR:-0.3}" "${extra[@]}" --out "$out.part"
        mv "$out.part" "$out"
    done <<<"$STRATA"
}

# Where SET's scores go: $DATA/SET-scored, or $DATA/SET-scored-RUN.
scored() { echo "$DATA/$1-scored${RUN:+-$RUN}"; }

score() {
    local set=$1
    mkdir -p "$(scored "$set")"
    # One manifest for the whole set, with each slide's strata (from truth.json).
    "$PY" training/protocol_tables.py labels "$DATA/$set" >"$DATA/$set-labels.csv"
    # One score run over every stratum, so summary.csv lists them all (a rerun reuses
    # the slides already scored).
    # shellcheck disable=SC2086 # SCORE_ARGS is a list of arguments
    "$B" score "$DATA/$set"/*/ --model "$MODEL" --out "$(scored "$set")" --threads "$THREADS" \
        ${SCORE_ARGS:-} >/dev/null
}

calibrate() {
    rm -rf "$DATA/model-cal"
    "$B" calibrate --results "$DATA/cal-scored" --labels "$DATA/cal-labels.csv" --model "$MODEL" \
        --out "$DATA/model-cal" --target-sensitivity "$TARGET_SENS" --target-specificity "$TARGET_SPEC"
}

validate() {
    local set=$1 model=${2:-$DATA/model-cal}
    local out
    out=$(scored "$set")
    "$B" recall "$out" --model "$model"
    rm -rf "$DATA/$set-validation${RUN:+-$RUN}"
    "$B" validate --results "$out" --labels "$DATA/$set-labels.csv" --out "$DATA/$set-validation${RUN:+-$RUN}" >/dev/null
    "$PY" training/protocol_tables.py tables "$out" "$DATA/$set-labels.csv"
    "$PY" training/protocol_tables.py lesions "$DATA/$set" "$out" "$DATA/$set-labels.csv"
}

case ${1:-} in
    render) render "$2" ;;
    score) score "$2" ;;
    calibrate) calibrate ;;
    validate) validate "$2" "${3:-}" ;;
    all)
        render cal && score cal && render val && score val
        calibrate
        validate val
        ;;
    *) awk 'NR > 1 && /^set -euo/ { exit } NR > 1' "$0"; exit 2 ;;
esac
