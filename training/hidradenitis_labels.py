"""What synth 1.14's hidradenitis masks change in the tile labels, and how a model
scores the tiles each generator calls hidradenitis. training/hidradenitis_labels.sh
OUT renders the same DIRA seeds by synth 1.13 (hidradenitis marked over an inflamed
coil's whole disc and 35 um beyond) and 1.14 (within 35 um of the coil's tubules),
scores both; this reads OUT/gOLD, OUT/gNEW (slides with masks) and OUT/sOLD, OUT/sNEW
(score runs):

    python training/hidradenitis_labels.py OUT [OLD NEW]

A tile is labelled hidradenitis as training labels it: its mask covers at least
POS_FRAC (0.1, model2_finetune.sh's --pos-frac-for hidradenitis) of it, and 0 when
the mask misses it. Prints per generator the tiles labelled positive and the share
the model scores over 0.5, the tiles 1.13 labels positive and 1.14 does not (what is
in them: scored by the model on the 1.14 render), and the tiles whose label 1.14 keeps.
"""
import csv
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HIDRADENITIS = "neutrophilic_eccrine_hidradenitis"
POS_FRAC = 0.1


def shares(gen_dir: Path, slide: str, tiles):
    """Hidradenitis mask share of each tile (level-0 x, y, w, h) of a slide."""
    truth = json.loads((gen_dir / f"{slide}.truth.json").read_text())
    ds = truth["mask_downsample"]
    m = np.array(Image.open(gen_dir / f"{slide}.masks" / f"{HIDRADENITIS}.png")) > 0
    out = {}
    for key, (x, y, w, h) in tiles.items():
        cut = m[y // ds:(y + h + ds - 1) // ds, x // ds:(x + w + ds - 1) // ds]
        out[key] = float(cut.mean()) if cut.size else 0.0
    return out


def scored(run: Path, slide: str):
    with open(run / slide / "tiles.csv") as f:
        return {(int(r["x"]), int(r["y"])): r for r in csv.DictReader(f)}


def dira_slides(run: Path):
    """The DIRA slide ids of a score run, in summary.csv's order."""
    with open(run / "summary.csv") as f:
        return [r["slide_id"] for r in csv.DictReader(f) if r["slide_id"].startswith("dira-")]


def boxes(tiles, keys):
    """Level-0 (x, y, w, h) of the scored tiles `keys` (tiles.csv rows by (x, y))."""
    return {k: tuple(int(tiles[k][c]) for c in ("x", "y", "width", "height")) for k in keys}


def main(out, old="1.13", new="1.14"):
    out = Path(out)
    slides = dira_slides(out / f"s{new}")
    rows = []  # (slide, share old, share new, p old, p new)
    for slide in slides:
        t_old, t_new = scored(out / f"s{old}", slide), scored(out / f"s{new}", slide)
        keys = sorted(set(t_old) & set(t_new))
        boxes_new = boxes(t_new, keys)
        s_old, s_new = shares(out / f"g{old}", slide, boxes_new), shares(out / f"g{new}", slide, boxes_new)
        for k in keys:
            rows.append((slide, s_old[k], s_new[k], float(t_old[k][HIDRADENITIS]), float(t_new[k][HIDRADENITIS])))
    a = np.array([r[1:] for r in rows])
    pos_old, pos_new = a[:, 0] >= POS_FRAC, a[:, 1] >= POS_FRAC
    neg_old, neg_new = a[:, 0] <= 0.0, a[:, 1] <= 0.0

    def rate(sel, col):
        n = int(sel.sum())
        return f"{int((a[sel, col] > 0.5).sum())}/{n} = {(a[sel, col] > 0.5).mean():.1%}" if n else "0/0"

    print(f"{len(slides)} DIRA slides, {len(rows)} tiles scored under both; positive at mask share >= {POS_FRAC}")
    print(f"| tiles | n | hidradenitis > 0.5 on the {old} render | on the {new} render |")
    print("|---|---:|---|---|")
    for name, sel in [
        (f"positive under {old}", pos_old),
        (f"positive under {new}", pos_new),
        ("positive under both", pos_old & pos_new),
        (f"positive under {old}, negative (no mask) under {new}", pos_old & neg_new),
        (f"positive under {old}, ignored (0 < share < {POS_FRAC}) under {new}", pos_old & ~pos_new & ~neg_new),
        ("negative under both", neg_old & neg_new),
    ]:
        print(f"| {name} | {int(sel.sum())} | {rate(sel, 2)} | {rate(sel, 3)} |")
    print(f"hidradenitis mask area, tiles summed: {old} {a[:, 0].sum():.1f}, {new} {a[:, 1].sum():.1f} tile areas "
          f"({a[:, 1].sum() / max(a[:, 0].sum(), 1e-9):.3f})")


if __name__ == "__main__":
    main(*sys.argv[1:])
