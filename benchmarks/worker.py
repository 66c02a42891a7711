"""Runs one piece of the suite in a process of its own, so memory and peaks never mix.

``python -m benchmarks.worker '<json request>'`` runs ``TASKS[request["task"]]`` and prints one
line ``BENCH-RESULT {...}``: the task's result plus the process's peak resident memory
(``VmHWM`` from /proc/self/status, and ``ru_maxrss``). The parent reads it with ``run_worker``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULT_PREFIX = "BENCH-RESULT "


def peak_rss_bytes() -> dict:
    """This process's peak resident memory: ``VmHWM`` (Linux) and ``ru_maxrss`` (KiB on Linux)."""
    vmhwm = None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                vmhwm = int(line.split()[1]) * 1024
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    maxrss *= 1 if sys.platform == "darwin" else 1024
    return {"vmhwm_bytes": vmhwm, "ru_maxrss_bytes": maxrss, "peak_bytes": vmhwm or maxrss}


# --- memory probes: the workload alone, nothing timed ------------------------------------------
def _baseline(cfg) -> dict:
    import tensorflow as tf

    tf.constant(1.0).numpy()
    return {}


def _stage2_probe(cfg, num_paths: int) -> dict:
    import keras
    import numpy as np

    from dam_cnn_tf.models.mpvs_net import MPVSNet

    d, n, batch = cfg.features, num_paths, cfg.stage2_batch
    keras.utils.set_random_seed(0)
    net = MPVSNet(d, cfg.num_classes, encoder_units=cfg.encoder_units, num_paths=n, fc_units=cfg.fc_units)
    rng = np.random.default_rng(0)
    s = rng.gamma(2.0, 1.0, (batch, d)).astype("float32")
    targets = rng.gamma(2.0, 1.0, (batch, n, d)).astype("float32")
    labels = np.arange(batch) % cfg.num_classes
    net.mpae.adapt(s)
    net.compile()
    built = peak_rss_bytes()["peak_bytes"]  # weights and Adam's moments, before any step
    losses = [float(net.train_on_batch(s, {"label": labels, "targets": targets}, return_dict=True)["loss"])
              for _ in range(cfg.memory_steps)]
    return {"num_paths": n, "losses": losses, "parameters": int(net.count_params()), "peak_before_step_bytes": built}


def _inference_probe(cfg, export_path: str) -> dict:
    import numpy as np
    import tensorflow as tf

    serve = tf.saved_model.load(export_path).signatures["serving_default"]
    size = cfg.image_size
    images = np.random.default_rng(0).uniform(0, 255, (cfg.inference_batch, size, size, 3)).astype("float32")
    for _ in range(cfg.image_steps):
        serve(image=tf.constant(images))["probabilities"].numpy()
    return {}


def _section(name):
    def run(cfg, **kwargs):
        from benchmarks import sections

        return getattr(sections, name)(cfg, **kwargs)

    return run


TASKS = {
    "probe_baseline": _baseline,
    "probe_stage2": _stage2_probe,
    "probe_inference": _inference_probe,
    **{name: _section(name) for name in (
        "build_and_export", "exported_inference", "stage1_step", "stage2_step", "decoder_matmul", "pair_pipeline",
        "feature_extraction", "face_resnet",
    )},
}


class WorkerError(RuntimeError):
    """A worker process failed; the message is its last line of error output."""


def run_worker(task: str, cfg, timeout: float = 3600, env: dict = None, **kwargs) -> dict:
    """Run ``TASKS[task](cfg, **kwargs)`` in a fresh Python process and return its result.

    ``env``: entries added to the worker's environment (e.g. an allocator's ``LD_PRELOAD``).
    """
    env = {**os.environ, **(env or {})}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    request = {"task": task, "config": cfg.to_dict(), "kwargs": kwargs}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.worker", json.dumps(request)],
        capture_output=True, text=True, env=env, cwd=str(REPO_ROOT), timeout=timeout,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        errors = [line for line in proc.stderr.strip().splitlines() if line.strip()] or ["no output"]
        raise WorkerError(f"{task}: worker exited {proc.returncode}: {errors[-1]}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def main(argv) -> int:
    from benchmarks.configs import BenchConfig

    request = json.loads(argv[0])
    cfg = BenchConfig.from_dict(request["config"])
    result = TASKS[request["task"]](cfg, **request["kwargs"])
    if not isinstance(result, dict):
        result = {"value": result}
    print(RESULT_PREFIX + json.dumps({**result, **peak_rss_bytes()}, default=float), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
