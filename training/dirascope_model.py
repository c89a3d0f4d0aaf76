"""Shared pieces of dirascope's training: candidate architectures, BatchNorm
folding, ONNX export, the model manifest and the parity fixture.

Everything a model folder needs (model.onnx, model.toml, parity/) is written
here so that the architecture benchmark and the real training produce folders
the Rust loader accepts in exactly the same way.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

FINDINGS = [
    "subcorneal_pustule",
    "acantholysis",
    "neutrophilic_eccrine_hidradenitis",
    "psoriasiform",
]

# Mean and std on the 0..1 scale (pixel / 255), RGB: rough H&E values for the
# random-weight benchmark and test fixtures. train.py measures its own.
DEFAULT_MEAN = [0.80, 0.62, 0.74]
DEFAULT_STD = [0.16, 0.22, 0.16]


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, k, stride=stride, padding=(k - 1) // 2 if k % 2 else 0, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


# Each candidate: list of (kernel, out_channels, stride). Plain dense
# convolutions only: they take tract's matrix-multiply path.
ARCHS: dict[str, list[tuple[int, int, int]]] = {
    # 3x3 stride-2 stem, then pairs of (stride-2, stride-1) 3x3 convs.
    "plain-s2": [(3, 16, 2), (3, 32, 2), (3, 32, 1), (3, 64, 2), (3, 64, 1), (3, 128, 2), (3, 128, 1), (3, 192, 2)],
    # 4x4 stride-4 patchify stem (one cheap big matmul), then 3x3 convs.
    "patchify": [(4, 32, 4), (3, 32, 1), (3, 64, 2), (3, 64, 1), (3, 128, 2), (3, 128, 1), (3, 192, 2)],
    # As plain-s2 with narrower middle stages.
    "slim-s2": [(3, 16, 2), (3, 24, 2), (3, 32, 2), (3, 48, 1), (3, 64, 2), (3, 96, 1), (3, 128, 2)],
}


class TileNet(nn.Module):
    """Plain CNN: conv-BN-ReLU stack, global average pool, linear head with
    one logit per finding (sigmoid applied outside the graph)."""

    def __init__(self, arch: str, n_out: int = len(FINDINGS)):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for k, cout, stride in ARCHS[arch]:
            layers += conv_bn(cin, cout, k, stride)
            cin = cout
        self.arch = arch
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(cin, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.head(self.dropout(x))


def fold_batchnorm(model: TileNet) -> nn.Module:
    """An eval-mode copy with every Conv2d+BatchNorm2d pair fused into one
    biased Conv2d, so the exported graph is conv/relu only."""
    model = model.eval()
    fused: list[nn.Module] = []
    mods = list(model.features)
    i = 0
    while i < len(mods):
        m = mods[i]
        if isinstance(m, nn.Conv2d) and i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d):
            bn = mods[i + 1]
            conv = nn.Conv2d(
                m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding, bias=True
            )
            scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
            conv.weight.data = m.weight.detach() * scale[:, None, None, None]
            bias = m.bias.detach() if m.bias is not None else torch.zeros(m.out_channels)
            conv.bias.data = (bias - bn.running_mean) * scale + bn.bias.detach()
            fused.append(conv)
            i += 2
        else:
            fused.append(m)
            i += 1
    out = nn.Sequential(nn.Sequential(*fused), model.pool, nn.Flatten(1), model.head)
    return out.eval()


def export_onnx(model: TileNet, path: Path, tile_px: int) -> None:
    """Export with BN folded, opset 13, a symbolic batch axis."""
    folded = fold_batchnorm(model)
    dummy = torch.zeros(1, 3, tile_px, tile_px)
    kwargs = dict(
        input_names=["tiles"],
        output_names=["logits"],
        dynamic_axes={"tiles": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=13,
        do_constant_folding=True,
    )
    try:
        torch.onnx.export(folded, dummy, str(path), dynamo=False, **kwargs)
    except TypeError:
        torch.onnx.export(folded, dummy, str(path), **kwargs)


def count_params_macs(model: TileNet, tile_px: int) -> tuple[int, int]:
    """Parameters of the exported (folded) net and its multiply-adds per tile."""
    folded = fold_batchnorm(model)
    params = sum(p.numel() for p in folded.parameters())
    macs = 0
    size = tile_px
    for m in folded[0]:
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0]
            pad = m.padding[0]
            size = (size + 2 * pad - k) // m.stride[0] + 1
            macs += size * size * m.out_channels * m.in_channels * k * k
    macs += folded[3].in_features * folded[3].out_features
    return params, macs


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


DEFAULT_AGGREGATION_AND_RULE = """[aggregation]
method = "top-k-mean"
top_k_fraction = 0.05
top_k_min = 5
tile_threshold = {tile_threshold}
min_tissue = 0.5

[rule]
dira_threshold = 0.5
psoriasiform_threshold = 0.5
no_call_margin = 0.1
min_tissue_tiles = 10
"""


def write_manifest(
    folder: Path,
    *,
    name: str,
    version: str,
    tile_px: int,
    mpp: float,
    mean: list[float],
    std: list[float],
    training_data: str,
    tile_threshold: float = 0.5,
    intended_use: str = "research use only; trained on phantom slides; not a diagnostic device",
    aggregation_and_rule: str | None = None,
) -> None:
    """`aggregation_and_rule`: the `[aggregation]` and `[rule]` tables as TOML
    text (a retrained model keeps the calibrated ones); default placeholders
    otherwise."""
    sha = sha256_file(folder / "model.onnx")
    classes = ", ".join(json.dumps(f) for f in FINDINGS)
    tail = aggregation_and_rule if aggregation_and_rule is not None else DEFAULT_AGGREGATION_AND_RULE.format(
        tile_threshold=tile_threshold
    )
    text = f"""# dirascope model manifest; see MODEL_CARD.md. Written by training/train.py.
name = {json.dumps(name)}
version = {json.dumps(version)}
onnx = "model.onnx"
sha256 = "{sha}"
intended_use = {json.dumps(intended_use)}
training_data = {json.dumps(training_data)}

[input]
tile_px = {tile_px}
mpp = {mpp}
layout = "NCHW"
channel_order = "RGB"
# mean and std are on the 0..1 scale: x = (pixel / 255 - mean) / std
mean = [{", ".join(f"{m:.4f}" for m in mean)}]
std = [{", ".join(f"{s:.4f}" for s in std)}]

[output]
activation = "sigmoid"
classes = [{classes}]

{tail}"""
    (folder / "model.toml").write_text(text)


def preprocess(tiles_u8: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32, exactly as the Rust
    preprocess does: (pixel / 255 - mean) / std in float32."""
    x = tiles_u8.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)


def ort_session(onnx_path: Path, threads: int = 1):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])


def write_parity(folder: Path, inputs: np.ndarray, source: str, tolerance: float = 1e-4) -> float:
    """Run onnxruntime on `inputs` (N,3,H,W f32) and write parity/: the
    inputs (gzip LE f32), the raw outputs (LE f32) and parity.toml.
    Returns the largest |output| as a sanity figure."""
    pdir = folder / "parity"
    pdir.mkdir(parents=True, exist_ok=True)
    sess = ort_session(folder / "model.onnx", threads=1)
    outs = sess.run(None, {"tiles": inputs.astype(np.float32)})[0].astype("<f4")
    with gzip.GzipFile(pdir / "inputs.f32.gz", "wb", compresslevel=9, mtime=0) as f:
        f.write(inputs.astype("<f4").tobytes())
    (pdir / "outputs.f32").write_bytes(outs.tobytes())
    (pdir / "parity.toml").write_text(
        f"""# Parity fixture: {len(inputs)} preprocessed tiles and onnxruntime's raw outputs.
# Written by training/ at export; tests/model_parity.rs runs tract on the same tensors.
tiles = {len(inputs)}
inputs = "inputs.f32.gz"
outputs = "outputs.f32"
tolerance = {tolerance}
source = {json.dumps(source)}
"""
    )
    return float(np.abs(outs).max())
