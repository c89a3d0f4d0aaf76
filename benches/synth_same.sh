#!/usr/bin/env bash
# Checks that an exact speed-up of the renderer is exact: two builds render the
# same fixed set of phantoms (every generator kept, every class, artefacts, a
# `--texture-from`, an `--implant-into` and a `--tiles` export) and the outputs
# must be identical byte for byte (`diff -r`). Used with synth_ab.sh, which
# times the two builds:
#
#   cp target/release/dirascope /tmp/dirascope-before    # before the change
#   cargo build --release --bin dirascope                 # after it
#   benches/synth_same.sh /tmp/dirascope-before target/release/dirascope
#
# The real fixtures (../shared/fixtures/real, or REAL) are used where present;
# without them those two cases are skipped, and said so. About 5 minutes on 2 cores.
#
# LINE is added to every case drawn by the current line (the default generator): when
# a change starts a new generator, LINE="--generator 1.9" checks that the previous one
# (the old binary's default) is kept byte for byte.
set -euo pipefail
a=$(realpath "${1:?usage: benches/synth_same.sh BINARY_A BINARY_B}")
b=$(realpath "${2:?usage: benches/synth_same.sh BINARY_A BINARY_B}")
cd "$(dirname "$0")/.."
REAL=${REAL:-../shared/fixtures/real}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
L=${LINE:-}
cases=(
    "dira-line|--class dira --seed 1 --mpp 0.5 --width-mm 2 --height-mm 1.5 $L"
    "pustular-line-fold|--class pustular-psoriasis --seed 2 --mpp 1.0 --width-mm 3 --height-mm 3 --artefacts fold $L"
    "psoriasis-line-pen|--class psoriasis --seed 3 --mpp 0.5 --width-mm 2 --height-mm 2 --artefacts pen $L"
    "normal-line-blur|--class normal --seed 4 --mpp 0.25 --width-mm 1 --height-mm 1 --artefacts blur $L"
    "dira-line-coils|--class dira --seed 11 --mpp 1.0 --width-mm 4 --height-mm 3 $L"
    "dira-1.9|--class dira --seed 12 --mpp 1.0 --width-mm 4 --height-mm 3 --generator 1.9"
    "dira-1.8|--class dira --seed 5 --mpp 0.5 --width-mm 2 --height-mm 2 --generator 1.8"
    "pustular-1.6|--class pustular-psoriasis --seed 6 --mpp 0.5 --width-mm 2 --height-mm 2 --generator 1.6"
    "psoriasis-1.4|--class psoriasis --seed 7 --mpp 1.0 --width-mm 3 --height-mm 2 --generator 1.4"
    "dira-0.3|--class dira --seed 8 --mpp 0.5 --width-mm 2 --height-mm 2 --generator 0.3"
    "tiles-line|--count 4 --seed 100 --tiles --tile-px 224 --tile-mpp 1.0 $L"
)
if [ -e "$REAL/CMU-1-Small-Region.svs" ]; then
    cases+=("texture-cmu|--class dira --seed 9 --texture-from $REAL/CMU-1-Small-Region.svs $L")
    cases+=("implant-cmu|--implant-into $REAL/CMU-1-Small-Region.svs --class dira --seed 3 $L")
else
    echo "synth_same: $REAL absent, --texture-from and --implant-into not checked"
fi
for side in a b; do
    bin=${!side}
    for c in "${cases[@]}"; do
        name=${c%%|*}
        # shellcheck disable=SC2086
        RAYON_NUM_THREADS=2 "$bin" synth ${c#*|} --out "$out/$side/$name" >/dev/null
    done
done
if diff -r "$out/a" "$out/b" >/dev/null; then
    echo "synth_same: ${#cases[@]} cases, $(find "$out/a" -type f | wc -l) files, identical"
else
    diff -rq "$out/a" "$out/b" | head -20
    echo "synth_same: outputs differ" >&2
    exit 1
fi
