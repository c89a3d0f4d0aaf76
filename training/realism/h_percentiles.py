"""Hematoxylin and eosin density per image, real TEST parts against phantoms, at
1.0 um/px: percentiles over tissue pixels (OD sum > 0.15, as stats.py) of the
Ruifrok hematoxylin after a 0.7 um blur (p50 / p90 / p99 / p99.9, the scale of
stats.py's nucleus threshold), of eosin (p50 / p90 / p99) and of the total optical
density (p50 / p90 / p99). Says per image what stats.py's pooled layers hide:
whether a phantom's darkest hematoxylin reaches a real image's.

    training/.venv/bin/python training/realism/h_percentiles.py PHANTOM_DIR [--part train]

--part train reads the real TRAIN parts instead (what a stain fit may look at).
A phantom's style is its glass (truth.json's stain.background): scanner about 250
(CMU-1's stain), camera about 225 (the public-domain image's).
"""

import json
import os
import sys

import numpy as np
from scipy import ndimage as ndi
from skimage import color

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from realism.stats import TISSUE_OD, phantom_images, real_parts  # noqa: E402


def percentiles(rgb: np.ndarray) -> str:
    od = -np.log10(np.clip(rgb.astype(np.float32), 1, 255) / 255.0)
    tissue = od.sum(2) > TISSUE_OD
    hed = color.rgb2hed(rgb)
    h = ndi.gaussian_filter(hed[..., 0], 0.7)[tissue]
    e = hed[..., 1][tissue]
    fmt = lambda a, q: " / ".join(f"{v:.3f}" for v in np.percentile(a, q))  # noqa: E731
    return f"{fmt(h, [50, 90, 99, 99.9])} | {fmt(e, [50, 90, 99])} | {fmt(od.sum(2)[tissue], [50, 90, 99])}"


def style(folder: str, tiff: str) -> str:
    truth = os.path.join(folder, tiff.removesuffix(".tiff") + ".truth.json")
    with open(truth) as f:
        glass = json.load(f)["stain"]["background"]
    return "scanner" if sum(glass) / 3 > 238 else "camera"


def main() -> None:
    args = sys.argv[1:]
    which = "test"
    if args[1:2] and args[1] == "--part" and len(args) == 3:
        which, args = args[2], args[:1]
    if len(args) != 1 or which not in ("train", "test"):
        sys.exit(__doc__)
    print("| image | H p50 / p90 / p99 / p99.9 | E p50 / p90 / p99 | OD sum p50 / p90 / p99 |")
    print("|---|---|---|---|")
    for name, rgb in real_parts(which):
        print(f"| real {name} ({which} part) | {percentiles(rgb)} |")
    for name, rgb in phantom_images(args[0]):
        print(f"| phantom {name} ({style(args[0], name)}) | {percentiles(rgb)} |")


if __name__ == "__main__":
    main()
