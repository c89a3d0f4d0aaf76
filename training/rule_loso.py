"""Leave-one-set-out comparison of slide-rule variants on scored phantom sets.

A slide-rule change (how tile probabilities become finding scores, the calibration
targets) needs no new weights: `dirascope calibrate` refits the thresholds from a score
run's tiles.csv, and `dirascope recall` recomputes the calls. With several scored sets
of the protocol (the calibration set and validation sets already spent, so none of them
is reported), each variant is fitted on all sets but one and called on the one left
out, in turn; the pooled calls estimate how the variant would do on a fresh set, from
five times as many slides as one calibration set holds. A variant can also be applied
as it is, without refitting (the shipped rule).

    training/.venv/bin/python training/rule_loso.py --bin target/release/dirascope \
        --work /tmp/loso \
        --set cal=P/cal-scored-r212:P/cal-labels.csv --set val7=... \
        --variant "shipped=models/dirascope-v2:asis" \
        --variant "top2=DIR:1.0" --variant "top2-spec99=DIR:0.99" ...

A variant is NAME=MODEL_DIR:MODE, MODE `asis` (the folder's rule as it stands) or a
target specificity for calibrate (target sensitivity 0.95, the folder's no-call margin,
as training/protocol.sh calibrates). Every MODEL_DIR must hold the ONNX the sets were
scored with. Prints, per variant, the calls right, DIRA slides called DIRA, false DIRA
calls and abstentions (`mixed`), in all and per set left out, and writes them as JSON
to WORK/loso.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import tomllib
from pathlib import Path

from protocol_tables import EXPECTED


def run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}{done.stdout}")


def read_labels(path: Path) -> list[dict]:
    return list(csv.DictReader(open(path, newline="")))


def write_labels(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def tally(scored: Path, labels: list[dict]) -> dict:
    calls = {r["slide_id"]: r for r in csv.DictReader(open(scored / "summary.csv", newline=""))}
    t = {"slides": 0, "right": 0, "dira": 0, "dira_called": 0, "other": 0, "false_dira": 0,
         "mixed": 0, "missed": [], "false": []}
    for r in labels:
        call = calls[r["slide_id"]]["call"]
        t["slides"] += 1
        t["right"] += call == EXPECTED[r["label"]]
        t["mixed"] += call == "mixed"
        if r["label"] == "dira":
            t["dira"] += 1
            if call == "dira-pattern":
                t["dira_called"] += 1
            else:
                t["missed"].append(f"{r['slide_id']} ({call})")
        else:
            t["other"] += 1
            if call == "dira-pattern":
                t["false_dira"] += 1
                t["false"].append(r["slide_id"])
    return t


def add(a: dict, b: dict) -> dict:
    return {k: a[k] + b[k] for k in a}


def thresholds(model: Path) -> str:
    rule = tomllib.loads((model / "model.toml").read_text())["rule"]
    return (f"DIRA {rule['dira_threshold']}, psoriasiform {rule['psoriasiform_threshold']}, "
            f"margin {rule['no_call_margin']}")


def ceiling(scored: Path, labels: list[dict]) -> dict:
    """What the variant's DIRA score can do at all, in hindsight, on every slide: its
    AUROC (DIRA against the rest) and the fewest DIRA errors (missed + false) any one
    threshold gives, no-call band ignored. Descriptive only: nothing is fitted on it."""
    score = {r["slide_id"]: float(r["dira_score"]) for r in csv.DictReader(open(scored / "summary.csv", newline=""))}
    pos = [score[r["slide_id"]] for r in labels if r["label"] == "dira"]
    neg = [score[r["slide_id"]] for r in labels if r["label"] != "dira"]
    pairs = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    best = min((sum(p < t for p in pos) + sum(n >= t for n in neg), t) for t in sorted(set(pos + neg)) + [2.0])
    return {"auroc": pairs / (len(pos) * len(neg)), "fewest_errors": best[0], "at": best[1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="dirascope binary")
    ap.add_argument("--work", required=True, type=Path, help="scratch folder (emptied)")
    ap.add_argument("--set", action="append", required=True, help="NAME=SCORED_DIR:LABELS_CSV")
    ap.add_argument("--variant", action="append", required=True, help="NAME=MODEL_DIR:asis|SPECIFICITY")
    args = ap.parse_args()

    sets = {}
    for s in args.set:
        name, rest = s.split("=", 1)
        scored, labels = rest.split(":", 1)
        sets[name] = (Path(scored), read_labels(Path(labels)))
    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)

    # One merged run per fold (every set but one), shared by all variants.
    folds = {}
    for left in sets:
        rest = [n for n in sets if n != left]
        merged = args.work / f"fit-without-{left}"
        run([args.bin, "merge", *[str(sets[n][0]) for n in rest], "--out", str(merged)])
        labels = args.work / f"fit-without-{left}.csv"
        write_labels([r for n in rest for r in sets[n][1]], labels)
        folds[left] = (merged, labels)

    everything = args.work / "all-sets"
    run([args.bin, "merge", *[str(s[0]) for s in sets.values()], "--out", str(everything)])
    all_labels = [r for s in sets.values() for r in s[1]]

    report = {}
    for v in args.variant:
        name, rest = v.split("=", 1)
        model, mode = rest.rsplit(":", 1)
        per_set = {}
        for left, (merged, labels) in folds.items():
            rule = Path(model)
            if mode != "asis":
                rule = args.work / f"{name}-without-{left}"
                run([args.bin, "calibrate", "--results", str(merged), "--labels", str(labels),
                     "--model", model, "--out", str(rule), "--target-sensitivity", "0.95",
                     "--target-specificity", mode])
            # recall rewrites a run in place: call a hard-linked copy of the left-out set.
            copy = args.work / f"{name}-on-{left}"
            run(["cp", "-al", str(sets[left][0]), str(copy)])
            run([args.bin, "recall", str(copy), "--model", str(rule)])
            per_set[left] = tally(copy, sets[left][1]) | {"rule": thresholds(rule)}
            shutil.rmtree(copy)
        total = None
        for t in per_set.values():
            t = {k: v for k, v in t.items() if k != "rule"}
            total = t if total is None else add(total, t)
        copy = args.work / f"{name}-on-all"
        run(["cp", "-al", str(everything), str(copy)])
        run([args.bin, "recall", str(copy), "--model", model])
        hindsight = ceiling(copy, all_labels)
        shutil.rmtree(copy)
        report[name] = {"total": total, "per_set": per_set, "hindsight": hindsight}
        print(f"{name}: {total['right']}/{total['slides']} right, DIRA {total['dira_called']}/{total['dira']}, "
              f"false DIRA {total['false_dira']}/{total['other']}, mixed {total['mixed']}")
        for left, t in per_set.items():
            print(f"    {left:6} {t['right']:3}/{t['slides']} DIRA {t['dira_called']}/{t['dira']} "
                  f"false {t['false_dira']} mixed {t['mixed']}  [{t['rule']}]")
        print(f"    missed: {', '.join(total['missed']) or '-'}")
        print(f"    false DIRA: {', '.join(total['false']) or '-'}")
        print(f"    hindsight on all {len(all_labels)} slides: DIRA-score AUROC {hindsight['auroc']:.4f}, "
              f"fewest DIRA errors at one threshold {hindsight['fewest_errors']} (at {hindsight['at']:.3f})", flush=True)
    (args.work / "loso.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
