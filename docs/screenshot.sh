#!/usr/bin/env bash
# Renders the README's main job and screenshots its report.html index in headless Chromium
# (Debian's `chromium` package), to check by eye that the page and its relative links
# into the slide folders open with no network. Writes docs/report.png.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo run -q -- score fixtures/phantoms --out "$out/phantoms"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$out/profile" --window-size=1280,1800 \
    --screenshot=docs/report.png "file://$out/phantoms/report.html"
