#!/usr/bin/env bash
# Side-by-side synth speed of two builds (or two generators of one build), runs
# alternating so that both see the same machine load. Each argument is
# BINARY:GENERATOR, e.g. an older build kept aside and this one:
#
#   cargo build --release --bin dirascope
#   benches/synth_ab.sh /tmp/dirascope-before:0.3 target/release/dirascope:1.2 [runs] [mm] [seed]
#
# Renders dira seed 1 (or the seed given) at 0.5 um/px, mm x mm (default 4), 2 threads, and prints
# wall and CPU seconds per run, then the median CPU seconds of each side and
# their ratio (B / A). CPU seconds are the figure to compare on a shared machine.
# IMPLANT_INTO=SLIDE times `synth --implant-into SLIDE --count 8` (seeds from the seed
# given, whole slide) instead, e.g. generator 1.7's implants against 1.8's:
#
#   IMPLANT_INTO=../shared/fixtures/real/CMU-1-Small-Region.svs \
#       benches/synth_ab.sh target/release/dirascope:1.7 target/release/dirascope:1.8 3 4 200
set -euo pipefail
a=$1
b=$2
runs=${3:-3}
mm=${4:-4}
seed=${5:-1}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cpu_a=()
cpu_b=()
run() {
    local bin=${1%:*} generator=${1##*:}
    rm -rf "$out/slide"
    local what=(--class dira --mpp 0.5 --width-mm "$mm" --height-mm "$mm") name="dira-$seed ${mm}x${mm} mm"
    if [ -n "${IMPLANT_INTO:-}" ]; then
        what=(--implant-into "$IMPLANT_INTO" --count 8) name="8 implants from seed $seed"
    fi
    RAYON_NUM_THREADS=2 /usr/bin/time -f "%e %U %M" -o "$out/time.txt" "$bin" synth \
        --generator "$generator" --seed "$seed" "${what[@]}" --out "$out/slide" > /dev/null
    read -r wall user rss < "$out/time.txt"
    echo "$1  $name: $wall s wall, $user CPU s, peak RSS $((rss / 1024)) MiB" >&2
    echo "$user"
}
for _ in $(seq "$runs"); do
    cpu_a+=("$(run "$a")")
    cpu_b+=("$(run "$b")")
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
ma=$(median "${cpu_a[@]}")
mb=$(median "${cpu_b[@]}")
mpx=$(awk -v mm="$mm" 'BEGIN {print (mm * 2000) ^ 2 / 1e6}')
[ -n "${IMPLANT_INTO:-}" ] && mpx=0 # the slide's size is not known here: no Mpx figure
awk -v a="$a" -v b="$b" -v ma="$ma" -v mb="$mb" -v mpx="$mpx" -v cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)" 'BEGIN {
    printf "CPU:%s\n", cpu
    printf "A %s: median %.2f CPU s", a, ma
    if (mpx > 0) printf " (%.2f Mpx per CPU s)", mpx / ma
    printf "\nB %s: median %.2f CPU s", b, mb
    if (mpx > 0) printf " (%.2f Mpx per CPU s)", mpx / mb
    printf "\n"
    printf "B / A: %.3f\n", mb / ma
}'
