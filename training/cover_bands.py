"""How a finding's held-out tile AUROC depends on how much of a positive tile the
finding covers: for each model and held-out group, the AUROC of the positives in
each mask-cover band against every tile with no cover at all, and the AUROC with
positives from 1%, 5% and 10% cover (tiles in between left out, as train.py and
eval_heldout.py leave them out), each with its 95% interval from resampling whole
slides. Written when the implanted psoriasiform AUROC stayed near 0.8 whatever the
recipe (2026-12-07): the checks count a tile psoriasiform from 1% cover, training
from 10%.

    python training/cover_bands.py MODEL_DIR [MODEL_DIR ...] \
        --heldout "implants=DATA/held2-implant-cmu,DATA/held2-implant-pd" [--finding psoriasiform]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import dirascope_model as dm
from eval_heldout import probabilities
from train import auroc, load_exports, parse_heldout, slide_bootstrap_ci

BANDS = [(0.01, 0.03), (0.03, 0.10), (0.10, 0.20), (0.20, 0.40), (0.40, 1.01)]
FROM = [0.01, 0.05, 0.10]


def with_ci(scores: np.ndarray, labels: np.ndarray, slides: np.ndarray) -> str:
    if labels.sum() == 0 or labels.sum() == len(labels):
        return "n/a"
    lo, hi = slide_bootstrap_ci(scores, labels, slides)
    return f"{auroc(scores, labels):.3f} [{lo:.3f}, {hi:.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", type=Path, nargs="+")
    ap.add_argument("--heldout", nargs="+", required=True, help="NAME=DIR1,DIR2,... (pooled) or DIR")
    ap.add_argument("--finding", default="psoriasiform", choices=dm.FINDINGS)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    k = dm.FINDINGS.index(args.finding)
    for name, dirs in parse_heldout(args.heldout):
        tiles, fracs, _, slides = load_exports(dirs, 224, 1.0, None)
        cover = fracs[:, k]
        neg = cover <= 0.0
        print(f"\n{name}: {len(tiles)} tiles, {int(neg.sum())} with no {args.finding} cover")
        head = [f"{lo:.2f}-{min(hi, 1.0):.2f}" for lo, hi in BANDS]
        print("| model | " + " | ".join(f"cover {h}" for h in head) + " | " + " | ".join(f"from {f:.2f}" for f in FROM) + " |")
        print("|---|" + "---|" * (len(BANDS) + len(FROM)))
        for model in args.models:
            p = probabilities(model, tiles, args.threads)[:, k]
            cells = []
            for lo, hi in BANDS:
                band = (cover >= lo) & (cover < hi)
                keep = band | neg
                cells.append(f"{with_ci(p[keep], band[keep].astype(np.float32), slides[keep])} (n {int(band.sum())})")
            for f in FROM:
                pos = cover >= f
                keep = pos | neg
                cells.append(f"{with_ci(p[keep], pos[keep].astype(np.float32), slides[keep])} ({int(pos.sum())}+)")
            print(f"| {model} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
