"""Area-downsample a tile export to the model's tile size, the way the scoring
pipeline resamples a slide scanned at a finer MPP (mean over each block of
source pixels), and write it as a new export.

Tiles rendered at 0.25 um/px are 896 px for the model's 224 um; a few dozen
slides of them fill gigabytes. This writes the 224 px tiles train.py would
compute anyway (PIL BOX = area average, the same call load_export makes) and
keeps the source resolution in two extra columns, so the big PNGs can go.

    training/.venv/bin/python training/downsample_export.py DATA/held-0.25-896 DATA/held-0.25 --tile-px 224
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

from PIL import Image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path, help="export folder with labels.csv")
    ap.add_argument("dst", type=Path, help="new export folder (created)")
    ap.add_argument("--tile-px", type=int, default=224)
    args = ap.parse_args()

    with open(args.src / "labels.csv", newline="") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    extra = [c for c in ["source_tile_px", "source_tile_mpp"] if c not in columns]
    out_rows = []
    for r in rows:
        src_px = int(r["tile_px"])
        src_mpp = float(r["tile_mpp"])
        if src_px % args.tile_px:
            raise SystemExit(f"{r['path']}: {src_px} px is not a multiple of {args.tile_px}")
        dst_path = args.dst / r["path"]
        dst_path.parent.mkdir(parents=True, exist_ok=True)
        img = Image.open(args.src / r["path"]).convert("RGB")
        img.resize((args.tile_px, args.tile_px), Image.Resampling.BOX).save(dst_path)
        out = dict(r)
        out.setdefault("source_tile_px", str(src_px))
        out.setdefault("source_tile_mpp", f"{src_mpp:g}")
        out["tile_px"] = str(args.tile_px)
        out["tile_mpp"] = f"{src_px * src_mpp / args.tile_px:g}"
        out_rows.append(out)
    # Truth records and masks travel unchanged (they are in slide microns).
    for p in (args.src / "tiles").glob("*.truth.json"):
        shutil.copy2(p, args.dst / "tiles" / p.name)
    for p in (args.src / "tiles").glob("*.masks"):
        shutil.copytree(p, args.dst / "tiles" / p.name, dirs_exist_ok=True)
    if (args.src / "manifest.csv").exists():
        shutil.copy2(args.src / "manifest.csv", args.dst / "manifest.csv")
    with open(args.dst / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns + extra, lineterminator="\n")
        w.writeheader()
        w.writerows(out_rows)
    print(f"{len(out_rows)} tiles -> {args.dst} at {args.tile_px} px")


if __name__ == "__main__":
    main()
