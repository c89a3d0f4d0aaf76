"""How strong synth's hematoxylin and eosin are against the real image whose stain
a phantom took, on the real TRAIN parts (fit there; figures on real tissue are
reported on the test parts elsewhere).

Synth 1.x draws each slide in one measured real image's stain (CMU-1's or the
public-domain image's, `StainMatrix::sample_measured`). This compares, per
image, the Ruifrok hematoxylin and eosin optical density of all tissue pixels
(0.7 um blur, at 1.0 um/px, as stats.py measures) of that image's train part
with those of normal phantoms drawn in its stain, and prints the ratio real /
phantom at p50, p90 and p99: the gain a stain's concentrations need for its
phantoms to be as dark as the image.

Usage: stain_strength.py PHANTOM_DIR [--json OUT]
(PHANTOM_DIR: `dirascope synth --class normal --seed S --count N --mpp 0.5
--width-mm 2 --height-mm 1.5 --out DIR`; each slide's truth.json names its stain.)
"""

import argparse
import glob
import json
import os
import sys

import numpy as np
import tifffile
from scipy import ndimage as ndi
from skimage import color

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import real_split  # noqa: E402
from realism.judge import REAL_IMAGES, phantom_mpp, read_real_part, resample  # noqa: E402

TISSUE_OD = 0.15
PCTS = (50, 90, 99)
# The measured stains' hematoxylin vectors (src/synth/stain.rs), to tell which a
# phantom took.
ANCHORS = {
    "CMU-1-Small-Region.svs": (0.883, 0.390, 0.261),
    "skin-normal-10x-public-domain.jpg": (0.668, 0.677, 0.310),
}


def densities(rgb):
    od = -np.log10(np.clip(rgb.astype(np.float32), 1, 255) / 255.0)
    tissue = od.sum(2) > TISSUE_OD
    hed = color.rgb2hed(rgb)
    h = ndi.gaussian_filter(hed[..., 0], 0.7)
    e = ndi.gaussian_filter(hed[..., 1], 0.7)
    return h[tissue], e[tissue]


def anchor_of(truth):
    v = np.asarray(truth["stain"]["hematoxylin"], np.float32)
    v /= np.linalg.norm(v)

    def angle(a):
        a = np.asarray(a, np.float32) / np.linalg.norm(a)
        return float(np.arccos(np.clip(v @ a, -1, 1)))

    return min(ANCHORS, key=lambda k: angle(ANCHORS[k]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("phantoms")
    ap.add_argument("--json")
    a = ap.parse_args()
    images = real_split.load()
    out = {}
    for name in REAL_IMAGES:
        rgb = read_real_part(name, real_split.part(name, "train", images))
        rgb = resample(rgb, real_split.mpp(name, images))
        rh, re = densities(rgb)
        ph, pe, slides = [], [], []
        for p in sorted(glob.glob(os.path.join(a.phantoms, "*.tiff"))):
            truth = json.load(open(p[: -len(".tiff")] + ".truth.json"))
            if anchor_of(truth) != name:
                continue
            img = np.ascontiguousarray(tifffile.imread(p, key=0)[..., :3])
            h, e = densities(resample(img, phantom_mpp(p)))
            ph.append(h)
            pe.append(e)
            slides.append(os.path.basename(p))
        if not slides:
            print(f"{name}: no phantom in its stain")
            continue
        ph, pe = np.concatenate(ph), np.concatenate(pe)
        row = {"slides": slides}
        for label, r, p in (("H", rh, ph), ("E", re, pe)):
            rp, pp = np.percentile(r, PCTS), np.percentile(p, PCTS)
            row[label] = {"real": rp.round(4).tolist(), "phantom": pp.round(4).tolist(),
                          "ratio": (rp / np.maximum(pp, 1e-6)).round(3).tolist()}
            print(f"{name} {label} p{'/'.join(map(str, PCTS))}: real {rp.round(3)} "
                  f"phantom {pp.round(3)} ratio {(rp / np.maximum(pp, 1e-6)).round(2)} "
                  f"({len(slides)} phantoms)")
        out[name] = row
    if a.json:
        json.dump(out, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
