"""Labels and per-stratum tables of the slide-call protocol (training/protocol.sh).

    protocol_tables.py labels SETDIR                 > labels.csv
    protocol_tables.py tables SCORED labels.csv      # markdown tables on stdout
    protocol_tables.py lesions SETDIR SCORED labels.csv   # lesion evidence by area,
                                                        # false tiles per mm2 by size

`labels` reads every stratum folder's manifest.csv and each slide's truth.json
(class, DIRA variant, psoriasiform change, MPP, size, artefacts, stain) and writes one
labels.csv that `dirascope validate` and `dirascope calibrate` read (slide_id,
label, and the strata as extra columns).

`tables` reads SCORED/summary.csv (the calls) and prints, per stratum: calls right
k/N with a Wilson 95% interval, abstentions (mixed, qc-fail, insufficient-tissue)
apart, DIRA sensitivity and specificity with Wilson intervals, and false DIRA calls
as k/N. Expected call: dira -> dira-pattern; psoriasis and pustular psoriasis ->
psoriasiform-pattern; normal -> no-pustular-pattern. Artefact strata (pen, fold, an
out-of-focus band of 0.3-0.9 mm) expect the same call: none of them should fail QC
(pen is masked out, a fold is tissue, and a band leaves the median tile in focus).
Any other call counts as wrong.

The stain stratum: synth 1.3 and later draw each slide in the stain of one of the two
measured real images (src/synth/stain.rs, `MEASURED`), each with its own glass: the
scanner's (CMU-1, about 251) or the camera's (the public-domain image, about 226),
jittered by at most 4.5 grey levels. A slide's recorded background (mean over the
channels) above 238 is the scanner style, below it the camera style. Earlier
generators drew stains between the two: "between".

`lesions` measures what issue 12 asks of slide evidence, from each slide's
tiles.csv and truth masks: for every true lesion (a connected component of a
finding's mask) its area, the highest probability of a tile it touches and the
slide's score for that finding, by lesion area; and on slides without the
finding, tiles at p >= 0.5 per mm2 of tissue and the slide score, by biopsy size.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

EXPECTED = {
    "dira": "dira-pattern",
    "pustular-psoriasis": "psoriasiform-pattern",
    "psoriasis": "psoriasiform-pattern",
    "normal": "no-pustular-pattern",
}
ABSTAIN = {"mixed", "qc-fail", "insufficient-tissue"}
COLUMNS = ["slide_id", "label", "stratum", "size", "mpp", "variant", "psoriasiform_change", "artefact", "stain"]
# Mean glass between the camera's (226) and the scanner's (251): see the module doc.
GLASS_SPLIT = 238.0


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


STAIN_STYLES = ("scanner (CMU-1)", "camera (public domain)")


def glass_style(glass: float) -> str:
    """The stain style of a synth 1.3+ slide whose glass (mean over channels) is `glass`."""
    return STAIN_STYLES[0] if glass > GLASS_SPLIT else STAIN_STYLES[1]


def stain_style(truth: dict) -> str:
    major, minor = (int(x) for x in truth["generator_version"].split(".")[:2])
    if (major, minor) < (1, 3):
        return "between"
    return glass_style(sum(truth["stain"]["background"]) / 3)


def labels(setdir: Path) -> None:
    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(COLUMNS)
    for manifest in sorted(setdir.glob("*/manifest.csv")):
        stratum = manifest.parent.name
        for row in csv.DictReader(open(manifest, newline="")):
            truth = json.load(open(manifest.parent / f"{row['slide_id']}.truth.json"))
            art = truth.get("artefacts", {})
            arts = [a for a in ("pen", "fold", "blur") if art.get(a)]
            size = f"{truth['width_um'] / 1000:g}x{truth['height_um'] / 1000:g}"
            ps = "psoriasiform" in truth["findings_present"]
            variant = truth["variant"] if truth["class"] == "dira" else "-"
            w.writerow([row["slide_id"], truth["class"], stratum, size, f"{truth['mpp']:g}", variant,
                        "yes" if ps else "no", "+".join(arts) or "none", stain_style(truth)])


def tables(scored: Path, labels_csv: Path) -> None:
    calls = {r["slide_id"]: r["call"] for r in csv.DictReader(open(scored / "summary.csv", newline=""))}
    rows = [r for r in csv.DictReader(open(labels_csv, newline=""))]
    missing = [r["slide_id"] for r in rows if r["slide_id"] not in calls]
    if missing:
        print(f"{len(missing)} labelled slides have no result: {', '.join(missing[:10])}")
    rows = [r | {"call": calls[r["slide_id"]]} for r in rows if r["slide_id"] in calls]

    def line(name: str, rs: list[dict]) -> str:
        n = len(rs)
        right = sum(r["call"] == EXPECTED[r["label"]] for r in rs)
        abst = sum(r["call"] in ABSTAIN for r in rs)
        dira = [r for r in rs if r["label"] == "dira"]
        other = [r for r in rs if r["label"] != "dira"]
        tp = sum(r["call"] == "dira-pattern" for r in dira)
        fp = sum(r["call"] == "dira-pattern" for r in other)
        lo, hi = wilson(right, n)
        out = f"| {name} | {right}/{n} {right / n:.0%} ({lo:.2f}-{hi:.2f}) | {abst} |"
        if dira:
            lo, hi = wilson(tp, len(dira))
            out += f" {tp}/{len(dira)} ({lo:.2f}-{hi:.2f}) |"
        else:
            out += " - |"
        if other:
            lo, hi = wilson(len(other) - fp, len(other))
            out += f" {len(other) - fp}/{len(other)} ({lo:.2f}-{hi:.2f}) | {fp}/{len(other)} |"
        else:
            out += " - | - |"
        return out

    head = ("| stratum | calls right (95% CI) | abstentions | DIRA sensitivity (95% CI) "
            "| DIRA specificity (95% CI) | false DIRA calls |\n|---|---|---:|---|---|---:|")
    groups = [
        ("all slides", lambda r: "all"),
        ("biopsy size (mm)", lambda r: r["size"]),
        ("source MPP (um/px)", lambda r: r["mpp"]),
        ("class", lambda r: r["label"]),
        ("DIRA variant", lambda r: r["variant"] + (" + psoriasiform" if r["psoriasiform_change"] == "yes" else "")
         if r["label"] == "dira" else None),
        ("artefact", lambda r: r["artefact"]),
        ("stain", lambda r: r.get("stain") or "not recorded"),
        ("protocol stratum", lambda r: r["stratum"]),
    ]
    for title, key in groups:
        by = defaultdict(list)
        for r in rows:
            k = key(r)
            if k is not None:
                by[k].append(r)
        print(f"\n#### By {title}\n\n{head}")
        for k in sorted(by, key=lambda s: float(s.split("x")[0]) if title.startswith("biopsy") else s):
            print(line(k, by[k]))
    wrong = [r for r in rows if r["call"] != EXPECTED[r["label"]]]
    print(f"\n#### Calls not as expected ({len(wrong)})\n")
    for r in wrong:
        print(f"- {r['slide_id']} ({r['stratum']}, {r['variant']}, psoriasiform {r['psoriasiform_change']}): "
              f"{r['call']}, expected {EXPECTED[r['label']]}")


FINDINGS = ["subcorneal_pustule", "acantholysis", "neutrophilic_eccrine_hidradenitis", "psoriasiform"]
AREA_BINS = [0.0, 0.005, 0.02, 0.05, 0.2, float("inf")]  # mm2


def lesions(setdir: Path, scored: Path, labels_csv: Path) -> None:
    import numpy as np
    from PIL import Image
    from scipy import ndimage

    summary = {r["slide_id"]: r for r in csv.DictReader(open(scored / "summary.csv", newline=""))}
    rows = [r for r in csv.DictReader(open(labels_csv, newline="")) if r["slide_id"] in summary]
    found = defaultdict(list)  # (finding, area bin) -> [(max tile p, slide score)]
    negative = defaultdict(list)  # (finding, size) -> [(p>=0.5 tiles per mm2, slide score)]
    for r in rows:
        sid = r["slide_id"]
        truth = json.load(open(setdir / r["stratum"] / f"{sid}.truth.json"))
        tiles = list(csv.DictReader(open(scored / sid / "tiles.csv", newline="")))
        if not tiles:
            continue
        ds = truth["mask_downsample"]
        px_mm2 = (ds * truth["mpp"] / 1000.0) ** 2
        tissue = float(summary[sid]["tissue_mm2"]) or float("nan")
        for f in truth["findings"]:
            key = f["key"]
            probs = np.array([float(t[key]) for t in tiles])
            score = float(summary[sid][f"{key}_score"])
            if not f["present"]:
                negative[(key, r["size"])].append((float((probs >= 0.5).sum()) / tissue, score))
                continue
            mask = np.array(Image.open(setdir / r["stratum"] / f["mask"])) > 0
            comp, n = ndimage.label(mask)
            if n == 0:
                continue
            # Highest probability of a tile touching each component.
            best = np.zeros(n + 1)
            for t, p in zip(tiles, probs):
                x0, y0 = int(t["x"]) // ds, int(t["y"]) // ds
                x1, y1 = -(-(int(t["x"]) + int(t["width"])) // ds), -(-(int(t["y"]) + int(t["height"])) // ds)
                ids = np.unique(comp[y0:y1, x0:x1])
                best[ids] = np.maximum(best[ids], p)
            areas = np.bincount(comp.ravel(), minlength=n + 1) * px_mm2
            for i in range(1, n + 1):
                b = next(j for j in range(len(AREA_BINS) - 1) if areas[i] < AREA_BINS[j + 1])
                found[(key, b)].append((best[i], score))

    def q(v: list[float]) -> str:
        return f"{np.median(v):.2f} ({np.percentile(v, 10):.2f}-{np.percentile(v, 90):.2f})" if v else "-"

    print("\n#### True lesions by area: highest tile probability and slide score (median, 10th-90th percentile)\n")
    print("| finding | lesion area (mm2) | lesions | max tile p | lesions with a tile p >= 0.5 | slide score |")
    print("|---|---|---:|---|---:|---|")
    for key in FINDINGS:
        for b in range(len(AREA_BINS) - 1):
            v = found.get((key, b))
            if not v:
                continue
            hi = "+" if AREA_BINS[b + 1] == float("inf") else f"-{AREA_BINS[b + 1]:g}"
            ps, ss = [x[0] for x in v], [x[1] for x in v]
            k = sum(p >= 0.5 for p in ps)
            print(f"| {key} | {AREA_BINS[b]:g}{hi} | {len(v)} | {q(ps)} | {k}/{len(v)} | {q(ss)} |")
    print("\n#### Slides without the finding, by biopsy size: tiles at p >= 0.5 per mm2 of tissue and slide score\n")
    print("| finding | size (mm) | slides | false tiles per mm2 | slide score | highest slide score |")
    print("|---|---|---:|---|---|---:|")
    for key in FINDINGS:
        for size in sorted({s for (k, s) in negative if k == key}, key=lambda s: float(s.split("x")[0])):
            v = negative[(key, size)]
            fp, ss = [x[0] for x in v], [x[1] for x in v]
            print(f"| {key} | {size} | {len(v)} | {q(fp)} | {q(ss)} | {max(ss):.2f} |")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "labels":
        labels(Path(sys.argv[2]))
    elif len(sys.argv) == 5 and sys.argv[1] == "lesions":
        lesions(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
    elif len(sys.argv) == 4 and sys.argv[1] == "tables":
        tables(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
