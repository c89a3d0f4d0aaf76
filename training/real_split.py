"""The real-tissue train/test split, read from training/real_split.toml.

Every Python script that touches real pixels imports this module, so the
split lives in exactly one file. `part(file, "train")` gives the half-open
level-0 rectangle (x0, y0, x1, y1) of a real image's train or test part.
"""

import os
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
SPLIT_TOML = os.path.join(HERE, "real_split.toml")
# The real fixtures, beside the repository (never copied into it).
REAL_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "fixtures", "real"))


def load(path=SPLIT_TOML):
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    images = {}
    for img in doc["image"]:
        images[img["file"]] = img
        for alias in img.get("aliases", []):
            images[alias] = img
    return images


def part(file, which, images=None):
    """(x0, y0, x1, y1) of `which` ("train" or "test") of real image `file`."""
    if which not in ("train", "test"):
        raise ValueError(f"part must be 'train' or 'test', got {which!r}")
    images = images or load()
    name = os.path.basename(file.rstrip("/"))
    if name not in images:
        raise KeyError(f"{name}: not in {SPLIT_TOML}; add it there before using its pixels")
    img = images[name]
    r = img[which]
    return (r.get("x0", 0), r.get("y0", 0), r.get("x1", img["width"]), r.get("y1", img["height"]))


def in_part(file, which, x, y, images=None):
    """Whether level-0 point (x, y) of real image `file` lies in its `which` part (a
    tile belongs to the part its centre lies in)."""
    x0, y0, x1, y1 = part(file, which, images)
    return x0 <= x < x1 and y0 <= y < y1


def mpp(file, images=None):
    images = images or load()
    return images[os.path.basename(file.rstrip("/"))]["mpp"]


def level0(path):
    """The whole level 0 of a real image as an RGB uint8 array (H, W, 3): a TIFF or
    SVS through tifffile's first page, anything else through PIL."""
    import numpy as np

    if os.path.splitext(str(path))[1].lower() in (".svs", ".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(path) as tf:
            return tf.pages[0].asarray()[..., :3]
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


if __name__ == "__main__":
    # No arguments: every image's parts. `mpp FILE`: the image's MPP (for shell scripts).
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "mpp":
        print(mpp(sys.argv[2]))
    elif len(sys.argv) == 1:
        imgs = load()
        for name in sorted({i["file"] for i in imgs.values()}):
            print(name, "train", part(name, "train", imgs), "test", part(name, "test", imgs))
    else:
        raise SystemExit("usage: python training/real_split.py [mpp FILE]")
