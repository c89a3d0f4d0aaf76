"""Writes fixtures/jpeg/: small JPEG streams in the layouts slide scanners and
exporters produce, each with its libjpeg-turbo decode as PNG.

dirascope's baseline JPEG decoder (src/slide/jpeg.rs) must reproduce these decodes
exactly; streams it hands on to jpeg-decoder (progressive, 4:1:1) must come close.
The decodes are made by imagecodecs (libjpeg-turbo, default accurate integer IDCT
and fancy upsampling) and checked against Pillow's own libjpeg-turbo decode.

The picture is a crop of a committed phantom slide, so the content is H&E-like
texture, not flat colour. Sizes are odd on purpose: chroma edges are where
decoders differ.

    benches/compare/.venv/bin/python benches/compare/jpeg_reference.py
"""

import io
import sys
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "fixtures" / "jpeg"


def source(width, height, x, y):
    with tifffile.TiffFile(ROOT / "fixtures" / "phantoms" / "dira-3.tiff") as tif:
        level0 = tif.pages[0].asarray()
    return np.ascontiguousarray(level0[y : y + height, x : x + width, :3])


def pillow(rgb, **options):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", **options)
    return buf.getvalue()


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    tissue = source(77, 53, 620, 410)
    wide = source(301, 67, 500, 380)
    grey = np.ascontiguousarray(tissue[:, :, 1])
    cases = {
        # name: (stream, decoded exactly by dirascope's own decoder)
        "ycbcr-420-q90-77x53": (pillow(tissue, quality=90, subsampling="4:2:0"), True),
        "ycbcr-422-q80-77x53": (pillow(tissue, quality=80, subsampling="4:2:2"), True),
        "ycbcr-444-q95-77x53": (pillow(tissue, quality=95, subsampling="4:4:4"), True),
        "ycbcr-440-q90-77x53": (
            imagecodecs.jpeg8_encode(tissue, level=90, subsampling="440"),
            True,
        ),
        "ycbcr-420-q75-3x5": (pillow(tissue[:5, :3], quality=75, subsampling="4:2:0"), True),
        "ycbcr-420-q85-restart-optimized-301x67": (
            pillow(wide, quality=85, subsampling="4:2:0", optimize=True, restart_marker_blocks=7),
            True,
        ),
        "ycbcr-422-q70-restart-rows-301x67": (
            pillow(wide, quality=70, subsampling="4:2:2", restart_marker_rows=1),
            True,
        ),
        "rgb-adobe-q90-77x53": (
            imagecodecs.jpeg8_encode(tissue, level=90, colorspace="RGB", outcolorspace="RGB"),
            True,
        ),
        "grey-q90-77x53": (pillow(grey, quality=90), True),
        "ycbcr-420-progressive-77x53": (
            pillow(tissue, quality=90, subsampling="4:2:0", progressive=True),
            False,
        ),
        "ycbcr-411-q90-77x53": (
            imagecodecs.jpeg8_encode(tissue, level=90, subsampling="411"),
            False,
        ),
    }
    for name, (stream, exact) in cases.items():
        decoded = imagecodecs.jpeg8_decode(stream)
        check = np.asarray(Image.open(io.BytesIO(stream)))
        if not np.array_equal(decoded, check):
            sys.exit(f"{name}: imagecodecs and Pillow decode differently")
        (OUT / f"{name}.jpg").write_bytes(stream)
        Image.fromarray(decoded).save(OUT / f"{name}.libjpeg-turbo.png", optimize=True)
        print(f"{name}: {len(stream)} bytes, {decoded.shape}, exact={exact}")
    print(f"libjpeg-turbo {imagecodecs.jpeg8_version()} (imagecodecs {imagecodecs.__version__})")


if __name__ == "__main__":
    main()
