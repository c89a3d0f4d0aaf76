"""How far can a lab's H&E differ from ours before QC's stain check refuses it?

Re-stains the real H&E fixtures' test parts (training/real_split.toml) with
haematoxylin and eosin vectors each turned by THETA degrees about a random axis
(Ruifrok-Johnston unmixing, then mixing again with the turned vectors; a
per-image concentration scale of exp(N(0, 0.15)) each), N times per image and
angle, scores every copy with `dirascope score` and prints, per angle, the
eosin-like vector's angles and the share the check refused (`not-h-and-e`).
THETA 0 is the unmix-and-mix round trip itself.

    training/.venv/bin/python training/stain_variation.py target/release/dirascope OUT \\
        [--angles 0 5 10 15 20] [--copies 10]

docs/stain.md has the figures this printed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

import real_split

H = np.array([0.650, 0.704, 0.286])
E = np.array([0.072, 0.990, 0.105])
REAL = Path(real_split.REAL_DIR)
IMAGES = [("CMU-1-Small-Region.svs", None), ("skin-normal-10x-public-domain.jpg", 0.75)]


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def turned(v: np.ndarray, degrees: float, rng: np.random.Generator) -> np.ndarray:
    """`v` turned by `degrees` about a random axis orthogonal to it, kept non-negative."""
    v = unit(v)
    axis = rng.normal(size=3)
    axis = unit(axis - (axis @ v) * v)
    a = np.radians(degrees)
    return np.clip(v * np.cos(a) + np.cross(axis, v) * np.sin(a), 0.01, None)


def restain(rgb: np.ndarray, h: np.ndarray, e: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    od = -np.log(np.maximum(rgb.astype(np.float64), 1.0) / 255.0).reshape(-1, 3)
    basis = np.stack([unit(H), unit(E)])  # 2 x 3
    conc = np.clip(od @ np.linalg.pinv(basis), 0.0, None)  # N x 2
    new = (conc * np.array(scale)) @ np.stack([unit(h), unit(e)])
    return np.clip(255.0 * np.exp(-new), 0, 255).round().astype(np.uint8).reshape(rgb.shape)


def test_part(name: str) -> np.ndarray:
    path = REAL / name
    if path.suffix == ".svs":
        import tifffile

        arr = tifffile.imread(path)[..., :3]
    else:
        arr = np.asarray(Image.open(path).convert("RGB"))
    x0, y0, x1, y1 = real_split.part(name, "test")
    return np.ascontiguousarray(arr[y0:y1, x0:x1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirascope", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--angles", type=float, nargs="+", default=[0, 5, 10, 15, 20])
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--seed", type=int, default=20261204)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    parts = {name: test_part(name) for name, _ in IMAGES}
    print(f"{'angle':>5}  {'copies':>6}  {'eosin deg min-median-max':>26}  refused")
    for theta in args.angles:
        eosin, refused = [], 0
        for name, mpp in IMAGES:
            folder = args.out / f"theta-{theta:g}" / Path(name).stem
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(args.copies):
                h, e = (H, E) if theta == 0 else (turned(H, theta, rng), turned(E, theta, rng))
                scale = tuple(np.exp(rng.normal(0.0, 0.15, size=2)))
                png = folder / f"copy-{k}.png"
                Image.fromarray(restain(parts[name], h, e, scale)).save(png)
                run = folder / f"copy-{k}-out"
                cmd = [str(args.dirascope), "score", str(png), "--out", str(run), "--quiet",
                       "--mpp", str(mpp if mpp else real_split.mpp(name))]
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                report = json.loads((run / f"copy-{k}" / "report.json").read_text())
                stain = report["qc"].get("stain")
                if stain is None:
                    continue
                eosin.append(stain["eosin_angle_deg"])
                refused += any(f["flag"] == "not-h-and-e" for f in report["qc"]["flags"])
        if eosin:
            print(f"{theta:5g}  {len(eosin):6d}  {min(eosin):8.1f} {np.median(eosin):8.1f} {max(eosin):8.1f}  "
                  f"{refused}/{len(eosin)}", flush=True)


if __name__ == "__main__":
    main()
