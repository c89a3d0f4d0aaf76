"""Lesion-free tile rates of models on a synth tile export, split by whether the
tile's slide carries synth 1.6's basal melanin: does a model read the phantoms'
pigment as a finding? With `--by tangential`, split instead by whether the tile lies
over its slide's tangentially cut stretch of epidermis (with the stretch's 60 um
ramps; synth 1.7 draws its papillae cut across as the real CMU-1 test part shows
them). (Model card, "Tried after 2.12.0".)

    python training/pigment_rates.py --export DATA/train8-mel-1.0 [--truth DIR] MODEL...
    python training/pigment_rates.py --by tangential --export DATA/train9-tan-1.0 MODEL...

A slide's pigment is read from its truth.json (`structures.melanin`), in the
export's tiles/ folder or in --truth (exports rendered before truth.json gave
it: render the same seeds again, any size, e.g. `dirascope synth --count 48
--seed 12000 --width-mm 1 --height-mm 1 --mpp 2.0 --out DIR`; the pigment
depends on class and seed only). Lesion-free: every finding's coverage 0,
tissue >= 0.1. Prints, per model and group, the share of tiles above 0.5 per
finding (onnxruntime, the model's own views).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

import dirascope_model as dm
from ood_cases import Scorer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", type=Path, nargs="+")
    ap.add_argument("--export", type=Path, required=True)
    ap.add_argument("--truth", type=Path, default=None, help="folder of <slide>.truth.json (default: EXPORT/tiles)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--by", choices=["melanin", "tangential"], default="melanin")
    args = ap.parse_args()
    truth_dir = args.truth or args.export / "tiles"
    with open(args.export / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f)
                if all(float(r[k]) == 0 for k in dm.FINDINGS) and float(r["tissue"]) >= 0.1]
    structures = {}
    for sid in sorted({r["slide_id"] for r in rows}):
        path = truth_dir / f"{sid}.truth.json"
        if not path.is_file():
            raise SystemExit(f"{path}: no truth file for {sid}")
        structures[sid] = json.loads(path.read_text())["structures"]

    def marked(r) -> bool:
        if args.by == "melanin":
            return structures[r["slide_id"]].get("melanin") is not None
        t = structures[r["slide_id"]].get("tangential")
        side = float(r.get("source_tile_px") or r["tile_px"]) * float(r.get("source_tile_mpp") or r["tile_mpp"])
        x = float(r["x_um"])
        return t is not None and x < t[1] + 60.0 and x + side > t[0] - 60.0

    groups = {g: [r for r in rows if marked(r) == g] for g in (False, True)}
    names = {"melanin": ("unpigmented", "pigmented"), "tangential": ("elsewhere", "over a tangential stretch")}[args.by]
    tiles = {g: np.stack([np.asarray(Image.open(args.export / r["path"]).convert("RGB")) for r in rs])
             for g, rs in groups.items() if rs}
    for model in args.models:
        scorer = Scorer(model, args.threads)
        for g, t in tiles.items():
            p, _ = scorer(t)
            slides = len({r["slide_id"] for r in groups[g]})
            rates = ", ".join(f"{k} {100 * (p[:, i] > 0.5).mean():.2f}%" for i, k in enumerate(dm.FINDINGS))
            print(f"{model}: {names[g]} ({slides} slides, {len(t)} lesion-free tiles): {rates}")


if __name__ == "__main__":
    main()
