# Shared by the scripts that train and check model 2 (model2_finetune.sh, candidate_check.sh,
# follicle_finetune.sh): sourced, never run. The callers set PY (their Python).

# held_sets D NAME SET...: prints NAME=D/SET,D/SET,... over the sets rendered under D (those
# with a labels.csv), for train.py's and eval_heldout.py's --heldout; nothing when none is.
held_sets() {
    local d=$1 name=$2 dirs=() e
    shift 2
    for e in "$@"; do [ -s "$d/$e/labels.csv" ] && dirs+=("$d/$e"); done
    [ ${#dirs[@]} -gt 0 ] && (IFS=,; echo "$name=${dirs[*]}")
    return 0
}

# follicle_probe_under B MODEL PROBE WORK [OLD NEW]: scores the follicle probe's slides (PROBE/g1.8 and
# PROBE/g1.9, from training/follicle_probe.sh; PROBE/gOLD and PROBE/gNEW for another pair, e.g. the
# coil probe's 1.9 and 1.10) with MODEL into WORK/probe, once, and prints training/follicle_probe.py's
# comparison.
follicle_probe_under() {
    local b=$1 model=$2 probe=$3 work=$4 old=${5:-1.8} new=${6:-1.9} g
    mkdir -p "$work/probe"
    for g in $old $new; do
        ln -sfn "$(realpath "$probe/g$g")" "$work/probe/g$g"
        [ -s "$work/probe/s$g/summary.csv" ] || "$b" score "$probe/g$g" --model "$model" --out "$work/probe/s$g" >/dev/null
    done
    "$PY" training/follicle_probe.py "$work/probe" "$model" "$old" "$new"
}

# real_fixtures_under B MODEL REAL WORK: scores both real fixtures whole with MODEL into WORK/cmu
# and WORK/pd, once, and prints their calls and their test parts' tiles over 0.5.
real_fixtures_under() {
    local b=$1 model=$2 real=$3 work=$4
    [ -s "$work/cmu/summary.csv" ] || "$b" score "$real/CMU-1-Small-Region.svs" --model "$model" --out "$work/cmu" >/dev/null
    # The public-domain image has no MPP of its own: the split's estimate.
    [ -s "$work/pd/summary.csv" ] || "$b" score "$real/skin-normal-10x-public-domain.jpg" \
        --mpp "$("$PY" training/real_split.py mpp skin-normal-10x-public-domain.jpg)" --model "$model" --out "$work/pd" >/dev/null
    "$PY" training/real_fixture_rates.py "$work/cmu" "$work/pd"
}
