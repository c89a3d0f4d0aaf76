"""Tabulate the stain check's measurements (report.json `qc.stain`) over scored
slides: per slide the haematoxylin-like and eosin-like vectors' angles to
Ruifrok-Johnston's and whether QC flagged `not-h-and-e`, then the range.

    python3 training/stain_angles.py OUT [OUT...]      # OUT: `dirascope score` folders

Standard library only. docs/stain.md has the figures this printed.
"""

import json
import statistics
import sys
from pathlib import Path


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    rows = []
    for out in sys.argv[1:]:
        for report in sorted(Path(out).glob("*/report.json")):
            r = json.loads(report.read_text())
            stain = r["qc"].get("stain")
            flags = [f["flag"] for f in r["qc"]["flags"]]
            if stain is None:
                print(f"{report.parent.name}: no stain measurement (too few stained pixels)")
                continue
            rows.append((report.parent.name, stain["hematoxylin_angle_deg"], stain["eosin_angle_deg"],
                         "not-h-and-e" in flags, r["result"]["call"]))
    for name, h, e, flagged, call in rows:
        print(f"{name:40s} haematoxylin {h:5.1f}  eosin {e:5.1f}  {'NOT H&E' if flagged else '':7s}  {call}")
    if rows:
        hs, es = [r[1] for r in rows], [r[2] for r in rows]
        print(f"{len(rows)} slides: haematoxylin {min(hs):.1f}-{max(hs):.1f} (median {statistics.median(hs):.1f}), "
              f"eosin {min(es):.1f}-{max(es):.1f} (median {statistics.median(es):.1f}); "
              f"{sum(r[3] for r in rows)} flagged not-h-and-e")


if __name__ == "__main__":
    main()
