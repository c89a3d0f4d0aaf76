"""Compares a model's scores of the same phantoms without (synth 1.8) and with
(synth 1.9) hair follicles and sebaceous glands: training/follicle_probe.sh OUT
renders and scores them; this reads OUT/g1.8, OUT/g1.9 (slides) and OUT/s1.8,
OUT/s1.9 (score runs). Any generator step that redraws one structure and leaves
every other pixel can be probed the same way: `follicle_probe.py OUT MODEL OLD NEW`
reads OUT/gOLD, OUT/gNEW, OUT/sOLD, OUT/sNEW (synth 1.10's eccrine coils: OLD=1.9
NEW=1.10; "follicle" below then means the redrawn coils).

A tile's follicle share is the fraction of its level-0 pixels that differ between
the two renders (1.9 draws 1.8's pixels wherever it draws no follicle, so the
difference is the follicles, widened by the optics and the JPEG blocks). Prints,
for tiles at least MIN_SHARE follicle, each finding's share of tiles over 0.5 and
the OOD share under both renders; the largest change of any tile with no follicle
pixel (0 when nothing else changed); and the slide calls that changed.
"""
import csv
import json
import sys
import tomllib
from pathlib import Path

import numpy as np
import tifffile

FINDINGS = ["subcorneal_pustule", "acantholysis", "neutrophilic_eccrine_hidradenitis", "psoriasiform"]
MIN_SHARE = 0.05


def level0(path):
    with tifffile.TiffFile(path) as t:
        return t.series[0].levels[0].asarray()


def tiles(run, slide):
    with open(run / slide / "tiles.csv") as f:
        return {(int(r["x"]), int(r["y"])): r for r in csv.DictReader(f)}


def summary(run):
    with open(run / "summary.csv") as f:
        return {r["slide_id"]: r for r in csv.DictReader(f)}


def lobule_in(truth, x, y, w, h):
    """Whether a sebaceous lobule's centre lies in the tile (level-0 pixels)."""
    mpp = truth["mpp"]
    return any(
        x <= lb["x"] / mpp < x + w and y <= lb["y"] / mpp < y + h
        for f in truth["structures"].get("follicles", [])
        for lb in f["lobules"]
    )


def coil_at(truth, x, y, w, h):
    """'inflamed' or 'normal' when the tile's centre lies in an eccrine coil's disc
    (level-0 pixels), else None."""
    mpp = truth["mpp"]
    cx, cy = (x + w / 2) * mpp, (y + h / 2) * mpp
    for c in truth["structures"].get("coils", []):
        if (cx - c[0]) ** 2 + (cy - c[1]) ** 2 < c[2] ** 2:
            return "inflamed" if c[3] else "normal"
    return None


def main(out, model="models/dirascope-v2", old="1.8", new="1.9"):
    out = Path(out)
    # A model without an OOD detector (no [ood] table) flags nothing.
    ood = tomllib.load(open(Path(model) / "model.toml", "rb")).get("ood")
    ood_t = ood["threshold"] if ood else float("inf")
    s18, s19 = summary(out / f"s{old}"), summary(out / f"s{new}")
    rows = []  # (class, share, p18[4], p19[4], ood18, ood19, lobule in the tile, coil at its centre)
    new_tiles = []  # (share, p19[4], lobule): follicle tiles 1.8 did not score
    clear_change = 0.0
    for slide in sorted(s19):
        cls = slide.rsplit("-", 1)[0]
        a, b = level0(out / f"g{old}" / f"{slide}.tiff"), level0(out / f"g{new}" / f"{slide}.tiff")
        diff = (a != b).any(axis=2)
        t18, t19 = tiles(out / f"s{old}", slide), tiles(out / f"s{new}", slide)
        truth = json.loads((out / f"g{new}" / f"{slide}.truth.json").read_text())
        for key, r in t19.items():
            x, y, w, h = (int(r[k]) for k in ("x", "y", "width", "height"))
            share = float(diff[y:y + h, x:x + w].mean()) if w and h else 0.0
            p19 = [float(r[f]) for f in FINDINGS]
            lobule = lobule_in(truth, x, y, w, h)
            coil = coil_at(truth, x, y, w, h)
            if key not in t18:
                if share >= MIN_SHARE:
                    new_tiles.append((share, p19, lobule))
                continue
            p18 = [float(t18[key][f]) for f in FINDINGS]
            ood18, ood19 = (float(t.get("ood") or 0.0) for t in (t18[key], r))
            if share == 0.0:
                clear_change = max(clear_change, max(abs(u - v) for u, v in zip(p18, p19)))
            elif share >= MIN_SHARE:
                rows.append((cls, share, p18, p19, ood18, ood19, lobule, coil))
    print(f"tiles at least {MIN_SHARE:.0%} follicle: {len(rows)} (of {sum(1 for _ in s19)} slides)")
    print(f"largest change of a finding probability on tiles with no follicle pixel: {clear_change:.2e}")
    print("| tiles | n | " + " | ".join(f"{f} > 0.5 ({old} -> {new})" for f in FINDINGS) + f" | OOD ({old} -> {new}) |")
    print("|---|---:|" + "---|" * (len(FINDINGS) + 1))
    for name, sel in [("all", rows), ("share >= 0.25", [r for r in rows if r[1] >= 0.25])] + [
        (c, [r for r in rows if r[0] == c]) for c in ["dira", "pustular-psoriasis", "psoriasis", "normal"]
    ] + [(f"centre in an {k} coil" if k == "inflamed" else f"centre in a {k} coil",
          [r for r in rows if r[7] == k]) for k in ["inflamed", "normal"]]:
        if not sel:
            continue
        cells = []
        for i in range(len(FINDINGS)):
            n18 = sum(r[2][i] > 0.5 for r in sel)
            n19 = sum(r[3][i] > 0.5 for r in sel)
            cells.append(f"{n18 / len(sel):.1%} -> {n19 / len(sel):.1%} (max {max(r[3][i] for r in sel):.2f})")
        o18 = sum(r[4] > ood_t for r in sel) / len(sel)
        o19 = sum(r[5] > ood_t for r in sel) / len(sel)
        print(f"| {name} | {len(sel)} | " + " | ".join(cells) + f" | {o18:.1%} -> {o19:.1%} |")
    hid = FINDINGS.index("neutrophilic_eccrine_hidradenitis")
    every = [(r[3], r[6]) for r in rows] + [(p, lb) for _, p, lb in new_tiles]
    print(f"\nhidradenitis > 0.5 on {new}'s follicle tiles ({len(new_tiles)} of them tiles {old} did not score):")
    for name, sel in [("a lobule's centre in the tile", [p for p, lb in every if lb]),
                      ("no lobule's centre in the tile", [p for p, lb in every if not lb])]:
        if sel:
            print(f"  {name}: {sum(p[hid] > 0.5 for p in sel)}/{len(sel)} = {sum(p[hid] > 0.5 for p in sel) / len(sel):.1%}")
    print(f"\nslides whose call changed ({old} -> {new}):")
    changed = 0
    for slide in sorted(s19):
        a, b = s18[slide], s19[slide]
        if a["call"] != b["call"]:
            changed += 1
            print(f"  {slide}: {a['call']} -> {b['call']} (DIRA {float(a['dira_score']):.3f} -> "
                  f"{float(b['dira_score']):.3f}, psoriasiform {float(a['psoriasiform_score']):.3f} -> "
                  f"{float(b['psoriasiform_score']):.3f})")
    print(f"  {changed} of {len(s19)}")
    print(f"\ncalls by class ({old} / {new}):")
    for cls in ["dira", "pustular-psoriasis", "psoriasis", "normal"]:
        for name, runs in [(old, s18), (new, s19)]:
            calls = [runs[s]["call"] for s in runs if s.rsplit("-", 1)[0] == cls]
            counts = ", ".join(f"{c} {calls.count(c)}" for c in sorted(set(calls)))
            print(f"  {cls} under {name} ({len(calls)}): {counts}")
    print(f"\nlargest rises of a slide's finding scores ({old} -> {new}):")
    for f in FINDINGS + ["dira"]:
        d = max(s19, key=lambda s: float(s19[s][f + "_score"]) - float(s18[s][f + "_score"]))
        print(f"  {f}: {d} {float(s18[d][f + '_score']):.3f} -> {float(s19[d][f + '_score']):.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
