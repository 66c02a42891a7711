"""Peak resident memory of one workload, measured in a process of its own so peaks do not mix.

Run as ``python -m benchmarks.memory_probe '<json request>'``; prints one JSON line with the
process's peak resident set (``VmHWM`` from /proc/self/status, and ``ru_maxrss``).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


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


def _baseline(_request) -> dict:
    import keras  # noqa: F401
    import tensorflow as tf

    tf.constant(1.0).numpy()
    return {}


def _stage2(request) -> dict:
    import keras
    import numpy as np

    from dam_cnn_tf.models.mpvs_net import MPVSNet

    d, n, batch = request["features"], request["num_paths"], request["batch"]
    keras.utils.set_random_seed(0)
    net = MPVSNet(d, request["num_classes"], encoder_units=request["encoder_units"], num_paths=n,
                  fc_units=request["fc_units"])
    rng = np.random.default_rng(0)
    s = rng.gamma(2.0, 1.0, (batch, d)).astype("float32")
    targets = rng.gamma(2.0, 1.0, (batch, n, d)).astype("float32")
    labels = np.arange(batch) % request["num_classes"]
    net.mpae.adapt(s)
    net.compile()
    losses = [float(net.train_on_batch(s, {"label": labels, "targets": targets}, return_dict=True)["loss"])
              for _ in range(request["steps"])]
    return {"losses": losses, "parameters": int(net.count_params())}


def _inference(request) -> dict:
    import numpy as np
    import tensorflow as tf

    serve = tf.saved_model.load(request["export_path"]).signatures["serving_default"]
    size = request["image_size"]
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (request["batch"], size, size, 3)).astype("float32"))
    for _ in range(request["steps"]):
        serve(image=images)["probabilities"].numpy()
    return {}


PROBES = {"baseline": _baseline, "stage2": _stage2, "inference": _inference}


def run_probe(request: dict, timeout: float = 1800) -> dict:
    """Run one probe in a fresh Python process; returns its JSON result (with ``error`` on failure)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory_probe", json.dumps(request)],
        capture_output=True, text=True, env=env, cwd=str(REPO_ROOT), timeout=timeout,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"request": request, "error": f"probe exited {proc.returncode}: {tail}"}
    return json.loads(lines[-1])


def main(argv) -> int:
    request = json.loads(argv[0])
    result = PROBES[request["probe"]](request)
    print(json.dumps({"request": request, **result, **peak_rss_bytes()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
