"""Re-stain a tile export in a style absent from all training data, for the
fine-tuning experiment (a stand-in for another lab's slides).

Each tile is unmixed into hematoxylin and eosin concentrations with the
Ruifrok & Johnston vectors (Beer-Lambert optical density), then mixed again
with off-range vectors and strengths and blurred like a softer scanner:
a grey hematoxylin at 0.55x strength and an orange-red eosin at 1.6x, both
outside what `dirascope synth` draws (hematoxylin between the textbook and
the CMU-1 scanner vectors +-0.12, strengths 0.7-1.3). Labels are copied; the
output is a tile export train.py reads like any other.

    python training/restain.py DATA/phantom-tiles DATA/restained [--blur 1.2]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

RUIFROK_H = np.array([0.65, 0.70, 0.29])
RUIFROK_E = np.array([0.07, 0.99, 0.11])
# The off-range style.
STYLE_H = np.array([0.55, 0.62, 0.56])
STYLE_E = np.array([0.05, 0.75, 0.66])
STYLE_H_SCALE = 0.55
STYLE_E_SCALE = 1.6


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def stain_matrix(h: np.ndarray, e: np.ndarray) -> np.ndarray:
    h, e = unit(h), unit(e)
    r = np.cross(h, e)
    return np.stack([h, e, unit(r)])


def restain(rgb: np.ndarray, jitter: np.random.Generator) -> np.ndarray:
    od = -np.log((rgb.astype(np.float64) + 1.0) / 256.0)
    conc = od.reshape(-1, 3) @ np.linalg.inv(stain_matrix(RUIFROK_H, RUIFROK_E))
    h = STYLE_H + jitter.uniform(-0.03, 0.03, 3)
    e = STYLE_E + jitter.uniform(-0.03, 0.03, 3)
    target = stain_matrix(h, e)
    conc[:, 0] *= STYLE_H_SCALE * jitter.uniform(0.95, 1.05)
    conc[:, 1] *= STYLE_E_SCALE * jitter.uniform(0.95, 1.05)
    out = 256.0 * np.exp(-(conc @ target)) - 1.0
    return np.clip(out, 0, 255).reshape(rgb.shape).round().astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--blur", type=float, default=1.2, help="Gaussian blur radius in pixels")
    args = ap.parse_args()
    with open(args.src / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    fields = list(rows[0].keys()) if rows else []
    args.dst.mkdir(parents=True, exist_ok=True)
    for r in rows:
        # One stain per slide (seeded by its id), as a lab's batch would vary.
        seed = int(hashlib.sha256(r["slide_id"].encode()).hexdigest()[:12], 16)
        jitter = np.random.default_rng(seed)
        img = np.asarray(Image.open(args.src / r["path"]).convert("RGB"))
        out = Image.fromarray(restain(img, jitter))
        if args.blur > 0:
            out = out.filter(ImageFilter.GaussianBlur(args.blur))
        dst = args.dst / r["path"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        out.save(dst)
    with open(args.dst / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    print(f"re-stained {len(rows)} tiles into {args.dst}")


if __name__ == "__main__":
    main()
