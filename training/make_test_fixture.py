"""Write fixtures/model/tiny-random-64/: a random-weight slim-s2 network on
64 px tiles with its manifest and a 32-tile parity fixture. The Rust tests of
the engine, the manifest checks and the CLI exit codes run on it, so they do
not depend on the trained model. It scores nothing meaningful.

    training/.venv/bin/python training/make_test_fixture.py
"""

from pathlib import Path

import numpy as np
import torch

import dirascope_model as dm

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "model"
OUT = FIXTURES / "tiny-random-64"
# The same network with the out-of-distribution output (model 2's graph shape):
# Mahalanobis distance fitted on the 32 random tiles' features.
OUT_OOD = FIXTURES / "tiny-random-64-ood"


def main() -> None:
    torch.manual_seed(7)
    rng = np.random.default_rng(7)
    OUT.mkdir(parents=True, exist_ok=True)
    tiles = rng.integers(0, 256, size=(32, 64, 64, 3), dtype=np.uint8)
    inputs = dm.preprocess(tiles, dm.DEFAULT_MEAN, dm.DEFAULT_STD)
    model = dm.TileNet("slim-s2")
    with torch.no_grad():  # non-trivial BatchNorm statistics, so folding matters
        model.train()
        model(torch.from_numpy(inputs))
    model.eval()
    dm.export_onnx(model, OUT / "model.onnx", 64)
    dm.write_manifest(
        OUT,
        name="tiny-random-64",
        version="0.0.0",
        tile_px=64,
        mpp=4.0,
        mean=dm.DEFAULT_MEAN,
        std=dm.DEFAULT_STD,
        training_data="none: random weights; a test fixture for the engine and its checks",
        intended_use="tests only: random weights, scores nothing; not a diagnostic device",
    )
    dm.write_parity(OUT, inputs, source="random uint8 tiles (test fixture)")

    OUT_OOD.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        feats = dm.features(model, torch.from_numpy(inputs)).numpy()
    groups = np.arange(len(feats)) % len(dm.OOD_GROUPS)
    dm.export_onnx(model, OUT_OOD / "model.onnx", 64, ood=dm.fit_mahalanobis(feats, groups, shrink=0.5))
    dm.write_manifest(
        OUT_OOD,
        name="tiny-random-64-ood",
        version="0.0.0",
        tile_px=64,
        mpp=4.0,
        mean=dm.DEFAULT_MEAN,
        std=dm.DEFAULT_STD,
        training_data="none: random weights; a test fixture for the OOD output and its checks",
        intended_use="tests only: random weights, scores nothing; not a diagnostic device",
        ood={"threshold": 1.0, "max_fraction": 0.5, "fitted_on": "the 32 random parity tiles"},
    )
    dm.write_parity(OUT_OOD, inputs, source="random uint8 tiles (test fixture)")


if __name__ == "__main__":
    main()
