"""Picture sheet of matched crops at 1.0 um/px: real (public-domain image, TEST
part only, the one real image whose pixels may appear in the docs) beside
phantoms of each generator, epidermis and dermis.

Phantom crops are placed from the slide's own truth masks: the epidermis crop
centred on the epidermis at a third of the slide's width, the dermis crop
350 um below it.

Usage: sheet.py --phantom NAME=SLIDE.tiff [--phantom ...] --out docs/realism.png
"""

import argparse
import os
import sys

import numpy as np
import tifffile
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import real_split  # noqa: E402
from realism.judge import phantom_mpp, read_real, resample  # noqa: E402

SIDE = 192  # um (= px at 1.0 um/px)
ZOOM = 2
PD = "skin-normal-10x-public-domain.jpg"
# Crop centres in the test part, in um from its top-left (picked by eye).
PD_EPIDERMIS = (300, 330)
PD_DERMIS = (420, 760)


def crop(img, cx, cy):
    x0 = int(np.clip(cx - SIDE // 2, 0, img.shape[1] - SIDE))
    y0 = int(np.clip(cy - SIDE // 2, 0, img.shape[0] - SIDE))
    return img[y0 : y0 + SIDE, x0 : x0 + SIDE]


def real_row():
    images = real_split.load()
    x0, y0, x1, y1 = real_split.part(PD, "test", images)
    img = resample(np.ascontiguousarray(read_real(PD)[y0:y1, x0:x1]), real_split.mpp(PD, images))
    return [crop(img, *PD_EPIDERMIS), crop(img, *PD_DERMIS)]


def phantom_row(tiff):
    rgb = np.ascontiguousarray(tifffile.imread(tiff, key=0)[..., :3])
    img = resample(rgb, phantom_mpp(tiff))
    masks = tiff[: -len(".tiff")] + ".masks"
    epi = np.asarray(Image.open(os.path.join(masks, "epidermis.png"))) > 0
    um_per_mask = img.shape[1] / epi.shape[1]
    col = epi.shape[1] // 3
    rows = np.nonzero(epi[:, col])[0]
    cy = (rows.mean() if len(rows) else epi.shape[0] * 0.15) * um_per_mask
    cx = col * um_per_mask
    return [crop(img, cx, cy), crop(img, cx, cy + 350)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phantom", action="append", required=True, metavar="NAME=SLIDE.tiff")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    rows = [("real (public domain, test part)", real_row())]
    for spec in a.phantom:
        name, path = spec.split("=", 1)
        rows.append((name, phantom_row(path)))
    cell = SIDE * ZOOM
    label_h = 22
    sheet = Image.new("RGB", (2 * cell + 6, len(rows) * (cell + label_h) + 4), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (name, crops) in enumerate(rows):
        y = r * (cell + label_h)
        draw.text((4, y + 4), f"{name}: epidermis | dermis, {SIDE} um at 1.0 um/px", fill="black")
        for c, im in enumerate(crops):
            tile = Image.fromarray(im).resize((cell, cell), Image.Resampling.NEAREST)
            sheet.paste(tile, (c * (cell + 6), y + label_h))
    sheet.save(a.out)
    print(a.out)


if __name__ == "__main__":
    main()
