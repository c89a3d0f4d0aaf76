"""Colour statistics that tell phantoms from real tissue, measured the judge's way
(96 px crops at 1.0 um/px; real TEST crops against phantom crops of DIR).

  off-plane   the spread of optical density off the plane two stains span:
              per image (real train parts, whole phantom slides), OD pixels with
              OD sum > 0.15, the plane fitted by SVD; the residual's sd pixel to
              pixel and after 5 and 15 px box means.
  features    each per-crop colour feature alone as a classifier (AUROC, real
              against phantom, direction-free), with the medians of each side.
  pixels      the colours of single tissue pixels as a classifier, per real image
              against the phantoms in its style (scanner-style: glass brighter than
              242): a 16^3 RGB histogram of 50,000 tissue pixels (OD sum > 0.15 in
              the image's own glass) a side gives each colour a log ratio, scored on
              50,000 others a side (AUROC; 0.5 = the same colours).

Usage:
  colour_cues.py off-plane DIR     # DIR: phantom .tiff files (0.5 um/px synth)
  colour_cues.py features DIR [--part train]   # train: against the real TRAIN
                                               # crops, for tuning a renderer
  colour_cues.py pixels DIR [--part train]
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


def print_features(folder, part="test"):
    real, _, _ = judge.real_crops(part, judge.EVAL_STRIDE)
    phantom, _, _ = judge.phantom_crops(folder, judge.PHANTOM_STRIDE)
    fr, fp = [features(c) for c in real], [features(c) for c in phantom]
    rows = []
    for key in fr[0]:
        r = np.array([f[key] for f in fr])
        p = np.array([f[key] for f in fp])
        a = judge.auroc([0] * len(r) + [1] * len(p), np.concatenate([r, p]))
        rows.append((max(a, 1 - a), key, np.median(r), np.median(p)))
    print(f"{len(real)} real {part} crops, {len(phantom)} phantom crops\n")
    print("| feature | AUROC alone | real median | phantom median |")
    print("| --- | ---: | ---: | ---: |")
    for a, key, mr, mp in sorted(rows, reverse=True):
        print(f"| {key} | {a:.3f} | {mr:.3f} | {mp:.3f} |")


BINS = 16


def tissue(img):
    """An image's tissue pixels (OD sum > 0.15 in its own glass, the mean of its
    brightest 1%), their optical densities, and the glass."""
    a = img.reshape(-1, 3).astype(np.float64)
    s = a.sum(1)
    glass = a[s >= np.percentile(s, 99)].mean(0)
    od = -np.log10(np.clip(a, 1, None) / glass)
    keep = od.sum(1) > 0.15
    return a[keep], od[keep], glass


def phantoms_by_style(folder):
    """The phantom slides of DIR at 1.0 um/px, by the real image in whose style each
    was drawn (scanner-style: glass brighter than 242)."""
    by_style = {name: [] for name in judge.REAL_IMAGES}
    for path in sorted(glob.glob(os.path.join(folder, "*.tiff"))):
        rgb = np.ascontiguousarray(tifffile.imread(path, key=0)[..., :3])
        img = judge.resample(rgb, judge.phantom_mpp(path))
        glass = tissue(img)[2].mean()
        by_style[judge.REAL_IMAGES[0] if glass > 242 else judge.REAL_IMAGES[1]].append(img)
    return by_style


def tissue_pixels(img, n, rng):
    """n random tissue pixels of an image."""
    a = tissue(img)[0]
    return a[rng.choice(len(a), n, replace=False)].astype(int)


def colour_histogram(px):
    h = np.zeros((BINS,) * 3)
    np.add.at(h, tuple((px // (256 // BINS)).T), 1)
    return h / len(px)


def print_pixels(folder, part="test"):
    rng = np.random.default_rng(0)
    images = real_split.load()
    by_style = phantoms_by_style(folder)
    print(f"| real image ({part} part) | phantom slides in its style | single-pixel colour AUROC |")
    print("| --- | ---: | ---: |")
    half = 50000
    for name in judge.REAL_IMAGES:
        if not by_style[name]:
            continue
        rgb = judge.read_real_part(name, real_split.part(name, part, images))
        real = tissue_pixels(judge.resample(rgb, real_split.mpp(name, images)), 2 * half, rng)
        pooled = np.concatenate([i.reshape(-1, 3) for i in by_style[name]])
        phantom = tissue_pixels(pooled, 2 * half, rng)
        ratio = np.log((colour_histogram(phantom[:half]) + 1e-5) / (colour_histogram(real[:half]) + 1e-5))
        score = lambda px: ratio[tuple((px // (256 // BINS)).T)]
        a = judge.auroc([0] * half + [1] * half, np.concatenate([score(real[half:]), score(phantom[half:])]))
        print(f"| {name} | {len(by_style[name])} | {a:.3f} |")


def main():
    args = sys.argv[1:]
    part = "test"
    if args[-2:-1] == ["--part"]:
        part = args[-1]
        args = args[:-2]
    commands = {"off-plane": print_off_plane, "features": print_features, "pixels": print_pixels}
    if len(args) != 2 or args[0] not in commands or part not in ("train", "test"):
        sys.exit(__doc__)
    if args[0] == "off-plane":
        print_off_plane(args[1])
    else:
        commands[args[0]](args[1], part)


if __name__ == "__main__":
    main()
