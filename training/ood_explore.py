"""Compare OOD detector variants (which layers' pooled features, covariance
shrinkage) on one trained checkpoint, before choosing the one train.py --ood
exports: each variant is fitted on (a sample of) the training tiles, its
threshold set at the 99th percentile of the held-out in-distribution tiles,
and its flag rates printed on ood_cases.py's cases.

    python training/ood_explore.py models/dirascope-v2/checkpoint.pt --data DATA \
        --train DATA/train-mixed-1.0 ... --heldout DATA/held-mixed-1.0 ...
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import dirascope_model as dm
import ood_cases as oc
import train as tr

ALL_TAPS = (-1, 0, 1, 2, 3, 4, 5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--train", type=Path, nargs="+", required=True)
    ap.add_argument("--heldout", type=Path, nargs="+", required=True)
    ap.add_argument("--train-sample", type=int, default=8000)
    ap.add_argument("--case-tiles", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    ck = torch.load(args.checkpoint)
    model = dm.TileNet(ck["arch"])
    model.load_state_dict(ck["state"])
    model.eval()
    mean, std = ck["mean"], ck["std"]
    px = 224

    def feats(tiles):
        return tr.predict_with_features(model, tiles, mean, std, batch=128, taps=ALL_TAPS)

    rng = np.random.default_rng(0)
    tiles, fracs, _, _ = tr.load_exports(args.train, px, 1.0, None)
    pick = rng.choice(len(tiles), size=min(args.train_sample, len(tiles)), replace=False)
    f_train = feats(tiles[pick])[1]
    groups = dm.ood_groups(fracs[pick])
    del tiles
    print(f"train features {f_train.shape} in {time.time() - t0:.0f}s", flush=True)

    held = {}
    for d in args.heldout:
        t, _, _, _ = tr.load_exports([d], px, 1.0, None)
        held[d.name] = feats(t)[1]
    print(f"held-out features in {time.time() - t0:.0f}s", flush=True)

    base = np.concatenate([oc.load_export_tiles(args.data / n, px, 0.5)[0]
                           for n in ("held-mixed-1.0", "held-dira-1.0") if (args.data / n / "labels.csv").is_file()])
    base = base[np.linspace(0, len(base) - 1, min(args.case_tiles, len(base))).astype(int)]
    skd = oc.SKIMAGE_DATA
    ihc = np.asarray(Image.open(skd / "ihc.png").convert("RGB"))
    cases = {
        "ihc@0.5": oc.tile_image(oc.resample(ihc, 0.5, 1.0), px, 16, False),
        "ihc@1.0": oc.tile_image(ihc, px, 96, False),
        "photos": np.concatenate([oc.tile_image(np.asarray(Image.open(skd / p).convert("RGB")), px, 56, False)
                                  for p in ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg")]),
        "blur6": oc.blur_tiles(base, 6.0),
        "blur8": oc.blur_tiles(base, 8.0),
        "real-cmu-test": oc.real_test_part("CMU-1-Small-Region.svs", px, 1.0, 56),
        "real-pd-test": oc.real_test_part("skin-normal-10x-public-domain.jpg", px, 1.0, 56),
    }
    for name, (h, e, _) in oc.RESTAINS.items():
        cases[name.replace("restain ", "rs:")[:22]] = oc.restain_tiles(base, h, e)
    f_cases = {k: feats(v)[1] for k, v in cases.items()}
    print(f"case features in {time.time() - t0:.0f}s", flush=True)

    # Columns: input mean and std (6), then slim-s2's conv outputs; the last = penultimate.
    widths = {-1: 6, 0: 16, 1: 24, 2: 32, 3: 48, 4: 64, 5: 96, 6: 128}
    offs, o = {}, 0
    for k in (-1, 0, 1, 2, 3, 4, 5, 6):
        offs[k] = o
        o += widths[k]

    def cols(taps):
        idx = [np.arange(offs[i], offs[i] + widths[i]) for i in sorted(taps)]
        idx.append(np.arange(offs[6], offs[6] + 128))
        return np.concatenate(idx)

    variants = [((), 0.01), ((-1,), 0.01), ((-1,), 0.1), ((-1, 5), 0.01), ((-1, 3), 0.01), ((-1, 1, 3, 5), 0.01),
                ((5,), 0.01), ((3,), 0.01), ((1, 3, 5), 0.01), (ALL_TAPS, 0.01)]
    names = list(held) + list(f_cases)
    print("flag rate (% over the 99th-percentile threshold of pooled held-out)")
    print(f"{'taps':<16}{'shrink':>7} " + " ".join(f"{n[:12]:>12}" for n in names))
    for taps, shrink in variants:
        c = cols(taps)
        means, w = dm.fit_mahalanobis(f_train[:, c], groups, shrink)
        dist = {k: tr.ood_distance(v[:, c], means, w) for k, v in held.items()}
        thr = np.percentile(np.concatenate(list(dist.values())), 99)
        for k, v in f_cases.items():
            dist[k] = tr.ood_distance(v[:, c], means, w)
        print(f"{str(list(taps)):<16}{shrink:>7} " + " ".join(
            f"{100 * (dist[n] > thr).mean():>12.1f}" for n in names), flush=True)
    print(f"done in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
