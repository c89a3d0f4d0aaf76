"""Prints the side-by-side figures of one `benches/score_compare.sh` run: dirascope's
outputs (tiles.csv, report.json, evidence crops) against reference_pipeline.py's, and
each process's wall time and peak RSS from `/usr/bin/time -v`.

    compare_runs.py --label L --slide S --model M --rust-dir OUT/<id> --rust-time T1
                    --python-csv P.csv --python-log P.log --python-time T2 [--tolerance 1e-3]

The last line is `parity: yes|no max_diff=...` for the driver.
"""
import argparse
import csv
import glob
import json
import os
import re
import sys

import imagecodecs
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_pipeline as ref  # noqa: E402


def time_v(path):
    """(wall seconds, peak RSS MiB) from a `/usr/bin/time -v` report."""
    text = open(path).read()
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
    secs = 0.0
    for part in wall.split(":"):
        secs = secs * 60 + float(part)
    rss_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    return secs, rss_kib / 1024.0


def read_tiles(path):
    """{(x, y, width, height): (tissue_fraction, {class: p})} and the class names."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    fixed = {"x", "y", "width", "height", "col", "row", "tissue_fraction"}
    classes = [c for c in rows[0].keys() if c not in fixed] if rows else []
    tiles = {}
    for r in rows:
        key = (int(r["x"]), int(r["y"]), int(r["width"]), int(r["height"]))
        tiles[key] = (float(r["tissue_fraction"]), {c: float(r[c]) for c in classes})
    return tiles, classes


def evidence_pixels(rust_dir, slide_path, model_dir, rust_tiles):
    """Pixel differences between dirascope's evidence crops (the exact 224 px tiles its
    model saw) and the reference's tiles at the same places."""
    import tomllib

    with open(os.path.join(model_dir, "model.toml"), "rb") as f:
        inp = tomllib.load(f)["input"]
    slide = ref.Slide(slide_path)
    level, ds = ref.choose_level(slide, float(inp["mpp"]))
    places = {}
    for png in glob.glob(os.path.join(rust_dir, "evidence", "*.png")):
        m = re.search(r"_x(\d+)_y(\d+)\.png$", png)
        places.setdefault((int(m.group(1)), int(m.group(2))), png)
    diffs = []
    for (x, y), png in sorted(places.items()):
        key = next(k for k in rust_tiles if k[:2] == (x, y))
        theirs = imagecodecs.png_decode(open(png, "rb").read())[..., :3]
        ours, _, _ = ref.read_tile(slide, level, ds, int(inp["tile_px"]), key)
        diffs.append(np.abs(theirs.astype(np.int16) - ours.astype(np.int16)))
    if not diffs:
        return None
    d = np.stack(diffs)
    return len(diffs), int(d.max()), float(d.mean()), float((d > 0).mean())


def main():
    ap = argparse.ArgumentParser()
    for name in ["label", "slide", "model", "rust-dir", "rust-time", "python-csv", "python-log", "python-time"]:
        ap.add_argument("--" + name, required=True)
    ap.add_argument("--threads", default="2")
    ap.add_argument("--tolerance", type=float, default=1e-3)
    a = ap.parse_args()

    report = json.load(open(os.path.join(a.rust_dir, "report.json")))
    line = next(l for l in open(a.python_log) if l.startswith("reference: "))
    py = json.loads(line[len("reference: "):])
    r_wall, r_rss = time_v(a.rust_time)
    p_wall, p_rss = time_v(a.python_time)
    rust, classes = read_tiles(os.path.join(a.rust_dir, "tiles.csv"))
    python, py_classes = read_tiles(a.python_csv)
    common = sorted(set(rust) & set(python))
    only_r, only_p = len(set(rust) - set(python)), len(set(python) - set(rust))

    s = report["slide"]
    print(f"== {a.label}: {a.slide}")
    print(f"   {s['width']} x {s['height']} px at {s['mpp']['x']} um/px, {s['size_bytes'] / 2**20:.0f} MiB, "
          f"{len(s['levels'])} levels; model {report['model']['name']}; --threads {a.threads} both")
    print(f"{'':28}{'dirascope':>12}{'python ref':>12}{'rust/python':>14}")
    print(f"{'end-to-end wall (s)':28}{r_wall:12.1f}{p_wall:12.1f}{r_wall / p_wall:14.2f}")
    print(f"{'peak RSS (MiB)':28}{r_rss:12.0f}{p_rss:12.0f}{r_rss / p_rss:14.2f}")
    same = "yes" if only_r == only_p == 0 else f"no ({only_r} only in dirascope, {only_p} only in python)"
    print(f"{'tiles scored':28}{len(rust):12d}{len(python):12d}   same set: {same}")

    if common:
        frac = max(abs(rust[k][0] - python[k][0]) for k in common)
        diffs = np.array([[abs(rust[k][1][c] - python[k][1][c]) for c in classes] for k in common])
        worst = np.unravel_index(diffs.argmax(), diffs.shape)
        wk = common[worst[0]]
        max_diff = float(diffs.max())
        ok = max_diff <= a.tolerance
        print(f"{'tissue fraction max |diff|':28}{frac:12.6f}   (over the {len(common)} common tiles)")
        print(f"max |p_rust - p_python|     {max_diff:.2e} over {len(common)} tiles x {len(classes)} classes "
              f"(worst: tile x={wk[0]} y={wk[1]}, {classes[worst[1]]}): "
              f"{'within' if ok else 'ABOVE'} {a.tolerance:g}")
        q = np.quantile(diffs, [0.5, 0.99])
        print(f"   median {q[0]:.1e}, p99 {q[1]:.1e}; tiles.csv keeps 6 decimals (+-5e-7)")
        full = [abs(e["probability"] - python[k][1][e["finding"]])
                for e in report["result"]["evidence"]
                for k in [(e["x"], e["y"], e["width"], e["height"])] if k in python]
        if full:
            print(f"   at full precision on the {len(full)} evidence entries of report.json: max {max(full):.1e}")
    else:
        max_diff, ok = float("inf"), False
        print("no common tiles")
    px = evidence_pixels(a.rust_dir, a.slide, a.model, rust)
    if px:
        n, mx, mean, share = px
        print(f"pixels of the {n} evidence tiles, same place both ways: max |diff| {mx} grey levels, "
              f"mean {mean:.3f}, {100 * share:.1f}% of values differ")

    k = report["result"]["k"]
    head = f"top-k means and slide scores (k = {k} / {py['k']})"
    print(f"{head:52}dirascope   python ref       |diff|")
    rows = [(f["key"], f["top_k_mean"], py["top_k_mean"][f["key"]]) for f in report["result"]["findings"]]
    rows += [(f"{f['key']} (slide score)", f["score"], py["score"][f["key"]])
             for f in report["result"]["findings"] if "score" in py]
    rows += [("dira score", report["result"]["dira_score"], py["dira_score"]),
             ("psoriasiform score", report["result"]["psoriasiform_score"], py["psoriasiform_score"])]
    for name, r, p in rows:
        print(f"  {name:48}{r:10.6f}{p:12.6f}{abs(r - p):13.2e}")

    t = report["timings"]
    print("dirascope time (report.json timings, s); stages in order, wall:")
    print(f"  startup + model load {r_wall - t['total_s']:.1f} (process wall - total_s), open {t['open_s']:.2f}, "
          f"sha256 {t['hash_s']:.1f} (beside tissue with 2+ threads), tissue + qc {t['tissue_s']:.2f}, "
          f"tile stream {t['stream_s']:.1f}, "
          f"aggregate {t['aggregate_s']:.2f}, reports {t['reports_s']:.1f}; total {t['total_s']:.1f}")
    parts = [("decode", t["decode_s"]), ("resample", t["resample_s"]), ("tile qc", t["tile_qc_s"]),
             ("inference", t["inference_s"])]
    busy = sum(v for _, v in parts)
    print(f"  inside the tile stream, summed over worker threads ({busy:.1f} thread-s in {t['stream_s']:.1f} s wall):")
    print("   " + ", ".join(f"{n} {v:.1f} ({100 * v / busy:.0f}%)" for n, v in parts))
    ps = py["seconds"]
    print(f"python ref time (s): model load {ps['model_load']:.1f}, tissue {ps['tissue']:.2f}, grid {ps['grid']:.2f}, "
          f"tile stream {ps['stream']:.1f} (decode {ps['decode']:.1f} + resample/preprocess "
          f"{ps['resample_preprocess']:.1f} summed over readers; inference {ps['inference']:.1f}), total {ps['total']:.1f}")
    print(f"parity: {'yes' if ok else 'no'} max_diff={max_diff:.2e}")


if __name__ == "__main__":
    main()
