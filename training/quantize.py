"""Post-training static int8 quantisation of a model folder (QDQ ONNX), and the
gate the speed issue sets before int8 may become the default: held-out tile
AUROC within 0.005 per finding (onnxruntime, fp32 against int8, same tiles).

    training/.venv/bin/python training/quantize.py --model models/dirascope-phantom-v1 \
        --calib DATA/calib --heldout DATA/held-mixed DATA/held-mixed2 DATA/held-dira DATA/held-dira2 \
        --out OUT_DIR [--calib-tiles 512]

Calibration tiles come from training seeds only (`synth --generator 0.3 --count 8
--seed 1000 --tiles --tile-px 224 --tile-mpp 1.0`); held-out tiles are the model
card's held-out set (seeds 900000-900007 mixed, 900100-900115 DIRA, 4 x 3 mm).
For dirascope-v2: calibration `synth --count 8 --seed 3000 --tiles --tile-px 224
--tile-mpp 1.0` (synth 1.0, training seeds), held-out the `held` and `held4` exports
of training/model2_data.sh. Both graphs are scored as the pipeline scores them (the
manifest's `views` and `views_min_probability`), and an OOD output is compared too.
Weights int8 per channel, activations uint8 per tensor (onnxruntime's QDQ
defaults), MinMax calibration. OUT_DIR becomes a model folder: model.onnx (QDQ),
model.toml (the source's, with `precision = "int8"`, its sha256 and name), and a
parity fixture from onnxruntime on the int8 graph for `dirascope model check`.
Prints per-finding AUROC for fp32 and int8 and the largest probability change;
the slide-call half of the gate is `dirascope score` + `validate` on the
validation set with both folders.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import sys
import tomllib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dirascope_model as dm  # noqa: E402
from train import auroc, load_export, targets_and_mask  # noqa: E402

POS_FRAC = [0.01, 0.01, 0.1, 0.01]  # as the card: hidradenitis positive at 10% coverage


def read_spec(model: Path) -> tuple[list[float], list[float], int, float]:
    text = (model / "model.toml").read_text()
    mean = [float(v) for v in re.search(r"^mean = \[(.*)\]", text, re.M).group(1).split(",")]
    std = [float(v) for v in re.search(r"^std = \[(.*)\]", text, re.M).group(1).split(",")]
    tile_px = int(re.search(r"^tile_px = (\d+)", text, re.M).group(1))
    mpp = float(re.search(r"^mpp = ([0-9.]+)", text, re.M).group(1))
    return mean, std, tile_px, mpp


def probs(onnx: Path, x: np.ndarray, manifest: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """Probabilities as the pipeline takes them (the manifest's views and floor) and
    the OOD distance when the graph has one."""
    sess = dm.ort_session(onnx, threads=2)
    views, floor = dm.manifest_views(manifest), dm.manifest_views_min_probability(manifest)
    outs = [dm.run_views(sess, x[i:i + 64], views, "tiles", floor) for i in range(0, len(x), 64)]
    p = 1.0 / (1.0 + np.exp(-np.concatenate([o[0] for o in outs]).astype(np.float64)))
    ood = np.concatenate([o[1].reshape(-1) for o in outs]) if len(outs[0]) > 1 else None
    return p, ood


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--calib", type=Path, required=True)
    ap.add_argument("--heldout", type=Path, nargs="+", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--calib-tiles", type=int, default=512)
    args = ap.parse_args()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    mean, std, tile_px, mpp = read_spec(args.model)
    tiles, *_ = load_export(args.calib, tile_px, mpp)
    pick = np.linspace(0, len(tiles) - 1, min(args.calib_tiles, len(tiles))).astype(int)
    calib = dm.preprocess(tiles[pick], mean, std)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.i = 0

        def get_next(self):
            if self.i >= len(calib):
                return None
            self.i += 1
            return {"tiles": calib[self.i - 1:self.i]}

    args.out.mkdir(parents=True, exist_ok=True)
    q_path = args.out / "model.onnx"
    quantize_static(str(args.model / "model.onnx"), str(q_path), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    # tract refuses the shape annotations the quantiser adds (a symbolic batch
    # against the plan's fixed batch of 1); the graph itself is unchanged.
    import onnx

    q = onnx.load(str(q_path))
    del q.graph.value_info[:]
    onnx.save(q, str(q_path))
    sha = hashlib.sha256(q_path.read_bytes()).hexdigest()
    text = (args.model / "model.toml").read_text()
    text = re.sub(r'^sha256 = ".*"', f'sha256 = "{sha}"', text, count=1, flags=re.M)
    text = re.sub(r'^name = "(.*)"', r'name = "\1-int8"', text, count=1, flags=re.M)
    text = re.sub(r'^(onnx = .*)$', r'\1\nprecision = "int8"', text, count=1, flags=re.M)
    (args.out / "model.toml").write_text(text)
    if (args.model / "checkpoint.pt").is_file():
        # The fp32 checkpoint the manifest names (and hashes): what fine-tuning starts from.
        shutil.copyfile(args.model / "checkpoint.pt", args.out / "checkpoint.pt")
    if (args.out / "parity").exists():
        shutil.rmtree(args.out / "parity")
    parity_in = np.frombuffer(__import__("gzip").open(args.model / "parity" / "inputs.f32.gz").read(), "<f4")
    parity_in = parity_in.reshape(-1, 3, tile_px, tile_px)
    dm.write_parity(args.out, parity_in, f"the 32 parity tiles of {args.model.name}, int8 graph", tolerance=1e-4)

    ht, hf = [], []
    for d in args.heldout:
        t, f, *_ = load_export(d, tile_px, mpp)
        ht.append(t)
        hf.append(f)
    x = dm.preprocess(np.concatenate(ht), mean, std)
    fr = np.concatenate(hf)
    y, m = targets_and_mask(fr, POS_FRAC)
    manifest = tomllib.loads(text)
    (p32, ood32), (p8, ood8) = probs(args.model / "model.onnx", x, manifest), probs(q_path, x, manifest)
    print(f"{len(x)} held-out tiles; calibration {len(calib)} tiles from {args.calib}; "
          f"views {dm.manifest_views(manifest)}, floor {dm.manifest_views_min_probability(manifest)}")
    print(f"largest |p_int8 - p_fp32| = {np.abs(p8 - p32).max():.4f}, mean {np.abs(p8 - p32).mean():.5f}")
    if ood32 is not None and "ood" in manifest:
        t = manifest["ood"]["threshold"]
        print(f"OOD distance: largest change {np.abs(ood8 - ood32).max():.4f}; over the threshold {t}: "
              f"fp32 {np.mean(ood32 > t):.2%}, int8 {np.mean(ood8 > t):.2%}, "
              f"tiles that cross it {int(np.sum((ood32 > t) != (ood8 > t)))}")
    ok = True
    for k, name in enumerate(dm.FINDINGS):
        sel = m[:, k] > 0
        a32, a8 = auroc(p32[sel, k], y[sel, k]), auroc(p8[sel, k], y[sel, k])
        ok &= a32 - a8 <= 0.005
        print(f"{name}: AUROC fp32 {a32:.4f} int8 {a8:.4f} drop {a32 - a8:+.4f} (+{int(y[sel, k].sum())}/-{int((1 - y[sel, k]).sum())})")
    print("tile gate (drop <= 0.005 on every finding):", "passed" if ok else "FAILED")
    print(f"wrote {args.out} (sha256 {sha})")


if __name__ == "__main__":
    main()
