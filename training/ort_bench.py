"""onnxruntime side of the tract-vs-onnxruntime benchmark: tiles/s on a model
folder's parity tiles, at a fixed batch size and thread count, padding the
last batch exactly as the Rust engine does.

    training/.venv/bin/python training/ort_bench.py MODEL_DIR --batch 16 --threads 1
    training/.venv/bin/python training/ort_bench.py MODEL_DIR --layers 300

--layers N: onnxruntime's own per-node kernel times (its profiler) over N runs of
one tile on one thread, for benches/model_layers.rs's tract figures beside them.
onnxruntime fuses each Conv with its Relu (and reorders to its blocked NCHWc
layout), so a row is named after the fused node's output.
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


def layer_times(onnx_path: Path, tile: np.ndarray, runs: int) -> list[tuple[str, str, float]]:
    """(node, operator, mean seconds a run) for each node onnxruntime ran, in order."""
    import json
    import tempfile

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        opts.profile_file_prefix = str(Path(tmp) / "ort")
        sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        x = np.ascontiguousarray(tile[None])
        for _ in range(runs):
            sess.run(None, {"tiles": x})
        events = json.loads(Path(sess.end_profiling()).read_text())
    total: dict[str, float] = {}
    ops: dict[str, str] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            name = e["name"][: -len("_kernel_time")]
            total[name] = total.get(name, 0.0) + e["dur"] * 1e-6
            ops[name] = e.get("args", {}).get("op_name", "?")
    return [(name, ops[name], t / runs) for name, t in total.items()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--layers", type=int, default=0, metavar="RUNS", help="per-node times over RUNS runs instead")
    args = ap.parse_args()
    import tomllib

    manifest = tomllib.loads((args.model_dir / "model.toml").read_text())
    tile_px = manifest["input"]["tile_px"]
    inputs = load_parity_inputs(args.model_dir, tile_px)
    if args.layers:
        rows = layer_times(args.model_dir / manifest["onnx"], inputs[0], args.layers)
        print(f"onnxruntime layers: batch 1, one thread, {args.layers} runs; {sum(r[2] for r in rows) * 1e3:.3f} ms a tile in all")
        for name, op, t in rows:
            print(f"onnxruntime layer {name:36} {t * 1e3:7.3f} ms  {op}")
        return
    for t in args.threads:
        rate = time_ort(args.model_dir / manifest["onnx"], inputs, args.batch, t, args.seconds)
        print(f"onnxruntime batch {args.batch} threads {t}: {rate:.1f} tiles/s")


if __name__ == "__main__":
    main()
