"""onnxruntime side of the tract-vs-onnxruntime benchmark: tiles/s on a model
folder's parity tiles, at a fixed batch size and thread count, padding the
last batch exactly as the Rust engine does.

    training/.venv/bin/python training/ort_bench.py MODEL_DIR --batch 16 --threads 1
"""

from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

import numpy as np

import dirascope_model as dm


def load_parity_inputs(folder: Path, tile_px: int) -> np.ndarray:
    raw = gzip.decompress((folder / "parity" / "inputs.f32.gz").read_bytes())
    return np.frombuffer(raw, dtype="<f4").reshape(-1, 3, tile_px, tile_px)


def time_ort(onnx_path: Path, inputs: np.ndarray, batch: int, threads: int, min_seconds: float = 3.0) -> float:
    """Tiles per second over repeated passes of `inputs` (>= min_seconds)."""
    sess = dm.ort_session(onnx_path, threads=threads)
    n = len(inputs)
    pad = (-n) % batch
    padded = np.concatenate([inputs, np.zeros((pad,) + inputs.shape[1:], np.float32)]) if pad else inputs
    batches = [np.ascontiguousarray(padded[i : i + batch]) for i in range(0, len(padded), batch)]
    sess.run(None, {"tiles": batches[0]})  # warm-up
    done = 0
    start = time.perf_counter()
    while True:
        for b in batches:
            sess.run(None, {"tiles": b})
        done += n
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    import tomllib

    manifest = tomllib.loads((args.model_dir / "model.toml").read_text())
    tile_px = manifest["input"]["tile_px"]
    inputs = load_parity_inputs(args.model_dir, tile_px)
    for t in args.threads:
        rate = time_ort(args.model_dir / manifest["onnx"], inputs, args.batch, t, args.seconds)
        print(f"onnxruntime batch {args.batch} threads {t}: {rate:.1f} tiles/s")


if __name__ == "__main__":
    main()
