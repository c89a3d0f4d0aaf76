"""Would stain normalisation help a model on real tissue? A probe, not a feature.

Scores the real fixtures' test-part tiles (training/real_split.toml) with a
model folder (onnxruntime) three ways: as scanned; with their stain vectors
swapped for a reference's (Macenko-style unmixing with the slide's own vectors,
mixing again with the reference's); and with each stain's concentration also
scaled so its 99th percentile matches the reference's (Macenko's
normalisation). The slide's vectors come from its TRAIN part, the reference's
from phantom slides like the model's training data; vectors are estimated as
src/stain.rs does (OD direction plane refitted to the 95% nearest, 1st/99th
percentile angles). Prints each way's share of tiles above 0.5 per finding:
on normal skin every one is a false positive. With `--heldout NAME=DIR,...`
(tile exports), also each finding's tile AUROC there as scanned and fully
normalised (each slide's vectors from all its tiles), at 1% mask coverage
(hidradenitis 10%), so what normalisation costs where the model is right shows
beside what it saves where it is wrong.

    training/.venv/bin/python training/stain_normalise_probe.py models/dirascope-phantom-v1 \\
        fixtures/phantoms/*.tiff
    training/.venv/bin/python training/stain_normalise_probe.py models/dirascope-v2 PHANTOM.tiff ...

Reference slides are read at the pyramid level nearest 1.0 um/px.
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

import numpy as np
import tifffile

import dirascope_model as dm
import real_split
import train

REAL = Path(real_split.REAL_DIR)
IMAGES = ["CMU-1-Small-Region.svs", "skin-normal-10x-public-domain.jpg"]


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def optical_density(rgb: np.ndarray) -> np.ndarray:
    return -np.log(np.maximum(rgb.reshape(-1, 3).astype(np.float64), 1.0) / 255.0)


def estimate(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(2 x 3 unit H and E vectors, their concentrations' 99th percentiles)."""
    od = optical_density(rgb)
    od = od[np.all(od > 0.15, axis=1)]
    d = unit(od)
    keep = np.ones(len(d), bool)
    for _ in range(3):
        _, v = np.linalg.eigh(d[keep].T @ d[keep])
        plane, normal = v[:, [2, 1]], v[:, 0]
        off = np.abs(d @ normal)
        keep = off <= np.quantile(off, 0.95)
    plane = plane * np.sign(plane.sum(0))
    t = d[keep] @ plane
    angle = np.arctan2(t[:, 1], t[:, 0])
    a, b = (unit(plane @ [np.cos(x), np.sin(x)]) for x in np.percentile(angle, [1, 99]))
    stains = np.stack([a, b] if a[0] >= b[0] else [b, a])
    conc = np.clip(od @ np.linalg.pinv(stains), 0.0, None)
    return stains, np.percentile(conc, 99, axis=0)


def normalise(tiles: np.ndarray, slide, reference, scale: bool) -> np.ndarray:
    (s_vec, s_p99), (r_vec, r_p99) = slide, reference
    out = np.empty_like(tiles)
    for i, tile in enumerate(tiles):
        conc = np.clip(optical_density(tile) @ np.linalg.pinv(s_vec), 0.0, None)
        if scale:
            conc = conc * (r_p99 / s_p99)
        out[i] = np.clip(255.0 * np.exp(-(conc @ r_vec)), 0, 255).round().astype(np.uint8).reshape(tile.shape)
    return out


def at_1um(path: Path) -> np.ndarray:
    with tifffile.TiffFile(path) as tf:
        levels = tf.series[0].levels
        desc = tf.pages[0].description or ""
        mpp = 0.5
        for part in desc.replace("|", " ").split():
            if part.startswith("MPP="):
                mpp = float(part[4:])
        # The level whose MPP is nearest 1.0 (each level halves the last).
        k = min(range(len(levels)), key=lambda i: abs(np.log2(mpp * 2**i)))
        return levels[k].asarray()[..., :3]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="model folder (model.toml, model.onnx)")
    ap.add_argument("reference", type=Path, nargs="+", help="phantom slides in the model's training stain")
    ap.add_argument("--heldout", nargs="*", default=[], metavar="NAME=DIR,DIR",
                    help="held-out tile exports: AUROC as scanned and normalised")
    ap.add_argument("--pooled-profile", action="store_true",
                    help="also normalise each held-out export with one profile from all its tiles")
    args = ap.parse_args()
    manifest = tomllib.loads((args.model / "model.toml").read_text())
    mean, std = manifest["input"]["mean"], manifest["input"]["std"]
    session = dm.ort_session(args.model / "model.onnx", threads=2)
    pixels = np.concatenate([at_1um(p).reshape(-1, 3) for p in args.reference])
    reference = estimate(pixels)
    print(f"reference ({len(args.reference)} slides): H {np.round(reference[0][0], 3)}, "
          f"E {np.round(reference[0][1], 3)}, concentration p99 {np.round(reference[1], 3)}")

    def above_half(tiles: np.ndarray) -> np.ndarray:
        probs = []
        for i in range(0, len(tiles), 64):
            logits = session.run(None, {"tiles": dm.preprocess(tiles[i : i + 64], mean, std)})[0]
            probs.append(1.0 / (1.0 + np.exp(-logits)))
        return (np.concatenate(probs) > 0.5).mean(axis=0)

    for name in IMAGES:
        slide = estimate(train.real_part_tiles(REAL / name, 224, 1.0, "train", 0.5))
        test = train.real_part_tiles(REAL / name, 224, 1.0, "test", 0.25)
        print(f"{name} (test part, {len(test)} tiles; vectors from the train part: H {np.round(slide[0][0], 3)}, "
              f"E {np.round(slide[0][1], 3)}): share of tiles above 0.5")
        for label, tiles in [
            ("as scanned", test),
            ("vectors swapped", normalise(test, slide, reference, scale=False)),
            ("vectors and concentrations", normalise(test, slide, reference, scale=True)),
        ]:
            shares = above_half(tiles)
            print(f"    {label:28s}" + "  ".join(f"{k} {100 * s:.1f}%" for k, s in zip(dm.FINDINGS, shares)))

    def probabilities(tiles: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(tiles), 64):
            logits = session.run(None, {"tiles": dm.preprocess(tiles[i : i + 64], mean, std)})[0]
            out.append(1.0 / (1.0 + np.exp(-logits)))
        return np.concatenate(out)

    pos_frac = [0.01, 0.01, 0.1, 0.01]
    for name, dirs in train.parse_heldout(args.heldout):
        tiles, fracs, _, slides = train.load_exports(dirs, 224, 1.0, None)
        normalised = np.empty_like(tiles)
        for slide in np.unique(slides):
            at = np.flatnonzero(slides == slide)
            normalised[at] = normalise(tiles[at], estimate(tiles[at]), reference, scale=True)
        ways = [("as scanned", tiles), ("normalised", normalised)]
        if args.pooled_profile:
            # Each export's tiles pooled for one profile (an implant set: every crop
            # of one real image): is the cost a slide profile's noise, or the mapping?
            pooled = np.empty_like(tiles)
            for d in dirs:
                at = np.flatnonzero(np.char.startswith(slides.astype(str), f"{d}:"))
                pooled[at] = normalise(tiles[at], estimate(tiles[at]), reference, scale=True)
            ways.append(("pooled", pooled))
        for label, t in ways:
            res = train.evaluate(probabilities(t), fracs, pos_frac, slides)
            print(f"held-out {name} ({len(tiles)} tiles, {len(np.unique(slides))} slides), {label:10s}: " + "  ".join(
                f"{k} {v['auroc']:.3f} [{v['auroc_ci95_slide_bootstrap'][0]:.3f}, {v['auroc_ci95_slide_bootstrap'][1]:.3f}]"
                for k, v in res.items()))


if __name__ == "__main__":
    main()
