"""Per-layer statistics, real TEST parts against phantoms, at 1.0 um/px.

The same measurement runs on both sides, so nothing depends on phantom truth:
  * stain: colour deconvolution with the fixed Ruifrok & Johnston matrix
    (skimage.color.rgb2hed), H and E optical density per tissue pixel;
  * layer: "epidermis" = tissue where the H density smoothed over 10 um is
    above EPI_H (the cellular, basophilic band), "dermis" = the rest of the
    tissue; tissue = OD sum > 0.15;
  * nuclei: H density > NUC_H after a 0.7 um Gaussian, opened, 8 to 150 um2
    connected components; per mm2 of the layer; area and eccentricity
    (skimage regionprops);
  * texture energy: mean squared Laplacian-of-Gaussian (sigma 1 um) response of
    the grey image over the layer's pixels (fine-detail power).

Usage: stats.py --phantoms DIR [--phantoms DIR ...] [--json OUT] [--per-image]
"""

import argparse
import json
import os
import sys

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage import color, measure, morphology

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import real_split  # noqa: E402
from realism.judge import REAL_IMAGES, phantom_mpp, read_real, resample  # noqa: E402

import tifffile  # noqa: E402
import glob  # noqa: E402

EPI_H = 0.10
NUC_H = 0.16
TISSUE_OD = 0.15


def measure_image(rgb):
    od = -np.log10(np.clip(rgb.astype(np.float32), 1, 255) / 255.0)
    tissue = od.sum(2) > TISSUE_OD
    hed = color.rgb2hed(rgb)
    h, e = hed[..., 0], hed[..., 1]
    hs = ndi.gaussian_filter(h, 10)
    epi = tissue & (hs > EPI_H)
    epi = morphology.remove_small_objects(epi, max_size=400)
    derm = tissue & ~epi
    nuc = (ndi.gaussian_filter(h, 0.7) > NUC_H) & tissue
    nuc = ndi.binary_opening(nuc, morphology.disk(1))
    lab = measure.label(nuc)
    props = [p for p in measure.regionprops(lab) if 8 <= p.area <= 150]
    grey = rgb.astype(np.float32).mean(2)
    log = ndi.gaussian_laplace(grey, 1.0)
    out = {}
    for name, m in (("epidermis", epi), ("dermis", derm)):
        area_mm2 = m.sum() / 1e6
        inside = [p for p in props if m[int(p.centroid[0]), int(p.centroid[1])]]
        out[name] = {
            "area_mm2": area_mm2,
            "h": h[m],
            "e": e[m],
            "nuc_area": np.array([p.area for p in inside], np.float32),
            "nuc_ecc": np.array([p.eccentricity for p in inside], np.float32),
            "n_nuclei": len(inside),
            "tex": float((log[m] ** 2).mean()) if m.any() else float("nan"),
        }
    return out


def merge(parts):
    out = {}
    for layer in ("epidermis", "dermis"):
        ps = [p[layer] for p in parts]
        area = sum(p["area_mm2"] for p in ps)
        cat = lambda k: np.concatenate([p[k] for p in ps]) if ps else np.array([])  # noqa: E731
        h, e, na, ne = cat("h"), cat("e"), cat("nuc_area"), cat("nuc_ecc")
        tex_w = [p["tex"] * p["area_mm2"] for p in ps if p["area_mm2"] > 0]
        pct = lambda a: [round(float(v), 3) for v in np.percentile(a, [10, 50, 90])] if len(a) else None  # noqa: E731
        out[layer] = {
            "area_mm2": round(area, 3),
            "h_od_p10_50_90": pct(h),
            "e_od_p10_50_90": pct(e),
            "nuclei_per_mm2": round(sum(p["n_nuclei"] for p in ps) / area, 1) if area else None,
            "nuclear_area_um2_p10_50_90": pct(na),
            "nuclear_eccentricity_p10_50_90": pct(ne),
            "texture_energy": round(sum(tex_w) / area, 1) if area else None,
        }
    return out


def real_parts(which="test"):
    """Each real image's `which` part (training/real_split.toml) at 1.0 um/px."""
    images = real_split.load()
    for name in REAL_IMAGES:
        x0, y0, x1, y1 = real_split.part(name, which, images)
        rgb = np.ascontiguousarray(read_real(name)[y0:y1, x0:x1])
        yield name, resample(rgb, real_split.mpp(name, images))


def phantom_images(folder):
    for p in sorted(glob.glob(os.path.join(folder, "*.tiff"))):
        rgb = np.ascontiguousarray(tifffile.imread(p, key=0)[..., :3])
        yield os.path.basename(p), resample(rgb, phantom_mpp(p))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phantoms", action="append", required=True, metavar="NAME=DIR")
    ap.add_argument("--json")
    ap.add_argument("--per-image", action="store_true",
                    help="also each real image's test part alone (the pooled rows weigh them by area)")
    a = ap.parse_args()
    reals = [(name, measure_image(img)) for name, img in real_parts()]
    result = {"real (test parts)": merge([m for _, m in reals])}
    if a.per_image:
        for name, m in reals:
            result[f"real test part: {name}"] = merge([m])
    for spec in a.phantoms:
        name, folder = spec.split("=", 1) if "=" in spec else (spec, spec)
        result[name] = merge([measure_image(img) for _, img in phantom_images(folder)])
    print(json.dumps(result, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
