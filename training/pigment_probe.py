"""Is pigment what a model reads as pustule on real tissue? CMU-1's test-part
tissue tiles (56 px grid at the model's MPP, ood_cases.py's tissue rule) are
unmixed into hematoxylin, eosin and melanin (three optical-density vectors:
CMU-1's own H and E measured on its train part, docs/realism.md "Stain ranges",
and synth 1.6's melanin), then redrawn with the melanin removed and doubled, and
scored as they are and both ways (onnxruntime, the model's own views). Prints
the share of tiles above 0.5 per finding for each. (Model card, "Tried after
2.12.0".)

    python training/pigment_probe.py MODEL...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import dirascope_model as dm
from ood_cases import Scorer, real_test_part

CMU1 = "CMU-1-Small-Region.svs"
GLASS = np.array([251.0, 251.0, 249.0])  # CMU-1's train part, docs/realism.md
H = np.array([0.883, 0.390, 0.261])
E = np.array([0.102, 0.916, 0.388])
MELANIN = np.array([0.309, 0.472, 0.826])  # src/synth/render.rs MELANIN_OD


def redraw(tiles: np.ndarray, melanin_gain: float) -> np.ndarray:
    stains = np.stack([H, E, MELANIN])
    od = -np.log10(np.maximum(tiles.astype(np.float64), 1.0) / GLASS)
    conc = od.reshape(-1, 3) @ np.linalg.inv(stains)
    conc[:, 2] *= melanin_gain
    out = GLASS * 10.0 ** (-(conc @ stains))
    return np.clip(out, 0, 255).round().astype(np.uint8).reshape(tiles.shape)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", type=Path, nargs="+")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    for model in args.models:
        scorer = Scorer(model, args.threads)
        tiles = real_test_part(CMU1, scorer.px, scorer.mpp, 56)
        for name, gain in [("as scanned", 1.0), ("melanin removed", 0.0), ("melanin doubled", 2.0)]:
            p, _ = scorer(tiles if gain == 1.0 else redraw(tiles, gain))
            rates = ", ".join(f"{k} {100 * (p[:, i] > 0.5).mean():.1f}%" for i, k in enumerate(dm.FINDINGS))
            print(f"{model}: CMU-1 test part ({len(tiles)} tiles), {name}: {rates}")


if __name__ == "__main__":
    main()
