"""Train dirascope's tile model on labelled tiles, export it to ONNX and write
the model folder the Rust loader checks (model.onnx, model.toml, parity/,
metrics.json).

Data: one or more tile exports from `dirascope synth --tiles` (PNG tiles and
`labels.csv` with path, slide_id, class, seed, x_um, y_um, tile_px, tile_mpp,
tissue and one mask-coverage fraction per finding), or any folder of tiles
with the same columns (for example tiles exported from QuPath annotations).
Tiles rendered at a finer MPP than the model's are area-downsampled to it,
as the scoring pipeline resamples slides.

Labels are multi-label: a tile is positive for a finding when that finding's
mask covers at least that finding's positive fraction of it (--pos-frac, with
--pos-frac-for FINDING=FRAC overriding one finding), negative when it covers
none of it; tiles in between are left out of that finding's loss and metrics.
Held-out AUROCs are printed for that definition and, for comparison, for a
uniform 1% one.

    training/.venv/bin/python training/train.py \
        --train DATA/train-1.0 DATA/train-0.5 --heldout DATA/held-1.0 \
        --out models/dirascope-phantom-v1 --minutes 18

See training/README.md for the exact commands behind the bundled model.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import dirascope_model as dm

# -- data -------------------------------------------------------------------


def load_export(folder: Path, tile_px: int, mpp: float, limit: int | None = None):
    """Tiles (N,H,W,3 uint8), fractions (N,4), seeds (N,), classes, rows."""
    with open(folder / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in ["path", "seed", "tile_px", "tile_mpp", *dm.FINDINGS] if rows and c not in rows[0]]
    if missing:
        raise SystemExit(f"{folder / 'labels.csv'}: missing columns {missing}")
    if limit:
        rows = rows[:limit]
    tiles = np.empty((len(rows), tile_px, tile_px, 3), np.uint8)
    for r in rows:
        side_um = int(r["tile_px"]) * float(r["tile_mpp"])
        if abs(side_um - tile_px * mpp) > 1e-3 * side_um:
            raise SystemExit(
                f"{folder}: tile {r['path']} covers {side_um} um; the model needs {tile_px * mpp} um"
            )

    def read(i: int) -> None:
        img = Image.open(folder / rows[i]["path"]).convert("RGB")
        if img.size != (tile_px, tile_px):
            img = img.resize((tile_px, tile_px), Image.Resampling.BOX)
        tiles[i] = np.asarray(img)

    # PIL decodes outside the GIL: threads read a big export several times faster.
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        list(pool.map(read, range(len(rows))))
    fracs = np.array([[float(r[k]) for k in dm.FINDINGS] for r in rows], np.float32).reshape(-1, 4)
    seeds = np.array([int(r["seed"]) for r in rows], np.int64)
    classes = [r.get("class", "") for r in rows]
    return tiles, fracs, seeds, classes, rows


def targets_and_mask(fracs: np.ndarray, pos_frac) -> tuple[np.ndarray, np.ndarray]:
    """1 where coverage >= pos_frac, 0 where it is zero; mask 0 in between.
    `pos_frac` is one fraction for every finding or one per finding."""
    thr = np.broadcast_to(np.asarray(pos_frac, np.float32), (fracs.shape[1],))
    y = (fracs >= thr).astype(np.float32)
    mask = ((fracs >= thr) | (fracs <= 0.0)).astype(np.float32)
    return y, mask


def parse_pos_frac(default: float, overrides: list[str]) -> list[float]:
    """Per-finding positive fractions: `default`, with FINDING=FRAC overrides."""
    out = [default] * len(dm.FINDINGS)
    for item in overrides:
        key, _, value = item.partition("=")
        if key not in dm.FINDINGS or not value:
            raise SystemExit(f"--pos-frac-for {item!r}: expected FINDING=FRAC with FINDING one of {dm.FINDINGS}")
        out[dm.FINDINGS.index(key)] = float(value)
    return out


def parse_heldout(items: list[str]) -> list[tuple[str, list[Path]]]:
    """`DIR` or `NAME=DIR1,DIR2,...` (pooled into one evaluation)."""
    groups = []
    for item in items:
        name, eq, dirs = item.partition("=")
        if eq:
            groups.append((name, [Path(d) for d in dirs.split(",") if d]))
        else:
            groups.append((str(Path(item)), [Path(item)]))
    return groups


def real_negative_tiles(svs: Path, tile_px: int, mpp: float, part: str, stride_frac: float = 0.5):
    """Tissue tiles from a real normal-skin slide (level 0), resampled to the
    model's MPP, from the top ('train') or bottom ('eval') half, or 'all'."""
    import tifffile

    with tifffile.TiffFile(svs) as tf:
        page = tf.pages[0]
        img = page.asarray()
        desc = page.description or ""
    src_mpp = 0.499
    for part_ in desc.split("|"):
        if part_.strip().startswith("MPP"):
            src_mpp = float(part_.split("=")[1])
    h, w = img.shape[:2]
    scale = src_mpp / mpp
    im = Image.fromarray(img[..., :3]).resize((round(w * scale), round(h * scale)), Image.Resampling.BOX)
    arr = np.asarray(im)
    H, W = arr.shape[:2]
    half = H // 2
    y_lo, y_hi = {"train": (0, half), "eval": (half, H), "all": (0, H)}[part]
    step = max(1, int(tile_px * stride_frac))
    out = []
    for y in range(y_lo, y_hi - tile_px + 1, step):
        for x in range(0, W - tile_px + 1, step):
            t = arr[y : y + tile_px, x : x + tile_px]
            tissue = (t.mean(axis=2) < 215).mean()
            if tissue >= 0.5:
                out.append(t)
    return np.stack(out) if out else np.empty((0, tile_px, tile_px, 3), np.uint8), src_mpp


def real_part_tiles(path: Path, tile_px: int, mpp: float, which: str, stride_frac: float = 0.5) -> np.ndarray:
    """Tissue tiles (mean RGB < 215 on at least half the tile) from the `which`
    part ("train" or "test") of a real image named in training/real_split.toml,
    resampled from its MPP there to the model's."""
    import real_split

    arr = real_split.level0(path)
    x0, y0, x1, y1 = real_split.part(path.name, which)
    crop = np.ascontiguousarray(arr[y0:y1, x0:x1])
    scale = real_split.mpp(path.name) / mpp
    h, w = crop.shape[:2]
    arr = np.asarray(Image.fromarray(crop).resize((round(w * scale), round(h * scale)), Image.Resampling.BOX))
    step = max(1, int(tile_px * stride_frac))
    out = []
    for y in range(0, arr.shape[0] - tile_px + 1, step):
        for x in range(0, arr.shape[1] - tile_px + 1, step):
            t = arr[y : y + tile_px, x : x + tile_px]
            if (t.mean(axis=2) < 215).mean() >= 0.5:
                out.append(t)
    return np.stack(out) if out else np.empty((0, tile_px, tile_px, 3), np.uint8)


def real_part_crops(path: Path, tile_px: int, mpp: float, n: int, seed: int, min_tissue: float = 0.2) -> np.ndarray:
    """`n` tiles cut afresh from the train part of a real image named in
    training/real_split.toml: each at a random centre, rotated by a random
    angle (any, not only quarter turns) and scaled by 0.87-1.15, then resampled
    to the model's MPP; kept when at least `min_tissue` of it is tissue (mean
    RGB < 215; the pipeline scores tiles from 10% tissue, so edge tiles with
    glass, margin ink and torn strands are among them). A fixed grid of the
    small train parts gives a few hundred tiles, always the same crops; these
    are as many different views of the same tissue as asked for. The rotated
    square is cut from inside the part, so no tile sees the test part."""
    import real_split

    arr = real_split.level0(path)
    x0, y0, x1, y1 = real_split.part(path.name, "train")
    img = Image.fromarray(np.ascontiguousarray(arr[y0:y1, x0:x1]))
    rng = np.random.default_rng(seed)
    src_per_px = mpp / real_split.mpp(path.name)  # source px per model px
    out = np.empty((n, tile_px, tile_px, 3), np.uint8)
    k = tries = 0
    while k < n:
        tries += 1
        if tries > 50 * n:
            raise SystemExit(f"{path.name}: only {k} of {n} crops with tissue >= {min_tissue} in its train part")
        side = tile_px * src_per_px * float(rng.uniform(0.87, 1.15))  # the tile's side in source px
        half = side * math.sqrt(2) / 2 + 2  # radius that holds the square at any angle
        if 2 * half >= min(img.size):
            raise SystemExit(f"{path.name}: train part {img.size} smaller than one rotated tile")
        cx = float(rng.uniform(half, img.size[0] - half))
        cy = float(rng.uniform(half, img.size[1] - half))
        box = (math.floor(cx - half), math.floor(cy - half), math.ceil(cx + half), math.ceil(cy + half))
        patch = img.crop(box).rotate(float(rng.uniform(0, 360)), resample=Image.Resampling.BICUBIC)
        c = (patch.size[0] / 2, patch.size[1] / 2)
        sq = patch.crop((round(c[0] - side / 2), round(c[1] - side / 2),
                         round(c[0] + side / 2), round(c[1] + side / 2)))
        t = np.asarray(sq.resize((tile_px, tile_px), Image.Resampling.BOX if side > tile_px else Image.Resampling.BICUBIC))
        if (t.mean(axis=2) < 215).mean() >= min_tissue:
            out[k] = t
            k += 1
    return out


# -- augmentation -----------------------------------------------------------


def gaussian_kernel(sigma: float) -> torch.Tensor:
    r = max(1, math.ceil(2.5 * sigma))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


# Reference H&E stain vectors (Ruifrok & Johnston, optical density per RGB
# channel), the basis of the Macenko-style perturbation below.
H_VEC = torch.tensor([0.65, 0.70, 0.29])
E_VEC = torch.tensor([0.07, 0.99, 0.11])


def _stain_basis(h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """(B,3) H and E vectors -> (B,3,3) rows h, e, h x e, each unit length."""
    h = h / h.norm(dim=1, keepdim=True)
    e = e / e.norm(dim=1, keepdim=True)
    r = torch.cross(h, e, dim=1)
    return torch.stack([h, e, r / r.norm(dim=1, keepdim=True)], dim=1)


def _rotate_small(v: torch.Tensor, max_deg: float, gen: torch.Generator) -> torch.Tensor:
    """Rotate each (B,3) vector by up to `max_deg` degrees about a random axis
    orthogonal to it (Rodrigues), keeping it non-negative (a stain absorbs)."""
    b = v.shape[0]
    v = v / v.norm(dim=1, keepdim=True)
    axis = torch.randn(b, 3, generator=gen)
    axis = axis - (axis * v).sum(1, keepdim=True) * v
    axis = axis / axis.norm(dim=1, keepdim=True).clamp(min=1e-6)
    ang = torch.deg2rad(max_deg * (2 * torch.rand(b, 1, generator=gen) - 1))
    out = v * torch.cos(ang) + torch.cross(axis, v, dim=1) * torch.sin(ang)
    return out.clamp(min=0.01)


def stain_matrices(b: int, gen: torch.Generator, max_deg: float = 6.0, conc_sd: float = 0.15) -> torch.Tensor:
    """Per-sample (B,3,3) maps in optical density, row-vector convention
    (od' = od @ T): unmix into H and E concentrations with the reference
    vectors, jitter each concentration (scale exp(N(0, conc_sd))), and mix back
    with H and E vectors rotated by up to `max_deg` degrees (Macenko-style
    stain vector perturbation; the residual channel is kept)."""
    ref = _stain_basis(H_VEC.expand(b, 3), E_VEC.expand(b, 3))
    new = _stain_basis(_rotate_small(H_VEC.expand(b, 3), max_deg, gen), _rotate_small(E_VEC.expand(b, 3), max_deg, gen))
    alpha = torch.exp(conc_sd * torch.randn(b, 3, generator=gen))
    alpha[:, 2] = 1.0
    return torch.linalg.inv(ref) @ torch.diag_embed(alpha) @ new


def rescale(x: torch.Tensor, factor: float, gen: torch.Generator) -> torch.Tensor:
    """Resize the batch by `factor` and crop (randomly) or reflect-pad
    (centred) back to its size: the scale of another scanner or an MPP off by
    that factor."""
    _, _, h, w = x.shape
    n = max(8, round(h * factor))
    if n == h:
        return x
    y = F.interpolate(x, size=(n, n), mode="bilinear", align_corners=False, antialias=factor < 1)
    if n > h:
        oy, ox = (int(torch.randint(0, n - h + 1, (1,), generator=gen)) for _ in range(2))
        return y[:, :, oy : oy + h, ox : ox + w]
    p0 = (h - n) // 2
    return F.pad(y, (p0, h - n - p0, p0, h - n - p0), mode="reflect")


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Re-compress each tile as JPEG at `quality` (PIL, 4:2:0 chroma)."""
    import io

    u8 = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = np.empty_like(u8)

    def one(i: int) -> None:
        buf = io.BytesIO()
        Image.fromarray(u8[i]).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        out[i] = np.asarray(Image.open(buf).convert("RGB"))

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(one, range(len(u8))))
    return (torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255.0).to(x.device)


def augment(x: torch.Tensor, gen: torch.Generator, lab: bool = False,
            noise_gen: torch.Generator | None = None) -> torch.Tensor:
    """x: (B,3,H,W) float in 0..1 -> augmented, still 0..1. Dihedral flips,
    stain jitter in optical density, brightness/contrast, blur and noise.
    `lab` adds what differs between labs (model 2): Macenko-style stain vector
    perturbation, scale +-15% and JPEG re-compression (quality 50-95).
    Every draw comes from the CPU generator `gen` except the per-pixel noise,
    drawn on x's device from `noise_gen` (default `gen`): on CPU the same
    augmentation as before the GPU path existed."""
    b = x.shape[0]
    dev = x.device
    noise_gen = gen if noise_gen is None else noise_gen
    if torch.rand(1, generator=gen) < 0.5:
        x = x.flip(3)
    if torch.rand(1, generator=gen) < 0.5:
        x = x.flip(2)
    if torch.rand(1, generator=gen) < 0.5:
        x = x.transpose(2, 3)
    if lab and torch.rand(1, generator=gen) < 0.5:
        # One scale per batch (cheap); half the batches keep the native scale.
        x = rescale(x, float(0.85 + 0.30 * torch.rand(1, generator=gen)), gen)
    # Stain: OD = -log(I); mix channels with a random near-identity matrix
    # and scale/offset per channel (strong: labs differ a lot).
    od = -torch.log(x.clamp(1.0 / 255, 1.0))
    mix = torch.eye(3).expand(b, 3, 3) + 0.12 * torch.randn(b, 3, 3, generator=gen)
    if lab:
        # Row-vector stain map composed with the (column-convention) jitter:
        # one 3x3 per sample, so the perturbation costs nothing extra.
        mix = mix @ stain_matrices(b, gen).transpose(1, 2)
    scale = torch.exp(0.25 * torch.randn(b, 3, 1, 1, generator=gen))
    offset = 0.04 * torch.randn(b, 3, 1, 1, generator=gen)
    mix, scale, offset = mix.to(dev), scale.to(dev), offset.to(dev)
    od = torch.einsum("bij,bjhw->bihw", mix, od) * scale + offset * (od > 0.05)
    x = torch.exp(-od.clamp(min=0.0))
    # Brightness / contrast.
    bright = (1.0 + 0.08 * torch.randn(b, 1, 1, 1, generator=gen)).to(dev)
    contrast = (1.0 + 0.12 * torch.randn(b, 1, 1, 1, generator=gen)).to(dev)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean) * bright
    # Focus blur on part of the batch, one sigma per batch for speed.
    if torch.rand(1, generator=gen) < 0.4:
        sigma = float(0.3 + 1.5 * torch.rand(1, generator=gen))
        k = gaussian_kernel(sigma).to(dev)
        r = (len(k) - 1) // 2
        kx = k.view(1, 1, 1, -1).repeat(3, 1, 1, 1)
        ky = k.view(1, 1, -1, 1).repeat(3, 1, 1, 1)
        x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), kx, groups=3)
        x = F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), ky, groups=3)
    # Sensor noise.
    amp = (0.03 * torch.rand(b, 1, 1, 1, generator=gen)).to(dev)
    x = x + amp * torch.randn(x.shape, generator=noise_gen, device=dev)
    x = x.clamp(0.0, 1.0)
    if lab and torch.rand(1, generator=gen) < 0.3:
        # The scanner's (or the export's) JPEG, last, as in a real file.
        x = jpeg(x, int(torch.randint(50, 96, (1,), generator=gen)))
    return x


def normalise(x01: torch.Tensor, mean, std) -> torch.Tensor:
    m = torch.tensor(mean, dtype=torch.float32, device=x01.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x01.device).view(1, 3, 1, 1)
    return (x01 - m) / s


# -- metrics ----------------------------------------------------------------


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney AUROC with ties counted half; NaN without both classes."""
    pos = scores[labels == 1]
    neg = np.sort(scores[labels == 0])
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    below = np.searchsorted(neg, pos, side="left")
    at_or_below = np.searchsorted(neg, pos, side="right")
    return float((below + at_or_below).sum() / (2.0 * len(pos) * len(neg)))


def slide_bootstrap_ci(scores, labels, slides, reps: int = 1000, seed: int = 20260101):
    """95% interval of the AUROC when whole slides are resampled with
    replacement (tiles of one slide are not independent)."""
    ids = np.unique(slides)
    by_slide = [np.flatnonzero(slides == s) for s in ids]
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(reps):
        idx = np.concatenate([by_slide[i] for i in rng.integers(0, len(ids), len(ids))])
        a = auroc(scores[idx], labels[idx])
        if not math.isnan(a):
            vals.append(a)
    if len(vals) < reps // 2:
        return [float("nan"), float("nan")]
    return [float(np.quantile(vals, 0.025)), float(np.quantile(vals, 0.975))]


def predict(model: torch.nn.Module, tiles_u8: np.ndarray, mean, std, batch: int = 64) -> np.ndarray:
    return predict_with_features(model, tiles_u8, mean, std, batch)[0]


def predict_with_features(model: dm.TileNet, tiles_u8: np.ndarray, mean, std, batch: int = 64,
                          taps: tuple[int, ...] = ()):
    """Probabilities (N,4) and the OOD detector's features (N,D): penultimate,
    after the pooled outputs of the `taps` layers if any; eval mode, no augmentation."""
    model.eval()
    probs, feats = [], []
    dev = next(model.parameters()).device
    if dev.type != "cpu":
        batch = max(batch, 512)
    with torch.no_grad():
        for i in range(0, len(tiles_u8), batch):
            x = torch.from_numpy(dm.preprocess(tiles_u8[i : i + batch], mean, std)).to(dev)
            f, logits = dm.features_and_logits(model, x, taps)
            feats.append(f.cpu().numpy())
            probs.append(torch.sigmoid(logits).cpu().numpy())
    if not probs:
        return np.empty((0, 4), np.float32), np.empty((0, 0), np.float32)
    return np.concatenate(probs), np.concatenate(feats)


def ood_distance(feats: np.ndarray, means: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The graph's `ood` output in numpy: sqrt(min over groups of the
    Mahalanobis distance squared / D)."""
    z = feats.astype(np.float64) @ w.astype(np.float64)
    mu = means.astype(np.float64) @ w.astype(np.float64)
    d2 = ((z[:, None, :] - mu[None, :, :]) ** 2).sum(axis=2)
    return np.sqrt(d2.min(axis=1) / w.shape[0])


def ood_feature_desc(taps) -> str:
    parts = (["input colour (per-channel mean and std)"] if -1 in taps else []) + (
        [f"pooled conv layers {[t for t in taps if t >= 0]}"] if any(t >= 0 for t in taps) else [])
    return " + ".join(parts + ["penultimate features"])


def ood_summary(dist: np.ndarray, threshold: float) -> dict:
    return {
        "tiles": int(len(dist)),
        "p50": float(np.percentile(dist, 50)),
        "p90": float(np.percentile(dist, 90)),
        "p99": float(np.percentile(dist, 99)),
        "max": float(dist.max()),
        "fraction_above_threshold": float((dist > threshold).mean()),
    }


def evaluate(probs: np.ndarray, fracs: np.ndarray, pos_frac, slides: np.ndarray | None = None) -> dict:
    y, mask = targets_and_mask(fracs, pos_frac)
    res = {}
    for k, name in enumerate(dm.FINDINGS):
        keep = mask[:, k] > 0
        res[name] = {
            "auroc": auroc(probs[keep, k], y[keep, k]),
            "positives": int(y[keep, k].sum()),
            "negatives": int((1 - y[keep, k]).sum()),
        }
        if slides is not None:
            res[name]["auroc_ci95_slide_bootstrap"] = slide_bootstrap_ci(probs[keep, k], y[keep, k], slides[keep])
    return res


def load_exports(folders: list[Path], tile_px: int, mpp: float, limit: int | None):
    """Several exports pooled: tiles, fractions, seeds, slide ids."""
    parts = [load_export(d, tile_px, mpp, limit) for d in folders]
    tiles = np.concatenate([p[0] for p in parts])
    fracs = np.concatenate([p[1] for p in parts])
    seeds = np.concatenate([p[2] for p in parts])
    slides = np.array([f"{d}:{r['slide_id']}" for d, p in zip(folders, parts) for r in p[4]])
    return tiles, fracs, seeds, slides


# -- training ---------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path, nargs="+", required=True, help="tile export folders for training")
    ap.add_argument("--heldout", nargs="*", default=[],
                    help="tile export folders (unseen seeds) to evaluate: DIR, or NAME=DIR1,DIR2 to pool several into one set")
    ap.add_argument("--out", type=Path, required=True, help="model folder to write")
    ap.add_argument("--arch", default="slim-s2", choices=list(dm.ARCHS))
    ap.add_argument("--head-pool", default=None, metavar="avg|lse:R",
                    help="how the last feature map becomes logits (dirascope_model.TileNet): avg, or lse:R "
                         "(the head at every location, log-mean-exp pooled with sharpness R); default avg, "
                         "or the --init checkpoint's")
    ap.add_argument("--hard-negative-weight", type=float, default=1.0, metavar="W",
                    help="with --init: sample W times as often the training tiles the starting model puts above "
                         "0.5 for a finding they are negative for (its false positives), before training")
    ap.add_argument("--tile-px", type=int, default=224)
    ap.add_argument("--mpp", type=float, default=1.0)
    ap.add_argument("--pos-frac", type=float, default=0.01, help="mask coverage at which a tile is positive")
    ap.add_argument("--pos-frac-for", nargs="*", default=[], metavar="FINDING=FRAC",
                    help="per-finding override of --pos-frac, e.g. neutrophilic_eccrine_hidradenitis=0.1")
    ap.add_argument("--minutes", type=float, default=18.0,
                    help="training time budget (wall clock); the step count is planned from the speed of the first steps")
    ap.add_argument("--steps", type=int, default=None,
                    help="train exactly this many steps instead (the same model whatever the machine's load; --minutes is then ignored)")
    ap.add_argument("--max-epochs", type=int, default=40)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu",
                    help="torch device to train and evaluate on (cuda: the tiles live on the GPU, the step runs in "
                         "bfloat16 autocast; evaluation, the OOD fit and the export stay in float32)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--real-negatives", type=Path, default=None, help="real normal-skin slide (e.g. CMU-1-Small-Region.svs)")
    ap.add_argument("--real-train-parts", type=Path, nargs="*", default=[],
                    help="real normal-skin images named in training/real_split.toml: tissue tiles of their train "
                         "parts are negatives (repeated --real-repeat times); their test parts are evaluated")
    ap.add_argument("--real-crops", type=int, default=0, metavar="N",
                    help="instead of a fixed grid repeated --real-repeat times, cut N tiles per real image from its "
                         "train part at random centres, angles and scales (train.real_part_crops)")
    ap.add_argument("--real-repeat", type=int, default=1,
                    help="repeat each real negative tile this many times per epoch (augmentation varies the copies)")
    ap.add_argument("--name", default="dirascope-phantom-v1")
    ap.add_argument("--version", default="1.0.0")
    ap.add_argument("--limit", type=int, default=None, help="load at most this many tiles per export (smoke tests)")
    ap.add_argument("--export-weight", nargs="*", default=[], metavar="NAME=W",
                    help="sample the tiles of the training export whose folder name is NAME W times as often "
                         "(e.g. the few real-tissue implant tiles)")
    ap.add_argument("--lab-augment", action="store_true",
                    help="also augment for what differs between labs: Macenko-style stain vector perturbation, "
                         "scale +-15%%, JPEG re-compression (model 2)")
    ap.add_argument("--ood", action="store_true",
                    help="fit the out-of-distribution detector (Mahalanobis distance of the penultimate features to "
                         "per-group Gaussians of the training tiles) and export it as the graph's second output `ood`; "
                         "its threshold is a percentile of the pooled held-out tiles' distances (needs --heldout)")
    ap.add_argument("--ood-percentile", type=float, default=99.0,
                    help="threshold = this percentile of the held-out in-distribution tiles' OOD distances")
    ap.add_argument("--ood-max-fraction", type=float, default=0.25,
                    help="a slide is out-of-distribution when more than this fraction of its tissue tiles are over the threshold")
    ap.add_argument("--ood-shrink", type=float, default=0.01, help="covariance shrinkage toward its mean variance")
    ap.add_argument("--ood-taps", default="",
                    help="comma-separated conv layer indices (0-based) whose pooled outputs join the penultimate "
                         "features for the OOD distance (default: penultimate only)")
    ap.add_argument("--ood-threshold-from", nargs="*", default=None, metavar="NAME",
                    help="held-out sets (by NAME) whose tiles set the threshold (default: all); the others only "
                         "report their rates, so a threshold is not judged on the tiles it was set on")
    ap.add_argument("--ood-heldout-desc", default=None,
                    help="what the held-out sets are, for the manifest's [ood] fitted_on (default: their names)")
    ap.add_argument("--rule-from", type=Path, default=None,
                    help="a model folder whose [output] views, [aggregation], [rule] and [stain] tables "
                         "start this one's (when --out has no model.toml yet; default: --init's folder)")
    ap.add_argument("--intended-use", default=None, help="the manifest's intended_use (default: write_manifest's)")
    ap.add_argument("--init", type=Path, default=None,
                    help="start from a model folder (its checkpoint.pt) or a checkpoint file; "
                         "with --minutes 0: evaluate and export only")
    args = ap.parse_args()

    ood_taps = tuple(int(t) for t in args.ood_taps.split(",") if t.strip())
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    pos_frac = parse_pos_frac(args.pos_frac, args.pos_frac_for)
    print("positive at mask coverage >=", dict(zip(dm.FINDINGS, pos_frac)))

    parts = [load_export(d, args.tile_px, args.mpp, args.limit) for d in args.train]
    # Every piece is gathered first and joined once, and each export's own tile
    # array is let go as soon as it is in `pieces`: the tiles are most of the
    # process's memory (about 150 kB each), and joining them piece by piece held
    # two or three copies at once (t9's first runs were killed at 24 GB).
    pieces = [p[0] for p in parts]
    export_sizes = [len(p[0]) for p in parts]
    parts = [(None, *p[1:]) for p in parts]
    fracs = np.concatenate([p[1] for p in parts])
    train_seeds = sorted(set(int(s) for p in parts for s in p[2]))
    n_synth = sum(export_sizes)
    n_real = 0
    real_src_mpp = None
    if args.real_negatives:
        real, real_src_mpp = real_negative_tiles(args.real_negatives, args.tile_px, args.mpp, "train", 0.25)
        real = np.repeat(real, max(1, args.real_repeat), axis=0)
        if len(real):
            pieces.append(real)
            n_real = len(real)
    real_parts_used = []
    for i, path in enumerate(args.real_train_parts):
        if args.real_crops:
            rt = real_part_crops(path, args.tile_px, args.mpp, args.real_crops, args.seed * 1000 + i)
            real_parts_used.append(f"{len(rt)} random crops (any angle, scale 0.87-1.15, tissue >= 0.2) from {path.name}")
        else:
            rt = real_part_tiles(path, args.tile_px, args.mpp, "train", 0.25)
            real_parts_used.append(f"{len(rt)} from {path.name}")
            rt = np.repeat(rt, max(1, args.real_repeat), axis=0)
        if len(rt):
            pieces.append(rt)
            n_real += len(rt)
    fracs = np.concatenate([fracs, np.zeros((n_real, 4), np.float32)])
    tiles = np.empty((n_synth + n_real, *pieces[0].shape[1:]), np.uint8)
    at = 0
    while pieces:
        piece = pieces.pop(0)
        tiles[at : at + len(piece)] = piece
        at += len(piece)
        del piece
    y, mask = targets_and_mask(fracs, pos_frac)
    print(f"loaded {n_synth} phantom tiles from seeds {train_seeds[0]}..{train_seeds[-1]} "
          f"({len(train_seeds)} slides) + {n_real} real negatives in {time.time() - t0:.0f}s")
    pos_rate = (y * mask).sum(0) / np.maximum(mask.sum(0), 1)
    print("positive share per finding:", dict(zip(dm.FINDINGS, np.round(pos_rate, 3).tolist())))

    # Mean/std on the 0..1 scale over the training tiles.
    # Accumulate in float64: a float32 sum over ~1e8 values stalls at 2**24
    # (dirascope-phantom-v1 was trained with mean 0.1672 = 2**24 / 1.0e8).
    sample = tiles[rng.choice(len(tiles), size=min(2000, len(tiles)), replace=False)].reshape(-1, 3)
    mean = (sample.mean(0, dtype=np.float64) / 255.0).round(4).tolist()
    std = (sample.std(0, dtype=np.float64) / 255.0).round(4).tolist()
    del sample

    # Oversample tiles positive for rare findings towards ~20% each.
    weights = np.ones(len(tiles), np.float64)
    for k in range(4):
        if pos_rate[k] > 0:
            boost = min(20.0, max(1.0, 0.2 / pos_rate[k]))
            weights = np.where(y[:, k] > 0, np.maximum(weights, boost), weights)
    export_of = np.concatenate([np.full(n, i) for i, n in enumerate(export_sizes)] + [np.full(n_real, -1)])
    for item in args.export_weight:
        key, _, value = item.partition("=")
        hit = [i for i, d in enumerate(args.train) if d.name == key]
        if not hit or not value:
            raise SystemExit(f"--export-weight {item!r}: expected NAME=W with NAME a --train folder's name")
        for i in hit:
            weights[export_of == i] *= float(value)
    weights /= weights.sum()

    init_dir = None
    if args.init:
        ckpt_file = args.init
        if args.init.is_dir():
            init_dir = args.init
            ckpt_file = args.init / "checkpoint.pt"
            if not ckpt_file.is_file():
                raise SystemExit(
                    f"{args.init}: no checkpoint.pt; a folder exported before checkpoints shipped can "
                    f"rebuild one from its ONNX: python training/checkpoint_from_onnx.py {args.init}"
                )
        ckpt = torch.load(ckpt_file)
        args.arch = ckpt.get("arch", args.arch)
        if args.head_pool is None:
            args.head_pool = ckpt.get("head_pool", "avg")
        print(f"fine-tuning from {ckpt_file} ({args.arch}, head pool {args.head_pool})")
    args.head_pool = args.head_pool or "avg"
    try:
        model = dm.TileNet(args.arch, head_pool=args.head_pool)
    except ValueError as e:
        raise SystemExit(f"--head-pool: {e}")
    if args.init:
        model.load_state_dict(ckpt["state"])
        mean, std = ckpt["mean"], ckpt["std"]
    hard_negatives = None
    if args.hard_negative_weight != 1.0:
        if not args.init:
            raise SystemExit("--hard-negative-weight needs --init: the starting model names the hard negatives")
        start_probs = predict(model, tiles, mean, std)
        false_pos = (start_probs > 0.5) & (y == 0) & (mask > 0)
        hard = false_pos.any(axis=1)
        weights = weights * np.where(hard, args.hard_negative_weight, 1.0)
        weights /= weights.sum()
        hard_negatives = {"tiles": int(hard.sum()), "weight": args.hard_negative_weight,
                          **{f: int(false_pos[:, k].sum()) for k, f in enumerate(dm.FINDINGS)}}
        print(f"hard negatives (the starting model's false positives above 0.5), sampled "
              f"{args.hard_negative_weight}x: {hard_negatives}", flush=True)
    dev = torch.device(args.device)
    on_gpu = dev.type == "cuda"
    noise_gen = gen
    if on_gpu:
        # float32 stays float32 outside the bfloat16 step (the OOD features and the
        # held-out figures are compared with the exported graph's on CPU).
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
        model.to(dev)
        noise_gen = torch.Generator(device=dev).manual_seed(args.seed)
        tiles_dev = torch.from_numpy(tiles).to(dev)
        y_dev, mask_dev = torch.from_numpy(y).to(dev), torch.from_numpy(mask).to(dev)
        print(f"training on {torch.cuda.get_device_name(dev)}: {len(tiles)} tiles on the device")

    def set_train_mode() -> None:
        model.train()
        if args.init:
            # Fine-tuning keeps the starting BatchNorm statistics: a small, skewed
            # fine-tuning batch would replace them (and a checkpoint rebuilt from an
            # ONNX holds its statistics folded into the weights).
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.eval()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = max(1, len(tiles) // args.batch)
    budget_s = args.minutes * 60.0
    # Estimate the step count the budget allows after a short warm-up.
    total_steps = steps_per_epoch * args.max_epochs
    sched_total = total_steps
    if args.steps is not None:
        sched_total = args.steps
    step = 0
    train_start = time.time()
    cpu_start = time.process_time()
    history = []
    epoch = 0
    stop = False
    will_train = args.steps > 0 if args.steps is not None else budget_s > 0
    while not stop and epoch < args.max_epochs and will_train:
        set_train_mode()
        order = rng.choice(len(tiles), size=steps_per_epoch * args.batch, replace=True, p=weights)
        running = 0.0
        for b in range(steps_per_epoch):
            idx = order[b * args.batch : (b + 1) * args.batch]
            if on_gpu:
                i_dev = torch.from_numpy(idx).to(dev)
                x = tiles_dev[i_dev].permute(0, 3, 1, 2).float() / 255.0
                yt, mt = y_dev[i_dev], mask_dev[i_dev]
            else:
                x = torch.from_numpy(tiles[idx]).permute(0, 3, 1, 2).float() / 255.0
                yt = torch.from_numpy(y[idx])
                mt = torch.from_numpy(mask[idx])
            x = normalise(augment(x, gen, lab=args.lab_augment, noise_gen=noise_gen), mean, std)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_gpu):
                logits = model(x).float()
            loss = (F.binary_cross_entropy_with_logits(logits, yt, reduction="none") * mt).sum() / mt.sum().clamp(min=1)
            opt.zero_grad()
            loss.backward()
            # Cosine schedule over the step count the time budget allows, planned
            # after 20 steps and again after 220 (a GPU's first steps include its
            # warm-up: the second plan uses steps 20-220 alone).
            if step in (20, 220) and args.steps is None:
                if on_gpu:
                    torch.cuda.synchronize()
                now = time.time()
                if step == 20:
                    per_step, t20 = (now - train_start) / 20, now
                else:
                    per_step = (now - t20) / 200
                left = budget_s - (now - train_start)
                sched_total = min(total_steps, max(40, step + int(left / per_step)))
                print(f"{per_step * 1000:.0f} ms/step: planning {sched_total} steps "
                      f"({sched_total / steps_per_epoch:.1f} epochs) in {args.minutes} min", flush=True)
            frac = min(1.0, step / max(1, sched_total))
            lr = args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac))) * min(1.0, (step + 1) / 50)
            for g in opt.param_groups:
                g["lr"] = lr
            opt.step()
            running += loss.detach()
            step += 1
            over_time = args.steps is None and time.time() - train_start > budget_s * 1.1
            if step >= sched_total or over_time:
                stop = True
                break
        epoch += 1
        msg = (f"epoch {epoch} step {step} loss {float(running) / max(1, b + 1):.4f} "
               f"({time.time() - train_start:.0f}s, {time.process_time() - cpu_start:.0f} CPU-s)")
        history.append(msg)
        print(msg, flush=True)
    train_seconds = time.time() - train_start
    train_cpu_seconds = time.process_time() - cpu_start

    args.out.mkdir(parents=True, exist_ok=True)
    # The training run's record travels in the checkpoint, so that evaluating it
    # later (--init CKPT --minutes 0, e.g. on more held-out sets) reports how the
    # weights were trained, not the zero steps of the evaluation run.
    run = {
        "train_exports": [str(d) for d in args.train],
        "pos_frac": dict(zip(dm.FINDINGS, pos_frac)),
        "steps": step,
        "epochs": epoch,
        "batch": args.batch,
        "lr": args.lr,
        "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(train_cpu_seconds, 1),
        "torch_threads": args.threads,
        "torch_version": str(torch.__version__),
        "lab_augment": args.lab_augment,
        "export_weight": args.export_weight,
        "hard_negatives": hard_negatives,
        "history": history,
    }
    if args.init and step == 0 and "run" in ckpt:
        run = dict(ckpt["run"], evaluated_from_checkpoint=str(args.init))
        print(f"no training steps: reporting the training run recorded in {args.init}")
    else:
        ckpt_path = Path(f"/tmp/{args.name}.ckpt.pt")
        cpu_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        state = {"state": cpu_state, "arch": args.arch, "head_pool": args.head_pool,
                 "mean": mean, "std": std, "run": run}
        torch.save(state, ckpt_path)
        # The model folder ships its checkpoint, so the next group can fine-tune it.
        torch.save(state, args.out / "checkpoint.pt")
        print(f"checkpoint {ckpt_path} and {args.out / 'checkpoint.pt'}")
    metrics = {
        "arch": args.arch,
        "head_pool": args.head_pool,
        "tile_px": args.tile_px,
        "mpp": args.mpp,
        "mean": mean,
        "std": std,
        "train_seeds": [train_seeds[0], train_seeds[-1], len(train_seeds)],
        "train_tiles_phantom": n_synth,
        "train_tiles_real_negative": n_real,
        **{k: v for k, v in run.items() if k != "history"},
        "heldout": {},
    }
    params, macs = dm.count_params_macs(model, args.tile_px)
    metrics["parameters"] = params
    metrics["macs_per_tile"] = macs

    parity_tiles = None
    heldout_probs = {}
    heldout_feats: dict[str, np.ndarray] = {}
    for name, dirs in parse_heldout(args.heldout):
        h_tiles, h_fracs, h_seeds, h_slides = load_exports(dirs, args.tile_px, args.mpp, args.limit)
        overlap = sorted(set(int(s) for s in h_seeds) & set(train_seeds))
        if overlap:
            raise SystemExit(f"{name}: held-out seeds overlap training seeds: {overlap[:5]}")
        probs, h_feats = predict_with_features(model, h_tiles, mean, std, taps=ood_taps)
        if args.ood:
            heldout_feats[name] = h_feats
        res = evaluate(probs, h_fracs, pos_frac, h_slides)
        res_1pct = evaluate(probs, h_fracs, 0.01)
        metrics["heldout"][name] = {
            "exports": [str(d) for d in dirs],
            "tiles": len(h_tiles),
            "slides": len(set(h_slides.tolist())),
            "seeds": sorted(set(int(s) for s in h_seeds)),
            "per_finding": res,
            "per_finding_at_pos_frac_0.01": res_1pct,
        }
        heldout_probs[name] = probs
        print(f"held-out {name} ({len(h_tiles)} tiles): " + ", ".join(
            f"{k} {v['auroc']:.4f} [{v['auroc_ci95_slide_bootstrap'][0]:.3f}-{v['auroc_ci95_slide_bootstrap'][1]:.3f}]"
            f" (+{v['positives']}/-{v['negatives']})" for k, v in res.items()))
        print("    at pos-frac 0.01 for all: " + ", ".join(
            f"{k} {v['auroc']:.4f} (+{v['positives']}/-{v['negatives']})" for k, v in res_1pct.items()))
        if parity_tiles is None and len(h_tiles) >= 32:
            # 32 tiles spread over the held-out set, positives included.
            pick = np.linspace(0, len(h_tiles) - 1, 32).astype(int)
            parity_tiles = h_tiles[pick]
            parity_source = f"32 tiles spread over held-out set {name}"
    if heldout_probs:
        np.savez(f"/tmp/{args.name}.heldout-probs.npz", **heldout_probs)

    if args.real_negatives:
        real_eval, _ = real_negative_tiles(args.real_negatives, args.tile_px, args.mpp, "eval", 0.5)
        real_all, _ = real_negative_tiles(args.real_negatives, args.tile_px, args.mpp, "all", 0.5)
        rp = predict(model, real_eval, mean, std)
        metrics["real_normal"] = {
            "slide": args.real_negatives.name,
            "source_mpp": real_src_mpp,
            "tiles_bottom_half_unseen": len(real_eval),
            "fraction_above_0.5": {k: float((rp[:, i] >= 0.5).mean()) if len(rp) else None for i, k in enumerate(dm.FINDINGS)},
            "max_prob": {k: float(rp[:, i].max()) if len(rp) else None for i, k in enumerate(dm.FINDINGS)},
        }
        print("real normal skin (unseen half):", metrics["real_normal"])

    if args.real_train_parts:
        metrics["real_test_parts"] = {}
        for path in args.real_train_parts:
            rt = real_part_tiles(path, args.tile_px, args.mpp, "test", 0.25)
            rp = predict(model, rt, mean, std)
            metrics["real_test_parts"][path.name] = {
                "tiles": len(rt),
                "fraction_above_0.5": {k: float((rp[:, i] > 0.5).mean()) if len(rp) else None for i, k in enumerate(dm.FINDINGS)},
                "max_prob": {k: float(rp[:, i].max()) if len(rp) else None for i, k in enumerate(dm.FINDINGS)},
            }
            print(f"real test part of {path.name}:", metrics["real_test_parts"][path.name])

    ood = None
    ood_manifest = None
    if args.ood:
        if not heldout_feats:
            raise SystemExit("--ood needs --heldout: the threshold is set on held-out in-distribution tiles")
        t_ood = time.time()
        _, train_feats = predict_with_features(model, tiles, mean, std, batch=128, taps=ood_taps)
        groups = dm.ood_groups(fracs)
        ood = dm.fit_mahalanobis(train_feats, groups, shrink=args.ood_shrink)
        train_dist = ood_distance(train_feats, *ood)
        held_dist = {k: ood_distance(f, *ood) for k, f in heldout_feats.items()}
        fit_from = args.ood_threshold_from or list(held_dist)
        unknown = [k for k in fit_from if k not in held_dist]
        if unknown:
            raise SystemExit(f"--ood-threshold-from: no held-out set named {', '.join(unknown)} "
                             f"(sets: {', '.join(held_dist)})")
        pooled = np.concatenate([held_dist[k] for k in fit_from])
        threshold = round(float(np.percentile(pooled, args.ood_percentile)), 4)
        held_desc = args.ood_heldout_desc or ", ".join(
            f"{k} ({len(held_dist[k])} tiles)" for k in fit_from)
        fitted_on = (
            f"Gaussians: {ood_feature_desc(ood_taps)} "
            f"of the {len(tiles)} training tiles "
            f"(groups {', '.join(f'{g} {int((groups == i).sum())}' for i, g in enumerate(dm.OOD_GROUPS))}), "
            f"shared covariance shrunk {args.ood_shrink}; threshold: {args.ood_percentile:g}th percentile of "
            f"{len(pooled)} held-out in-distribution tiles: {held_desc}"
        )
        ood_manifest = {"threshold": threshold, "max_fraction": args.ood_max_fraction, "fitted_on": fitted_on}
        metrics["ood"] = {
            "method": "mahalanobis",
            "features": int(train_feats.shape[1]),
            "taps": list(ood_taps),
            "feature_desc": ood_feature_desc(ood_taps),
            "groups": {g: int((groups == i).sum()) for i, g in enumerate(dm.OOD_GROUPS)},
            "shrink": args.ood_shrink,
            "percentile": args.ood_percentile,
            "threshold": ood_manifest["threshold"],
            "max_fraction": args.ood_max_fraction,
            "fitted_on": fitted_on,
            "train": ood_summary(train_dist, threshold),
            "threshold_from": fit_from,
            "heldout_pooled": ood_summary(pooled, threshold),
            "heldout": {k: ood_summary(v, threshold) for k, v in held_dist.items()},
        }
        print(f"OOD: threshold {threshold:.4f} ({args.ood_percentile:g}th percentile of {len(pooled)} held-out tiles), "
              f"fitted in {time.time() - t_ood:.0f}s")
        for k, v in [("train", metrics["ood"]["train"])] + list(metrics["ood"]["heldout"].items()):
            print(f"    {k:>12}: {v['tiles']} tiles, p50 {v['p50']:.3f} p90 {v['p90']:.3f} p99 {v['p99']:.3f} "
                  f"max {v['max']:.3f}, over threshold {100 * v['fraction_above_threshold']:.2f}%")

    # Export, manifest, parity.
    model.to("cpu")
    model.eval()
    dm.export_onnx(model, args.out / "model.onnx", args.tile_px, ood=ood, ood_taps=ood_taps)
    # Tiles from `dirascope tiles` (annotated slides, e.g. lesions implanted into
    # real tissue) have class "annotated"; synth tiles carry the phantom's class.
    n_annot = sum(1 for p in parts for c in p[3] if c == "annotated")
    phantom_seeds = sorted(set(int(s) for p in parts for s, c in zip(p[2], p[3]) if c != "annotated"))
    annot_slides = len(set(r["slide_id"] for p in parts for r, c in zip(p[4], p[3]) if c == "annotated"))
    desc_parts = []
    if n_synth - n_annot:
        desc_parts.append(
            f"{n_synth - n_annot} phantom tiles from `dirascope synth --tiles` (seeds {phantom_seeds[0]}..{phantom_seeds[-1]}, "
            f"{len(phantom_seeds)} slides, all classes)")
    if n_annot:
        desc_parts.append(f"{n_annot} tiles of {annot_slides} annotated slides (`dirascope tiles`; lesions implanted "
                          f"into the train parts of real normal skin, their lesion-free tiles real negatives)")
    if n_real:
        src = ([args.real_negatives.name] if args.real_negatives else []) + real_parts_used
        how = "train parts" if args.real_crops else f"train parts, x{args.real_repeat}"
        desc_parts.append(f"{n_real} real normal-skin tiles{'' if args.real_crops else ' (with repeats)'} as negatives: "
                          f"{', '.join(src)} ({how})")
    data_desc = " + ".join(desc_parts) + "; see MODEL_CARD.md"
    # A retrained model keeps the folder's calibrated [aggregation] and [rule]
    # tables (with their comments); recalibrate them for the new weights.
    old_manifest = args.out / "model.toml"
    if not old_manifest.is_file() and args.rule_from is not None:
        old_manifest = args.rule_from / "model.toml"
    if not old_manifest.is_file() and init_dir is not None:
        # A fine-tuned folder starts from its parent's aggregation and rule.
        old_manifest = init_dir / "model.toml"
    # Kept as text with their comments: the [output] views, [aggregation] and [rule],
    # and the [stain] table; write_manifest writes [ood] afresh.
    kept_tail, kept_views_text, kept_stain = None, None, None
    if old_manifest.is_file():
        old_text = old_manifest.read_text()
        kept_views = dm.manifest_views(tomllib.loads(old_text))  # refuses unknown views
        kept_views_text, kept_tail, kept_stain = dm.kept_manifest_parts(old_text)
        if kept_views != ["identity"]:
            print(f"kept [output] views {kept_views} of {old_manifest}")
        if kept_tail is not None:
            print(f"kept [aggregation] and [rule] of {old_manifest}: recalibrate them for this model")
        if kept_stain is not None:
            print(f"kept [stain] of {old_manifest}")
    dm.write_manifest(
        args.out,
        aggregation_and_rule=kept_tail,
        views=kept_views_text,
        stain=kept_stain,
        name=args.name,
        version=args.version,
        tile_px=args.tile_px,
        mpp=args.mpp,
        mean=mean,
        std=std,
        training_data=data_desc,
        ood=ood_manifest,
        **({"intended_use": args.intended_use} if args.intended_use else {}),
    )
    if parity_tiles is None:
        parity_tiles = tiles[np.linspace(0, len(tiles) - 1, 32).astype(int)]
        parity_source = "32 training tiles"
    inputs = dm.preprocess(parity_tiles, mean, std)
    dm.write_parity(args.out, inputs, source=parity_source)
    # The exported graph must agree with the torch model it came from.
    torch_out = model(torch.from_numpy(inputs)).detach().numpy()
    ort_out = np.frombuffer((args.out / "parity" / "outputs.f32").read_bytes(), "<f4").reshape(-1, 4)
    metrics["export_torch_vs_onnxruntime_max_abs"] = float(np.abs(torch_out - ort_out).max())
    if ood is not None:
        with torch.no_grad():
            parity_feats = dm.features(model, torch.from_numpy(inputs), ood_taps).numpy()
        ort_ood = np.frombuffer((args.out / "parity" / "ood.f32").read_bytes(), "<f4")
        metrics["export_ood_numpy_vs_onnxruntime_max_abs"] = float(
            np.abs(ood_distance(parity_feats, *ood) - ort_ood).max())
        print(f"OOD output: numpy vs onnxruntime max abs {metrics['export_ood_numpy_vs_onnxruntime_max_abs']:.2e}")
    metrics["sha256"] = dm.sha256_file(args.out / "model.onnx")
    if (args.out / "checkpoint.pt").is_file():
        # Also in model.toml (checkpoint_sha256), where model check verifies it.
        metrics["checkpoint_sha256"] = dm.sha256_file(args.out / "checkpoint.pt")
    metrics["history"] = run["history"]
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"wrote {args.out} in {time.time() - t0:.0f}s total; torch vs onnxruntime max abs "
          f"{metrics['export_torch_vs_onnxruntime_max_abs']:.2e}")


if __name__ == "__main__":
    main()
