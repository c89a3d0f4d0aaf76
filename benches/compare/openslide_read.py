"""OpenSlide's Python binding reading the same slide region by region, for the
side-by-side figure printed by `cargo bench --bench read_slide`."""
import resource
import sys
import time

import openslide

path, side, region = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
start = time.perf_counter()
slide = openslide.OpenSlide(path)
regions = 0
checksum = 0
for y in range(0, side, region):
    for x in range(0, side, region):
        img = slide.read_region((x, y), 0, (region, region))
        checksum += img.getpixel((region // 2, region // 2))[0]
        regions += 1
secs = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
print(f"openslide: {regions} regions of {region}x{region} in {secs:.1} s rate={regions / secs:.2} rss_mib={rss:.0} (checksum {checksum})")
