"""Held-out tile AUROCs of exported model folders on tile exports, measured once
with onnxruntime on each folder's model.onnx (its own mean, std and MPP from
model.toml): per finding, positives at a mask coverage of 1% (or --pos-frac-for
FINDING=FRAC), 95% interval by resampling whole slides. For sets made after a
model was chosen (model2_data.sh held3), so that a figure is not one the choice
was made on.

    python training/eval_heldout.py MODEL_DIR [MODEL_DIR ...] \
        --heldout "held3=DATA/held3-implant-cmu,DATA/held3-implant-pd" [--dira-only] [--by-stain] [--json OUT]

--by-stain also reports each stain style of synth 1.3 and later apart: a slide is
scanner-style (CMU-1's stain) or camera-style (the public-domain image's) by its
glass: the commonest channel mean among its tiles' pixels brighter than 200, above or
below 238, as training/protocol_tables.py splits slides by their recorded glass
(scanner about 251, camera about 226; on held-mixed-1.0 the 12 slides' modes were
221-227 or 246-252).
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path

import numpy as np

import dirascope_model as dm
from protocol_tables import STAIN_STYLES, glass_style
from train import evaluate, load_exports, parse_heldout, parse_pos_frac


def probabilities(model_dir: Path, tiles: np.ndarray, threads: int) -> np.ndarray:
    manifest = tomllib.loads((model_dir / "model.toml").read_text())
    inp = manifest["input"]
    sess = dm.ort_session(model_dir / manifest["onnx"], threads=threads)
    name = sess.get_inputs()[0].name
    views, floor = dm.manifest_views(manifest), dm.manifest_views_min_probability(manifest)
    out = []
    for i in range(0, len(tiles), 64):
        x = dm.preprocess(tiles[i : i + 64], inp["mean"], inp["std"])
        out.append(1.0 / (1.0 + np.exp(-dm.run_views(sess, x, views, name, floor)[0])))
    return np.concatenate(out)


def stain_styles(tiles: np.ndarray, slides: np.ndarray) -> dict[str, np.ndarray]:
    """Tile masks per stain style, each slide judged by the glass of its tiles."""
    style = {}
    for s in np.unique(slides):
        bright = tiles[slides == s].mean(axis=-1).round().astype(np.int64).ravel()
        style[s] = glass_style(float(np.bincount(bright[bright > 200], minlength=256).argmax()))
    per_tile = np.array([style[s] for s in slides])
    return {name: per_tile == name for name in STAIN_STYLES}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", type=Path, nargs="+")
    ap.add_argument("--heldout", nargs="+", required=True, help="NAME=DIR1,DIR2,... (pooled) or DIR")
    ap.add_argument("--pos-frac", type=float, default=0.01)
    ap.add_argument("--pos-frac-for", nargs="*", default=["neutrophilic_eccrine_hidradenitis=0.1"])
    ap.add_argument("--dira-only", action="store_true", help="also report the DIRA slides' tiles alone")
    ap.add_argument("--by-stain", action="store_true", help="also report scanner- and camera-stained slides apart")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    pos_frac = parse_pos_frac(args.pos_frac, args.pos_frac_for)
    results: dict = {}
    for name, dirs in parse_heldout(args.heldout):
        tiles, fracs, _, slides = load_exports(dirs, 224, 1.0, None)
        subsets = [(name, np.ones(len(tiles), bool))]
        if args.dira_only:
            subsets.append((f"{name} DIRA", np.array(["dira-" in s for s in slides])))
        if args.by_stain:
            for style, keep in stain_styles(tiles, slides).items():
                # A set drawn in one stain (implants into one real image) has an
                # empty group: nothing to report there.
                if keep.any():
                    subsets.append((f"{name} {style} stain", keep))
                else:
                    print(f"{name}: no {style}-stained slides")
        for model_dir in args.models:
            probs = probabilities(model_dir, tiles, args.threads)
            for label, keep in subsets:
                res = evaluate(probs[keep], fracs[keep], pos_frac, slides[keep])
                results.setdefault(str(model_dir), {})[label] = res
                cells = []
                for f, v in res.items():
                    lo, hi = v["auroc_ci95_slide_bootstrap"]
                    cells.append(f"{f.split('_')[-1]} {v['auroc']:.3f} [{lo:.3f}, {hi:.3f}] ({v['positives']}+)")
                n_slides = len(np.unique(slides[keep]))
                print(f"{model_dir} {label} ({int(keep.sum())} tiles, {n_slides} slides): " + "; ".join(cells))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
