"""The realism judge's recipe, asked of implants: can it tell drawn lesions in a
real slide from the slide's own tissue?

`synth --implant-into` draws lesions (and shams) into a real image and keeps every
other pixel of it (lossless Deflate). So the drawn pixels are exactly those that
differ from the real image's part, and no mask from the renderer is needed. This
script trains judge.py's frozen recipe (architecture, crop size, schedule,
resampling to 1.0 um/px) on

  * real: crops of the real TRAIN parts (as judge.py),
  * implant: crops of implants into the TRAIN parts with at least MIN_DRAWN of
    their pixels drawn,

and evaluates it on crops of the real TEST parts (as judge.py) against crops of
implants into the TEST parts, with the same share drawn. AUROC with implant as
positive; the 95% interval resamples whole regions (192 um blocks of the real test
parts; one implant slide = one region), as judge.py does. A judge at 0.5 cannot tell
what was drawn from what was scanned.

`--select` chooses between renderer variants without the test parts, as judge.py
--select does: real crops of the train parts' first SELECT_FIT share train, the
rest evaluate; implants drawn into the train parts, one seed set cut to the first
share for training, another to the rest for evaluation.

Usage (implants rendered with the binary under test; training/realism/implant_run.sh
renders the sets and runs this):
  implant_judge.py --train-implants DIR [DIR ...] --eval-implants DIR [DIR ...] [--select] [--json OUT]
"""

import argparse
import glob
import json
import os
import sys
import time

import numpy as np
import tifffile
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import real_split  # noqa: E402
from realism.judge import (  # noqa: E402
    CROP,
    EVAL_STRIDE,
    MIN_TISSUE,
    REAL_IMAGES,
    SEED,
    TRAIN_STRIDE,
    auroc,
    predict,
    read_real_part,
    real_crops,
    region_ci,
    resample,
    select_part,
    tissue_share,
    to_tensor,
    train,
)

MIN_DRAWN = 0.25  # share of a crop's pixels (at 1.0 um/px) that the implant drew


def implant_source(tiff_path):
    """(real image name, part, rectangle x0, y0, x1, y1, MPP) from the implant's
    truth.json."""
    with open(tiff_path[: -len(".tiff")] + ".truth.json") as f:
        imp = json.load(f)
    src, mpp = imp["implant"], imp["mpp"]
    x0, y0, w, h = src["source_region"]
    return src["source"], src["part"], (x0, y0, x0 + w, y0 + h), mpp


def implant_kinds(tiff_path):
    """[(kind, centre x um, centre y um, reach um)] of the implant's truth.json."""
    with open(tiff_path[: -len(".tiff")] + ".truth.json") as f:
        imp = json.load(f)
    return [(i["kind"], i["centre_um"][0], i["centre_um"][1], i["reach_um"]) for i in imp["implant"]["implants"]]


def kind_at(kinds, x_um, y_um):
    """The kind of the implant whose centre is nearest (x, y) among those reaching it."""
    best, kind = None, "none"
    for k, cx, cy, r in kinds:
        d = ((cx - x_um) ** 2 + (cy - y_um) ** 2) ** 0.5
        if d <= r + CROP / 2 and (best is None or d < best):
            best, kind = d, k
    return kind


def implant_crops(folders, part, stride, region_base=0, share=None):
    """Crops of implants into `part` ("train" or "test") with MIN_DRAWN drawn; with
    `share` ("fit" or "select", --select) only that share of the train part. Returns
    crops, regions, real image names, drawn shares and the kind of implant nearest
    each crop's centre."""
    paths = sorted(p for d in folders for p in glob.glob(os.path.join(d, "*.tiff")))
    if not paths:
        raise FileNotFoundError(f"{folders}: no implant .tiff files")
    crops, regions, names, shares, kinds_of = [], [], [], [], []
    cache = {}
    for k, p in enumerate(paths):
        name, which, rect, mpp = implant_source(p)
        if which != part:
            raise ValueError(f"{p}: drawn into the {which} part of {name}, expected {part}")
        if (name, which) not in cache:
            cache[(name, which)] = read_real_part(name, rect)
        real = cache[(name, which)]
        rgb = np.ascontiguousarray(tifffile.imread(p, key=0)[..., :3])
        drawn = (rgb != real).any(axis=2)
        kinds = implant_kinds(p)
        ox, oy = 0.0, 0.0  # um offset of the crop grid within the written region
        if share:
            sx0, sy0, sx1, sy1 = select_part(rect, share)
            x0, y0 = rect[0], rect[1]
            ox, oy = (sx0 - x0) * mpp, (sy0 - y0) * mpp
            rgb = np.ascontiguousarray(rgb[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0])
            drawn = drawn[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
        img = resample(rgb, mpp)
        drawn_share = resample((drawn * 255).astype(np.uint8), mpp).astype(np.float32) / 255.0
        h, w = img.shape[:2]
        for y in range(0, h - CROP + 1, stride):
            for x in range(0, w - CROP + 1, stride):
                c = img[y : y + CROP, x : x + CROP]
                s = float(drawn_share[y : y + CROP, x : x + CROP].mean())
                if s < MIN_DRAWN or tissue_share(c) < MIN_TISSUE:
                    continue
                crops.append(c)
                regions.append(region_base + k)
                names.append(name)
                shares.append(s)
                # Crop centre in um of the written region (1.0 um/px after resampling).
                kinds_of.append(kind_at(kinds, ox + x + CROP / 2, oy + y + CROP / 2))
    return crops, regions, names, shares, kinds_of


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-implants", nargs="+", required=True)
    ap.add_argument("--eval-implants", nargs="+", required=True)
    ap.add_argument("--json")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--select",
        action="store_true",
        help="choosing between renderer variants: everything from the TRAIN parts, "
        "trained on their first 75%% (judge.py's split), evaluated on the rest; "
        "both implant sets drawn into the train parts",
    )
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    if a.select:
        rtr, _, _ = real_crops("fit", TRAIN_STRIDE)
        itr, _, itr_names, _, _ = implant_crops(a.train_implants, "train", TRAIN_STRIDE, share="fit")
        rte, rte_reg, rte_names = real_crops("select", EVAL_STRIDE)
        ite, ite_reg, ite_names, ite_share, ite_kinds = implant_crops(
            a.eval_implants, "train", EVAL_STRIDE, 10**6, share="select"
        )
    else:
        rtr, _, _ = real_crops("train", TRAIN_STRIDE)
        itr, _, itr_names, _, _ = implant_crops(a.train_implants, "train", TRAIN_STRIDE)
        rte, rte_reg, rte_names = real_crops("test", EVAL_STRIDE)
        ite, ite_reg, ite_names, ite_share, ite_kinds = implant_crops(
            a.eval_implants, "test", EVAL_STRIDE, 10**6
        )
    for name in REAL_IMAGES:
        print(f"{name}: train implant crops {itr_names.count(name)}, eval implant crops {ite_names.count(name)}")
    print(f"train: {len(rtr)} real, {len(itr)} implant; eval: {len(rte)} real, {len(ite)} implant")
    model = train(to_tensor(rtr), to_tensor(itr))
    s_real = predict(model, to_tensor(rte))
    s_imp = predict(model, to_tensor(ite))
    y = [0] * len(s_real) + [1] * len(s_imp)
    s = np.concatenate([s_real, s_imp])
    auc = auroc(y, s)
    lo, hi, npos, nneg = region_ci(y, s, rte_reg + ite_reg, np.random.default_rng(SEED))
    per_image = {}
    for name in REAL_IMAGES:
        mr = np.array([n == name for n in rte_names])
        mi = np.array([n == name for n in ite_names])
        if mr.sum() and mi.sum():
            per_image[name] = auroc([0] * int(mr.sum()) + [1] * int(mi.sum()), np.concatenate([s_real[mr], s_imp[mi]]))
    by_kind = {}
    for kind in sorted(set(ite_kinds)):
        m = np.array([k == kind for k in ite_kinds])
        by_kind[kind] = {
            "crops": int(m.sum()),
            "mean_score": float(s_imp[m].mean()),
            "auroc_vs_real": auroc([0] * len(s_real) + [1] * int(m.sum()), np.concatenate([s_real, s_imp[m]])),
        }
    out = {
        "real_eval": "select" if a.select else "test",
        "auroc": auc,
        "ci95": [lo, hi],
        "implant_regions": npos,
        "real_regions": nneg,
        "min_drawn": MIN_DRAWN,
        "eval_crops": {"real": len(rte), "implant": len(ite)},
        "train_crops": {"real": len(rtr), "implant": len(itr)},
        "auroc_per_real_image": per_image,
        "mean_score": {"real": float(s_real.mean()), "implant": float(s_imp.mean())},
        "mean_drawn_share_eval": float(np.mean(ite_share)) if ite_share else 0.0,
        "by_kind": by_kind,
        "seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(out, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
