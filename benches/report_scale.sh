#!/usr/bin/env bash
# Guards issue 14's "report.html does not scale": the size of OUT/report.html and of
# each OUT/<id>/report.html for a batch of N slides, and how long headless Chromium
# takes to load the index.
#
#   benches/report_scale.sh [BIN] [N] [WORK]
#
# BIN defaults to target/debug/dirascope, N to 200, WORK to a temporary folder;
# TRIES (default 3) load timings, each given at most LOAD_TIMEOUT seconds (120).
# Scoring N slides for real would take long on two cores, so it renders four small
# phantoms (one per class, 1.5 x 1.5 mm at 1 um/px), scores them, replicates their
# slide folders (hard links) under N distinct ids (report.json's slide id, and the
# slide page's text, rewritten), and has `dirascope merge` write the batch pages
# through the product's own code path. Needs `chromium` (Debian's package) and jq.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/debug/dirascope}")
n=${2:-200}
work=${3:-$(mktemp -d)}
mkdir -p "$work"
echo "binary $bin, $n slides, work folder $work"

"$bin" synth --count 4 --width-mm 1.5 --height-mm 1.5 --mpp 1.0 --out "$work/synth" >/dev/null
"$bin" score "$work/synth" --out "$work/scored" --quiet 2>/dev/null ||
    "$bin" score "$work/synth" --out "$work/scored" >/dev/null
mapfile -t sources < <(tail -n +2 "$work/scored/summary.csv" | cut -d, -f1)

rm -rf "$work/replicas" "$work/out"
mkdir -p "$work/replicas"
echo slide_id >"$work/replicas/summary.csv"
echo slide_id,path,stage,kind,message >"$work/replicas/errors.csv"
for ((i = 0; i < n; i++)); do
    src=${sources[i % ${#sources[@]}]}
    id=$(printf 'slide-%04d-%s' "$i" "$src")
    cp -al "$work/scored/$src" "$work/replicas/$id"
    jq --arg id "$id" '.slide.id = $id' "$work/scored/$src/report.json" >"$work/replicas/$id/report.json.new"
    mv "$work/replicas/$id/report.json.new" "$work/replicas/$id/report.json"
    if [ -f "$work/scored/$src/report.html" ]; then
        sed "s/$src/$id/g" "$work/scored/$src/report.html" >"$work/replicas/$id/report.html.new"
        mv "$work/replicas/$id/report.html.new" "$work/replicas/$id/report.html"
    fi
    echo "$id" >>"$work/replicas/summary.csv"
done
start=$(date +%s.%N)
"$bin" merge "$work/replicas" --out "$work/out" >/dev/null || true
echo "merge (writes the batch pages): $(echo "$(date +%s.%N) - $start" | bc) s"

index_bytes=$(stat -c %s "$work/out/report.html")
echo "index OUT/report.html: $index_bytes bytes ($(echo "scale=2; $index_bytes / 1048576" | bc) MiB)"
largest=0
for page in "$work"/out/*/report.html; do
    [ -f "$page" ] || continue
    size=$(stat -c %s "$page")
    ((size > largest)) && largest=$size
done
echo "largest slide page OUT/<id>/report.html: $largest bytes"
folders=("$work"/out/*/)
echo "one slide folder with its images (${folders[0]}): $(du -sb "${folders[0]}" | cut -f1) bytes"

if ! command -v chromium >/dev/null; then
    echo "chromium not installed: no load time measured"
    exit 0
fi
# Load time: wall time of `chromium --headless --dump-dom`, which prints the DOM once
# the page has loaded, minus the same for an empty page (the browser's own start).
load() {
    local start
    start=$(date +%s.%N)
    timeout "${LOAD_TIMEOUT:-120}" chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$work/profile" --dump-dom "file://$1" >/dev/null 2>&1 ||
        echo "  (chromium exited $? on $1)" >&2
    echo "$(date +%s.%N) - $start" | bc
}
# In-page timing: a wrapper loads the index in a frame tall enough that every
# thumbnail is in view (so none waits on lazy loading) and records the time from
# its own start to the frame's load event, which waits for every image (the
# browser itself then takes most of a minute to exit with a window that tall).
cat >"$work/timing.html" <<PAGE
<!DOCTYPE html><html><body><script>
const t0 = performance.now();
const f = document.createElement('iframe');
f.style = 'width:1280px;height:60000px;border:0';
f.onload = () => {
  const imgs = [...f.contentDocument.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute('data-result',
    'loaded in ' + (performance.now() - t0).toFixed(0) + ' ms, ' + ok + ' of ' + imgs.length + ' images decoded');
};
f.src = 'file://$work/out/report.html';
document.body.appendChild(f);
</script></body></html>
PAGE
for ((try = 1; try <= ${TRIES:-3}; try++)); do
    result=$(timeout "${LOAD_TIMEOUT:-120}" chromium --headless --no-sandbox --disable-gpu \
        --disable-quic --no-first-run --disable-background-networking \
        --disable-component-update --disable-sync --allow-file-access-from-files \
        --window-size=1280,60000 --user-data-dir="$work/profile" \
        --dump-dom "file://$work/timing.html" 2>/dev/null |
        grep -o 'data-result="[^"]*"' || echo "no result (timed out?)")
    echo "try $try, in-page: index $result"
done

echo '<!DOCTYPE html><html><body></body></html>' >"$work/empty.html"
load "$work/empty.html" >/dev/null # warm the browser's files
for ((try = 1; try <= ${TRIES:-3}; try++)); do
    empty=$(load "$work/empty.html")
    index=$(load "$work/out/report.html")
    echo "try $try: empty page ${empty} s, index ${index} s, index load $(echo "$index - $empty" | bc) s"
done
