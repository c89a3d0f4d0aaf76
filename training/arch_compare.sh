#!/usr/bin/env bash
# Architecture for speed, measured on accuracy too: trains each candidate of
# dirascope_model.ARCHS from scratch with one recipe and one budget (model 2's
# training data: synth 1.0 phantoms at three source MPPs, textured phantoms,
# implants into the real train parts, the real train parts as negatives; lab
# augmentation; same seed and step count), then prints each run's held-out tile
# AUROCs beside its multiply-adds. Tiles/s on tract come from
# `cargo bench --bench model_throughput -- OUT/ARCH` (and model_layers) on the same
# folders. Short budgets rank the candidates; they do not reproduce a shipped
# model's figures.
#
#   training/arch_compare.sh DATA OUT [STEPS] [ARCH...]     (defaults: 800 steps; slim-s2 slim-p4; env SEED, default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
D=${1:?usage: training/arch_compare.sh DATA OUT [STEPS] [ARCH...]}
OUT=${2:?usage: training/arch_compare.sh DATA OUT [STEPS] [ARCH...]}
STEPS=${3:-800}
shift $(( $# < 3 ? $# : 3 ))
ARCHS=("$@")
[[ ${#ARCHS[@]} -gt 0 ]] || ARCHS=(slim-s2 slim-p4)
REAL=${REAL:-../shared/fixtures/real}
for arch in "${ARCHS[@]}"; do
    start=$(date +%s)
    "$PY" training/train.py \
        --train "$D/train-mixed-1.0" "$D/train-dira-1.0" "$D/train-mixed-0.5" "$D/train-dira-0.5" \
            "$D/train-dira-0.25" "$D/train-tex-cmu" "$D/train-tex-pd" \
            "$D/train2-implant-cmu" "$D/train2-implant-pd" \
        --export-weight train2-implant-cmu=3 train2-implant-pd=2 \
        --real-train-parts "$REAL/CMU-1-Small-Region.svs" "$REAL/skin-normal-10x-public-domain.jpg" \
        --real-repeat 30 --lab-augment \
        --heldout "held-1.0=$D/held-mixed-1.0,$D/held-dira-1.0" \
            "held-0.25=$D/held-mixed-0.25,$D/held-dira-0.25" \
            "implants=$D/held2-implant-cmu,$D/held2-implant-pd" \
        --steps "$STEPS" --pos-frac 0.01 --pos-frac-for neutrophilic_eccrine_hidradenitis=0.1 \
        --arch "$arch" --threads 2 --seed "${SEED:-1}" \
        --name "arch-$arch" --version 0.0.0 \
        --out "$OUT/$arch" > "$OUT/$arch.log" 2>&1
    echo "$arch: $(( $(date +%s) - start )) s wall, log $OUT/$arch.log"
done
"$PY" - "$OUT" "${ARCHS[@]}" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
short = {"subcorneal_pustule": "pustule", "acantholysis": "acantholysis",
         "neutrophilic_eccrine_hidradenitis": "hidradenitis", "psoriasiform": "psoriasiform"}
for arch in sys.argv[2:]:
    m = json.loads((out / arch / "metrics.json").read_text())
    print(f"{arch}: {m['macs_per_tile'] / 1e6:.1f} M MACs a tile, {m['parameters']} parameters, "
          f"{m['steps']} steps in {m['train_seconds']:.0f} s")
    for name, held in m["heldout"].items():
        cells = [f"{short[f]} {v['auroc']:.3f}" for f, v in held["per_finding"].items() if v.get("auroc") is not None]
        print(f"  {name:10s} ({held['tiles']} tiles) AUROC " + ", ".join(cells))
    for image, real in m.get("real_test_parts", {}).items():
        above = ", ".join(f"{short[f]} {100 * v:.1f}%" for f, v in real["fraction_above_0.5"].items())
        print(f"  real test part {image}: tiles above 0.5 {above}")
PY
