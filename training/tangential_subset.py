"""A training subset of tile exports that keeps every tile over a slide's tangentially
cut stretch of epidermis (truth.json `structures.tangential`, with the stretch's
60 um ramps) and every Nth of the rest, as one labels.csv whose paths point into the
exports (model2_data.sh train9: synth 1.7's papillae cut across, where 2.12.0 put the
real CMU-1 test part's false pustule tiles).

    python training/tangential_subset.py OUT EXPORT... [--every N]
"""
import argparse
import csv
import json
import os
import sys

RAMP_UM = 60.0


def stretch_of(export, slide_id, cache):
    if slide_id not in cache:
        path = os.path.join(export, "tiles", f"{slide_id}.truth.json")
        try:
            with open(path) as f:
                truth = json.load(f)
        except OSError as e:
            sys.exit(f"tangential_subset: {path}: {e.strerror}")
        t = truth.get("structures", {}).get("tangential")
        cache[slide_id] = (t[0] - RAMP_UM, t[1] + RAMP_UM) if t else None
    return cache[slide_id]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="folder for the subset's labels.csv")
    ap.add_argument("exports", nargs="+", help="tile exports (dirascope synth --tiles)")
    ap.add_argument("--every", type=int, default=4, help="keep every Nth tile away from a stretch")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rows, fields = [], None
    over, slides_cut = 0, set()
    for export in a.exports:
        cache = {}
        with open(os.path.join(export, "labels.csv")) as f:
            reader = csv.DictReader(f)
            fields = fields or reader.fieldnames
            for k in reader.fieldnames:
                if k not in fields:
                    fields.append(k)
            rel = os.path.relpath(export, a.out)
            for i, r in enumerate(reader):
                side = float(r["tile_px"]) * float(r["tile_mpp"])
                if r.get("source_tile_px"):
                    side = float(r["source_tile_px"]) * float(r["source_tile_mpp"])
                x0 = float(r["x_um"])
                s = stretch_of(export, r["slide_id"], cache)
                cut = s is not None and x0 < s[1] and x0 + side > s[0]
                if cut or i % a.every == 0:
                    r["path"] = os.path.join(rel, r["path"])
                    rows.append(r)
                    over += cut
                    if cut:
                        slides_cut.add(r["slide_id"])
    with open(os.path.join(a.out, "labels.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, restval="")
        w.writeheader()
        w.writerows(rows)
    print(f"tangential_subset: {len(rows)} tiles, {over} over a tangential stretch of {len(slides_cut)} slides -> {a.out}/labels.csv")


if __name__ == "__main__":
    main()
