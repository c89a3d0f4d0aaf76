#!/usr/bin/env bash
# Guards dirascope's end-to-end cost and its agreement with an independent reference:
# `dirascope score` and benches/compare/reference_pipeline.py (tifffile + numpy +
# onnxruntime: the same tissue mask, grid, resampling, preprocessing and top-k means)
# score the same slide with the same model and thread count, one after the other, in
# one run. Prints each one's wall time and peak RSS (/usr/bin/time -v) and the ratios,
# whether they scored the same tiles, the largest per-tile probability difference
# (must be <= 1e-3: exits 1 otherwise), the top-k means and slide scores side by
# side, and where dirascope's time goes.
#
# The slide, a 15 mm x 15 mm DIRA phantom at 0.5 um/px (30,000 x 30,000 px, JPEG tiles),
# is generated once and cached. So is a Deflate copy of it (every level decoded once
# and stored losslessly): on the copy both pipelines decode the same pixels, which
# would separate pipeline differences from JPEG decoder differences (since dirascope
# decodes baseline JPEG exactly as libjpeg-turbo does, the two runs agree).
#
#   benches/score_compare.sh [--no-deflate]
# env: DIRASCOPE_COMPARE_DIR (cache and outputs, default target/score-compare),
#      DIRASCOPE_COMPARE_THREADS (2), DIRASCOPE_COMPARE_MM (15), DIRASCOPE_COMPARE_SEED (7),
#      DIRASCOPE_COMPARE_OVERLAP (0: tiles edge to edge; 112 is the bundled rule's own),
#      PYTHON (benches/compare/.venv/bin/python; see benches/compare/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${DIRASCOPE_COMPARE_DIR:-target/score-compare}
threads=${DIRASCOPE_COMPARE_THREADS:-2}
mm=${DIRASCOPE_COMPARE_MM:-15}
seed=${DIRASCOPE_COMPARE_SEED:-7}
overlap=${DIRASCOPE_COMPARE_OVERLAP:-0}
model=models/dirascope-phantom-v1
py=${PYTHON:-benches/compare/.venv/bin/python}
deflate=yes
[[ "${1:-}" == --no-deflate ]] && deflate=no
[[ -x /usr/bin/time ]] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
[[ -x $py ]] || { echo "needs $py with benches/compare/requirements.txt (see benches/compare/README.md)" >&2; exit 2; }
mkdir -p "$dir"

seconds() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.0f", b - a}'; }
start=$(date +%s.%N)
cargo build --release --bin dirascope 2>&1 | tail -n 1
echo "release build: $(seconds "$start") s"
bin=target/release/dirascope

slide="$dir/slides/dira-$seed.tiff"
if [[ ! -f $slide ]]; then
    start=$(date +%s.%N)
    "$bin" synth --class dira --seed "$seed" --mpp 0.5 --width-mm "$mm" --height-mm "$mm" \
        --out "$dir/slides" > /dev/null
    echo "generated $slide in $(seconds "$start") s"
fi
copy="$dir/deflate/dira-$seed.tiff"
if [[ $deflate == yes && ! -f $copy ]]; then
    mkdir -p "$dir/deflate"
    start=$(date +%s.%N)
    "$py" benches/compare/reencode_deflate.py "$slide" "$copy"
    echo "wrote the Deflate copy $copy in $(seconds "$start") s"
fi

# One slide through both pipelines, then the figures. Prints `parity: yes|no ...` last.
compare() {
    local label=$1 path=$2 out=$dir/run/$3
    rm -rf "$out" && mkdir -p "$out"
    cat "$path" > /dev/null # same page cache state for both
    # Both tile with the same overlap: 0 (edge to edge) unless DIRASCOPE_COMPARE_OVERLAP
    # says otherwise (model 1.5.0's rule declares overlap_px = 112, four times the tiles).
    /usr/bin/time -v -o "$out/rust.time" "$bin" score "$path" --out "$out/rust" \
        --model "$model" --threads "$threads" --overlap "$overlap" > "$out/rust.log" 2>&1
    /usr/bin/time -v -o "$out/python.time" "$py" benches/compare/reference_pipeline.py \
        "$path" "$model" --out "$out/python.csv" --threads "$threads" --overlap "$overlap" \
        > "$out/python.log" 2>&1
    "$py" benches/compare/compare_runs.py --label "$label" --slide "$path" --model "$model" \
        --rust-dir "$out/rust/dira-$seed" --rust-time "$out/rust.time" \
        --python-csv "$out/python.csv" --python-log "$out/python.log" \
        --python-time "$out/python.time" --threads "$threads"
}

compare "JPEG slide (as scanned)" "$slide" jpeg | tee "$dir/jpeg.txt"
tail -n 1 "$dir/jpeg.txt" | grep -q '^parity: yes' || { echo "FAIL: pipelines disagree by more than 1e-3 on the JPEG slide"; exit 1; }
if [[ $deflate == yes ]]; then
    echo
    compare "Deflate copy (exact decoding)" "$copy" deflate | tee "$dir/deflate.txt"
    tail -n 1 "$dir/deflate.txt" | grep -q '^parity: yes' || { echo "FAIL: pipelines disagree on the Deflate copy"; exit 1; }
fi
