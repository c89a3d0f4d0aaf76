"""Shared pieces of dirascope's training: candidate architectures, BatchNorm
folding, ONNX export, the model manifest and the parity fixture.

Everything a model folder needs (model.onnx, model.toml, parity/) is written
here so that the architecture benchmark and the real training produce folders
the Rust loader accepts in exactly the same way.
"""

from __future__ import annotations

import copy

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
    # slim-s2 with its first two 3x3 stride-2 convs (3 -> 16 -> 24 channels, 16.3 M
    # multiply-adds, half of tract's time a tile: benches/model_layers.rs) replaced by
    # one 4x4 stride-4 patchify stem to 24 channels (3.6 M), as ConvNeXt's stem.
    "slim-p4": [(4, 24, 4), (3, 32, 2), (3, 48, 1), (3, 64, 2), (3, 96, 1), (3, 128, 2)],
}


class TileNet(nn.Module):
    """Plain CNN: conv-BN-ReLU stack, then one logit per finding (sigmoid
    applied outside the graph). `head_pool` says how the last feature map
    becomes logits:

      "avg"     global average pool, then the linear head (models 1 and 2.2);
      "lse:R"   the linear head at every location of the map (a 1x1 conv with
                the same weights), then a log-mean-exp pool of sharpness R
                (Pinheiro & Collobert, CVPR 2015): R -> 0 is the average's
                logit, large R the most suspicious location's. A lesion
                covering 3% of a tile is 1-2 of the 49 locations; the average
                dilutes it twenty-fold, the log-mean-exp does not.

    The linear head has the same weights either way, so an average-pooled
    checkpoint fine-tunes into a log-mean-exp one. The OOD features stay the
    globally pooled map (`features`)."""

    def __init__(self, arch: str, n_out: int = len(FINDINGS), head_pool: str = "avg"):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for k, cout, stride in ARCHS[arch]:
            layers += conv_bn(cin, cout, k, stride)
            cin = cout
        self.arch = arch
        self.head_pool = head_pool
        self.lse_r = parse_head_pool(head_pool)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(cin, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_from_map(self.features(x))

    def logits_from_map(self, h: torch.Tensor) -> torch.Tensor:
        if self.lse_r is None:
            return self.head(self.dropout(self.pool(h).flatten(1)))
        return lse_logits(self.dropout(h), self.head, self.lse_r)


def parse_head_pool(head_pool: str) -> float | None:
    """None for "avg", R for "lse:R"."""
    if head_pool == "avg":
        return None
    if head_pool.startswith("lse:"):
        r = float(head_pool[4:])
        if r > 0:
            return r
    raise ValueError(f"head pool {head_pool!r}: expected avg or lse:R with R > 0")


def lse_logits(h: torch.Tensor, head: nn.Linear, r: float) -> torch.Tensor:
    """The linear head at each location of h (N,C,H,W), then per finding
    m + log(mean(exp(r (l - m)))) / r with m the map's maximum (stable)."""
    per_location = nn.functional.conv2d(h, head.weight[:, :, None, None], head.bias)
    m = per_location.amax(dim=(2, 3), keepdim=True)
    pooled = m + torch.log(torch.exp(r * (per_location - m)).mean(dim=(2, 3), keepdim=True)) / r
    return pooled.flatten(1)


class LseHead(nn.Module):
    """The exported graph's head for a log-mean-exp model: map -> logits."""

    def __init__(self, head: nn.Linear, r: float):
        super().__init__()
        self.head = head
        self.r = r

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return lse_logits(h, self.head, self.r)


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
    if model.lse_r is not None:
        return nn.Sequential(nn.Sequential(*fused), LseHead(model.head, model.lse_r)).eval()
    out = nn.Sequential(nn.Sequential(*fused), model.pool, nn.Flatten(1), model.head)
    return out.eval()


# -- out-of-distribution detector ------------------------------------------------
#
# Mahalanobis distance of the penultimate features (the pooled 128 channels) to
# per-group Gaussians with one shared covariance (Lee et al., NeurIPS 2018), fitted
# on the training tiles. Groups: tiles with no finding, and tiles positive for each
# finding (a tile goes to the finding it is most covered by). The graph's second
# output `ood` is the distance to the nearest group, divided by sqrt(D) so that
# in-distribution tiles sit near 1 whatever the feature width:
#     ood = sqrt(min_g (f - mu_g)^T Sigma^-1 (f - mu_g) / D)

OOD_GROUPS = ["none"] + FINDINGS


def ood_groups(fracs: np.ndarray, pos_frac: float = 0.01) -> np.ndarray:
    """Group index per tile: 0 for no finding at or above `pos_frac`, else
    1 + the finding with the largest coverage."""
    best = fracs.argmax(axis=1)
    return np.where(fracs.max(axis=1) >= pos_frac, best + 1, 0)


def fit_mahalanobis(feats: np.ndarray, groups: np.ndarray, shrink: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Group means (G x D, groups without tiles get the overall mean) and W (D x D)
    with (f - mu) Sigma^-1 (f - mu)^T = |(f - mu) W|^2: W is the Cholesky factor of
    the precision of the pooled within-group covariance, shrunk toward its mean
    variance by `shrink` so that dead or collinear channels stay invertible."""
    feats = feats.astype(np.float64)
    d = feats.shape[1]
    means = np.tile(feats.mean(axis=0), (len(OOD_GROUPS), 1))
    centred = np.empty_like(feats)
    for g in range(len(OOD_GROUPS)):
        sel = groups == g
        if sel.any():
            means[g] = feats[sel].mean(axis=0)
            centred[sel] = feats[sel] - means[g]
    cov = centred.T @ centred / max(1, len(feats) - len(OOD_GROUPS))
    cov = (1 - shrink) * cov + shrink * np.trace(cov) / d * np.eye(d)
    w = np.linalg.cholesky(np.linalg.inv(cov))
    return means.astype(np.float32), w.astype(np.float32)


class WithOod(nn.Module):
    """A folded net with the OOD distance as a second output. `taps`: conv
    layer indices (0-based) whose pooled ReLU outputs are prepended to the
    penultimate features for the OOD distance, as `features(..., taps)` does
    (Lee et al.'s feature ensemble; none by default)."""

    def __init__(self, folded: nn.Module, means: np.ndarray, w: np.ndarray, taps: tuple[int, ...] = ()):
        super().__init__()
        # An average-pooled net folds to (convs, pool, flatten, linear), a
        # log-mean-exp one to (convs, LseHead); the OOD features are the
        # globally pooled map either way.
        self.lse = len(folded) == 2
        if self.lse:
            self.body = nn.Sequential(folded[0])
            self.head = folded[1]
        else:
            self.body = nn.Sequential(folded[0], folded[1], folded[2])
            self.head = folded[3]
        # In the folded stack conv i is module 2i and its ReLU module 2i + 1;
        # tap -1 is the (preprocessed) input itself: its per-channel mean and std.
        self.tap_at = sorted(2 * i + 1 for i in taps if i >= 0)
        self.tap_input = -1 in taps
        w_t = torch.from_numpy(w)
        self.register_buffer("w", w_t)
        self.register_buffer("mu_w", torch.from_numpy(means) @ w_t)
        self.dims = float(w.shape[0])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.lse:
            h, tapped = self.convs_with_taps(x)
            logits = self.head(h)
            f_ood = torch.cat(tapped + [h.mean(dim=(2, 3))], dim=1)
        elif self.tap_at or self.tap_input:
            h, tapped = self.convs_with_taps(x)
            f = self.body[2](self.body[1](h))
            logits = self.head(f)
            f_ood = torch.cat(tapped + [f], dim=1)
        else:
            f = self.body(x)
            logits = self.head(f)
            f_ood = f
        z = f_ood @ self.w
        d2 = ((z.unsqueeze(1) - self.mu_w.unsqueeze(0)) ** 2).sum(dim=2)
        ood = torch.sqrt(d2.min(dim=1, keepdim=True).values / self.dims)
        return logits, ood

    def convs_with_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The last feature map, and the tapped statistics on the way."""
        tapped = input_stats(x) if self.tap_input else []
        h = x
        for j, m in enumerate(self.body[0]):
            h = m(h)
            if j in self.tap_at:
                tapped.append(h.mean(dim=(2, 3)))
        return h, tapped


def input_stats(x: torch.Tensor) -> list[torch.Tensor]:
    """Per-channel mean and standard deviation of the preprocessed tile: its
    colour, which a stain-augmented network's features are built to ignore."""
    m = x.mean(dim=(2, 3))
    c = x - m[:, :, None, None]
    sd = torch.sqrt((c * c).mean(dim=(2, 3)) + 1e-6)
    return [m, sd]


def features(model: TileNet, x: torch.Tensor, taps: tuple[int, ...] = ()) -> torch.Tensor:
    """Penultimate features (pooled, before dropout and head); with `taps`
    (conv layer indices), the pooled ReLU outputs of those layers first, and
    with tap -1 the input's per-channel mean and std before them."""
    return features_and_logits(model, x, taps)[0]


def features_and_logits(model: TileNet, x: torch.Tensor, taps: tuple[int, ...] = ()):
    """`features` and the logits (eval mode) from one pass through the convs."""
    # In the unfolded stack conv i is module 3i, its BN 3i + 1, its ReLU 3i + 2.
    tap_at = sorted(3 * i + 2 for i in taps if i >= 0)
    tapped = input_stats(x) if -1 in taps else []
    h = x
    for j, m in enumerate(model.features):
        h = m(h)
        if j in tap_at:
            tapped.append(h.mean(dim=(2, 3)))
    return torch.cat(tapped + [model.pool(h).flatten(1)], dim=1), model.logits_from_map(h)


def export_onnx(model: TileNet, path: Path, tile_px: int, ood: tuple[np.ndarray, np.ndarray] | None = None,
                ood_taps: tuple[int, ...] = ()) -> None:
    """Export with BN folded, opset 13, a symbolic batch axis. With `ood` (group
    means and W from `fit_mahalanobis`) the graph has a second output `ood`
    (`ood_taps`: the layers `features` tapped for them)."""
    folded = fold_batchnorm(model)
    names = ["logits"]
    if ood is not None:
        folded = WithOod(folded, *ood, taps=tuple(ood_taps)).eval()
        names.append("ood")
    dummy = torch.zeros(1, 3, tile_px, tile_px)
    kwargs = dict(
        input_names=["tiles"],
        output_names=names,
        dynamic_axes={"tiles": {0: "batch"}, **{n: {0: "batch"} for n in names}},
        opset_version=13,
        do_constant_folding=True,
    )
    try:
        torch.onnx.export(folded, dummy, str(path), dynamo=False, **kwargs)
    except TypeError:
        torch.onnx.export(folded, dummy, str(path), **kwargs)


def count_params_macs(model: TileNet, tile_px: int) -> tuple[int, int]:
    """Parameters of the exported (folded) net and its multiply-adds per tile."""
    # Folded on a CPU copy: after a GPU run the model's tensors are on the device.
    folded = fold_batchnorm(copy.deepcopy(model).cpu())
    params = sum(p.numel() for p in folded.parameters())
    macs = 0
    size = tile_px
    for m in folded[0]:
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0]
            pad = m.padding[0]
            size = (size + 2 * pad - k) // m.stride[0] + 1
            macs += size * size * m.out_channels * m.in_channels * k * k
    head = folded[-1].head if isinstance(folded[-1], LseHead) else folded[-1]
    locations = size * size if isinstance(folded[-1], LseHead) else 1
    macs += locations * head.in_features * head.out_features
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
    ood: dict | None = None,
    views: str | None = None,
    stain: str | None = None,
) -> None:
    """`aggregation_and_rule`: the `[aggregation]` and `[rule]` tables as TOML
    text (a retrained model keeps the calibrated ones); default placeholders
    otherwise. `ood`: the graph's OOD output, {"threshold", "max_fraction",
    "fitted_on"}, written as the `[ood]` table. `views`: the rest of the `[output]`
    table as TOML text, `views` and `views_min_probability` with their comments
    (test-time views whose logits the pipeline averages; see `run_views`); none
    means the tile as it is. `stain`: a `[stain]` table with the comment lines
    above it, written last. A retrained model keeps all three from its parent's
    manifest (`kept_manifest_parts`)."""
    sha = sha256_file(folder / "model.onnx")
    # The PyTorch checkpoint shipped for fine-tuning, with its hash (model check verifies it).
    ckpt = folder / "checkpoint.pt"
    ckpt_lines = (f'checkpoint = "checkpoint.pt"\ncheckpoint_sha256 = "{sha256_file(ckpt)}"\n'
                  if ckpt.is_file() else "")
    classes = ", ".join(json.dumps(f) for f in FINDINGS)
    views_line = views or ""
    tail = aggregation_and_rule if aggregation_and_rule is not None else DEFAULT_AGGREGATION_AND_RULE.format(
        tile_threshold=tile_threshold
    )
    text = f"""# dirascope model manifest; see MODEL_CARD.md. Written by training/train.py.
name = {json.dumps(name)}
version = {json.dumps(version)}
onnx = "model.onnx"
sha256 = "{sha}"
{ckpt_lines}intended_use = {json.dumps(intended_use)}
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
{views_line}
{tail}"""
    if ood is not None:
        text = text.rstrip("\n") + f"""

[ood]
# Out-of-distribution detector in the graph (second output): the Mahalanobis
# distance of the tile's features (fitted_on names them) to the nearest of the
# training tiles' group Gaussians, over sqrt(feature count). A tile is unlike the training
# data above `threshold` (the 99th percentile of held-out in-distribution tiles);
# a slide is called out-of-distribution when more than `max_fraction` of its
# tissue tiles are.
output = "ood"
method = "mahalanobis"
threshold = {ood["threshold"]:.4f}
max_fraction = {ood["max_fraction"]}
fitted_on = {json.dumps(ood["fitted_on"])}
"""
    if stain is not None:
        text = text.rstrip("\n") + "\n\n" + stain.strip("\n") + "\n"
    (folder / "model.toml").write_text(text)


def kept_manifest_parts(text: str) -> tuple[str | None, str | None, str | None]:
    """What a retrained model keeps of an older model.toml, as text with its comments:
    the `[output]` lines other than `activation` and `classes` (the views and their
    comments; None where there are none), the `[aggregation]` to `[rule]` tables (None where there is no
    `[aggregation]`), and the `[stain]` table with the comment lines just above it
    (None where there is none), wherever it stands. `[ood]` is not kept: it is
    written afresh for the new weights."""
    lines = text.split("\n")

    def table_end(start: int) -> int:
        end = start + 1
        while end < len(lines) and not lines[end].startswith("["):
            end += 1
        # Comment lines just above the next table belong to it.
        while end > start + 1 and (lines[end - 1].startswith("#") or not lines[end - 1].strip()):
            end -= 1
        return end

    stain = None
    if "[stain]" in lines:
        start = lines.index("[stain]")
        while start > 0 and lines[start - 1].startswith("#"):
            start -= 1
        end = table_end(lines.index("[stain]"))
        stain = "\n".join(lines[start:end]) + "\n"
        lines = lines[:start] + lines[end:]
    views = None
    if "[output]" in lines:
        start = lines.index("[output]")
        rest = [ln for ln in lines[start + 1:table_end(start)] if not ln.startswith(("activation", "classes"))]
        if any(ln.strip() for ln in rest):
            views = "\n".join(rest) + "\n"
    tail = None
    if "[aggregation]" in lines:
        body = "\n".join(lines[lines.index("[aggregation]"):])
        if "\n[ood]" in body:
            body = body[: body.index("\n[ood]")]
        tail = body.rstrip("\n") + "\n"
    return views, tail, stain


def preprocess(tiles_u8: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32, exactly as the Rust
    preprocess does: (pixel / 255 - mean) / std in float32."""
    x = tiles_u8.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)


# `[output] views` (src/model/manifest.rs, TileView): where pixel (y, x) of each view
# of a tile of edge n = last + 1 comes from.
VIEW_SOURCES = {
    "identity": lambda y, x, last: (y, x),
    "transpose": lambda y, x, last: (x, y),
    "flip-h": lambda y, x, last: (y, last - x),
    "flip-v": lambda y, x, last: (last - y, x),
    "rot90": lambda y, x, last: (x, last - y),
    "rot180": lambda y, x, last: (last - y, last - x),
    "rot270": lambda y, x, last: (last - x, y),
    "anti-transpose": lambda y, x, last: (last - x, last - y),
}


def view_tiles(x: np.ndarray, view: str) -> np.ndarray:
    """An (N, C, n, n) batch shown in `view`, as the Rust engine does."""
    n = x.shape[-1]
    y, xx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    sy, sx = VIEW_SOURCES[view](y, xx, n - 1)
    return np.ascontiguousarray(x[..., sy, sx])


def manifest_views(manifest: dict) -> list[str]:
    """A parsed model.toml's `[output] views` (default: the tile as it is)."""
    views = manifest.get("output", {}).get("views", ["identity"])
    unknown = [v for v in views if v not in VIEW_SOURCES]
    if unknown or "identity" not in views:
        raise SystemExit(f"model.toml [output] views {views}: unknown {unknown} or no identity")
    return list(views)


def manifest_views_min_probability(manifest: dict) -> float:
    """`[output] views_min_probability` (default 0: every tile gets every view)."""
    return float(manifest.get("output", {}).get("views_min_probability", 0.0))


def run_views(sess, x: np.ndarray, views: list[str], input_name: str = "tiles",
              min_probability: float = 0.0) -> list[np.ndarray]:
    """The graph's outputs for the preprocessed batch `x` as the pipeline takes
    them: the logits (output 0) averaged over `views` for the tiles whose
    identity-view sigmoid reaches `min_probability` for some finding (the others
    keep the identity view's), every other output (the OOD distance) the identity
    view's."""
    outs = sess.run(None, {input_name: x})
    others = [v for v in views if v != "identity"]
    if others:
        logits = outs[0].astype(np.float32)
        on = (1.0 / (1.0 + np.exp(-logits)) >= np.float32(min_probability)).any(axis=1)
        total = logits.copy()
        for v in others:
            total = total + sess.run(None, {input_name: view_tiles(x, v)})[0]
        outs[0] = np.where(on[:, None], total * np.float32(1.0 / len(views)), logits)
    return outs


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
    results = sess.run(None, {"tiles": inputs.astype(np.float32)})
    outs = results[0].astype("<f4")
    with gzip.GzipFile(pdir / "inputs.f32.gz", "wb", compresslevel=9, mtime=0) as f:
        f.write(inputs.astype("<f4").tobytes())
    (pdir / "outputs.f32").write_bytes(outs.tobytes())
    ood_line = ""
    if len(results) > 1:
        (pdir / "ood.f32").write_bytes(results[1].astype("<f4").tobytes())
        ood_line = 'ood_outputs = "ood.f32"\n'
    else:
        (pdir / "ood.f32").unlink(missing_ok=True)
    (pdir / "parity.toml").write_text(
        f"""# Parity fixture: {len(inputs)} preprocessed tiles and onnxruntime's raw outputs.
# Written by training/ at export; tests/model_parity.rs runs tract on the same tensors.
tiles = {len(inputs)}
inputs = "inputs.f32.gz"
outputs = "outputs.f32"
{ood_line}tolerance = {tolerance}
source = {json.dumps(source)}
"""
    )
    return float(np.abs(outs).max())
