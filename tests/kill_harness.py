"""Kill -9 a training or export process at random points and check what it leaves behind.

Used by ``tests/test_kill_harness.py``; the number of kills per phase comes from
``DAMCNN_KILLS`` (default 1 in the quick run).
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
from cli_helpers import read_json

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 4
OPTIONS = [
    "--input-size", "32", "--backbone", "compact-tiny", "--fc-units", "16", "--encoder-units", "16",
    "--num-paths", "2", "--stage1-epochs", str(EPOCHS), "--stage2-epochs", str(EPOCHS), "--stage1-batch-size", "16",
    "--stage2-batch-size", "16", "--patience", "100", "--quiet",
]


def command(*args):
    return [sys.executable, "-m", "dam_cnn_tf.cli", *[str(a) for a in args]]


def start(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen(command(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def completed(run: Path) -> list:
    return read_json(run / "state.json")["completed"] if (run / "state.json").exists() else []


def backup_epoch(run: Path, stage: str) -> int:
    path = run / stage / "backup" / "state.json"
    return read_json(path)["epoch"] if path.exists() else 0


# When each phase is under way, seen from the run directory.
PHASES = {
    "stage1": lambda run: backup_epoch(run, "stage1") >= 1,
    "features": lambda run: "stage1" in completed(run),
    "stage2": lambda run: backup_epoch(run, "stage2") >= 1,
}


def kill_during(run: Path, phase: str, rng: random.Random, timeout: float = 300.0) -> bool:
    """Start (or resume) training, wait until ``phase`` is under way plus a random delay, kill -9.

    Returns False if the run finished before it could be killed.
    """
    args = ("train", "--resume", run) if (run / "config.json").exists() else ("train", "--run-dir", run, *OPTIONS)
    process = start(*args)
    deadline = time.time() + timeout
    try:
        while not PHASES[phase](run) and process.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.5))
        if process.poll() is not None:
            return False
        process.send_signal(signal.SIGKILL)
        process.wait()
        return True
    finally:
        if process.poll() is None:
            process.kill()


def check_run_is_consistent(run: Path) -> None:
    """Every file a reader would trust is whole: JSON parses, weights and caches open."""
    for name in ("config.json", "data.json", "split.json", "state.json", "classes.json"):
        if (run / name).exists():
            read_json(run / name)
    for stage in ("stage1", "stage2"):
        backup = run / stage / "backup" / "state.json"
        if backup.exists():
            state = read_json(backup)
            with h5py.File(run / stage / "backup" / state["weights"], "r") as f:
                assert len(f.keys()) > 0
        if (run / stage / "best.weights.npz").exists():
            with np.load(run / stage / "best.weights.npz") as saved:
                assert len(saved.files) > 0
        for weights in ("vgg_serd.weights.h5", "mpvs_net.weights.h5"):
            if (run / stage / weights).exists():
                with h5py.File(run / stage / weights, "r") as f:
                    assert len(f.keys()) > 0
    from dam_cnn_tf.data.feature_cache import FeatureCache

    for split in ("train", "val"):
        if FeatureCache.exists(run / "features" / split):
            cache = FeatureCache.open(run / "features" / split)
            assert np.isfinite(np.asarray(cache.features[:4])).all()
    if "model" in completed(run):
        from dam_cnn_tf.models.model_file import load_model_file

        load_model_file(run / "model.keras")


def finish(run: Path) -> dict:
    result = subprocess.run(command("train", "--resume", run), capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-2000:]
    return read_json(run / "state.json")


def kill_export(run: Path, export_dir: Path, rng: random.Random) -> None:
    process = start("export", run, export_dir)
    time.sleep(rng.uniform(2.0, 8.0))
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait()


def check_export_is_consistent(export_dir: Path) -> list:
    """Every integer version directory is a complete SavedModel; returns the versions."""
    import tensorflow as tf

    versions = sorted(int(p.name) for p in export_dir.iterdir() if p.name.isdigit()) if export_dir.exists() else []
    for version in versions:
        loaded = tf.saved_model.load(str(export_dir / str(version)))
        assert "serving_default" in loaded.signatures
    return versions
