"""Does the judge find lesion crops more phantom-like than the rest? The frozen
judge's recipe trained as judge.py trains it (real TRAIN crops against the
renderer's train phantoms), then its mean score on the eval phantoms' crops,
split by whether a crop holds a finding (pustule, acantholysis or hidradenitis
mask over at least LESION_SHARE of the crop) or not. Compare renderers by
running it on each one's run.sh folder.

Usage: lesion_scores.py RUN_DIR [RUN_DIR ...]   (RUN_DIR holds train/ and eval/)
"""

import json
import os
import sys

import numpy as np
import tifffile
import torch
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from realism import judge  # noqa: E402

LESION_SHARE = 0.1
LESION_MASKS = ("subcorneal_pustule", "acantholysis", "neutrophilic_eccrine_hidradenitis")


def eval_crops_with_lesion_share(folder):
    """The eval phantoms' crops as judge.phantom_crops cuts them, each with the
    share of its area inside a finding mask."""
    crops, shares = [], []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".tiff"):
            continue
        path = os.path.join(folder, name)
        truth = json.load(open(path[: -len(".tiff")] + ".truth.json"))
        rgb = tifffile.imread(path, key=0)[..., :3]
        img = judge.resample(np.ascontiguousarray(rgb), judge.phantom_mpp(path))
        mask = np.zeros(img.shape[:2], bool)
        for key in LESION_MASKS:
            m = Image.open(os.path.join(folder, truth["slide_id"] + ".masks", key + ".png"))
            mask |= np.asarray(m.resize((img.shape[1], img.shape[0]), Image.NEAREST)) > 0
        h, w = img.shape[:2]
        for y in range(0, h - judge.CROP + 1, judge.PHANTOM_STRIDE):
            for x in range(0, w - judge.CROP + 1, judge.PHANTOM_STRIDE):
                c = img[y : y + judge.CROP, x : x + judge.CROP]
                if judge.tissue_share(c) < judge.MIN_TISSUE:
                    continue
                crops.append(c)
                shares.append(float(mask[y : y + judge.CROP, x : x + judge.CROP].mean()))
    return crops, np.asarray(shares)


def main():
    torch.set_num_threads(2)
    rtr, _, _ = judge.real_crops("train", judge.TRAIN_STRIDE)
    for run in sys.argv[1:]:
        ptr, _, _ = judge.phantom_crops(os.path.join(run, "train"), judge.PHANTOM_STRIDE)
        model = judge.train(judge.to_tensor(rtr), judge.to_tensor(ptr))
        crops, shares = eval_crops_with_lesion_share(os.path.join(run, "eval"))
        s = judge.predict(model, judge.to_tensor(crops))
        les = shares >= LESION_SHARE
        print(
            f"{run}: lesion crops {les.sum()} mean score {s[les].mean():.3f} "
            f"(median {np.median(s[les]):.3f}); other crops {(~les).sum()} mean "
            f"{s[~les].mean():.3f} (median {np.median(s[~les]):.3f})"
        )


if __name__ == "__main__":
    main()
