"""How much the real normal-skin fixtures' calls rest on where the tile grid falls.

`dirascope score` lays its tile grid from the slide's top-left corner, so the
same tissue scored from a file cropped by a few pixels is cut into other tiles.
This crops each whole real fixture by every (dx, dy) in a grid of shifts (default
0, 1/4, 1/2 and 3/4 of a tile, in level-0 pixels), writes each crop as a lossless
PNG with the image's MPP, scores all of them with one `dirascope score` run at the
model's own overlap, and prints each crop's call and finding scores with the
spread over the shifts. Nothing is fitted: it measures the call a user would get
from the same tissue exported with another origin. The whole fixtures are scored,
as the issue's gate ("both whole fixtures are called no-pustular-pattern") reads;
the crops lose at most 3/4 of a tile at the top and left.

    training/.venv/bin/python training/grid_shift_real.py target/release/dirascope [--model DIR]
"""

from __future__ import annotations

import argparse
import csv
import statistics
from collections import Counter
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

import real_split

# Each scored at its MPP in training/real_split.toml (the public-domain image's 0.75
# is the one its README gives; the JPEG carries none).
IMAGES = ["CMU-1-Small-Region.svs", "skin-normal-10x-public-domain.jpg"]
SCORES = ["dira_score", "subcorneal_pustule_score", "acantholysis_score",
          "neutrophilic_eccrine_hidradenitis_score", "psoriasiform_score"]
MODEL_TILE_UM = 224.0  # 224 px at 1.0 um/px, the bundled models' tile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirascope")
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: the bundled model)")
    ap.add_argument("--steps", type=int, default=4, help="shifts per axis, in 1/steps of a tile (default 4)")
    ap.add_argument("--real", type=Path, default=Path(real_split.REAL_DIR))
    ap.add_argument("--keep", type=Path, default=None, help="write crops and scores here instead of a temp folder")
    args = ap.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="grid-shift-"))
    rows = []
    for name in IMAGES:
        src = args.real / name
        if not src.exists():
            print(f"{src}: missing, skipped")
            continue
        mpp = real_split.mpp(name)
        img = real_split.level0(src)
        tile_l0 = MODEL_TILE_UM / mpp
        folder = work / "crops" / Path(name).stem
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(args.steps):
            for j in range(args.steps):
                dx, dy = round(i * tile_l0 / args.steps), round(j * tile_l0 / args.steps)
                out = folder / f"{Path(name).stem}.dx{dx:04d}.dy{dy:04d}.png"
                if not out.exists():
                    Image.fromarray(img[dy:, dx:]).save(out)
        runs = work / f"scored-{Path(name).stem}"
        cmd = [args.dirascope, "score", str(folder), "--out", str(runs), "--mpp", str(mpp), "--quiet"]
        if args.model:
            cmd += ["--model", str(args.model)]
        subprocess.run(cmd, check=True)
        with open(runs / "summary.csv") as f:
            for r in csv.DictReader(f):
                r["image"] = name
                rows.append(r)

    print(f"{'crop':48} {'call':22} " + " ".join(s.replace('_score', '')[:12].rjust(12) for s in SCORES))
    for r in rows:
        print(f"{r['slide_id']:48} {r['call']:22} " + " ".join(f"{float(r[s]):12.3f}" for s in SCORES))
    print()
    for name in IMAGES:
        rs = [r for r in rows if r["image"] == name]
        if not rs:
            continue
        calls = Counter(r["call"] for r in rs)
        print(f"{name}: {len(rs)} shifts; calls " + ", ".join(f"{c} {n}" for c, n in sorted(calls.items())))
        for s in SCORES:
            v = [float(r[s]) for r in rs]
            print(f"  {s:42} min {min(v):.3f}  median {statistics.median(v):.3f}  max {max(v):.3f}")
    print(f"(crops and runs in {work})")


if __name__ == "__main__":
    main()
