"""The follicle-bearing tiles of a synth 1.9 tile export, as an export of their own
(with `--structure coils`, the tiles of a synth 1.10 export that meet an eccrine coil).

    python training/follicle_subset.py SRC DST [--margin-um M] [--structure follicles|coils]

Keeps the tiles of SRC (a `dirascope synth --tiles` export) whose square meets a
hair follicle (the capsule from (x0, y0) to (x1, y1) of radius r in the slide's
truth.json) or a sebaceous lobule (an ellipse of semi-axes a, b; its larger axis
is used), widened by M um (default 0). DST gets labels.csv and manifest.csv with
those tiles only and a `tiles` link to SRC's tiles, so train.py reads it as any
other export. Why: the whole synth 1.9 sets teach "follicles are not
hidradenitis", but their many follicle-free tiles also shift the mix away from
the psoriasiform lesson (candidates 2.17.0-2.19.0); these tiles carry the first
lesson alone. `--structure coils` keeps the tiles whose square meets an eccrine
coil's disc (truth.json's coils: x, y, radius, inflamed), inflamed or not: synth
1.10 draws coils as a coiled tube cut across, in which model 2.20.0 (trained on
1.9's round tubules) finds hidradenitis on fewer inflamed-coil tiles and sees it in
some normal coils (docs/realism.md, "Synth 1.10"); these tiles teach the new look on
both sides.
"""

import argparse
import csv
import json
import math
import os
from pathlib import Path


def rect_distance(px: float, py: float, x: float, y: float, side: float) -> float:
    """Distance from a point to the square [x, x+side] x [y, y+side] (0 inside)."""
    dx = max(x - px, 0.0, px - (x + side))
    dy = max(y - py, 0.0, py - (y + side))
    return math.hypot(dx, dy)


def meets_follicle(f: dict, x: float, y: float, side: float, margin: float) -> bool:
    """Whether a follicle's capsule (or one of its lobules) comes within margin of the square."""
    length = math.hypot(f["x1"] - f["x0"], f["y1"] - f["y0"])
    steps = max(1, int(length / 2.0))  # a point every 2 um along the axis
    for i in range(steps + 1):
        t = i / steps
        px = f["x0"] + t * (f["x1"] - f["x0"])
        py = f["y0"] + t * (f["y1"] - f["y0"])
        if rect_distance(px, py, x, y, side) <= f["r"] + margin:
            return True
    return any(rect_distance(lb["x"], lb["y"], x, y, side) <= max(lb["a"], lb["b"]) + margin for lb in f["lobules"])


def meets_coil(c: list, x: float, y: float, side: float, margin: float) -> bool:
    """Whether an eccrine coil's disc (x, y, radius, inflamed) comes within margin of the square."""
    return rect_distance(c[0], c[1], x, y, side) <= c[2] + margin


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path, help="a synth --tiles export of synth 1.9 (or later) slides")
    ap.add_argument("dst", type=Path, help="folder to write (created)")
    ap.add_argument("--margin-um", type=float, default=0.0)
    ap.add_argument("--structure", choices=["follicles", "coils"], default="follicles")
    args = ap.parse_args()
    need, meets = ((1, 9), meets_follicle) if args.structure == "follicles" else ((1, 10), meets_coil)

    with open(args.src / "labels.csv", newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    follicles = {}
    for slide in sorted({r["slide_id"] for r in rows}):
        truth_file = args.src / "tiles" / f"{slide}.truth.json"
        try:
            truth = json.loads(truth_file.read_text())
        except (OSError, ValueError) as e:
            raise SystemExit(f"{truth_file}: cannot read the slide's truth ({e})")
        # The truth file leaves out empty lists, so only the generator version tells
        # "no follicle drawn" from "a generator that draws none".
        version = tuple(int(v) for v in truth.get("generator_version", "0.0").split(".")[:2])
        if version < need:
            raise SystemExit(f"{truth_file}: generator {truth.get('generator_version')} does not draw "
                             f"{args.structure} that way; render with --generator {need[0]}.{need[1]} or later")
        follicles[slide] = truth["structures"].get(args.structure, [])

    keep = [
        r
        for r in rows
        if any(
            meets(f, float(r["x_um"]), float(r["y_um"]), int(r["tile_px"]) * float(r["tile_mpp"]), args.margin_um)
            for f in follicles[r["slide_id"]]
        )
    ]
    args.dst.mkdir(parents=True, exist_ok=True)
    with open(args.dst / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(keep)
    slides = {r["slide_id"] for r in keep}
    with open(args.src / "manifest.csv", newline="") as f:
        reader = csv.DictReader(f)
        mfields, mrows = reader.fieldnames, [r for r in reader if r["slide_id"] in slides]
    with open(args.dst / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=mfields)
        w.writeheader()
        w.writerows(mrows)
    link = args.dst / "tiles"
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink((args.src / "tiles").resolve(), link)
    by_class = {}
    for r in keep:
        by_class[r["class"]] = by_class.get(r["class"], 0) + 1
    print(f"{len(keep)} of {len(rows)} tiles meet {args.structure} (margin {args.margin_um:g} um), "
          f"from {len(slides)} slides: " + ", ".join(f"{k} {v}" for k, v in sorted(by_class.items())))


if __name__ == "__main__":
    main()
