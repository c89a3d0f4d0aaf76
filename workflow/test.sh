#!/usr/bin/env bash
# Runs the Snakemake workflow on the committed phantoms plus one broken file, and
# checks that the merged outputs equal one single-process `dirascope score` run:
# summary.csv and errors.csv byte for byte, each slide's tiles.csv byte for byte and
# report.json equal once times and paths are masked.
#
#   workflow/test.sh            # uses target/debug/dirascope (built if missing)
#   DIRASCOPE=path/to/dirascope workflow/test.sh
#
# Installs snakemake from PyPI into target/workflow-venv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${DIRASCOPE:-$ROOT/target/debug/dirascope}
if [ ! -x "$BIN" ]; then
    cargo build --bin dirascope
fi
BIN=$(realpath "$BIN")
VENV=$ROOT/target/workflow-venv
if [ ! -x "$VENV/bin/snakemake" ]; then
    echo "== installing snakemake into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r workflow/requirements.txt
fi
"$VENV/bin/snakemake" --version

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# The slides: the phantoms and a text file posing as an SVS (must be one error row).
mkdir -p "$WORK/slides"
cp fixtures/phantoms/*.tiff "$WORK/slides/"
echo "not a slide" > "$WORK/slides/broken.svs"

echo "== single-process run"
code=0
"$BIN" score "$WORK/slides" --out "$WORK/single" --threads 2 || code=$?
[ "$code" -eq 3 ] || { echo "expected exit 3 (one broken slide), got $code"; exit 1; }

echo "== workflow run"
"$VENV/bin/snakemake" -s workflow/Snakefile --workflow-profile workflow/profiles/local \
    --directory "$WORK" --quiet rules \
    --config slides="$WORK/slides" out="$WORK/wf" dirascope="$BIN"

echo "== comparing"
"$VENV/bin/python" - "$WORK/single" "$WORK/wf/merged" <<'PY'
import json, sys
from pathlib import Path

single, merged = Path(sys.argv[1]), Path(sys.argv[2])
failures = []

def same_bytes(rel):
    a, b = single / rel, merged / rel
    if a.read_bytes() != b.read_bytes():
        failures.append(f"{rel} differs")

def masked(path):
    """report.json without what legitimately differs between runs."""
    def walk(v, key=""):
        if isinstance(v, dict):
            return {k: walk(x, k) for k, x in v.items()
                    if k not in ("timings", "started", "finished", "started_at", "finished_at")}
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, str) and (str(single) in v or str(merged.parent) in v):
            return "<path>"
        return v
    return walk(json.loads(path.read_text()))

same_bytes("summary.csv")
same_bytes("errors.csv")
slides = sorted(p.name for p in single.iterdir() if (p / "report.json").is_file())
merged_slides = sorted(p.name for p in merged.iterdir() if (p / "report.json").is_file())
if slides != merged_slides:
    failures.append(f"slide folders differ: {slides} vs {merged_slides}")
for s in slides:
    same_bytes(f"{s}/tiles.csv")
    if masked(single / s / "report.json") != masked(merged / s / "report.json"):
        failures.append(f"{s}/report.json differs beyond times and paths")
if not (merged / "report.html").is_file():
    failures.append("no merged report.html")
print(f"{len(slides)} slides, 1 error row compared")
if failures:
    print("\n".join(failures))
    sys.exit(1)
print("workflow == single-process run")
PY
