"""Rebuild a model folder's PyTorch checkpoint from its ONNX file.

Model folders ship `checkpoint.pt` so that `train.py --init MODEL_DIR` can
fine-tune them. A folder exported before that (the bundled
dirascope-phantom-v1 1.2.0) has only the ONNX, where every BatchNorm is folded
into the convolution before it. This script rebuilds the TileNet with the
folded weights: each conv takes the folded kernel, and each BatchNorm becomes
the identity plus the folded bias (running mean 0, running variance 1 - eps,
weight 1, bias = folded bias), which in eval mode is exactly the folded graph.
It then checks that the torch model's outputs equal onnxruntime's on the
folder's parity tiles (parity/inputs.f32.gz) and writes checkpoint.pt with the
manifest's mean and std.

    training/.venv/bin/python training/checkpoint_from_onnx.py models/dirascope-phantom-v1
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dirascope_model as dm  # noqa: E402


def folded_weights(onnx_path: Path) -> list[np.ndarray]:
    """Initializers in graph order of use: conv W, b, ..., head W, b."""
    model = onnx.load(str(onnx_path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul"):
            for name in node.input[1:]:
                if name in inits:
                    out.append(inits[name])
        elif node.op_type == "Add" and out and any(n in inits for n in node.input):
            # A MatMul + Add head keeps its bias in the Add.
            out.extend(inits[n] for n in node.input if n in inits)
    return out


def arch_for(weights: list[np.ndarray]) -> str:
    convs = [w for w in weights if w.ndim == 4]
    shape = [(w.shape[2], w.shape[0]) for w in convs]
    for name, layers in dm.ARCHS.items():
        if [(k, c) for k, c, _ in layers] == shape:
            return name
    raise SystemExit(f"no architecture in dirascope_model.ARCHS has these convolutions: {shape}")


def rebuild(weights: list[np.ndarray]) -> dm.TileNet:
    net = dm.TileNet(arch_for(weights)).eval()
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    bns = [m for m in net.features if isinstance(m, nn.BatchNorm2d)]
    it = iter(weights)
    with torch.no_grad():
        for conv, bn in zip(convs, bns):
            w, b = next(it), next(it)
            conv.weight.copy_(torch.from_numpy(np.array(w)))
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(np.array(b)))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        hw, hb = next(it), next(it)
        # Gemm stores the head as (out, in) with transB=1; MatMul as (in, out).
        if hw.shape != tuple(net.head.weight.shape):
            hw = hw.T
        net.head.weight.copy_(torch.from_numpy(np.ascontiguousarray(hw)))
        net.head.bias.copy_(torch.from_numpy(np.array(hb).reshape(-1)))
    return net


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--tolerance", type=float, default=1e-4)
    args = ap.parse_args()
    manifest = tomllib.loads((args.model_dir / "model.toml").read_text())
    onnx_path = args.model_dir / manifest["onnx"]
    if dm.sha256_file(onnx_path) != manifest["sha256"]:
        raise SystemExit(f"{onnx_path}: sha256 differs from model.toml")
    net = rebuild(folded_weights(onnx_path))
    tile_px = manifest["input"]["tile_px"]
    raw = gzip.decompress((args.model_dir / "parity" / "inputs.f32.gz").read_bytes())
    inputs = np.frombuffer(raw, "<f4").reshape(-1, 3, tile_px, tile_px).copy()
    with torch.no_grad():
        torch_out = net(torch.from_numpy(inputs)).numpy()
    ort_out = dm.ort_session(onnx_path).run(None, {"tiles": inputs})[0]
    diff = float(np.abs(torch_out - ort_out).max())
    print(f"{net.arch}: torch vs onnxruntime on {len(inputs)} parity tiles: max abs {diff:.2e}")
    if diff > args.tolerance:
        raise SystemExit(f"the rebuilt model differs from the ONNX by {diff} > {args.tolerance}")
    out = args.model_dir / "checkpoint.pt"
    torch.save(
        {
            "state": net.state_dict(),
            "arch": net.arch,
            "mean": manifest["input"]["mean"],
            "std": manifest["input"]["std"],
            "onnx_sha256": manifest["sha256"],
            "rebuilt_from_onnx": True,
            "parity_max_abs": diff,
        },
        out,
    )
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
