"""Calls of the real fixtures scored whole, and their test parts' tiles over 0.5.

    python training/real_fixture_rates.py RUN [RUN ...]

Each RUN is a `dirascope score` output of one real fixture (../shared/fixtures/real).
The test part comes from training/real_split.toml through real_split.py, so the
split is read from its one file; a tile is in the test part when the centre of its
part inside the image is (the tile grid runs past the image's edges).
These rates are reported only, never used to choose a model.
"""

import csv
import os
import sys
from pathlib import Path

import real_split

FINDINGS = ["subcorneal_pustule", "acantholysis", "neutrophilic_eccrine_hidradenitis", "psoriasiform"]


def main(runs):
    images = real_split.load()
    for run in runs:
        s = next(csv.DictReader(open(Path(run) / "summary.csv")))
        print(
            f"{s['slide_id']}: {s['call']} (DIRA {float(s['dira_score']):.3f}, "
            f"psoriasiform {float(s['psoriasiform_score']):.3f})"
        )
        name = os.path.basename(s["path"])
        w, h = images[name]["width"], images[name]["height"]

        def in_test(r):
            cx = (int(r["x"]) + min(int(r["x"]) + int(r["width"]), w)) / 2
            cy = (int(r["y"]) + min(int(r["y"]) + int(r["height"]), h)) / 2
            return real_split.in_part(name, "test", cx, cy, images)

        tiles = [r for r in csv.DictReader(open(Path(run) / s["slide_id"] / "tiles.csv")) if in_test(r)]
        rates = ", ".join(f"{f} {sum(float(r[f]) > 0.5 for r in tiles) / max(len(tiles), 1):.1%}" for f in FINDINGS)
        print(f"  test part ({len(tiles)} tiles) over 0.5: {rates}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
