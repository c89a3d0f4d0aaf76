"""Which cue gives a phantom away? The realism judge's frozen recipe, retrained
with one transform applied to every crop on both sides (real and phantom,
train and eval), so a cue the transform removes can no longer be used.

This is a diagnostic, not the judge: docs/realism.md reports the judge
(judge.py, no transform); this script says where to look next. If AUROC stays
at 1.0 after a transform, the judge does not need what the transform removed.

Transforms (each on the 96 px crop at 1.0 um/px, values 0..1):
  none        the judge itself
  gray        luminance only, copied to three channels (no colour)
  blur2       Gaussian blur, sigma 2 px (no detail finer than ~4 um)
  blur4       Gaussian blur, sigma 4 px
  colornorm   each channel scaled to the crop's own mean and std of the whole
              real train set (no global colour, keeps texture and structure)
  gray-blur2  both
  noise       Gaussian noise of sd 0.04 added (hides sensor noise and JPEG)
  shuffle     the crop's pixels in a random order (only its colour histogram
              is left: no structure at any scale)
  gray-shuffle  luminance histogram only

--colour-transfer N first maps the phantoms' colours (train and eval crops) onto
the real train parts' colour distribution: optical density, quantile-matched
along three axes at a time (the principal axes of the real train pixels, then
N - 1 random rotations: sliced matching), fitted on real TRAIN crops against
phantom TRAIN crops only. It asks how far matching the colour distribution alone
would take a renderer.

--select keeps the real crops inside the train parts (judge.py --select: fit on
the first share of each, evaluate on the rest), for tuning a renderer against
phantoms of the tuning seeds (run.sh SELECT=1 renders them: OUT/select) without
looking at the test parts.

Usage:
  probe.py --train-phantoms DIR --eval-phantoms DIR [--transform NAME ...]
           [--colour-transfer N] [--select]
"""

import argparse
import json
import time

import numpy as np
import torch

import judge

TRANSFORMS = ["none", "gray", "blur2", "blur4", "colornorm", "gray-blur1", "gray-blur2", "noise", "shuffle", "gray-shuffle"]


def gaussian_blur(x, sigma):
    radius = int(3 * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    pad = torch.nn.functional.pad(x, (radius, radius, radius, radius), mode="reflect")
    h = torch.nn.functional.conv2d(pad, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return torch.nn.functional.conv2d(h, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def apply(name, x, stats):
    if name == "none":
        return x
    if name == "gray":
        g = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
        return g.repeat(1, 3, 1, 1)
    if name == "blur2":
        return gaussian_blur(x, 2.0)
    if name == "blur4":
        return gaussian_blur(x, 4.0)
    if name == "gray-blur1":
        return gaussian_blur(apply("gray", x, stats), 1.0)
    if name == "gray-blur2":
        return gaussian_blur(apply("gray", x, stats), 2.0)
    if name == "colornorm":
        mean, std = stats
        m = x.mean(dim=(2, 3), keepdim=True)
        s = x.std(dim=(2, 3), keepdim=True).clamp_min(1e-3)
        return ((x - m) / s * std + mean).clamp(0, 1)
    if name == "noise":
        g = torch.Generator().manual_seed(judge.SEED)
        return (x + 0.04 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    if name == "shuffle":
        g = torch.Generator().manual_seed(judge.SEED)
        n, c, h, w = x.shape
        flat = x.reshape(n, c, h * w)
        order = torch.stack([torch.randperm(h * w, generator=g) for _ in range(n)])
        return torch.gather(flat, 2, order.unsqueeze(1).expand(n, c, h * w)).reshape(n, c, h, w)
    if name == "gray-shuffle":
        return apply("shuffle", apply("gray", x, stats), stats)
    raise ValueError(name)


def od(crop):
    return -np.log((crop.astype(np.float64) + 1.0) / 256.0)


def from_od(x):
    return np.clip(np.round(256.0 * np.exp(-x) - 1.0), 0, 255).astype(np.uint8)


def fit_colour_transfer(real_crops, phantom_crops, passes, samples=400_000, quantiles=257):
    """Sliced quantile matching of phantom OD onto real OD: a list of (basis,
    phantom quantiles, real quantiles), applied in order."""
    rng = np.random.default_rng(judge.SEED)
    real = np.concatenate([od(c).reshape(-1, 3) for c in real_crops])
    phantom = np.concatenate([od(c).reshape(-1, 3) for c in phantom_crops])
    real = real[rng.choice(len(real), min(samples, len(real)), replace=False)]
    phantom = phantom[rng.choice(len(phantom), min(samples, len(phantom)), replace=False)]
    q = np.linspace(0, 100, quantiles)
    maps = []
    for k in range(passes):
        if k == 0:
            basis = np.linalg.svd(real - real.mean(0), full_matrices=False)[2].T
        else:
            basis = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        maps.append((basis, np.percentile(phantom @ basis, q, axis=0), np.percentile(real @ basis, q, axis=0)))
        phantom = apply_transfer(maps[-1:], phantom)
    return maps


def apply_transfer(maps, x):
    for basis, q_from, q_to in maps:
        y = x @ basis
        for a in range(3):
            y[:, a] = np.interp(y[:, a], q_from[:, a], q_to[:, a])
        x = y @ basis.T
    return x


def transfer_crops(maps, crops):
    return [from_od(apply_transfer(maps, od(c).reshape(-1, 3))).reshape(c.shape) for c in crops]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-phantoms", required=True)
    ap.add_argument("--eval-phantoms", required=True)
    ap.add_argument("--transform", action="append", choices=TRANSFORMS)
    ap.add_argument("--colour-transfer", type=int, default=0, metavar="N")
    ap.add_argument("--json")
    ap.add_argument("--select", action="store_true", help="real crops from the train parts only, as judge.py --select")
    a = ap.parse_args()
    torch.set_num_threads(2)
    fit, held = ("fit", "select") if a.select else ("train", "test")
    rtr, _, _ = judge.real_crops(fit, judge.TRAIN_STRIDE)
    ptr, _, _ = judge.phantom_crops(a.train_phantoms, judge.PHANTOM_STRIDE)
    rte, rte_reg, _ = judge.real_crops(held, judge.EVAL_STRIDE)
    pte, pte_reg, _ = judge.phantom_crops(a.eval_phantoms, judge.PHANTOM_STRIDE, region_base=10**6)
    if a.colour_transfer:
        maps = fit_colour_transfer(rtr, ptr, a.colour_transfer)
        ptr, pte = transfer_crops(maps, ptr), transfer_crops(maps, pte)
    xr, xp, xre, xpe = (judge.to_tensor(c) for c in (rtr, ptr, rte, pte))
    stats = (xr.mean(dim=(0, 2, 3)).view(1, 3, 1, 1), xr.std(dim=(0, 2, 3)).view(1, 3, 1, 1))
    y = [0] * len(rte) + [1] * len(pte)
    results = {}
    for name in a.transform or TRANSFORMS:
        t0 = time.time()
        model = judge.train(apply(name, xr, stats), apply(name, xp, stats))
        s = np.concatenate([judge.predict(model, apply(name, xre, stats)), judge.predict(model, apply(name, xpe, stats))])
        auc = judge.auroc(y, s)
        lo, hi, _, _ = judge.region_ci(y, s, rte_reg + pte_reg, np.random.default_rng(judge.SEED))
        results[name] = {"auroc": round(auc, 4), "ci95": [round(lo, 4), round(hi, 4)], "seconds": round(time.time() - t0, 1)}
        print(f"{name:12s} AUROC {auc:.4f} [{lo:.4f}, {hi:.4f}]", flush=True)
    print(json.dumps(results, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
