"""A picture sheet of what one generator step changed: for each pair of renders of
the same slide (OLD.tiff by the older generator, NEW.tiff by the newer), the
CROPS 160 um crops (at 0.5 um/px: 320 px) where the most pixels changed by more
than 20 levels summed over the channels, none overlapping; the older row above
the newer.

    training/.venv/bin/python training/realism/change_sheet.py --out docs/knifelines.jpg \\
        "normal-1=OLD/normal-1.tiff,NEW/normal-1.tiff" "dira-13=OLD/dira-13.tiff,NEW/dira-13.tiff"

docs/knifelines.jpg (synth 1.12 against 1.13): normal-1 and dira-13, each
`dirascope synth --generator G --class C --seed S --mpp 0.5 --width-mm 2 --height-mm 1.5`.
"""
import argparse

import numpy as np
import tifffile
from PIL import Image, ImageDraw

SIDE = 320
GAP = 6
LABEL = 18


def level0(path):
    with tifffile.TiffFile(path) as t:
        return t.pages[0].asarray()


def most_changed(old, new, crops):
    changed = np.abs(old.astype(int) - new.astype(int)).sum(axis=2) > 20
    h, w = changed.shape
    scored = sorted(
        (
            (int(changed[y : y + SIDE, x : x + SIDE].sum()), y, x)
            for y in range(0, h - SIDE, SIDE // 2)
            for x in range(0, w - SIDE, SIDE // 2)
        ),
        reverse=True,
    )
    picked = []
    for _, y, x in scored:
        if all(abs(y - py) >= SIDE or abs(x - px) >= SIDE for py, px in picked):
            picked.append((y, x))
        if len(picked) == crops:
            break
    return picked


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pairs", nargs="+", help="NAME=OLD.tiff,NEW.tiff")
    ap.add_argument("--crops", type=int, default=3)
    ap.add_argument("--mpp", type=float, default=0.5, help="the renders' um per pixel (labels)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    cols = []
    for pair in args.pairs:
        name, paths = pair.split("=", 1)
        old, new = (level0(p) for p in paths.split(","))
        for y, x in most_changed(old, new, args.crops):
            label = f"{name} ({x * args.mpp:.0f}, {y * args.mpp:.0f}) um"
            cols.append((old[y : y + SIDE, x : x + SIDE], new[y : y + SIDE, x : x + SIDE], label))
    sheet = Image.new("RGB", (len(cols) * (SIDE + GAP) - GAP, 2 * SIDE + GAP + LABEL), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (a, b, label) in enumerate(cols):
        sheet.paste(Image.fromarray(np.ascontiguousarray(a)), (i * (SIDE + GAP), LABEL))
        sheet.paste(Image.fromarray(np.ascontiguousarray(b)), (i * (SIDE + GAP), LABEL + SIDE + GAP))
        draw.text((i * (SIDE + GAP) + 4, 3), label, fill="black")
    sheet.save(args.out, quality=82)
    print(f"{args.out}: {len(cols)} crops, {sheet.size[0]} x {sheet.size[1]} px")


if __name__ == "__main__":
    main()
