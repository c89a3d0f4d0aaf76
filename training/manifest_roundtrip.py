"""Checks that a model folder's manifest survives retraining as train.py writes it: the
folder's model.toml is split by `kept_manifest_parts` (the [output] views, [aggregation],
[rule] and [stain] tables with their comments) and written again by `write_manifest` with
its own header, [input] and [ood] values, into a scratch copy; prints any difference and
exits 1 where there is one.

    python training/manifest_roundtrip.py models/dirascope-v2
"""

import difflib
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path

import dirascope_model as dm


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    folder = Path(sys.argv[1])
    text = (folder / "model.toml").read_text()
    t = tomllib.loads(text)
    views_text, tail, stain = dm.kept_manifest_parts(text)
    ood = t.get("ood")
    with tempfile.TemporaryDirectory() as tmp:
        for f in ("model.onnx", "checkpoint.pt"):
            if (folder / f).is_file():
                shutil.copy(folder / f, tmp)
        dm.write_manifest(
            Path(tmp), name=t["name"], version=t["version"], tile_px=t["input"]["tile_px"], mpp=t["input"]["mpp"],
            mean=t["input"]["mean"], std=t["input"]["std"], training_data=t["training_data"],
            intended_use=t["intended_use"], aggregation_and_rule=tail, views=views_text, stain=stain,
            ood=None if ood is None else {k: ood[k] for k in ("threshold", "max_fraction", "fitted_on")})
        again = (Path(tmp) / "model.toml").read_text()
    if again == text:
        print(f"{folder}/model.toml: written again byte for byte")
        return
    sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), again.splitlines(True), "as shipped", "written again"))
    sys.exit(1)


if __name__ == "__main__":
    main()
