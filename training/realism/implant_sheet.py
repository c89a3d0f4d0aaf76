"""Picture sheet of `synth --implant-into`: each implanted lesion beside the same
region of the real slide before implanting, at full resolution.

    dirascope synth --implant-into ../shared/fixtures/real/skin-normal-10x-public-domain.jpg \
        --mpp 0.75 --part test --count 8 --seed 5 --out /tmp/implants
    training/.venv/bin/python training/realism/implant_sheet.py /tmp/implants \
        ../shared/fixtures/real/skin-normal-10x-public-domain.jpg docs/implants.jpg

Rows: one per implanted structure (lesions first, then shams), left the real
image, right the implanted slide, with the kind written above. Real pixels in
the repository's docs come from the public-domain image only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, ImageDraw

HALF = 150  # crop half-side, pixels
KINDS = ["subcorneal-pustule", "acantholytic-cleft", "inflamed-eccrine-coil", "psoriasiform-change",
         "sham-eccrine-coil", "sham-lymphocytes", "sham-epidermis"]


def crop(img: np.ndarray, cx: int, cy: int) -> np.ndarray:
    out = np.full((2 * HALF, 2 * HALF, 3), 255, np.uint8)
    y0, x0 = max(cy - HALF, 0), max(cx - HALF, 0)
    sub = img[y0:cy + HALF, x0:cx + HALF]
    out[y0 - (cy - HALF):y0 - (cy - HALF) + sub.shape[0], x0 - (cx - HALF):x0 - (cx - HALF) + sub.shape[1]] = sub
    return out


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    folder, real, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    original = np.array(Image.open(real).convert("RGB"))
    picked: dict[str, tuple[np.ndarray, np.ndarray, str]] = {}
    for truth_path in sorted(folder.glob("*.truth.json")):
        truth = json.load(open(truth_path))
        with tifffile.TiffFile(folder / f"{truth['slide_id']}.tiff") as tf:
            slide = tf.pages[0].asarray()
        rx, ry = truth["implant"]["source_region"][:2]
        for imp in truth["implant"]["implants"]:
            if imp["kind"] in picked:
                continue
            cx, cy = (int(v / truth["mpp"]) for v in imp["centre_um"])
            picked[imp["kind"]] = (crop(original, cx + rx, cy + ry), crop(slide, cx, cy), truth["slide_id"])
    rows = []
    for kind in KINDS:
        if kind not in picked:
            continue
        before, after, sid = picked[kind]
        label = Image.new("RGB", (4 * HALF + 8, 22), "white")
        ImageDraw.Draw(label).text((4, 5), f"{kind} ({sid}): real | implanted", fill="black")
        row = np.concatenate([before, np.full((2 * HALF, 8, 3), 255, np.uint8), after], 1)
        rows += [np.array(label), row]
    Image.fromarray(np.concatenate(rows, 0)).save(out, quality=85)
    print(f"{out}: {len(rows) // 2} structures")


if __name__ == "__main__":
    main()
