"""Real normal skin through `dirascope score`, as scanned and with
`--normalise-stain`: each model's share of test-part tiles above 0.5 per finding
(on normal skin every one is a false positive) and the slide's call.

Whole slides are scored, as a user would score them (the slide's stain profile is
measured on 64 tiles spread over the whole slide, train and test parts: it is
measured on the pixels being scored, at run time, with no labels); only tiles that
lie wholly inside the test part of training/real_split.toml are counted. With
`--overlap 168` the tiles step 56 px, as training/stain_normalise_probe.py's do
(more tiles to count; the slide's call is then the rule's at an overlap it was not
fitted at, so calls are printed from the run at the manifest's overlap only).

    training/.venv/bin/python training/stain_normalise_real.py target/release/dirascope \\
        models/dirascope-phantom-v1 models/dirascope-v2
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import tempfile
from pathlib import Path

import real_split

FINDINGS = ["subcorneal_pustule", "acantholysis", "neutrophilic_eccrine_hidradenitis", "psoriasiform"]
IMAGES = [("CMU-1-Small-Region.svs", None), ("skin-normal-10x-public-domain.jpg", 0.75)]


def score(dirascope: str, model: Path, image: Path, mpp: float | None, normalise: bool, out: Path,
          overlap: int | None) -> dict:
    cmd = [dirascope, "score", str(image), "--model", str(model), "--out", str(out), "--quiet"]
    if overlap is not None:
        cmd += ["--overlap", str(overlap)]
    if mpp:
        cmd += ["--mpp", str(mpp)]
    if normalise:
        cmd.append("--normalise-stain")
    subprocess.run(cmd, check=True)
    slide = out / image.stem
    x0, y0, x1, y1 = real_split.part(image.name, "test")
    shares, n = [0] * 4, 0
    with open(slide / "tiles.csv") as f:
        for row in csv.DictReader(f):
            x, y, w, h = (int(row[k]) for k in ("x", "y", "width", "height"))
            if x >= x0 and y >= y0 and x + w <= x1 and y + h <= y1:
                n += 1
                for i, k in enumerate(FINDINGS):
                    shares[i] += float(row[k]) > 0.5
    report = json.loads((slide / "report.json").read_text())
    return {"tiles": n, "above": [s / max(n, 1) for s in shares], "call": report["result"]["call"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirascope", help="a dirascope binary")
    ap.add_argument("models", type=Path, nargs="+", help="model folders with a [stain] table")
    ap.add_argument("--overlap", type=int, help="tile overlap in model pixels (default: the manifest's)")
    args = ap.parse_args()
    real = Path(real_split.REAL_DIR)
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            for name, mpp in IMAGES:
                for normalise in (False, True):
                    out = Path(tmp) / f"{model.name}-{name}-{normalise}"
                    r = score(args.dirascope, model, real / name, mpp, normalise, out, args.overlap)
                    label = "normalised" if normalise else "as scanned"
                    call = f"; call {r['call']}" if args.overlap is None else ""
                    print(f"{model.name} {name} test part ({r['tiles']} tiles) {label:10s}: " + ", ".join(
                        f"{k} {100 * s:.1f}%" for k, s in zip(FINDINGS, r["above"])) + call, flush=True)


if __name__ == "__main__":
    main()
