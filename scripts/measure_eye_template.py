"""Measure where the eyes sit in a preset's training faces and record it in the preset's card.

    python scripts/measure_eye_template.py rafdb-face-resnet --data <rafdb>/train
    python scripts/measure_eye_template.py fer2013-face-resnet --data <fer2013>/train --faces 2000

``predict`` aligns each detected face so that its eyes land where they sat in the model's
training faces (``dam_cnn_tf.detection.align``); this script finds that place. It draws
``--faces`` faces (seed ``--seed``) from the training part of the preset's data (the part its
run trained on: the validation part, carved as training carves it, is left out), enlarges each
to ``--side`` pixels and pads it with grey by half that on every side so that BlazeFace finds
it as it finds faces in photos, and takes the median position of each eye, as fractions of the
face's side. The card's ``eye_template`` entry records the template, how many faces were found,
the eyes' spread and this command, with ``on_by_default`` false: ``predict`` aligns by default
only once ``benchmarks/alignment.py --record`` has measured that it helps on the validation
faces. ``card.md`` is written again. ``scripts/build_preset.py`` writes a card without the entry:
run this (and the benchmark) again after rebuilding a preset. No other preset file changes,
so the SHA-256 checks of its files still hold.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
PAD_GREY = 128


def _build_preset():
    spec = importlib.util.spec_from_file_location("build_preset", REPO / "scripts" / "build_preset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def training_paths(root, val_fraction: float = 0.1, seed: int = 0) -> list:
    """The image files of the training part of a class-folder data set (7 classes), as a run
    with ``val_fraction`` and ``seed`` carves it (``training.prepare.training_split``)."""
    from dam_cnn_tf.training.prepare import carved_split

    data, split = carved_split(root, 48, val_fraction, seed)  # the size does not change the split
    return [data.dataset.samples[i].path for i in np.asarray(split.train, np.int64)]


def eyes_in_face(rgb: np.ndarray, detector, side: int = 200) -> np.ndarray | None:
    """The eyes ``(2, 2)`` (right eye first) of the face filling ``rgb``, as fractions of its
    side: the image enlarged to ``side`` pixels, padded with grey by ``side // 2``, and the
    best detection whose box holds the image's centre. None when no such face is found."""
    face = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_CUBIC if rgb.shape[0] < side else cv2.INTER_AREA)
    pad = side // 2
    canvas = cv2.copyMakeBorder(face, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(PAD_GREY,) * 3)
    boxes, eyes = detector.boxes_and_eyes(canvas)
    centre = pad + side / 2.0
    for (x, y, w, h), pair in zip(boxes, eyes):
        if x <= centre <= x + w and y <= centre <= y + h:
            return (pair - pad) / side
    return None


def measure(paths, detector, side: int = 200) -> dict:
    """The template (median eyes) of the faces in ``paths``, with how many were found and the
    spread (interquartile range) of each coordinate."""
    from dam_cnn_tf.data.images import read_image

    found = []
    for path in paths:
        rgb = read_image(path)
        if rgb.ndim == 2:
            rgb = cv2.cvtColor(rgb, cv2.COLOR_GRAY2RGB)
        eyes = eyes_in_face(rgb, detector, side)
        if eyes is not None:
            found.append(eyes)
    if not found:
        raise SystemExit(f"the detector found none of the {len(paths)} faces")
    found = np.stack(found)
    median = np.median(found, axis=0)
    q1, q3 = np.percentile(found, [25, 75], axis=0)
    return {"right_eye": [round(float(v), 4) for v in median[0]],
            "left_eye": [round(float(v), 4) for v in median[1]],
            "interquartile_range": {"right_eye": [round(float(v), 4) for v in (q3 - q1)[0]],
                                    "left_eye": [round(float(v), 4) for v in (q3 - q1)[1]]},
            "faces_measured": len(paths), "faces_found": len(found)}


def write_card(folder, card: dict) -> None:
    """``card.json`` (its keys in their order, so that the diff is the changed entry alone) and
    ``card.md`` of the preset in ``folder``; the eye template is checked to load first."""
    import json

    import dam_cnn_tf.presets as presets
    from dam_cnn_tf.training.run_dir import atomic_write_text

    presets.card_eye_template(card)
    atomic_write_text(Path(folder) / presets.CARD_FILE, json.dumps(card, indent=2) + "\n")
    atomic_write_text(Path(folder) / "card.md", _build_preset().any_card_markdown(card))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="the preset whose card gets the template")
    parser.add_argument("--data", required=True, help="the preset's training folder (class folders)")
    parser.add_argument("--faces", type=int, default=2000, help="faces drawn from the training part")
    parser.add_argument("--seed", type=int, default=0, help="the draw's seed")
    parser.add_argument("--side", type=int, default=200, help="each face is enlarged to this side first")
    parser.add_argument("--presets-dir", default=None, help="the folder holding the preset (default: the package's)")
    parser.add_argument("--dry-run", action="store_true", help="print the template; leave the card as it is")
    args = parser.parse_args(argv)
    if args.faces < 1 or args.side < 32:
        parser.error("--faces must be positive and --side at least 32")

    import json

    import dam_cnn_tf.presets as presets
    from dam_cnn_tf.detection.pyramid import BlazeFaceDetector

    if args.presets_dir is not None:
        presets.PRESETS_DIR = Path(args.presets_dir)
    folder, card = presets.preset_dir(args.name), presets.preset_card(args.name)
    paths = training_paths(args.data, *presets.card_split(card))
    rng = np.random.default_rng(args.seed)
    chosen = [paths[i] for i in sorted(rng.choice(len(paths), min(args.faces, len(paths)), replace=False))]
    detector = BlazeFaceDetector()
    template = measure(chosen, detector, args.side)
    template.update(
        detector=f"blazeface, min_score {detector.min_score:g}",
        how=f"{len(chosen)} faces drawn (seed {args.seed}) from the training part, each enlarged to {args.side} px "
            f"and padded with grey by {args.side // 2} px; the median of each eye, as fractions of the face's side",
        command=f"python scripts/measure_eye_template.py {args.name} --data <{args.name.split('-')[0]}>/train "
                f"--faces {args.faces} "
                f"--seed {args.seed} --side {args.side}")
    print(json.dumps(template, indent=1))
    if args.dry_run:
        return
    # What benchmarks/alignment.py measured with an earlier template goes with it: off by default
    # until measured again.
    card[presets.EYE_TEMPLATE] = {**template, "on_by_default": False}
    write_card(folder, card)


if __name__ == "__main__":
    main()
