"""Measures H&E stain vectors and concentration ranges on the real TRAIN parts.

Macenko (2009): optical density OD = -log10(I / I0) of tissue pixels (OD sum
above a threshold), the plane of the two largest eigenvectors, the 1st and 99th
percentile angles in it as the H and E vectors; concentrations by least
squares. I0 is each image's own glass (the 99.5th percentile of bright pixels).
Prints per image: glass RGB, unit H and E vectors, and the 5/50/95/99th
percentiles of the H and E concentrations over tissue: the ranges synth 1.0
draws its per-slide stain from (src/synth/stain.rs quotes them).

Usage: stain_ranges.py [--json OUT]
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import real_split  # noqa: E402
from realism.judge import REAL_IMAGES, read_real_part  # noqa: E402

OD_THRESHOLD = 0.15
ALPHA = 1.0  # percentile of the angle extremes


def glass(rgb):
    flat = rgb.reshape(-1, 3).astype(np.float64)
    bright = flat[flat.sum(1) > np.percentile(flat.sum(1), 95)]
    return np.percentile(bright, 50, axis=0)


def macenko(rgb, i0):
    od = -np.log10(np.clip(rgb.reshape(-1, 3).astype(np.float64), 1, None) / i0)
    od = np.clip(od, 0, None)
    tissue = od[(od.sum(1) > OD_THRESHOLD)]
    _, vecs = np.linalg.eigh(np.cov(tissue.T))
    plane = vecs[:, 1:3]
    proj = tissue @ plane
    ang = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(ang, ALPHA), np.percentile(ang, 100 - ALPHA)
    v1 = plane @ np.array([np.cos(lo), np.sin(lo)])
    v2 = plane @ np.array([np.cos(hi), np.sin(hi)])
    v1, v2 = np.abs(v1) * np.sign(v1.sum()), np.abs(v2) * np.sign(v2.sum())
    # Hematoxylin absorbs red most (largest R share).
    h, e = (v1, v2) if v1[0] / v1.sum() > v2[0] / v2.sum() else (v2, v1)
    h, e = h / np.linalg.norm(h), e / np.linalg.norm(e)
    m = np.stack([h, e], 1)
    conc, *_ = np.linalg.lstsq(m, tissue.T, rcond=None)
    return h, e, conc


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json")
    a = ap.parse_args()
    images = real_split.load()
    out = {}
    for name in REAL_IMAGES:
        rgb = read_real_part(name, real_split.part(name, "train", images))
        i0 = glass(rgb)
        h, e, conc = macenko(rgb, i0)
        q = [5, 50, 95, 99]
        out[name] = {
            "part": "train",
            "glass_rgb": [round(float(v), 1) for v in i0],
            "h": [round(float(v), 3) for v in h],
            "e": [round(float(v), 3) for v in e],
            "h_conc_pct_5_50_95_99": [round(float(v), 3) for v in np.percentile(conc[0], q)],
            "e_conc_pct_5_50_95_99": [round(float(v), 3) for v in np.percentile(conc[1], q)],
        }
    print(json.dumps(out, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
