"""Tile-AUROC gain of a fine-tuned model over its starting point on one
held-out set, with a 95% interval from resampling whole held-out slides
(paired: both models are scored on the same resampled slides).

Reads the held-out probabilities train.py saves (/tmp/NAME.heldout-probs.npz)
for the starting model (train.py --init MODEL_DIR --steps 0) and the
fine-tuned one, and the held-out export(s) they were computed on.

    python training/finetune_gain.py --before /tmp/base.heldout-probs.npz \
        --after /tmp/tuned.heldout-probs.npz --set NAME --heldout DIR [DIR...] \
        [--pos-frac 0.01] [--pos-frac-for FINDING=FRAC ...] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dirascope_model as dm  # noqa: E402
import train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--after", type=Path, required=True)
    ap.add_argument("--set", required=True, help="held-out set name as train.py saved it")
    ap.add_argument("--heldout", type=Path, nargs="+", required=True)
    ap.add_argument("--pos-frac", type=float, default=0.01)
    ap.add_argument("--pos-frac-for", nargs="*", default=[])
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=20260101)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    before = np.load(args.before)[args.set]
    after = np.load(args.after)[args.set]
    _, fracs, _, slides = train.load_exports(args.heldout, 224, 1.0, None)
    if len(fracs) != len(before) or len(before) != len(after):
        raise SystemExit("the probabilities and the held-out export differ in length")
    y, mask = train.targets_and_mask(fracs, train.parse_pos_frac(args.pos_frac, args.pos_frac_for))
    ids = np.unique(slides)
    by_slide = [np.flatnonzero(slides == s) for s in ids]
    rng = np.random.default_rng(args.seed)
    draws = [np.concatenate([by_slide[i] for i in rng.integers(0, len(ids), len(ids))]) for _ in range(args.reps)]
    out = {"slides": len(ids), "tiles": int(len(fracs)), "findings": {}}
    for k, name in enumerate(dm.FINDINGS):
        keep = mask[:, k] > 0
        a0 = train.auroc(before[keep, k], y[keep, k])
        a1 = train.auroc(after[keep, k], y[keep, k])
        gains = []
        for idx in draws:
            idx = idx[keep[idx]]
            g = train.auroc(after[idx, k], y[idx, k]) - train.auroc(before[idx, k], y[idx, k])
            if not math.isnan(g):
                gains.append(g)
        ci = [float(np.quantile(gains, 0.025)), float(np.quantile(gains, 0.975))] if gains else [float("nan")] * 2
        out["findings"][name] = {
            "positives": int(y[keep, k].sum()),
            "negatives": int((1 - y[keep, k]).sum()),
            "auroc_before": a0,
            "auroc_after": a1,
            "gain": a1 - a0,
            "gain_ci95_slide_bootstrap": ci,
        }
        print(f"{name}: {a0:.4f} -> {a1:.4f}, gain {a1 - a0:+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}] "
              f"(+{int(y[keep, k].sum())}/-{int((1 - y[keep, k]).sum())})")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
