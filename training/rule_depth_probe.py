"""What the two-of-three DIRA score would separate if acantholysis counted only
tiles at the tissue's edge (histology.md: DIRA's acantholysis is superficial, in
the upper epidermis under the corneum), read from a scored protocol set.

For each slide, a tile's depth is its chessboard distance in grid steps to the
nearest grid cell with no scored tile (1 = the tile touches the tissue's border).
Acantholysis is the mean of the 2 best tiles at depth <= R (as the v2 rule's
top-n-mean, n = 2); pustule and hidradenitis keep every tile; the DIRA score is
the second highest of the three. Prints, per R, the best non-DIRA DIRA score and
how many DIRA slides would lie beyond a no-call band of width 2 x MARGIN set just
above it. Exploratory: R chosen this way is chosen on the set it is read on, so
any rule built from it is calibrated and validated on other seeds.

    python training/rule_depth_probe.py SCORED_DIR LABELS_CSV [R ...] [--margin 0.03]
"""

import argparse
import csv
import os

import numpy as np
from scipy.ndimage import distance_transform_cdt


def top2(v):
    return float(np.mean(np.sort(v)[-2:])) if len(v) else 0.0


def slide_scores(tiles_csv, radii):
    rows = list(csv.DictReader(open(tiles_csv)))
    if not rows:
        return None
    cr = np.array([(int(r["col"]), int(r["row"])) for r in rows])
    lo = cr.min(0) - 1
    hi = cr.max(0) + 1
    grid = np.zeros((hi[1] - lo[1] + 1, hi[0] - lo[0] + 1), bool)
    grid[cr[:, 1] - lo[1], cr[:, 0] - lo[0]] = True
    depth = distance_transform_cdt(grid, metric="chessboard")[cr[:, 1] - lo[1], cr[:, 0] - lo[0]]
    p = {f: np.array([float(r[f]) for r in rows])
         for f in ("subcorneal_pustule", "acantholysis", "neutrophilic_eccrine_hidradenitis")}
    out = {}
    for radius in radii:
        a = top2(p["acantholysis"][depth <= radius])
        out[radius] = sorted([top2(p["subcorneal_pustule"]), a,
                              top2(p["neutrophilic_eccrine_hidradenitis"])])[1]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scored")
    ap.add_argument("labels")
    ap.add_argument("radii", nargs="*", type=int, default=[1, 2, 3, 1_000_000])
    ap.add_argument("--margin", type=float, default=0.03)
    a = ap.parse_args()
    labels = {r["slide_id"]: r["label"] for r in csv.DictReader(open(a.labels))}
    scores = {}
    for sid in labels:
        s = slide_scores(os.path.join(a.scored, sid, "tiles.csv"), a.radii)
        if s is not None:
            scores[sid] = s
    n_dira = sum(1 for sid in scores if labels[sid] == "dira")
    for radius in a.radii:
        non = max(s[radius] for sid, s in scores.items() if labels[sid] != "dira")
        t = non + a.margin
        found = sum(1 for sid, s in scores.items() if labels[sid] == "dira" and s[radius] >= t + a.margin)
        dira = sorted(round(s[radius], 2) for sid, s in scores.items() if labels[sid] == "dira")
        print(f"acantholysis from tiles at depth <= {radius}: best non-DIRA {non:.3f}, "
              f"DIRA beyond the band {found}/{n_dira}; DIRA scores {dira}")


if __name__ == "__main__":
    main()
