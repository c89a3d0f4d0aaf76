"""Compare slide-score rules on a calibration set, from a score run's tiles.csv.

`dirascope score CAL --out SCORED` writes every tile's probabilities; this
recomputes, for each candidate way of turning them into per-finding slide
scores, the DIRA-pattern score sqrt(P * max(A, H)) of every slide, its AUROC
(DIRA against the rest), and the thresholds that separate the calibration
classes with the no-call margin, with the calls they give. It mirrors
src/aggregate.rs (top-k-mean, top-n-mean, max-3x3-mean) for choosing a rule;
the Rust code is what scores slides.

    training/.venv/bin/python training/rule_candidates.py SCORED CAL/manifest.csv [--margin 0.03] [--detail NAME]
        [--shape pustule-and-one|two-of-three]
        [--apply OTHER_SCORED]

--apply prints, for the --detail candidate with the thresholds fitted here, the
scores and call of every slide scored in OTHER_SCORED (class from the slide id's
prefix): how a rule fitted on small calibration slides carries to other sets, such
as large biopsies.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np

FINDINGS = ["subcorneal_pustule", "acantholysis", "neutrophilic_eccrine_hidradenitis", "psoriasiform"]
EXPECTED = {
    "dira": "dira-pattern",
    "pustular-psoriasis": "psoriasiform-pattern",
    "psoriasis": "psoriasiform-pattern",
    "normal": "no-pustular-pattern",
}
# Slide-score method per finding (P, A, H, S): topk = top 5% (at least 5),
# topN = mean of the N highest tiles, max3x3 = largest 3x3 neighbourhood mean.
CANDIDATES = {
    "top-k mean (all)": ["topk", "topk", "topk", "topk"],
    "P,A top-1": ["top1", "top1", "topk", "topk"],
    "P,A top-2 mean": ["top2", "top2", "topk", "topk"],
    "P,A top-3 mean": ["top3", "top3", "topk", "topk"],
    "P,A,H top-2 mean": ["top2", "top2", "top2", "topk"],
    "P,A max-3x3-mean": ["max3x3", "max3x3", "topk", "topk"],
    "P,A,H max-3x3-mean": ["max3x3", "max3x3", "max3x3", "topk"],
    "P,A,H max-3x3, S top-10": ["max3x3", "max3x3", "max3x3", "top10"],
    "all max-3x3-mean": ["max3x3", "max3x3", "max3x3", "max3x3"],
    # Lesion evidence (aggregate.rs `lesion`): 8-connected tiles >= 0.5, the lesion's top-n
    # mean (its peak for n = 1), optionally lowered in log-odds by ln(tiles / reference).
    "P,A,H lesion peak, S max-3x3": ["lesion1", "lesion1", "lesion1", "max3x3"],
    "P,A,H lesion top-2, S max-3x3": ["lesion2", "lesion2", "lesion2", "max3x3"],
    "P,A,H lesion peak /area(60), S max-3x3": ["lesion1r60", "lesion1r60", "lesion1r60", "max3x3"],
    "P,A,H lesion top-2 /area(60), S max-3x3": ["lesion2r60", "lesion2r60", "lesion2r60", "max3x3"],
}
# DIRA-score shapes (aggregate.rs DiraRule): P with the stronger of A, H; or any two of P, A, H.
SHAPES = ["pustule-and-one", "two-of-three"]


def auroc(scores, positive) -> float:
    s = np.asarray(scores, float)
    y = np.asarray(positive, bool)
    pos, neg = s[y], np.sort(s[~y])
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    below = np.searchsorted(neg, pos, "left") + np.searchsorted(neg, pos, "right")
    return float(below.sum() / (2.0 * len(pos) * len(neg)))


def read_tiles(path: Path):
    rows = list(csv.DictReader(open(path, newline="")))
    cells = [(int(r["col"]), int(r["row"])) for r in rows]
    probs = np.array([[float(r[k]) for k in FINDINGS] for r in rows]).reshape(-1, 4)
    return cells, probs


def top_mean(values: np.ndarray, n: int) -> float:
    n = min(n, len(values))
    return float(np.sort(values)[::-1][:n].mean()) if n else 0.0


def max_3x3_mean(cells, values) -> float:
    at = dict(zip(cells, values))
    best = 0.0
    for c, r in cells:
        near = [at[(c + dc, r + dr)] for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (c + dc, r + dr) in at]
        best = max(best, sum(near) / len(near))
    return best


def lesion(cells, values, top: int, reference: int, threshold: float = 0.5) -> float:
    at = {c: v for c, v in zip(cells, values) if v >= threshold}
    if not at:
        return float(max(values)) if len(values) else 0.0
    seen, best = set(), None
    for start in sorted(at):
        if start in seen:
            continue
        seen.add(start)
        stack, members = [start], []
        while stack:
            c, r = stack.pop()
            members.append(at[(c, r)])
            for dc in (-1, 0, 1):
                for dr in (-1, 0, 1):
                    n = (c + dc, r + dr)
                    if n in at and n not in seen:
                        seen.add(n)
                        stack.append(n)
        members.sort(reverse=True)
        m = float(np.mean(members[: max(1, min(top, len(members)))]))
        best = m if best is None else max(best, m)
    n = len(values)
    if reference and n > reference:
        s = min(max(best, 1e-9), 1 - 1e-9)
        logit = math.log(s / (1 - s)) - math.log(n / reference)
        best = 1 / (1 + math.exp(-logit))
    return best


def slide_scores(cells, probs, methods) -> list[float]:
    n = len(probs)
    k = min(n, max(5, math.ceil(0.05 * n)))
    out = []
    for j, m in enumerate(methods):
        v = probs[:, j]
        if m == "topk":
            out.append(top_mean(v, k))
        elif m == "max3x3":
            out.append(max_3x3_mean(cells, v))
        elif m.startswith("lesion"):
            top, _, ref = m[6:].partition("r")
            out.append(lesion(cells, v, int(top), int(ref or 0)))
        else:
            out.append(top_mean(v, int(m[3:])))
    return out


def dira_score(s, shape: str = "pustule-and-one") -> float:
    if shape == "two-of-three":
        return sorted([max(s[0], 0.0), max(s[1], 0.0), max(s[2], 0.0)])[1]
    return math.sqrt(max(s[0], 0.0) * max(s[1], s[2], 0.0))


def separating_threshold(pos, neg, margin):
    """Middle of the threshold range (0.005 grid) that puts the most positives at or above
    T + margin while every negative stays below T - margin: (T, positives)."""
    best_n, ts = -1, []
    for t in np.arange(0.05, 0.96, 0.005):
        if t - margin <= max(neg):
            continue
        n = int((np.asarray(pos) >= t + margin).sum())
        if n > best_n:
            best_n, ts = n, [t]
        elif n == best_n:
            ts.append(t)
    if not ts:
        return None
    return round((ts[0] + ts[-1]) / 2, 3), best_n, ts[0], ts[-1]


def band(x, t, m):
    return "pos" if x >= t + m else ("neg" if x < t - m else "band")


def call(d, s, td, ts, m):
    """The rule in src/aggregate.rs: a positive DIRA score calls DIRA."""
    bd, bs = band(d, td, m), band(s, ts, m)
    if bd == "pos":
        return "dira-pattern"
    if bd == "band":
        return "mixed"
    return {"pos": "psoriasiform-pattern", "neg": "no-pustular-pattern", "band": "mixed"}[bs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scored", type=Path, help="--out folder of dirascope score")
    ap.add_argument("manifest", type=Path, help="the set's manifest.csv (slide_id, path, class)")
    ap.add_argument("--margin", type=float, default=0.03, help="no-call margin")
    ap.add_argument("--detail", default=None, help="print every slide's scores for this candidate")
    ap.add_argument("--apply", type=Path, default=None, help="another score --out folder to call with --detail's thresholds")
    ap.add_argument("--shape", choices=SHAPES, default="pustule-and-one", help="DIRA-score shape")
    args = ap.parse_args()

    labels = {r["slide_id"]: r.get("class") or r["label"] for r in csv.DictReader(open(args.manifest, newline=""))}
    ids = [i for i in sorted(labels) if (args.scored / i / "tiles.csv").exists()]
    tiles = {i: read_tiles(args.scored / i / "tiles.csv") for i in ids}
    lab = np.array([labels[i] for i in ids])
    is_dira = lab == "dira"
    is_psor = (lab == "psoriasis") | (lab == "pustular-psoriasis")
    print(f"DIRA score shape {args.shape}; {len(ids)} slides: " + ", ".join(f"{c} {(lab == c).sum()}" for c in EXPECTED))
    print("| candidate | AUROC DIRA score | DIRA scores of DIRA slides | highest non-DIRA | T_dira | T_psoriasiform | calls right | DIRA called |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for name, methods in CANDIDATES.items():
        s = np.array([slide_scores(*tiles[i], methods) for i in ids])
        d = np.array([dira_score(x, args.shape) for x in s])
        td = separating_threshold(d[is_dira], d[~is_dira], args.margin)
        ts = separating_threshold(s[is_psor, 3], s[lab == "normal", 3], args.margin)
        dd = " ".join(f"{x:.2f}" for x in np.sort(d[is_dira]))
        if td is None or ts is None:
            print(f"| {name} | {auroc(d, is_dira):.3f} | {dd} | {d[~is_dira].max():.3f} | none | none | | |")
            continue
        calls = [call(d[i], s[i, 3], td[0], ts[0], args.margin) for i in range(len(ids))]
        right = sum(calls[i] == EXPECTED[lab[i]] for i in range(len(ids)))
        dira_calls = sum(calls[i] == "dira-pattern" for i in range(len(ids)) if is_dira[i])
        print(f"| {name} | {auroc(d, is_dira):.3f} | {dd} | {d[~is_dira].max():.3f} | {td[0]:.3f} | {ts[0]:.3f} "
              f"| {right}/{len(ids)} | {dira_calls}/{is_dira.sum()} |")
        if name == args.detail:
            for i, sid in enumerate(ids):
                print(f"    {sid:28s} {calls[i]:22s} D {d[i]:.3f} P {s[i, 0]:.3f} A {s[i, 1]:.3f} H {s[i, 2]:.3f} S {s[i, 3]:.3f}")
            if args.apply:
                print(f"  applied to {args.apply} (T_dira {td[0]:.3f}, T_psoriasiform {ts[0]:.3f}):")
                for path in sorted(args.apply.glob("*/tiles.csv")):
                    sid = path.parent.name
                    cells, probs = read_tiles(path)
                    x = slide_scores(cells, probs, methods)
                    got = call(dira_score(x, args.shape), x[3], td[0], ts[0], args.margin)
                    want = EXPECTED.get(sid.rsplit("-", 1)[0], "?")
                    print(f"    {sid:28s} {len(probs):5d} tiles  {got:22s} (want {want:22s}) D {dira_score(x, args.shape):.3f} "
                          f"P {x[0]:.3f} A {x[1]:.3f} H {x[2]:.3f} S {x[3]:.3f}")


if __name__ == "__main__":
    main()
