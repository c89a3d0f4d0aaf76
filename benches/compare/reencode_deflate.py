"""Losslessly compressed copy of a JPEG-tiled pyramidal TIFF, for `benches/score_compare.sh`.

Every level is decoded tile by tile (libjpeg-turbo through imagecodecs) and written again
with Deflate (zlib, TIFF compression 8), same tile size, level sizes and resolution
tags. Both pipelines then decode the copy exactly, so any difference left between their
per-tile probabilities is the pipelines', not the JPEG decoders'. Streams tile by tile;
no level is held whole.

    reencode_deflate.py IN.tiff OUT.tiff
"""
import os
import sys

import numpy as np
import tifffile


def main():
    src, dst = sys.argv[1], sys.argv[2]
    tmp = dst + ".partial"
    with tifffile.TiffFile(src) as tif, tifffile.TiffWriter(tmp, bigtiff=True) as out:
        fd = os.open(src, os.O_RDONLY)
        levels = [p for p in tif.pages if p.is_tiled and p.samplesperpixel == 3]
        for i, page in enumerate(levels):

            def tiles(page=page):
                for index, (offset, n) in enumerate(zip(page.dataoffsets, page.databytecounts)):
                    if n == 0:
                        yield np.full((page.tilelength, page.tilewidth, 3), 255, np.uint8)
                    else:
                        data = os.pread(fd, n, offset)
                        tile = page.decode(data, index)[0]
                        yield tile.reshape(page.tilelength, page.tilewidth, 3)

            tags = page.tags
            out.write(
                tiles(),
                shape=(page.imagelength, page.imagewidth, 3),
                dtype=np.uint8,
                tile=(page.tilelength, page.tilewidth),
                photometric="rgb",
                compression="zlib",
                compressionargs={"level": 1},
                subfiletype=0 if i == 0 else 1,
                resolution=(tags["XResolution"].value, tags["YResolution"].value),
                resolutionunit=tags["ResolutionUnit"].value,
                metadata=None,
                maxworkers=2,
            )
    os.replace(tmp, dst)


if __name__ == "__main__":
    main()
