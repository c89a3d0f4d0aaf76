"""Export each candidate architecture with random weights into a model folder
the Rust loader accepts (model.onnx, model.toml, parity/), and time it under
onnxruntime with one thread. The tract side runs from
`benches/model_throughput.rs` on the same folders; `benches/model_compare.sh`
prints both and the ratio.

    training/.venv/bin/python training/arch_bench.py --out /tmp/dirascope-arch
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import dirascope_model as dm
from ort_bench import time_ort


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tile-px", type=int, default=224)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--archs", nargs="*", default=list(dm.ARCHS))
    args = ap.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, size=(32, args.tile_px, args.tile_px, 3), dtype=np.uint8)
    inputs = dm.preprocess(tiles, dm.DEFAULT_MEAN, dm.DEFAULT_STD)
    for arch in args.archs:
        folder = args.out / arch
        folder.mkdir(parents=True, exist_ok=True)
        model = dm.TileNet(arch)
        # Non-trivial BN statistics so folding is exercised.
        with torch.no_grad():
            model.train()
            model(torch.from_numpy(inputs[:16]))
        model.eval()
        dm.export_onnx(model, folder / "model.onnx", args.tile_px)
        dm.write_manifest(
            folder,
            name=f"arch-{arch}",
            version="0.0.0",
            tile_px=args.tile_px,
            mpp=1.0,
            mean=dm.DEFAULT_MEAN,
            std=dm.DEFAULT_STD,
            training_data="none: random weights for the architecture benchmark",
        )
        dm.write_parity(folder, inputs, source="random uint8 tiles (architecture benchmark)")
        params, macs = dm.count_params_macs(model, args.tile_px)
        rate = time_ort(folder / "model.onnx", inputs, args.batch, threads=1)
        print(f"{arch:10s} params {params:8d}  MACs/tile {macs / 1e6:6.1f} M  onnxruntime 1 thread {rate:7.1f} tiles/s")


if __name__ == "__main__":
    main()
