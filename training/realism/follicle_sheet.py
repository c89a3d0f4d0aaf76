"""A picture sheet of synth 1.9's hair follicles and sebaceous glands: 400 um crops
centred on the follicles that truth.json lists, at 1 um/px, four to a row.

    training/.venv/bin/python training/realism/follicle_sheet.py --out docs/follicles.jpg SLIDE.tiff...

Each SLIDE.tiff needs its SLIDE.truth.json beside it (dirascope synth writes both).
"""
import argparse
import json
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

CROP_UM = 400


def crops(tiff, limit):
    truth = json.loads(Path(tiff).with_suffix(".truth.json").read_text())
    mpp = truth["mpp"]
    with tifffile.TiffFile(tiff) as t:
        img = t.series[0].levels[0].asarray()
    side = int(CROP_UM / mpp)
    for f in truth["structures"].get("follicles", [])[:limit]:
        xs = [f["x0"], f["x1"]] + [lb["x"] for lb in f["lobules"]]
        ys = [f["y0"], f["y1"]] + [lb["y"] for lb in f["lobules"]]
        cx, cy = np.mean(xs) / mpp, np.mean(ys) / mpp
        x0 = int(min(max(cx - side / 2, 0), img.shape[1] - side))
        y0 = int(min(max(cy - side / 2, 0), img.shape[0] - side))
        crop = Image.fromarray(img[y0:y0 + side, x0:x0 + side])
        yield crop.resize((CROP_UM, CROP_UM), Image.LANCZOS)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("slides", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--per-slide", type=int, default=2)
    a = ap.parse_args()
    tiles = []
    for s in a.slides:
        tiles.extend(crops(s, a.per_slide))
        if len(tiles) >= a.count:
            break
    tiles = tiles[: a.count]
    cols = 4
    rows = (len(tiles) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * CROP_UM + (cols - 1) * 4, rows * CROP_UM + (rows - 1) * 4), "white")
    for i, t in enumerate(tiles):
        sheet.paste(t, ((i % cols) * (CROP_UM + 4), (i // cols) * (CROP_UM + 4)))
    sheet.save(a.out, quality=85)
    print(f"{a.out}: {len(tiles)} crops")


if __name__ == "__main__":
    main()
