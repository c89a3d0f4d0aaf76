#!/usr/bin/env bash
# Judges the implants of one binary (training/realism/implant_judge.py): renders lesions
# into the real images' parts, then trains and evaluates judge.py's frozen recipe on
# drawn crops against real ones.
#   training/realism/implant_run.sh OUTDIR [BIN]
# Sets (each class, each real image): train = 8 implants into the TRAIN parts (seeds
# from 100), eval = 4 into the TEST parts (seeds from 900); SELECT=1 evaluates on
# select = 4 more into the train parts (seeds from 800), cut as judge.py --select cuts,
# for choosing between variants without the test parts.
# SYNTH_ARGS adds synth options, e.g. --generator 1.7 or --optics-um 0.
set -euo pipefail
out=${1:?output folder}
bin=${2:-target/debug/dirascope}
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-$here/../.venv/bin/python}
real=${REAL:-$here/../../../shared/fixtures/real}
cmu=$real/CMU-1-Small-Region.svs
pd=$real/skin-normal-10x-public-domain.jpg

# implants SET PART FIRST N: N of each class into PART of both images (a seed whose
# plan finds no room for a lesion is skipped; the next is tried).
implants() {
    local set=$1 part=$2 first=$3 n=$4 tag img extra class made seed
    for tag in cmu pd; do
        local dir=$out/$set-$tag
        [ -e "$dir/.done" ] && continue
        mkdir -p "$dir"
        if [ $tag = cmu ]; then img=$cmu extra=(); else img=$pd extra=(--mpp 0.75); fi
        seed=$first
        for class in dira pustular-psoriasis psoriasis normal; do
            made=0
            while [ "$made" -lt "$n" ] && [ "$seed" -lt $((first + 1000)) ]; do
                # shellcheck disable=SC2086 # SYNTH_ARGS is a list of arguments
                if "$bin" synth --implant-into "$img" "${extra[@]}" ${SYNTH_ARGS:-} --part "$part" \
                    --class "$class" --seed "$seed" --out "$dir" >/dev/null 2>&1; then
                    made=$((made + 1))
                fi
                seed=$((seed + 1))
            done
        done
        rm -f "$dir/manifest.csv"
        touch "$dir/.done"
    done
}

implants train train 100 8
if [ -n "${SELECT:-}" ]; then
    implants select train 800 4
    "$py" "$here/implant_judge.py" --train-implants "$out/train-cmu" "$out/train-pd" \
        --eval-implants "$out/select-cmu" "$out/select-pd" --select --json "$out/judge-select.json"
else
    implants eval test 900 4
    "$py" "$here/implant_judge.py" --train-implants "$out/train-cmu" "$out/train-pd" \
        --eval-implants "$out/eval-cmu" "$out/eval-pd" --json "$out/judge.json"
fi
