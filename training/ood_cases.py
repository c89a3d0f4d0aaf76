"""Tile-level out-of-distribution rates of an exported model (issue 13), with
onnxruntime on the model folder's model.onnx and the threshold of its
model.toml [ood] table.

Cases it must flag: the immunohistochemistry image that ships in scikit-image
(skimage/data/ihc.png), held-out phantoms re-stained with off-H&E stain vectors
(H-DAB, trichrome-like, Giemsa-like), photographs that are not tissue, heavy
blur of held-out phantoms. Cases it must not flag: held-out phantoms per source
MPP, held-out implants into the real test parts, and the real test parts
themselves (tissue tiles: mean RGB < 215 on at least half the tile, as
train.py's real-negative rule). Also prints, per finding, the fraction of
real test-part tissue tiles with probability above 0.5 and the held-out tile
AUROCs recorded in the folder's metrics.json.

    python training/ood_cases.py models/dirascope-v2 --data DATA [--json OUT.json]

DATA holds the held-out tile exports of training/model2_data.sh (held-mixed-1.0,
held-dira-1.0, ..., held2-implant-cmu, held2-implant-pd). The real images are
read from ../shared/fixtures/real/ and cut by training/real_split.toml; only
their test parts are used.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
import tomllib
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

import dirascope_model as dm
import real_split
from restain import RUIFROK_E, RUIFROK_H, stain_matrix

SKIMAGE_DATA = None
try:
    import skimage

    SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
except ImportError:  # pragma: no cover
    pass

# Off-H&E stain vectors (optical density per RGB channel; scikit-image's
# color module, after Ruifrok & Johnston).
DAB = np.array([0.27, 0.57, 0.78])
METHYL_BLUE = np.array([0.7995107, 0.5913521, 0.10528667])  # Masson trichrome's collagen blue
PONCEAU_FUCHSIN = np.array([0.09997159, 0.73738605, 0.6680326])
GIEMSA_BLUE = np.array([0.834750233, 0.513556283, 0.196330403])
GIEMSA_EOSIN = np.array([0.092789, 0.954111, 0.283111])
RESTAINS = {
    # name: (vector replacing hematoxylin, vector replacing eosin, expectation);
    # methyl blue + ponceau fuchsin (nuclei blue, the rest red) is closest to
    # H&E's look, so it is informative rather than a must-flag case.
    "restain H-DAB (IHC-like)": (RUIFROK_H, DAB, "out"),
    "restain trichrome-like (H + methyl blue)": (RUIFROK_H, METHYL_BLUE, "out"),
    "restain Giemsa-like (methyl blue + eosin)": (GIEMSA_BLUE, GIEMSA_EOSIN, "out"),
    "restain methyl blue + ponceau fuchsin": (METHYL_BLUE, PONCEAU_FUCHSIN, "info"),
}


def tissue_ok(t: np.ndarray) -> bool:
    """train.py's real-negative tissue rule: mean RGB < 215 on >= 50% of the tile."""
    return (t.mean(axis=2) < 215).mean() >= 0.5


def tile_image(arr: np.ndarray, px: int, stride: int, tissue_only: bool) -> np.ndarray:
    h, w = arr.shape[:2]
    out = []
    for y in range(0, h - px + 1, stride):
        for x in range(0, w - px + 1, stride):
            t = arr[y : y + px, x : x + px]
            if not tissue_only or tissue_ok(t):
                out.append(t)
    return np.stack(out) if out else np.empty((0, px, px, 3), np.uint8)


def resample(arr: np.ndarray, src_mpp: float, mpp: float) -> np.ndarray:
    """Area-resample an image from src_mpp to the model's mpp (as the pipeline does)."""
    s = src_mpp / mpp
    h, w = arr.shape[:2]
    if abs(s - 1) < 1e-6:
        return arr
    im = Image.fromarray(arr).resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BOX
                                     if s < 1 else Image.Resampling.BICUBIC)
    return np.asarray(im)


def load_export_tiles(folder: Path, px: int, min_tissue: float = 0.0):
    with open(folder / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rows = [r for r in rows if float(r.get("tissue", 1.0) or 1.0) >= min_tissue]
    tiles = np.empty((len(rows), px, px, 3), np.uint8)
    for i, r in enumerate(rows):
        img = Image.open(folder / r["path"]).convert("RGB")
        if img.size != (px, px):
            img = img.resize((px, px), Image.Resampling.BOX)
        tiles[i] = np.asarray(img)
    fracs = np.array([[float(r[k]) for k in dm.FINDINGS] for r in rows], np.float32).reshape(-1, 4)
    return tiles, fracs


def restain_tiles(tiles: np.ndarray, h_vec: np.ndarray, e_vec: np.ndarray) -> np.ndarray:
    src = np.linalg.inv(stain_matrix(RUIFROK_H, RUIFROK_E))
    dst = stain_matrix(h_vec, e_vec)
    od = -np.log((tiles.astype(np.float64) + 1.0) / 256.0)
    out = 256.0 * np.exp(-(od.reshape(-1, 3) @ src @ dst)) - 1.0
    return np.clip(out, 0, 255).reshape(tiles.shape).round().astype(np.uint8)


def blur_tiles(tiles: np.ndarray, sigma: float) -> np.ndarray:
    return np.stack([ndimage.gaussian_filter(t.astype(np.float32), (sigma, sigma, 0), mode="reflect")
                     .round().clip(0, 255).astype(np.uint8) for t in tiles])


def real_test_part(file: str, px: int, mpp: float, stride: int) -> np.ndarray:
    arr = real_split.level0(Path(real_split.REAL_DIR) / file)
    x0, y0, x1, y1 = real_split.part(file, "test")
    crop = np.ascontiguousarray(arr[y0:y1, x0:x1])
    return tile_image(resample(crop, real_split.mpp(file), mpp), px, stride, tissue_only=True)


class Scorer:
    def __init__(self, folder: Path, threads: int):
        with open(folder / "model.toml", "rb") as f:
            self.manifest = tomllib.load(f)
        inp = self.manifest["input"]
        self.px, self.mpp = inp["tile_px"], inp["mpp"]
        self.mean, self.std = inp["mean"], inp["std"]
        if "ood" not in self.manifest:
            raise SystemExit(f"{folder}/model.toml has no [ood] table")
        self.threshold = self.manifest["ood"]["threshold"]
        self.max_fraction = self.manifest["ood"]["max_fraction"]
        self.sess = dm.ort_session(folder / "model.onnx", threads=threads)
        self.views = dm.manifest_views(self.manifest)
        self.views_min = dm.manifest_views_min_probability(self.manifest)
        names = [o.name for o in self.sess.get_outputs()]
        self.i_logits, self.i_ood = 0, names.index(self.manifest["ood"].get("output", "ood"))

    def __call__(self, tiles: np.ndarray, batch: int = 64):
        probs, ood = [], []
        for i in range(0, len(tiles), batch):
            res = dm.run_views(self.sess, dm.preprocess(tiles[i : i + batch], self.mean, self.std), self.views,
                               min_probability=self.views_min)
            probs.append(1.0 / (1.0 + np.exp(-res[self.i_logits])))
            ood.append(res[self.i_ood].reshape(-1))
        if not probs:
            return np.empty((0, 4)), np.empty(0)
        return np.concatenate(probs), np.concatenate(ood)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", type=Path, required=True, help="folder of model2_data.sh's held-out exports")
    ap.add_argument("--implants", nargs="*", default=["held2-implant-cmu", "held2-implant-pd"],
                    help="held-out implant exports in DATA (model2_data.sh held2: the current implant look)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--real-stride", type=int, default=56, help="tile stride on the real test parts (px at the model's MPP)")
    ap.add_argument("--restain-tiles", type=int, default=600, help="held-out 1.0 tiles (tissue >= 0.5) to re-stain and blur")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = ap.parse_args()
    t0 = time.time()
    sc = Scorer(args.model, args.threads)
    px, mpp, thr = sc.px, sc.mpp, sc.threshold
    print(f"{args.model}: OOD threshold {thr} (max_fraction {sc.max_fraction}); tiles {px} px at {mpp} um/px")

    rows = []  # (case, expect, tiles, median, p99, frac_over)
    real_probs = {}

    def record(case: str, expect: str, tiles: np.ndarray, note: str = ""):
        if len(tiles) == 0:
            rows.append(dict(case=case, expect=expect, tiles=0, note=note or "no tiles"))
            return None
        p, d = sc(tiles)
        rows.append(dict(case=case, expect=expect, tiles=int(len(d)), median=float(np.median(d)),
                         p99=float(np.percentile(d, 99)), max=float(d.max()),
                         frac_over=float((d > thr).mean()), note=note))
        print(f"  {case}: {len(d)} tiles, median {np.median(d):.3f}, over {100 * (d > thr).mean():.1f}% "
              f"({time.time() - t0:.0f}s)", flush=True)
        return p

    # -- must not flag ----------------------------------------------------------
    for m in ("1.0", "0.5", "0.25"):
        dirs = [args.data / f"held-mixed-{m}", args.data / f"held-dira-{m}"]
        dirs = [d for d in dirs if (d / "labels.csv").is_file()]
        tiles = np.concatenate([load_export_tiles(d, px)[0] for d in dirs]) if dirs else np.empty((0, px, px, 3), np.uint8)
        record(f"held-out phantoms, source MPP {m}", "in", tiles, "all exported tiles (tissue >= 0.1)")
    for name in args.implants:
        d = args.data / name
        tiles = load_export_tiles(d, px)[0] if (d / "labels.csv").is_file() else np.empty((0, px, px, 3), np.uint8)
        record(f"held-out implants ({name})", "in", tiles, "implants into the real test part")
    for file, label in (("CMU-1-Small-Region.svs", "CMU-1 test part (rows y >= 1484, 0.499 -> 1.0)"),
                        ("skin-normal-10x-public-domain.jpg", "PD test part (columns x >= 1024, 0.75 -> 1.0)")):
        if not (Path(real_split.REAL_DIR) / file).is_file():
            rows.append(dict(case=f"real {label}", expect="in", tiles=0, note="fixture absent"))
            continue
        tiles = real_test_part(file, px, mpp, args.real_stride)
        p = record(f"real {label}", "in", tiles, f"tissue tiles, stride {args.real_stride}")
        if p is not None:
            real_probs[file] = p

    # -- must flag ----------------------------------------------------------------
    if SKIMAGE_DATA is not None:
        ihc = np.asarray(Image.open(SKIMAGE_DATA / "ihc.png").convert("RGB"))
        record("IHC skimage ihc.png as 0.5 um/px (-> 1.0)", "out",
               tile_image(resample(ihc, 0.5, mpp), px, 16, False), "all tiles, stride 16 (256 px image)")
        record("IHC skimage ihc.png as 1.0 um/px", "out", tile_image(ihc, px, 96, False), "all tiles, stride 96")
        for photo in ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg"):
            img = np.asarray(Image.open(SKIMAGE_DATA / photo).convert("RGB"))
            t_all = tile_image(img, px, 56, False)
            n_tissue = sum(tissue_ok(t) for t in t_all)
            record(f"photo {photo}", "out", t_all, f"all tiles, stride 56 ({n_tissue} pass the tissue rule)")

    base = []
    for m in ("1.0",):
        for d in (args.data / f"held-mixed-{m}", args.data / f"held-dira-{m}"):
            if (d / "labels.csv").is_file():
                base.append(load_export_tiles(d, px, min_tissue=0.5)[0])
    if base:
        base = np.concatenate(base)
        pick = np.linspace(0, len(base) - 1, min(args.restain_tiles, len(base))).astype(int)
        base = base[pick]
        note = f"{len(base)} held-out 1.0 phantom tiles with tissue >= 0.5"
        record("held-out phantoms 1.0, tissue >= 0.5 (unaltered)", "in", base, note)
        for name, (h, e, expect) in RESTAINS.items():
            record(name, expect, restain_tiles(base, h, e), note)
        from restain import restain as restain_offrange

        rng = np.random.default_rng(1)
        record("restain.py off-range H&E (grey H 0.55x, orange E 1.6x)", "info",
               np.stack([restain_offrange(t, rng) for t in base]), note + "; still H&E: informative")
        for sigma in (4.0, 6.0, 8.0):
            record(f"gaussian blur sigma {sigma:g} px", "out" if sigma >= 6 else "info", blur_tiles(base, sigma), note)

    # -- table ----------------------------------------------------------------------
    print()
    print(f"OOD threshold {thr}; a slide abstains above {100 * sc.max_fraction:.0f}% of tissue tiles over it")
    print(f"{'case':<58} {'expect':>6} {'tiles':>6} {'median':>7} {'p99':>7} {'over thr':>9}")
    for r in rows:
        if r["tiles"] == 0:
            print(f"{r['case']:<58} {r['expect']:>6} {0:>6}  ({r['note']})")
            continue
        print(f"{r['case']:<58} {r['expect']:>6} {r['tiles']:>6} {r['median']:>7.3f} {r['p99']:>7.3f} "
              f"{100 * r['frac_over']:>8.1f}%")

    print("\nreal test parts: fraction of tissue tiles with p > 0.5 per finding (issue: < 1%)")
    real_pos = {}
    for file, p in real_probs.items():
        real_pos[file] = {k: float((p[:, i] > 0.5).mean()) for i, k in enumerate(dm.FINDINGS)}
        real_pos[file]["tiles"] = int(len(p))
        print(f"  {file} ({len(p)} tiles): " + ", ".join(
            f"{k} {100 * real_pos[file][k]:.2f}% (max {p[:, i].max():.3f})" for i, k in enumerate(dm.FINDINGS)))

    metrics_path = args.model / "metrics.json"
    aurocs = {}
    if metrics_path.is_file():
        met = json.loads(metrics_path.read_text())
        print("\nheld-out tile AUROC per finding (metrics.json; 95% slide-bootstrap CI)")
        for name, h in met.get("heldout", {}).items():
            aurocs[name] = h["per_finding"]
            cells = []
            for k in dm.FINDINGS:
                v = h["per_finding"][k]
                ci = v.get("auroc_ci95_slide_bootstrap", [math.nan, math.nan])
                cells.append(f"{k} {v['auroc']:.4f} [{ci[0]:.3f}-{ci[1]:.3f}] (+{v['positives']}/-{v['negatives']})")
            print(f"  {name} ({h['tiles']} tiles): " + "; ".join(cells))
    print(f"\ndone in {time.time() - t0:.0f}s")
    if args.json:
        args.json.write_text(json.dumps({
            "model": str(args.model), "threshold": thr, "max_fraction": sc.max_fraction,
            "cases": rows, "real_test_positive_fraction": real_pos, "heldout_auroc": aurocs,
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
