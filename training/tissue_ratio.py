"""Detected tissue against the phantoms' truth: for every slide of a protocol set
(training/protocol.sh), the tissue area the `tissue` stage found (report.json) over
the area synth drew (truth.json), summarised by stain style and source MPP, with the
slides below a ratio listed with their calls in each run.

    python training/tissue_ratio.py SETDIR SCORED [SCORED ...] [--below 0.4]

Each SCORED is one `dirascope score` run over SETDIR's strata (e.g. before and after a
change to the tissue stage); the columns are side by side. The truth includes fat
lobules, whose empty adipocytes a saturation mask at 10 um/px sees as glass, so a
ratio near 1 is not expected: near 0.7 is the subcutis being left out.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from protocol_tables import stain_style


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("setdir", type=Path)
    ap.add_argument("scored", type=Path, nargs="+")
    ap.add_argument("--below", type=float, default=0.4, help="list slides under this ratio")
    args = ap.parse_args()
    truths = sorted(args.setdir.glob("*/*.truth.json"))
    rows = []
    for t in truths:
        truth = json.loads(t.read_text())
        sid = truth["slide_id"]
        ratios, calls = [], []
        for run in args.scored:
            report = json.loads((run / sid / "report.json").read_text())
            ratios.append(report["tissue"]["area_mm2"] / truth["tissue_area_mm2"])
            calls.append(report["result"]["call"])
        rows.append((sid, stain_style(truth), f"{truth['mpp']:g}", ratios, calls))
    print(f"{len(rows)} slides; runs: " + ", ".join(str(r) for r in args.scored))
    groups = {"all": rows}
    for style in sorted({r[1] for r in rows}):
        groups[style] = [r for r in rows if r[1] == style]
    for mpp in sorted({r[2] for r in rows}, key=float):
        groups[f"source MPP {mpp}"] = [r for r in rows if r[2] == mpp]
    print("| slides | n | " + " | ".join(f"run {i + 1}: median (min), n < {args.below}" for i in range(len(args.scored))) + " |")
    print("|---|---:|" + "---|" * len(args.scored))
    for name, rs in groups.items():
        cells = []
        for i in range(len(args.scored)):
            v = [r[3][i] for r in rs]
            cells.append(f"{statistics.median(v):.2f} ({min(v):.2f}), {sum(x < args.below for x in v)}")
        print(f"| {name} | {len(rs)} | " + " | ".join(cells) + " |")
    low = [r for r in rows if min(r[3]) < args.below]
    if low:
        print(f"\nslides under {args.below} in some run:")
        for sid, style, mpp, ratios, calls in low:
            print(f"- {sid} ({style}, {mpp} um/px): " + "; ".join(f"{x:.2f} {c}" for x, c in zip(ratios, calls)))


if __name__ == "__main__":
    main()
