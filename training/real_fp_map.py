"""Where a model's positive tiles fall on a real normal-skin image, and what in
them drives the score: tiles every 56 px at the model's MPP over the whole
image (ood_cases.py's tissue rule), a box on each tile over 0.5 (red pustule,
green psoriasiform, blue acantholysis, yellow hidradenitis) and the train/test
split line of training/real_split.toml, written as a PNG; then occlusion on the
test part's top tiles for one finding: each 40 px patch blurred (sigma 12 px)
in turn, the drop in probability mapped in red beside the tile. Prints each
tile over 0.5 and each occluded tile's largest drop. (Model card, "Tried after
2.12.0"; a diagnostic of real test-part false positives: nothing here is
trained or tuned on.)

    python training/real_fp_map.py MODEL --image CMU-1-Small-Region.svs --out DIR [--finding subcorneal_pustule] [--top 4]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

import dirascope_model as dm
import real_split
from ood_cases import Scorer, resample, tissue_ok

COLOURS = [(230, 0, 0), (0, 90, 230), (230, 200, 0), (0, 160, 0)]  # in dm.FINDINGS order
STRIDE = 56
PATCH, STEP, SIGMA = 40, 16, 12.0


def occlusion(scorer: Scorer, tile: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    """Probability of finding k, and the mean drop when each patch is blurred."""
    base = float(scorer(tile[None])[0][0, k])
    blurred = ndimage.gaussian_filter(tile.astype(np.float32), (SIGMA, SIGMA, 0)).astype(np.uint8)
    n = tile.shape[0]
    spots, batch = [], []
    for y in range(0, n - PATCH + 1, STEP):
        for x in range(0, n - PATCH + 1, STEP):
            u = tile.copy()
            u[y : y + PATCH, x : x + PATCH] = blurred[y : y + PATCH, x : x + PATCH]
            spots.append((x, y))
            batch.append(u)
    p = scorer(np.stack(batch))[0][:, k]
    drop, count = np.zeros((n, n)), np.zeros((n, n))
    for (x, y), v in zip(spots, p):
        drop[y : y + PATCH, x : x + PATCH] += base - v
        count[y : y + PATCH, x : x + PATCH] += 1
    return base, drop / np.maximum(count, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--image", required=True, help="a file named in training/real_split.toml")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--finding", default="subcorneal_pustule", choices=dm.FINDINGS)
    ap.add_argument("--top", type=int, default=4, help="test-part tiles to occlude")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    scorer = Scorer(args.model, args.threads)
    src_mpp = real_split.mpp(args.image)
    img = resample(real_split.level0(Path(real_split.REAL_DIR) / args.image), src_mpp, scorer.mpp)
    px, scale = scorer.px, src_mpp / scorer.mpp  # model px per source px
    images = real_split.load()
    x0, y0, _, _ = real_split.part(args.image, "test", images)  # where the split line is drawn
    spots, tiles = [], []
    for y in range(0, img.shape[0] - px + 1, STRIDE):
        for x in range(0, img.shape[1] - px + 1, STRIDE):
            t = img[y : y + px, x : x + px]
            if tissue_ok(t):
                spots.append((x, y))
                tiles.append(t)
    p, _ = scorer(np.stack(tiles))
    sheet = Image.fromarray(img).convert("RGB")
    draw = ImageDraw.Draw(sheet)
    test = []
    for i, (x, y) in enumerate(spots):
        cx, cy = (x + px / 2) / scale, (y + px / 2) / scale
        in_test = real_split.in_part(args.image, "test", cx, cy, images)
        test.append(in_test)
        for k, name in enumerate(dm.FINDINGS):
            if p[i, k] > 0.5:
                inset = 3 + 4 * k
                draw.rectangle([x + px / 2 - 24 + inset, y + px / 2 - 24 + inset,
                                x + px / 2 + 24 - inset, y + px / 2 + 24 - inset], outline=COLOURS[k], width=3)
                print(f"{'test' if in_test else 'train'} part tile at ({x}, {y}) px: {name} {p[i, k]:.2f}")
    # The split: a line where the test part begins.
    if y0 > 0:
        draw.line([0, y0 * scale, img.shape[1], y0 * scale], fill=(0, 0, 255), width=2)
    if x0 > 0:
        draw.line([x0 * scale, 0, x0 * scale, img.shape[0]], fill=(0, 0, 255), width=2)
    stem = Path(args.image).stem
    sheet.save(args.out / f"{stem}-positives.png")
    k = dm.FINDINGS.index(args.finding)
    test_idx = [i for i in np.argsort(-p[:, k]) if test[i] and p[i, k] > 0.5][: args.top]
    rows = []
    for i in test_idx:
        x, y = spots[i]
        base, drop = occlusion(scorer, tiles[i], k)
        print(f"occlusion, test-part tile at ({x}, {y}): {args.finding} {base:.3f}, largest mean drop {drop.max():.3f}")
        heat = (np.clip(drop / max(drop.max(), 1e-6), 0, 1) * 255).astype(np.uint8)
        over = (tiles[i] * 0.55 + np.stack([heat, 0 * heat, 0 * heat], 2) * 0.45).astype(np.uint8)
        rows.append(np.concatenate([tiles[i], over], 1))
    if rows:
        Image.fromarray(np.concatenate(rows, 0)).save(args.out / f"{stem}-occlusion-{args.finding}.png")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
