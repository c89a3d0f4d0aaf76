#!/usr/bin/env bash
# Guards: `dirascope synth` stays streaming (peak RSS bounded, no whole level held)
# and fast on a 10 mm x 10 mm phantom at 0.25 µm/px (40,000 x 40,000 px).
# Prints wall time and peak RSS from /usr/bin/time -v. Usage: benches/synth_large.sh [class] [seed]
set -euo pipefail
cd "$(dirname "$0")/.."
class=${1:-dira}
seed=${2:-1}
cargo build --release --bin dirascope
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
/usr/bin/time -v target/release/dirascope synth --class "$class" --seed "$seed" \
    --mpp 0.25 --width-mm 10 --height-mm 10 --out "$out" 2> "$out/time.txt"
grep -E "Elapsed \(wall clock\)|Maximum resident set size|Percent of CPU" "$out/time.txt"
ls -l "$out"
