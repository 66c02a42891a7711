"""How many of stage 1's fc6 and fc7 units never fire on a set of faces.

Used for the probe's table in docs/results.md ("fc6 units that never fire"): a unit whose ReLU
output is zero for every face has stopped learning (its gradient is zero too). A run directory
of `damcnn-tf train`, or one fold of `damcnn-tf crossval` (its configuration is then in the
folder above), and a folder of face images (class subfolders; every ``--every``-th file is read):

    python benchmarks/dead_units.py results/ck48/fold-00 --faces ckplus48/ --every 3
    python benchmarks/dead_units.py runs/fer2013 --faces fer2013/train --every 60
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import keras
import numpy as np


def run_config_file(run: Path) -> Path:
    for path in (run / "config.json", run.parent / "config.json"):
        if path.exists():
            return path
    raise SystemExit(f"{run}: no config.json here or in the folder above")


def read_faces(folder: Path, every: int, size: int) -> np.ndarray:
    from dam_cnn_tf.data.images import has_image_extension, read_image

    files = sorted(p for p in folder.glob("*/*") if has_image_extension(p))[::every]
    if not files:
        raise SystemExit(f"{folder}: no images in class subfolders")
    return np.stack([cv2.resize(read_image(f), (size, size)) for f in files])


def main(argv=None) -> None:
    from dam_cnn_tf.recipes.options import config_from_saved
    from dam_cnn_tf.training.stages import build_stage1_model, load_class_names

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--faces", type=Path, required=True)
    parser.add_argument("--every", type=int, default=1)
    args = parser.parse_args(argv)
    config = config_from_saved(json.loads(run_config_file(args.run).read_text()), args.run)
    model = build_stage1_model(config, len(load_class_names(args.run)))
    model.load_weights(args.run / "stage1" / "vgg_serd.weights.h5")
    faces = read_faces(args.faces, args.every, config.input_size)
    for layer in ("fc6", "fc7"):
        active = keras.Model(model.input, model.get_layer(layer).output).predict(faces, verbose=0) > 0
        dead = int((active.sum(axis=0) == 0).sum())
        print(f"{layer}: {dead} of {active.shape[1]} units never fire on {len(faces)} faces")


if __name__ == "__main__":
    main()
