"""Synth 1.16's colour map per measured stain (MEASURED_OD_MAP in src/synth/stain.rs):
for each real image, the symmetric 3 x 3 map M of optical density that makes the
phantoms' second moment of tissue OD about zero (E[od od^T], so glass, OD 0, stays
put) the real TRAIN part's: M S_p M = S_r, M = S_r^1/2 (S_r^1/2 S_p S_r^1/2)^-1/2 S_r^1/2.
Tissue and the phantoms' styles as `colour_cues.py pixels` reads them (OD sum > 0.15
in the image's own glass, at 1.0 um/px as the judge sees them). Applied to a slide's stain vectors, M maps every pixel's OD the same way.

  fit_od_map.py DIR   # DIR: phantom .tiff files of one generator (tuning seeds)

Synth 1.16's maps: CMU-1's is the product of two rounds (on synth 1.15 with 1.16's
grain, seeds 800-803, then on those phantoms with the first map), the public-domain
image's the first round only (docs/realism.md, "Synth 1.16").
"""

import sys

import numpy as np
from scipy.linalg import sqrtm

import judge
import real_split
from colour_cues import phantoms_by_style, tissue


def second_moment(od):
    return od.T @ od / len(od)


def moment_map(s_phantom, s_real):
    root = np.real(sqrtm(s_real))
    return root @ np.linalg.inv(np.real(sqrtm(root @ s_phantom @ root))) @ root


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    images = real_split.load()
    by_style = phantoms_by_style(sys.argv[1])
    phantoms = {name: [tissue(img)[1] for img in imgs] for name, imgs in by_style.items()}
    for name in judge.REAL_IMAGES:
        if not phantoms[name]:
            print(f"{name}: no phantom in its style")
            continue
        rgb = judge.read_real_part(name, real_split.part(name, "train", images))
        _, real, glass = tissue(judge.resample(rgb, real_split.mpp(name, images)))
        od = np.concatenate(phantoms[name])
        m = moment_map(second_moment(od), second_moment(real))
        print(f"{name}: glass {glass.round(1)}, mean tissue OD real {real.mean(0).round(3)}, "
              f"phantom {od.mean(0).round(3)} ({len(phantoms[name])} slides)")
        print("  map (row-major): " + ", ".join(f"{v:.3f}" for v in m.ravel()))


if __name__ == "__main__":
    main()
