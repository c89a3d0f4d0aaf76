"""Colour statistics that tell phantoms from real tissue, measured the judge's way
(96 px crops at 1.0 um/px; real TEST crops against phantom crops of DIR).

  off-plane   the spread of optical density off the plane two stains span:
              per image (real train parts, whole phantom slides), OD pixels with
              OD sum > 0.15, the plane fitted by SVD; the residual's sd pixel to
              pixel and after 5 and 15 px box means.
  features    each per-crop colour feature alone as a classifier (AUROC, real
              against phantom, direction-free), with the medians of each side.

Usage:
  colour_cues.py off-plane DIR     # DIR: phantom .tiff files (0.5 um/px synth)
  colour_cues.py features DIR
"""

import glob
import os
import sys

import numpy as np
import tifffile
from scipy.ndimage import uniform_filter
from skimage.color import rgb2hed, rgb2hsv

import judge
import real_split


def off_plane(rgb):
    x = rgb.astype(np.float64)
    glass = np.percentile(x.reshape(-1, 3), 99.5, axis=0)
    od = -np.log10(np.clip(x, 1, None) / glass)
    tissue = od.sum(2) > 0.15
    v = od[tissue]
    normal = np.linalg.svd(v - v.mean(0), full_matrices=False)[2][2]
    r = (od - v.mean(0)) @ normal
    return [float(f[tissue].std()) for f in (r, uniform_filter(r, 5), uniform_filter(r, 15))]


def print_off_plane(folder):
    print("| source | residual sd, pixel | 5 px mean | 15 px mean |")
    print("| --- | ---: | ---: | ---: |")
    images = real_split.load()
    for name in judge.REAL_IMAGES:
        rgb = judge.read_real_part(name, real_split.part(name, "train", images))
        img = judge.resample(rgb, real_split.mpp(name, images))
        print(f"| {name} (train part) | " + " | ".join(f"{v:.4f}" for v in off_plane(img)) + " |")
    for path in sorted(glob.glob(os.path.join(folder, "*.tiff"))):
        rgb = tifffile.imread(path, key=0)[..., :3]
        img = judge.resample(np.ascontiguousarray(rgb), judge.phantom_mpp(path))
        print(f"| {os.path.basename(path)} | " + " | ".join(f"{v:.4f}" for v in off_plane(img)) + " |")


def features(crop):
    x = crop.astype(np.float64)
    od = -np.log10(np.clip(x, 1, None) / 255)
    hed, hsv = rgb2hed(crop), rgb2hsv(crop)
    tissue = od.sum(2) > 0.15
    f = {}
    for k, ch in enumerate("RGB"):
        f[f"mean {ch}"] = x[..., k].mean()
        f[f"sd {ch}"] = x[..., k].std()
        f[f"p5 {ch}"] = np.percentile(x[..., k], 5)
        f[f"p95 {ch}"] = np.percentile(x[..., k], 95)
    for k, ch in enumerate("HED"):
        f[f"{ch} OD p50"] = np.percentile(hed[..., k][tissue], 50)
        f[f"{ch} OD p95"] = np.percentile(hed[..., k][tissue], 95)
    f["hue p50"] = np.percentile(hsv[..., 0][tissue], 50)
    f["hue sd"] = hsv[..., 0][tissue].std()
    f["saturation p50"] = np.percentile(hsv[..., 1][tissue], 50)
    f["saturation p95"] = np.percentile(hsv[..., 1][tissue], 95)
    f["grey step sd"] = np.diff(x.mean(2), axis=1).std()
    f["R-G step sd"] = np.diff(x[..., 0] - x[..., 1], axis=1).std()
    f["distinct colours"] = len(np.unique(crop.reshape(-1, 3), axis=0))
    return f


def print_features(folder):
    real, _, _ = judge.real_crops("test", judge.EVAL_STRIDE)
    phantom, _, _ = judge.phantom_crops(folder, judge.PHANTOM_STRIDE)
    fr, fp = [features(c) for c in real], [features(c) for c in phantom]
    rows = []
    for key in fr[0]:
        r = np.array([f[key] for f in fr])
        p = np.array([f[key] for f in fp])
        a = judge.auroc([0] * len(r) + [1] * len(p), np.concatenate([r, p]))
        rows.append((max(a, 1 - a), key, np.median(r), np.median(p)))
    print(f"{len(real)} real test crops, {len(phantom)} phantom crops\n")
    print("| feature | AUROC alone | real median | phantom median |")
    print("| --- | ---: | ---: | ---: |")
    for a, key, mr, mp in sorted(rows, reverse=True):
        print(f"| {key} | {a:.3f} | {mr:.3f} | {mp:.3f} |")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("off-plane", "features"):
        sys.exit(__doc__)
    (print_off_plane if sys.argv[1] == "off-plane" else print_features)(sys.argv[2])


if __name__ == "__main__":
    main()
