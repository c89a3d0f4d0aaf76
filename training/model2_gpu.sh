#!/usr/bin/env bash
# Model 2.4 in one sitting on a machine with a GPU and many cores (the device
# machine some sessions are lent: one H200, 16 cores, no network): renders the
# training tiles in parallel with the release binary (synth 1.2 phantoms at
# source MPP 1.0 and 0.5, phantoms textured from the real train parts, lesions
# implanted into the real train parts in model2_data.sh's train2 design), the
# `oodcal` tiles that set the OOD threshold, then trains two candidates side by
# side on the GPU: from scratch, and fine-tuned from models/dirascope-v2
# (2.2.0). Nothing is evaluated on held-out sets here: the candidates come back
# and are chosen and reported on the CPU: on held3 first, then the held-out sets,
# the protocol's cal set (calibrate) and val4 once (models/dirascope-v2/MODEL_CARD.md,
# "A GPU run toward 2.4.0", has the first run's figures).
#
#   training/model2_gpu.sh DIRASCOPE REAL_DIR WORK OUT_DIR [SECONDS]
#
# DIRASCOPE: a release build; REAL_DIR: holds CMU-1-Small-Region.svs and
# skin-normal-10x-public-domain.jpg; WORK: scratch space; OUT_DIR: gets
# candidate-scratch.tar.gz, candidate-finetune.tar.gz and the logs; SECONDS: the
# whole run's wall-clock budget (default 540): rendering gets at most 40% of it,
# the training steps what is left after a reserve for loading, the OOD fit and
# the export. DEVICE=cpu runs the same flow without a GPU (a dry run).
#
# On the device tool, the binary and the real fixtures travel in an ignored
# folder named in `carry` (64 MiB in all with the repository: the gzipped binary
# is 10 MB, the fixtures 10 MB), and the device machine's Python has no JPEG
# codec for tifffile, hence the level-0 PNG:
#   mkdir -p .carry/real && echo /.carry/ >>.git/info/exclude
#   gzip -9 -c target/release/dirascope >.carry/dirascope.gz
#   cp ../shared/fixtures/real/{CMU-1-Small-Region.svs,skin-normal-10x-public-domain.jpg} .carry/real/
#   training/.venv/bin/python -c 'import tifffile; from PIL import Image; Image.fromarray(
#       tifffile.imread("../shared/fixtures/real/CMU-1-Small-Region.svs")[..., :3]).save(
#       ".carry/real/CMU-1-Small-Region.level0.png")'
# and the run's command (timeout 600 s; the files come back from $OUT):
#   gunzip -c .carry/dirascope.gz >/tmp/d && chmod +x /tmp/d &&
#       training/model2_gpu.sh /tmp/d .carry/real /tmp/w "$OUT" 500 2>&1 | tee "$OUT/run.log"
#
# Seeds: training phantoms 3000-3399, implants 5000-8999 (as model2_data.sh
# train2), oodcal 914000-915399; disjoint from every held-out and protocol set.
set -euo pipefail
cd "$(dirname "$0")/.."
B=$(realpath "${1:?usage: training/model2_gpu.sh DIRASCOPE REAL_DIR WORK OUT_DIR [SECONDS]}")
REAL=$(realpath "${2:?REAL_DIR}")
W=${3:?WORK}
OUT=${4:?OUT_DIR}
BUDGET=${5:-540}
PY=${PYTHON:-python3}
CORES=$(nproc)
mkdir -p "$W" "$OUT"
W=$(realpath "$W")
OUT=$(realpath "$OUT")
T0=$SECONDS
CMU="$REAL/CMU-1-Small-Region.svs"
PD="$REAL/skin-normal-10x-public-domain.jpg"
# Python reads the SVS through tifffile, which needs imagecodecs for its JPEG
# tiles; where that is missing, a lossless level-0 PNG beside it (an alias in
# training/real_split.toml) stands in.
CMU_PIXELS=$CMU
[ -f "$REAL/CMU-1-Small-Region.level0.png" ] && CMU_PIXELS="$REAL/CMU-1-Small-Region.level0.png"
echo "model2_gpu: $CORES cores, budget $BUDGET s, $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo 'no GPU')"

# One line a job: NAME MPP SYNTH-ARGS... (224 um tiles; finer MPPs downsampled to 224 px).
jobs_file=$W/jobs.txt
: >"$jobs_file"
# The OOD threshold's tiles first (0.25 um/px is the longest job), then the training sets.
echo "oodcal-mixed-0.25 0.25 --count 2 --seed 914200" >>"$jobs_file"
echo "oodcal-dira-0.5 0.5 --class dira --count 4 --seed 914100" >>"$jobs_file"
echo "oodcal-mixed-1.0 1.0 --count 4 --seed 914000" >>"$jobs_file"
for i in 0 1 2 3 4 5; do echo "g-mixed-1.0-$i 1.0 --count 8 --seed $((3000 + 8 * i))" >>"$jobs_file"; done
for i in 0 1 2 3; do echo "g-dira-1.0-$i 1.0 --class dira --count 8 --seed $((3100 + 8 * i))" >>"$jobs_file"; done
for i in 0 1 2; do echo "g-mixed-0.5-$i 0.5 --count 4 --seed $((3200 + 4 * i))" >>"$jobs_file"; done
for i in 0 1; do echo "g-dira-0.5-$i 0.5 --class dira --count 4 --seed $((3300 + 4 * i))" >>"$jobs_file"; done
for i in 0 1; do echo "g-tex-cmu-$i 1.0 --count 8 --seed $((3340 + 8 * i)) --texture-from $CMU" >>"$jobs_file"; done
for i in 0 1; do echo "g-tex-pd-$i 1.0 --count 8 --seed $((3370 + 8 * i)) --texture-from $PD --texture-mpp 0.75" >>"$jobs_file"; done

render() { # NAME MPP ARGS...
    set -euo pipefail
    local name=$1 mpp=$2 px
    shift 2
    px=$(awk -v m="$mpp" 'BEGIN { printf "%d", 224 / m + 0.5 }')
    if [ "$px" = 224 ]; then
        "$B" synth "$@" --tiles --tile-px 224 --tile-mpp 1.0 --out "$W/$name.part" >/dev/null
    else
        "$B" synth "$@" --tiles --tile-px "$px" --tile-mpp "$mpp" --out "$W/$name-$px" >/dev/null
        "$PY" training/downsample_export.py "$W/$name-$px" "$W/$name.part" >/dev/null
        rm -rf "${W:?}/$name-$px"
    fi
    mv "$W/$name.part" "$W/$name"
    echo "rendered $name at $((SECONDS - T0)) s"
}
export -f render
export B W PY T0

# Implants (model2_data.sh's train2 and oodcal implant sets; single-threaded
# loops, one per real image) beside the phantom jobs.
implants() { # IMAGE OTHER: renders IMAGE's implant sets, skips OTHER's
    SKIP="oodcal-mixed-1.0 oodcal-dira-0.5 oodcal-mixed-0.25 train2-implant-$2 oodcal-implant-$2" \
        DIRASCOPE=$B PYTHON=$PY REAL=$REAL training/model2_data.sh "$W" train2 oodcal >"$W/implants-$1.log" 2>&1
    echo "implants into $1 done at $((SECONDS - T0)) s"
}
# FINISH=1 on a machine that still holds $W from a run whose training finished
# but whose export failed: no rendering, no steps; the saved checkpoints are
# evaluated, their OOD detectors fitted and the candidates exported.
if [ -z "${FINISH:-}" ]; then
implants cmu pd &
implants_cmu=$!
implants pd cmu &
implants_pd=$!
render_limit=$((BUDGET * 40 / 100))
if ! RAYON_NUM_THREADS=2 timeout "$render_limit" xargs -P $((CORES > 5 ? (CORES - 2) / 2 : 1)) -L 1 bash -c 'render "$@"' _ <"$jobs_file"; then
    echo "model2_gpu: rendering stopped at its limit ($render_limit s); training on the sets that finished"
    pkill -f -- "--tile-mpp [0-9.]+ --out $W/" || true
fi
wait "$implants_cmu" || echo "model2_gpu: implants into CMU-1 failed (see implants-cmu.log)"
wait "$implants_pd" || echo "model2_gpu: implants into the PD image failed (see implants-pd.log)"
cat "$W"/implants-*.log >"$OUT/implants.log" || true
fi

TRAIN=()
finished() { [[ $1 != *.part && ! $1 =~ -(448|896)$ && -s $1/labels.csv ]]; }
for d in "$W"/g-* "$W"/train2-implant-cmu "$W"/train2-implant-pd; do
    if finished "$d"; then TRAIN+=("$d"); fi
done
OODCAL=()
for d in "$W"/oodcal-*; do if finished "$d"; then OODCAL+=("$d"); fi; done
echo "model2_gpu: ${#TRAIN[@]} training sets, ${#OODCAL[@]} oodcal sets at $((SECONDS - T0)) s"
if [ ${#TRAIN[@]} -eq 0 ] || [ ${#OODCAL[@]} -eq 0 ]; then echo "model2_gpu: nothing to train on" >&2; exit 1; fi
cat "$W"/*/labels.csv | wc -l | xargs echo "model2_gpu: tile rows rendered:"

# Training minutes: what is left, less 100 s for loading, the OOD fit and the export.
left=$((BUDGET - (SECONDS - T0) - 100))
minutes=$(awk -v s="$left" 'BEGIN { m = s / 60; if (m < 0.5) m = 0.5; printf "%.2f", m }')
echo "model2_gpu: training for $minutes min each"
common=(
    --train "${TRAIN[@]}"
    --export-weight train2-implant-cmu=3 train2-implant-pd=2
    --real-train-parts "$CMU_PIXELS" "$PD" --real-repeat 30 --lab-augment
    --heldout "oodcal=$(IFS=,; echo "${OODCAL[*]}")"
    --ood --ood-taps=-1,3 --ood-threshold-from oodcal
    --ood-heldout-desc "oodcal: synth 1.2 phantoms never trained on (seeds 914000-914203) at source MPP 1.0, 0.5 and 0.25 and lesions implanted into the real test parts (seeds 914600-915399; CMU-1 rows y >= 1484, PD columns x >= 1024)"
    --minutes "$minutes" --max-epochs 100000 --batch 128 --device "${DEVICE:-cuda}" --threads 4
    --pos-frac 0.01 --pos-frac-for neutrophilic_eccrine_hidradenitis=0.1 psoriasiform=0.1
    --name dirascope-v2 --version 2.4.0 --rule-from models/dirascope-v2
    --intended-use "research use only; trained on phantom slides and on lesions implanted into real normal skin; not a diagnostic device"
)
scratch_init=() finetune_init=(--init models/dirascope-v2) suffix=
if [ -n "${FINISH:-}" ]; then
    scratch_init=(--init "$W/candidate-scratch/checkpoint.pt" --minutes 0)
    finetune_init=(--init "$W/candidate-finetune/checkpoint.pt" --minutes 0)
    suffix=-finish
fi
"$PY" -u training/train.py "${common[@]}" --arch slim-s2 --lr 2e-3 --seed 24 "${scratch_init[@]}" \
    --out "$W/candidate-scratch$suffix" >"$OUT/train-scratch$suffix.log" 2>&1 &
scratch_pid=$!
"$PY" -u training/train.py "${common[@]}" "${finetune_init[@]}" --lr 5e-4 --seed 25 \
    --out "$W/candidate-finetune$suffix" >"$OUT/train-finetune$suffix.log" 2>&1 &
finetune_pid=$!
status=0
wait "$scratch_pid" || { echo "model2_gpu: scratch run failed"; status=1; }
wait "$finetune_pid" || { echo "model2_gpu: fine-tune run failed"; status=1; }
for c in scratch finetune; do
    if [ -f "$W/candidate-$c$suffix/model.onnx" ]; then
        tar -czf "$OUT/candidate-$c.tar.gz" -C "$W" "candidate-$c$suffix"
    elif [ -f "$W/candidate-$c/checkpoint.pt" ]; then
        # Trained but not exported: the checkpoint comes back (about 1 MB) and is
        # exported on the CPU with train.py --init CHECKPOINT --minutes 0.
        cp "$W/candidate-$c/checkpoint.pt" "$OUT/candidate-$c.checkpoint.pt"
        echo "model2_gpu: candidate-$c trained but not exported; its checkpoint is in OUT"
    fi
done
echo "model2_gpu: done at $((SECONDS - T0)) s"
exit $status
