"""Reference pipeline for `benches/score_compare.sh`: `dirascope score`'s tissue mask,
tile grid, tile selection, resampling, preprocessing, batched inference, top-k
means and the per-finding slide scores re-implemented in Python (tifffile + imagecodecs + numpy + scipy +
onnxruntime), on the same slide and model folder, so that speed, peak memory and
per-tile probabilities can be compared in one run.

It follows src/slide/mod.rs (thumbnail), src/tissue.rs, src/tiling.rs,
src/model/preprocess.rs and src/aggregate.rs rule for rule, rounding included; dirascope decodes
baseline JPEG as libjpeg-turbo (imagecodecs) does, so both pipelines see the same
pixels on JPEG and on losslessly compressed slides. It leaves out what the
comparison does not need: QC, stain normalisation, the call rule and the reports.

Streaming like dirascope: the tile level is never decoded whole. Tiles are decoded on
demand through an LRU cache of decoded TIFF tiles bounded at 64 MiB (the Rust reader's
default), a pool of `--threads` readers fills batches ahead of inference, and at most
`threads + 4` batches are in flight (dirascope: `--threads` rayon readers and a queue
of 4 batches). onnxruntime runs with `--threads` intra-op threads.

    reference_pipeline.py SLIDE MODEL_DIR --out tiles.csv [--threads 2]

Prints one `reference: {json}` line (tiles, k, top-k means, stage times, peak RSS).
"""
import argparse
import collections
import concurrent.futures
import json
import math
import os
import resource
import threading
import time
import tomllib

import numpy as np
import onnxruntime as ort
import tifffile
from scipy import ndimage

# dirascope's defaults (TissueOptions, ScoreOptions, OpenOptions).
TARGET_MASK_MPP = 10.0
FALLBACK_SIDE = 1024
MAX_MASK_SIDE = 4096
OPEN_RADIUS = 1
CLOSE_RADIUS = 2
MIN_COMPONENT_MM2 = 0.02
MIN_SATURATION = 0.07
QUEUE_BATCHES = 4
CACHE_BYTES = 64 << 20


def rust_round(x):
    """f64::round / f32::round: halves away from zero (NumPy's rounds to even)."""
    a = np.abs(x)
    f = np.floor(a)
    return np.copysign(f + (a - f >= 0.5), x)


def rust_round_int(x):
    return int(rust_round(np.float64(x)))


class Slide:
    """The pyramid levels of a tiled TIFF, read region by region (SlideReader)."""

    def __init__(self, path):
        self.tif = tifffile.TiffFile(path)
        self.levels = [p for p in self.tif.pages if p.is_tiled and p.samplesperpixel == 3]
        if not self.levels:
            raise SystemExit(f"{path}: no tiled RGB pages")
        self.levels.sort(key=lambda p: -p.imagewidth)
        self.decode = [p.decode for p in self.levels]
        self.fd = os.open(path, os.O_RDONLY)
        self.background = 255
        self.cache = collections.OrderedDict()
        self.cache_bytes = 0
        self.lock = threading.Lock()
        self.decode_s = 0.0  # summed over reader threads
        self.mpp = self._mpp()

    def _mpp(self):
        p = self.levels[0]
        desc = p.description or ""
        if desc.startswith("Aperio") and "MPP = " in desc:
            v = float(desc.split("MPP = ")[1].split("|")[0])
            return (v, v)
        if "XResolution" in p.tags:
            unit = p.tags["ResolutionUnit"].value if "ResolutionUnit" in p.tags else 2
            um = {2: 25_400.0, 3: 10_000.0}.get(int(unit))
            (xn, xd), (yn, yd) = p.tags["XResolution"].value, p.tags["YResolution"].value
            if um and xn > 0 and yn > 0:
                return (um / (xn / xd), um / (yn / yd))
        raise SystemExit("the slide's microns per pixel are unknown")

    def size(self, level):
        p = self.levels[level]
        return p.imagewidth, p.imagelength

    def _tile(self, level, index):
        key = (level, index)
        with self.lock:
            hit = self.cache.get(key)
            if hit is not None:
                self.cache.move_to_end(key)
                return hit
        p = self.levels[level]
        start = time.perf_counter()
        n = p.databytecounts[index]
        if n == 0:
            tile = np.full((p.tilelength, p.tilewidth, 3), self.background, np.uint8)
        else:
            data = os.pread(self.fd, n, p.dataoffsets[index])
            tile = self.decode[level](data, index)[0].reshape(p.tilelength, p.tilewidth, 3)
        elapsed = time.perf_counter() - start
        with self.lock:
            self.decode_s += elapsed
            if key not in self.cache:
                self.cache[key] = tile
                self.cache_bytes += tile.nbytes
                while self.cache_bytes > CACHE_BYTES and len(self.cache) > 1:
                    _, old = self.cache.popitem(last=False)
                    self.cache_bytes -= old.nbytes
        return tile

    def read_region(self, level, x, y, w, h):
        """Pixels of the level rectangle; outside the level is background."""
        out = np.full((h, w, 3), self.background, np.uint8)
        lw, lh = self.size(level)
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, lw), min(y + h, lh)
        if x0 >= x1 or y0 >= y1:
            return out
        p = self.levels[level]
        tw, th = p.tilewidth, p.tilelength
        across = -(-lw // tw)
        for cy in range(y0 // th, (y1 - 1) // th + 1):
            for cx in range(x0 // tw, (x1 - 1) // tw + 1):
                tile = self._tile(level, cy * across + cx)
                sx0, sx1 = max(x0, cx * tw), min(x1, (cx + 1) * tw)
                sy0, sy1 = max(y0, cy * th), min(y1, (cy + 1) * th)
                out[sy0 - y:sy1 - y, sx0 - x:sx1 - x] = tile[
                    sy0 - cy * th:sy1 - cy * th, sx0 - cx * tw:sx1 - cx * tw
                ]
        return out

    def thumbnail(self, max_side):
        """SlideReader::thumbnail: the smallest level at least max_side, triangle-resized."""
        level = 0
        for i in range(len(self.levels)):
            if max(self.size(i)) >= max_side:
                level = i
        lw, lh = self.size(level)
        image = self.read_region(level, 0, 0, lw, lh)
        w0, h0 = self.size(0)
        scale = max_side / max(w0, h0, 1)
        w = max(rust_round_int(w0 * scale), 1)
        h = max(rust_round_int(h0 * scale), 1)
        return resize_triangle(image, w, h)


def triangle_taps(src_n, dst_n):
    """image::imageops::resize's Triangle filter taps for one axis, in f32 as it computes them."""
    f32 = np.float32
    ratio = f32(src_n) / f32(dst_n)
    sratio = ratio if ratio >= 1 else f32(1)
    support = f32(1) * sratio
    rows = []
    for o in range(dst_n):
        centre = (f32(o) + f32(0.5)) * ratio
        left = min(max(int(np.floor(centre - support)), 0), src_n - 1)
        right = min(max(int(np.ceil(centre + support)), left + 1), src_n)
        centre = centre - f32(0.5)
        ws, total = [], f32(0)
        for i in range(left, right):
            x = abs((f32(i) - centre) / sratio)
            w = f32(1) - x if x < 1 else f32(0)
            ws.append(w)
            total = f32(total + w)
        rows.append((left, [f32(w / total) for w in ws]))
    return padded_taps(rows)


def padded_taps(rows):
    """(index, weight) arrays of shape (n, K); short rows are padded with weight 0, which
    leaves a sequential f32 sum unchanged."""
    k = max(len(ws) for _, ws in rows)
    idx = np.zeros((len(rows), k), np.intp)
    wts = np.zeros((len(rows), k), np.float32)
    for o, (first, ws) in enumerate(rows):
        if isinstance(first, list):
            idx[o, : len(first)] = first
            idx[o, len(first):] = first[0]
        else:
            idx[o] = first + np.minimum(np.arange(k), len(ws) - 1)
        wts[o, : len(ws)] = ws
    return idx, wts


def resize_triangle(image, w, h):
    """image::imageops::resize(.., FilterType::Triangle): a vertical pass into f32, then a
    horizontal pass rounded (halves away from zero) to u8, taps summed in order."""
    sh, sw = image.shape[:2]
    if (sw, sh) == (w, h):
        return image.copy()
    src = image.astype(np.float32)
    idx, wts = triangle_taps(sh, h)
    tmp = np.zeros((h, sw, 3), np.float32)
    for k in range(idx.shape[1]):
        tmp += src[idx[:, k]] * wts[:, k, None, None]
    idx, wts = triangle_taps(sw, w)
    out = np.zeros((h, w, 3), np.float32)
    for k in range(idx.shape[1]):
        out += tmp[:, idx[:, k]] * wts[None, :, k, None]
    return rust_round(np.clip(out, 0, 255)).astype(np.uint8)


def detect_tissue(thumb, slide_w, slide_h, mpp):
    """tissue::detect: Otsu on HSV saturation (pen excluded), open, close, pen margin,
    small components dropped. Returns (mask, level-0 px per mask px x and y)."""
    h, w = thumb.shape[:2]
    px = thumb.astype(np.int64)
    mx, mn = px.max(axis=2), px.min(axis=2)
    sat = np.where(mx == 0, 0.0, (mx - mn) / np.maximum(mx, 1))
    r, g, b = (px[..., c].astype(np.float64) for c in range(3))
    d = (mx - mn).astype(np.float64)
    safe = np.where(d == 0, 1.0, d)
    hue = np.select(
        [d == 0, mx == px[..., 0], mx == px[..., 1]],
        [0.0, 60.0 * ((g - b) / safe), 60.0 * ((b - r) / safe + 2.0)],
        60.0 * ((r - g) / safe + 4.0),
    )
    hue = np.mod(hue, 360.0)
    pen = (mx < 60) | (
        ((hue >= 70) & (hue < 232) & (sat > 0.35)) | ((hue >= 232) & (hue < 250) & (sat > 0.75))
    )
    threshold = max(otsu(sat[~pen]), MIN_SATURATION)
    tissue = ~pen & (sat > threshold)
    square = lambda radius: np.ones((2 * radius + 1, 2 * radius + 1), bool)
    erode = lambda m, radius: ndimage.binary_erosion(m, square(radius), border_value=1)
    dilate = lambda m, radius: ndimage.binary_dilation(m, square(radius), border_value=0)
    tissue = dilate(erode(tissue, OPEN_RADIUS), OPEN_RADIUS)
    tissue = erode(dilate(tissue, CLOSE_RADIUS), CLOSE_RADIUS)
    tissue &= ~dilate(pen, 1)
    sx, sy = slide_w / w, slide_h / h
    um_per_px = (mpp[0] * sx + mpp[1] * sy) / 2.0
    min_px = math.ceil(MIN_COMPONENT_MM2 / (um_per_px * um_per_px / 1e6))
    if min_px > 1:
        labels, n = ndimage.label(tissue, structure=np.ones((3, 3), bool))
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        small = sizes < min_px
        small[0] = False
        tissue &= ~small[labels]
    return tissue, sx, sy


def otsu(values):
    """tissue::otsu on a 256-bin histogram, sums in the same order."""
    hist = np.bincount(rust_round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.intp), minlength=256)
    n = int(hist.sum())
    if n == 0:
        return 1.0
    total = 0.0
    for i, c in enumerate(hist.tolist()):
        total += i * float(c)
    w0 = sum0 = 0.0
    best, best_t = -1.0, 0
    for t, c in enumerate(hist.tolist()):
        w0 += float(c)
        sum0 += t * float(c)
        w1 = n - w0
        if w0 == 0.0 or w1 == 0.0:
            continue
        m0, m1 = sum0 / w0, (total - sum0) / w1
        between = w0 * w1 * (m0 - m1) * (m0 - m1)
        if between > best:
            best, best_t = between, t
    return (best_t + 0.5) / 255.0


def overlaps(a, b, n):
    """Mask pixels 0..n overlapping [a, b) and the overlap lengths (TissueMask::fraction_in)."""
    idx, wts = [], []
    for i in range(max(math.floor(a), 0), min(math.ceil(b), n)):
        w = max(min(b, i + 1.0) - max(a, float(i)), 0.0)
        if w > 0:
            idx.append(i)
            wts.append(w)
    return np.array(idx, np.intp), np.array(wts)


def fraction_in(mask, sx, sy, x, y, w, h):
    x0, x1 = x / sx, (x + w) / sx
    y0, y1 = y / sy, (y + h) / sy
    total = (x1 - x0) * (y1 - y0)
    cols, wx = overlaps(x0, x1, mask.shape[1])
    rows, wy = overlaps(y0, y1, mask.shape[0])
    if len(cols) == 0 or len(rows) == 0:
        return 0.0
    # cumsum adds in order, as the Rust loops do; +0.0 for non-tissue changes nothing.
    line = np.cumsum(np.where(mask[np.ix_(rows, cols)], wx, 0.0), axis=1)[:, -1]
    covered = np.cumsum(line * wy)[-1]
    return min(max(covered / total, 0.0), 1.0)


def grid_count(extent, tile, stride):
    if extent == 0:
        return 0
    n = math.ceil(max(extent - tile, 0.0) / stride) + 1
    while n > 1 and rust_round_int((n - 2) * stride + tile) >= extent:
        n -= 1
    while rust_round_int((n - 1) * stride + tile) < extent:
        n += 1
    return n


def choose_level(slide, model_mpp):
    """tiling::choose_level: the level nearest the model's MPP not coarser than it, and
    its downsample along x and y."""
    w0, h0 = slide.size(0)
    level = 0
    for i in range(len(slide.levels)):
        if (slide.mpp[0] + slide.mpp[1]) / 2.0 * (w0 / max(slide.size(i)[0], 1)) <= model_mpp * (
            1.0 + 1e-6
        ):
            level = i
    lw, lh = slide.size(level)
    return level, (w0 / max(lw, 1), h0 / max(lh, 1))


def build_grid(slide, mask, sx, sy, tile_px, model_mpp, min_tissue, overlap_px=0):
    """TileGrid::build: level, geometry, and the tiles with tissue fraction >= min_tissue.
    Tiles overlap their neighbours by overlap_px model pixels (0: edge to edge)."""
    mpp = slide.mpp
    w0, h0 = slide.size(0)
    level, ds = choose_level(slide, model_mpp)
    tile_x, tile_y = tile_px * model_mpp / mpp[0], tile_px * model_mpp / mpp[1]
    step = (tile_px - overlap_px) / tile_px
    stride_x, stride_y = tile_x * step, tile_y * step
    cols, rows = grid_count(w0, tile_x, stride_x), grid_count(h0, tile_y, stride_y)
    tiles = []
    for row in range(rows):
        for col in range(cols):
            x0, y0 = rust_round_int(col * stride_x), rust_round_int(row * stride_y)
            x1 = rust_round_int(col * stride_x + tile_x)
            y1 = rust_round_int(row * stride_y + tile_y)
            rect = (x0, y0, max(x1 - x0, 1), max(y1 - y0, 1))
            frac = fraction_in(mask, sx, sy, *rect)
            if frac >= min_tissue:
                tiles.append((col, row, rect, frac))
    return level, ds, tiles


def area_taps(start, length, n, src_n):
    """tiling::weights: per output pixel the source pixels it covers and their normalised
    overlap weights (merged in f32, total in f64), indices clamped into 0..src_n."""
    scale = length / n
    last = max(src_n - 1, 0)
    rows = []
    for o in range(n):
        a = start + o * scale
        b = a + scale
        taps, total = [], 0.0
        i = math.floor(a)
        while i < b:
            w = max(min(b, i + 1.0) - max(a, float(i)), 0.0)
            if w > 0:
                j = min(max(i, 0), last)
                if taps and taps[-1][0] == j:
                    taps[-1][1] = np.float32(taps[-1][1] + np.float32(w))
                else:
                    taps.append([j, np.float32(w)])
                total += w
            i += 1
        if not taps:
            taps, total = [[min(max(math.floor(a), 0), last), np.float32(1)]], 1.0
        rows.append(([j for j, _ in taps], [np.float32(w / np.float32(total)) for _, w in taps]))
    return padded_taps(rows)


_AREA_TAPS = {}


def resample_area(src, window, out_w, out_h):
    """tiling::resample_area: box resampling, horizontal pass into f32 then vertical,
    rounded halves away from zero."""
    key = (window, src.shape[:2], out_w, out_h)
    taps = _AREA_TAPS.get(key)
    if taps is None:
        wx, wy, ww, wh = window
        taps = _AREA_TAPS[key] = (
            area_taps(wx, ww, out_w, src.shape[1]),
            area_taps(wy, wh, out_h, src.shape[0]),
        )
    (xi, xw), (yi, yw) = taps
    s = src.astype(np.float32)
    rows = np.zeros((src.shape[0], out_w, 3), np.float32)
    for k in range(xi.shape[1]):
        rows += s[:, xi[:, k]] * xw[None, :, k, None]
    out = np.zeros((out_h, out_w, 3), np.float32)
    for k in range(yi.shape[1]):
        out += rows[yi[:, k]] * yw[:, k, None, None]
    return np.clip(rust_round(out), 0, 255).astype(np.uint8)


def read_tile(slide, level, ds, tile_px, rect):
    """TileGrid::read_plan + read_tile. Returns (tile, decode+copy s, resample s)."""
    x, y, w, h = rect
    fx0, fy0 = x / ds[0], y / ds[1]
    fx1, fy1 = (x + w) / ds[0], (y + h) / ds[1]
    x0, y0 = math.floor(fx0), math.floor(fy0)
    x1, y1 = max(math.ceil(fx1), x0 + 1), max(math.ceil(fy1), y0 + 1)
    start = time.perf_counter()
    region = slide.read_region(level, x0, y0, x1 - x0, y1 - y0)
    mid = time.perf_counter()
    window = (fx0 - x0, fy0 - y0, fx1 - fx0, fy1 - fy0)
    tile = resample_area(region, window, tile_px, tile_px)
    return tile, mid - start, time.perf_counter() - mid


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("slide")
    ap.add_argument("model_dir")
    ap.add_argument("--out", required=True, help="per-tile probabilities (CSV)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument(
        "--overlap", type=int, default=0,
        help="model pixels each tile shares with its neighbours (dirascope score --overlap); "
        "default 0, edge to edge",
    )
    args = ap.parse_args()
    t_total = time.perf_counter()
    times = collections.defaultdict(float)

    with open(os.path.join(args.model_dir, "model.toml"), "rb") as f:
        manifest = tomllib.load(f)
    inp, agg = manifest["input"], manifest["aggregation"]
    tile_px, model_mpp = int(inp["tile_px"]), float(inp["mpp"])
    mean = np.array(inp["mean"], np.float32)
    std = np.array(inp["std"], np.float32)
    order = [0, 1, 2] if inp.get("channel_order", "RGB") == "RGB" else [2, 1, 0]
    classes = manifest["output"]["classes"]
    if manifest["output"]["activation"] != "sigmoid" or inp.get("layout", "NCHW") != "NCHW":
        raise SystemExit("this reference handles sigmoid NCHW models only")
    if manifest["output"].get("views", ["identity"]) != ["identity"]:
        # The pipeline averages the logits of several views of each tile
        # (engine.rs, view_batch); this reference runs each tile once.
        raise SystemExit("output.views is not supported by the reference pipeline")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(
        os.path.join(args.model_dir, manifest["onnx"]), opts, providers=["CPUExecutionProvider"]
    )
    input_name = session.get_inputs()[0].name
    times["model_load"] = time.perf_counter() - t_total

    t = time.perf_counter()
    slide = Slide(args.slide)
    w0, h0 = slide.size(0)
    long = max(w0, h0, 1)
    side = rust_round_int(long * ((slide.mpp[0] + slide.mpp[1]) / 2.0) / TARGET_MASK_MPP)
    side = max(min(max(min(side, MAX_MASK_SIDE), 16), long), 1)
    mask, sx, sy = detect_tissue(slide.thumbnail(side), w0, h0, slide.mpp)
    times["tissue"] = time.perf_counter() - t

    t = time.perf_counter()
    if not 0 <= args.overlap < tile_px:
        raise SystemExit(f"--overlap {args.overlap}: must be at least 0 and below the tile ({tile_px} px)")
    level, ds, tiles = build_grid(
        slide, mask, sx, sy, tile_px, model_mpp, float(agg["min_tissue"]), args.overlap
    )
    times["grid"] = time.perf_counter() - t

    lock = threading.Lock()

    def read_batch(chunk):
        out = np.empty((args.batch, 3, tile_px, tile_px), np.float32)
        out[len(chunk):] = 0.0  # the last batch is padded, as tract's fixed batch is
        region_s = resample_s = 0.0
        for i, (_, _, rect, _) in enumerate(chunk):
            tile, r_s, s_s = read_tile(slide, level, ds, tile_px, rect)
            start = time.perf_counter()
            x = tile[..., order].astype(np.float32) / np.float32(255.0)
            out[i] = ((x - mean) / std).transpose(2, 0, 1)
            region_s += r_s
            resample_s += s_s + time.perf_counter() - start
        with lock:
            times["decode"] += region_s
            times["resample_preprocess"] += resample_s
        return out

    t = time.perf_counter()
    chunks = [tiles[i:i + args.batch] for i in range(0, len(tiles), args.batch)]
    probs = np.zeros((len(tiles), len(classes)), np.float32)
    with concurrent.futures.ThreadPoolExecutor(args.threads) as pool:
        pending, submitted = collections.deque(), 0
        for j, chunk in enumerate(chunks):
            while submitted < len(chunks) and len(pending) < args.threads + QUEUE_BATCHES:
                pending.append(pool.submit(read_batch, chunks[submitted]))
                submitted += 1
            batch = pending.popleft().result()
            start = time.perf_counter()
            logits = session.run(None, {input_name: batch})[0][: len(chunk)].astype(np.float32)
            times["inference"] += time.perf_counter() - start
            probs[j * args.batch: j * args.batch + len(chunk)] = np.float32(1) / (
                np.float32(1) + np.exp(-logits)
            )
    times["stream"] = time.perf_counter() - t
    times["tile_decode_only"] = slide.decode_s

    # aggregate::aggregate's top-k means: rank by probability, ties by grid position.
    t = time.perf_counter()
    n = len(tiles)
    k = min(max(math.ceil(float(agg["top_k_fraction"]) * n), int(agg["top_k_min"])), n)
    top_k = {}
    for c, key in enumerate(classes):
        ranked = np.argsort(-probs[:, c], kind="stable")[:k]
        top_k[key] = sum(float(probs[i, c]) for i in ranked) / k if k else 0.0
    # aggregate::finding_score: each finding's slide score by its manifest method.
    order = sorted(range(n), key=lambda i: (tiles[i][1], tiles[i][0]))  # grid order: row, col
    methods = agg.get("per_finding", {})
    if agg.get("max_edge_depth"):
        # aggregate::edge_depths is not reproduced here: refuse rather than compare
        # scores computed over different tiles.
        raise SystemExit("aggregation.max_edge_depth is not supported by the reference pipeline")
    score = {}
    for c, key in enumerate(classes):
        method = methods.get(key, {"method": "top-k-mean"})
        if method["method"] == "top-k-mean":
            score[key] = top_k[key]
        elif method["method"] == "top-n-mean":
            count = min(int(method["n"]), n)
            ranked = np.argsort(-probs[:, c], kind="stable")[:count]
            score[key] = sum(float(probs[i, c]) for i in ranked) / count if count else 0.0
        elif method["method"] == "max-3x3-mean":
            at = {(tiles[i][0], tiles[i][1]): float(probs[i, c]) for i in range(n)}
            best, best_count = 0.0, 0
            for i in order:
                col, row = tiles[i][0], tiles[i][1]
                near = [at[(x, y)] for y in range(max(row - 1, 0), row + 2)
                        for x in range(max(col - 1, 0), col + 2) if (x, y) in at]
                mean = sum(near) / len(near)
                if best_count == 0 or mean > best:
                    best, best_count = mean, len(near)
            score[key] = best
        else:
            raise SystemExit(f"unknown aggregation method {method['method']!r} for {key}")
    p, a = score["subcorneal_pustule"], score["acantholysis"]
    hid, pso = score["neutrophilic_eccrine_hidradenitis"], score["psoriasiform"]
    # The manifest's DIRA rule (src/aggregate.rs dira_score): "two-of-three" is the
    # second highest of the three findings, "pustule-and-one" (the default)
    # sqrt(pustule * max(acantholysis, hidradenitis)).
    rule = manifest.get("rule", {}).get("dira_rule", "pustule-and-one")
    if rule == "two-of-three":
        dira = sorted((max(v, 0.0) for v in (p, a, hid)), reverse=True)[1]
    elif rule == "pustule-and-one":
        dira = math.sqrt(max(p, 0.0) * max(a, hid, 0.0))
    else:
        raise SystemExit(f"unknown dira_rule {rule!r}")
    with open(args.out, "w") as f:
        f.write(",".join(["x", "y", "width", "height", "col", "row", "tissue_fraction", *classes]) + "\n")
        for (col, row, (x, y, w, h), frac), pr in zip(tiles, probs):
            f.write(f"{x},{y},{w},{h},{col},{row},{frac:.6f}," + ",".join(f"{v:.9g}" for v in pr) + "\n")
    times["aggregate_write"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t_total
    print("reference: " + json.dumps({
        "tiles": n,
        "level": level,
        "k": k,
        "top_k_mean": top_k,
        "score": score,
        "dira_score": dira,
        "psoriasiform_score": pso,
        "seconds": {key: round(v, 3) for key, v in times.items()},
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }))


if __name__ == "__main__":
    main()
