"""What the two-of-three DIRA score would separate if acantholysis counted only
tiles at the tissue's edge (histology.md: DIRA's acantholysis is superficial, in
the upper epidermis under the corneum), read from a scored protocol set.

For each slide, a tile's depth is its chessboard distance in grid steps to the
nearest grid cell with no scored tile (1 = the tile touches the tissue's border).
Acantholysis is the mean of the 2 best tiles at depth <= R (as the v2 rule's
top-n-mean, n = 2); pustule and hidradenitis keep every tile; the DIRA score is
the second highest of the three. Prints, per R, the best non-DIRA DIRA score and
how many DIRA slides would lie beyond the no-call band of half-width MARGIN that
rule_candidates.py's separating_threshold (calibrate's search) fits. Exploratory:
R chosen this way is chosen on the set it is read on, so any rule built from it
is calibrated and validated on other seeds.

    python training/rule_depth_probe.py SCORED_DIR LABELS_CSV [R ...] [--margin 0.03]
"""

import argparse
import csv
from pathlib import Path

import numpy as np
from scipy.ndimage import distance_transform_cdt

from rule_candidates import dira_score, read_tiles, separating_threshold, top_mean


def slide_scores(tiles_csv: Path, radii):
    """The two-of-three DIRA score at each radius, or None for a slide with no tiles."""
    cells, probs = read_tiles(tiles_csv)
    if not cells:
        return None
    cr = np.array(cells)
    lo = cr.min(0) - 1
    hi = cr.max(0) + 1
    grid = np.zeros((hi[1] - lo[1] + 1, hi[0] - lo[0] + 1), bool)
    grid[cr[:, 1] - lo[1], cr[:, 0] - lo[0]] = True
    depth = distance_transform_cdt(grid, metric="chessboard")[cr[:, 1] - lo[1], cr[:, 0] - lo[0]]
    pustule, hidradenitis = top_mean(probs[:, 0], 2), top_mean(probs[:, 2], 2)
    return {r: dira_score([pustule, top_mean(probs[depth <= r, 1], 2), hidradenitis], "two-of-three")
            for r in radii}


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
        s = slide_scores(Path(a.scored) / sid / "tiles.csv", a.radii)
        if s is not None:
            scores[sid] = s
    n_dira = sum(1 for sid in scores if labels[sid] == "dira")
    for radius in a.radii:
        pos = [s[radius] for sid, s in scores.items() if labels[sid] == "dira"]
        neg = [s[radius] for sid, s in scores.items() if labels[sid] != "dira"]
        fit = separating_threshold(pos, neg, a.margin)
        found = fit[1] if fit else 0
        print(f"acantholysis from tiles at depth <= {radius}: best non-DIRA {max(neg):.3f}, "
              f"DIRA beyond the band {found}/{n_dira}; DIRA scores {sorted(round(v, 2) for v in pos)}")

if __name__ == "__main__":
    main()
