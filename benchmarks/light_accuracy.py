"""Which light file for a preset: accuracy and speed of each on the preset's own validation part.

    python -m benchmarks.light_accuracy --faces <fer2013>/train \\
        --json benchmarks/results/cpu-intel-amx-light-accuracy.json
    python -m benchmarks.light_accuracy --preset rafdb-face-resnet --faces <rafdb>/train \\
        --json benchmarks/results/cpu-intel-amx-light-accuracy-rafdb.json

On the preset's validation part (10 % of its training folder, stratified, seed 0: the faces its
card measures; never the test set), in one run:

* ``accuracy``: the Keras model (float32, and with a ``mixed_bfloat16`` policy) and its light
  file converted three ways (LiteRT float32, float16 weights, dynamic-range int8): accuracy with
  Wilson's 95 % interval, McNemar's exact test of each against the float32 light file, the
  largest probability difference from the Keras model and the share of same predictions, on
  the validation faces and on the card's check faces (what a light file made on first use is
  checked against);
* ``speed``: faces/s of each at batch 1 and 64, calls taken in turn (``benchmarks.timing``);
* ``matmul``: a numpy float32 product at the start and end, the yardstick of the machine's load.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.inference import log, matmul_gflops, rates_together
from benchmarks.machine import cpu_name, load_average
from benchmarks.validation_faces import accuracy_interval, validation_part

PRESET = "fer2013-face-resnet"
QUANTIZED = ("float16", "dynamic")  # LiteRT's weight quantizations (export_formats.QUANTIZE)


def bfloat16_copy(model):
    """The same model and weights with every float32 layer policy made ``mixed_bfloat16``
    (computations in bfloat16, weights kept in float32)."""
    config = model.get_config()
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy" and node.get("config", {}).get("name") == "float32":
                node["config"]["name"] = "mixed_bfloat16"
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    copy = type(model).from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def probabilities_of(run, faces: np.ndarray, batch: int = 64) -> np.ndarray:
    out = [np.asarray(run(faces[i:i + batch])["probabilities"], np.float32) for i in range(0, len(faces), batch)]
    return np.concatenate(out)


def compare(probabilities: np.ndarray, reference: np.ndarray) -> dict:
    return {"max_abs_probability_difference": float(np.abs(probabilities - reference).max()),
            "same_prediction": float(np.mean(probabilities.argmax(1) == reference.argmax(1))),
            "different_predictions": int(np.sum(probabilities.argmax(1) != reference.argmax(1)))}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default=PRESET, help=f"the preset [default: {PRESET}]")
    parser.add_argument("--faces", type=Path, required=True, help="the preset's training folder")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=7, help="timed calls of each runtime and batch")
    parser.add_argument("--limit", type=int, default=None, help="only the first N validation faces (a quick try)")
    args = parser.parse_args(argv)
    preset = args.preset

    import os

    import dam_cnn_tf
    from dam_cnn_tf.evaluation.baselines import mcnemar
    from dam_cnn_tf.presets import preset_card
    from dam_cnn_tf.presets.light import LightModel, check_faces_images, light_path, make_light_file

    figures = {"cpu": cpu_name(), "cores": os.cpu_count(), "load_average_start": load_average(),
               "matmul_gflops_start": round(matmul_gflops(), 1), "preset": preset}
    card = preset_card(preset)
    size = int(card["input_shape"][0])
    log("Validation faces")
    part = validation_part(args.faces, size)
    if tuple(part.class_names) != tuple(card["class_names"]):
        raise SystemExit(f"class order {part.class_names} is not the preset's {card['class_names']}")
    faces, labels = part.faces.astype(np.float32), part.labels
    if args.limit:
        faces, labels = faces[:args.limit], labels[:args.limit]
    figures["faces"] = {"count": int(len(faces)), "what": "the preset's validation part: 10 % of its "
                        "training folder, stratified by class, seed 0 (training_split)"}
    check = check_faces_images(card)
    check_reference = np.asarray(card["check_faces"]["probabilities"], np.float32)

    runs = {}
    work = Path(tempfile.mkdtemp(prefix="light-accuracy-"))
    files = {"litert_float32": light_path(preset)}
    conversion = {}
    for quantize in QUANTIZED:
        log(f"Converting: {quantize}")
        start = time.monotonic()
        files[f"litert_{quantize}"] = make_light_file(dam_cnn_tf.presets.checked_model_path(preset),
                                                      work / f"model-{quantize}.tflite", quantize=quantize)
        conversion[f"litert_{quantize}"] = round(time.monotonic() - start, 1)
    for name, path in files.items():
        runs[name] = LightModel(path)
    keras_model = dam_cnn_tf.from_preset(preset)
    runs["keras_float32"] = keras_model.predict_on_batch
    runs["keras_mixed_bfloat16"] = bfloat16_copy(keras_model).predict_on_batch

    log("Accuracy")
    probabilities = {}
    for name, run in runs.items():
        start = time.monotonic()
        probabilities[name] = probabilities_of(run, faces)
        log(f"  {name}: {time.monotonic() - start:.0f} s")
    right = {name: p.argmax(1) == labels for name, p in probabilities.items()}
    reference, keras_reference = right["litert_float32"], probabilities["keras_float32"]
    accuracy = {}
    for name in runs:
        entry = {"accuracy": float(right[name].mean()), "interval_95": accuracy_interval(right[name]),
                 "against_litert_float32": mcnemar(right[name], reference),
                 "parity_with_keras_float32": compare(probabilities[name], keras_reference),
                 "check_faces_parity": compare(probabilities_of(runs[name], check), check_reference)}
        if name in files:
            entry.update(bytes=files[name].stat().st_size, conversion_s=conversion.get(name))
        accuracy[name] = entry
    figures["accuracy"] = accuracy
    figures["card_baselines"] = {k: {"label": v["label"], "accuracy": v["accuracy"]}
                                 for k, v in card["baselines"].items()}

    log("Speed")
    timing_faces = faces[faces.reshape(len(faces), -1).max(axis=1) > 1][:64]  # FER2013 holds a few blank images
    timed = rates_together({name: (run, timing_faces) for name, run in runs.items()}, args.steps)
    figures["speed"] = {"threads": os.cpu_count(), **timed}
    figures["matmul_gflops_end"] = round(matmul_gflops(), 1)
    figures["load_average_end"] = load_average()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    for name in runs:
        a, s = accuracy[name], timed[name]
        log(f"{name:22s} {100 * a['accuracy']:.2f} % p={a['against_litert_float32']['p_value']:.3g} "
            f"diff={a['parity_with_keras_float32']['max_abs_probability_difference']:.2g} "
            f"b1={s['batch_1']['faces_per_s']} b64={s['batch_64']['faces_per_s']}")


if __name__ == "__main__":
    main()
