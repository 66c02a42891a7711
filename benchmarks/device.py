"""DAM-CNN's throughput through Keras on JAX, for a GPU machine without TensorFlow.

``bash benchmarks/device.sh`` runs it there (it installs the carried Keras wheels first);
``python -m benchmarks.device --toy --json toy.json`` runs the same sections at toy sizes on a
CPU with the JAX CPU build. Each section runs in a Python process of its own, so each one's peak
device memory is its own; the JSON is rewritten after every section, so a run stopped by its
time limit keeps what it finished.

Sections:

* ``machine``: device, JAX and Keras versions, JAX's default float32 matmul precision.
* ``matmul-<dtype>``: the rate of a square product (8192³) and of the product that dominates
  stage 2, ``(B, H) x (H, N·D)``, in float32 and bfloat16: the yardsticks of the stage-2 figures.
* ``stage2-<policy>``: MPVS-Net at the paper's size (D = 25088 → H = 4096, N = 5, FC 4096, K = 7),
  ``train_on_batch`` with the default optimizers (FusedAdam, which is Keras' Adam off
  TensorFlow) at several batch sizes; samples/s, the model FLOP/s they mean
  (``costs.stage2_flops_per_sample``) and their fraction of the same process's matmul rates.
  ``stage2-sgd``: float32 with momentum SGD instead, what Adam's update costs.
* ``stage1-<backbone>-<train|infer>``: VGG-SERD's ``train_on_batch`` (stage 1, Eq. 4) and the
  DAM-CNN inference model's ``predict_on_batch`` (Fig. 2), images/s at batch 1, 8, 64, 256, on
  face-resnet at 150x150 and VGG-Face at 224x224.

Every section reports the device's peak memory in use (``memory_stats``; null on a CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.costs import stage2_flops_per_sample

FULL = {
    "square": 8192,
    "stage2": {"features": 25088, "encoder_units": 4096, "num_paths": 5, "fc_units": 4096, "classes": 7},
    "stage2_batches": (32, 256, 1024),
    "stage1_batches": (1, 8, 64, 256),
    "backbones": {"face-resnet": 150, "vgg-face": 224},
    "vgg_widths": None,
    "fc_units": 4096,
    "steps": 5,
}
TOY = {
    "square": 256,
    "stage2": {"features": 392, "encoder_units": 64, "num_paths": 5, "fc_units": 64, "classes": 7},
    "stage2_batches": (4, 16),
    "stage1_batches": (1, 4),
    "backbones": {"face-resnet": 64, "vgg-face": 64},
    "vgg_widths": (4, 4, 8, 8, 8),
    "fc_units": 32,
    "steps": 3,
}
SECTIONS = ("machine", "matmul-float32", "matmul-bfloat16", "stage2-float32", "stage2-mixed_bfloat16", "stage2-sgd",
            "stage1-face-resnet-infer", "stage1-face-resnet-train", "stage1-vgg-face-infer", "stage1-vgg-face-train")


# --- in a section's own process -----------------------------------------------------------------
def _block(result):
    import jax

    jax.block_until_ready(result)
    return result


def _seconds(call, steps: int) -> dict:
    """Two warm-up calls (compilation, allocation), then the median of ``steps`` timed calls."""
    for _ in range(2):
        _block(call())
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        _block(call())
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "steps": steps}


def _peak_bytes():
    import jax

    stats = jax.local_devices()[0].memory_stats()
    return None if not stats else int(stats.get("peak_bytes_in_use", 0))


def _matmul_rates(dtype: str, config: dict) -> dict:
    import jax

    key = jax.random.key(0)
    square = config["square"]
    a = jax.random.normal(key, (square, square), dtype)
    product = jax.jit(lambda x, y: x @ y)
    timing = _seconds(lambda: product(a, a), config["steps"])
    rates = {"square": {"shape": [square, square, square], **timing,
                        "tflops": 2 * square**3 / timing["median_s"] / 1e12}}
    s = config["stage2"]
    wide = s["num_paths"] * s["features"]
    for batch in config["stage2_batches"]:
        h = jax.random.normal(key, (batch, s["encoder_units"]), dtype)
        w = jax.random.normal(key, (s["encoder_units"], wide), dtype)
        timing = _seconds(lambda: product(h, w), config["steps"])
        rates[f"stage2_shaped_b{batch}"] = {"shape": [batch, s["encoder_units"], wide], **timing,
                                            "tflops": 2 * batch * s["encoder_units"] * wide / timing["median_s"] / 1e12}
    return rates


def _machine(config: dict) -> dict:
    import jax
    import keras

    device = jax.devices()[0]
    info = {
        "device_kind": device.device_kind,
        "platform": device.platform,
        "devices": len(jax.devices()),
        "jax": jax.__version__,
        "keras": keras.__version__,
        "keras_path": os.path.dirname(keras.__file__),
        "keras_backend": keras.backend.backend(),
        "default_matmul_precision": str(jax.config.jax_default_matmul_precision),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "tensorflow_importable": _importable("tensorflow"),
    }
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        info["nvidia_smi"] = smi.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["nvidia_smi"] = None
    return info


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _stage2(policy: str, optimizer: str, config: dict) -> dict:
    import jax
    import keras
    import numpy as np

    from dam_cnn_tf import MPVSNet

    s = config["stage2"]
    compute = "bfloat16" if "bfloat16" in policy else "float32"
    result = {"policy": policy, "optimizer": optimizer, **s,
              "flops_per_sample": stage2_flops_per_sample(**s), "matmul": _matmul_rates(compute, config)}
    keras.utils.set_random_seed(0)
    net = MPVSNet(s["features"], s["classes"], encoder_units=s["encoder_units"], num_paths=s["num_paths"],
                  fc_units=s["fc_units"], dtype=policy)
    rng = np.random.default_rng(0)
    net.mpae.adapt(rng.gamma(2.0, 1.0, (64, s["features"])).astype("float32"))
    if optimizer == "sgd":
        net.compile(optimizer=keras.optimizers.SGD(1e-4, momentum=0.9),
                    mpae_optimizer=keras.optimizers.SGD(1e-4, momentum=0.9))
    else:
        net.compile()  # FusedAdam at α_fc and α_M: Keras' Adam update off TensorFlow
    result["batches"] = {}
    for batch in config["stage2_batches"]:
        x = jax.device_put(rng.gamma(2.0, 1.0, (batch, s["features"])).astype("float32"))
        y = {"label": jax.device_put(rng.integers(0, s["classes"], batch)),
             "targets": jax.device_put(rng.gamma(2.0, 1.0, (batch, s["num_paths"], s["features"])).astype("float32"))}
        timing = _seconds(lambda: net.train_on_batch(x, y), config["steps"])
        samples = batch / timing["median_s"]
        flops = samples * result["flops_per_sample"]
        shaped = result["matmul"].get(f"stage2_shaped_b{batch}", {}).get("tflops")
        result["batches"][str(batch)] = {
            **timing, "samples_per_s": samples, "model_tflops": flops / 1e12,
            "fraction_of_square_matmul": flops / 1e12 / result["matmul"]["square"]["tflops"],
            "fraction_of_stage2_shaped_matmul": flops / 1e12 / shaped if shaped else None,
            "peak_bytes_so_far": _peak_bytes(),
        }
    return result


def _stage1(backbone: str, mode: str, config: dict) -> dict:
    import jax
    import keras
    import numpy as np

    from dam_cnn_tf import MPVSNet, build_face_resnet, build_vgg_serd, compile_vgg_serd
    from dam_cnn_tf.models.dam_cnn import PROBABILITIES, build_dam_cnn

    size = config["backbones"][backbone]
    keras.utils.set_random_seed(0)
    shape = (size, size, 3)
    if backbone == "vgg-face":
        widths = config["vgg_widths"] or (64, 128, 256, 512, 512)
        model = build_vgg_serd(7, input_shape=shape, fc_units=config["fc_units"], backbone_widths=widths)
    else:
        model = build_vgg_serd(7, input_shape=shape, fc_units=config["fc_units"],
                               backbone=build_face_resnet(include_top=False, input_shape=shape, name="backbone"))
    result = {"backbone": backbone, "mode": mode, "image_size": size, "parameters": model.count_params(), "batches": {}}
    rng = np.random.default_rng(0)
    if mode == "train":
        compile_vgg_serd(model)  # FusedAdam at α_S: Keras' Adam update off TensorFlow
        step = lambda x, y: model.train_on_batch(x, y)  # noqa: E731
    else:
        features = int(np.prod(model.get_layer("flatten").output.shape[1:]))
        net = MPVSNet(features, 7, encoder_units=config["fc_units"], num_paths=1, fc_units=config["fc_units"])
        inference = build_dam_cnn(model, net)
        result["parameters"] = inference.count_params()
        step = lambda x, y: inference.predict_on_batch(x)[PROBABILITIES]  # noqa: E731
    for batch in config["stage1_batches"]:
        x = jax.device_put(rng.uniform(0, 255, (batch, *shape)).astype("float32"))
        y = jax.device_put(rng.integers(0, 7, batch))
        timing = _seconds(lambda: step(x, y), config["steps"])
        result["batches"][str(batch)] = {**timing, "images_per_s": batch / timing["median_s"],
                                         "peak_bytes_so_far": _peak_bytes()}
    return result


def run_section(name: str, config: dict) -> dict:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    started = time.perf_counter()
    if name == "machine":
        result = _machine(config)
    elif name.startswith("matmul-"):
        result = _matmul_rates(name.split("-", 1)[1], config)
    elif name == "stage2-sgd":
        result = _stage2("float32", "sgd", config)
    elif name.startswith("stage2-"):
        result = _stage2(name.split("-", 1)[1], "adam", config)
    elif name.startswith("stage1-"):
        backbone, mode = name[len("stage1-"):].rsplit("-", 1)
        result = _stage1(backbone, mode, config)
    else:
        raise ValueError(f"unknown section {name!r}")
    if name != "machine":
        result["peak_bytes"] = _peak_bytes()
    result["section_s"] = time.perf_counter() - started
    return result


# --- the driver -----------------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--toy", action="store_true", help="toy sizes, for a CPU")
    parser.add_argument("--json", default="device.json", help="where to write the results")
    parser.add_argument("--section", action="append", choices=SECTIONS, help="run only these (repeatable)")
    parser.add_argument("--budget-s", type=float, default=480.0,
                        help="stop starting sections after this many seconds; each is also cut at what is left")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    config = TOY if args.toy else FULL
    if args.worker:
        Path(args.json).write_text(json.dumps(run_section(args.worker, config), indent=2))
        return 0

    out = Path(args.json)
    report = {"config": "toy" if args.toy else "full", "sizes": config, "sections": {}, "failed": {}}
    deadline = time.perf_counter() + args.budget_s
    for name in args.section or SECTIONS:
        left = deadline - time.perf_counter()
        if left < 10:
            report["failed"][name] = "not started: the time budget was spent"
            continue
        part = out.with_name(f".{out.stem}-{name}.json")
        command = [sys.executable, "-m", "benchmarks.device", "--worker", name, "--json", str(part)]
        command += ["--toy"] if args.toy else []
        print(f"[device] {name} (at most {left:.0f} s)", flush=True)
        try:
            proc = subprocess.run(command, timeout=left, capture_output=True, text=True)
            if proc.returncode == 0:
                report["sections"][name] = json.loads(part.read_text())
            else:
                report["failed"][name] = proc.stderr[-2000:]
        except subprocess.TimeoutExpired:
            report["failed"][name] = f"stopped after {left:.0f} s: the time budget"
        finally:
            part.unlink(missing_ok=True)
        out.write_text(json.dumps(report, indent=2))  # after every section: a killed run keeps its figures
        print(f"[device] {name}: {'ok' if name in report['sections'] else 'FAILED'}", flush=True)
    print(summary(report))
    return 0 if not report["failed"] else 1


def summary(report: dict) -> str:
    """One line per measured figure."""
    lines = []
    sections = report["sections"]
    machine = sections.get("machine", {})
    lines.append(f"device: {machine.get('device_kind')} ({machine.get('platform')}), JAX {machine.get('jax')}, "
                 f"Keras {machine.get('keras')}")
    for name, section in sections.items():
        if name.startswith("matmul-"):
            lines.append(f"{name}: square {section['square']['tflops']:.4g} TFLOP/s")
        elif name.startswith("stage2"):
            for batch, row in section["batches"].items():
                lines.append(f"{name} b{batch}: {row['samples_per_s']:.4g} samples/s, {row['model_tflops']:.4g} TFLOP/s, "
                             f"{row['fraction_of_square_matmul']:.3f} of the square matmul")
        elif name.startswith("stage1"):
            rates = ", ".join(f"b{b} {row['images_per_s']:.4g}" for b, row in section["batches"].items())
            lines.append(f"{name}: images/s {rates}; peak {section.get('peak_bytes')} bytes")
    for name, why in report["failed"].items():
        lines.append(f"{name}: FAILED: {why.strip().splitlines()[-1] if why.strip() else '?'}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
