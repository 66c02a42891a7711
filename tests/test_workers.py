"""Multi-worker roles: who writes the run directory, the private copy of the others, signals."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dam_cnn_tf.training.run_dir import RunDir, RunDirError
from dam_cnn_tf.training import workers

ROOT = Path(__file__).resolve().parents[1]


def _tf_config(monkeypatch, cluster, task_type, index):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}}))


@pytest.mark.parametrize("cluster,task_type,index,chief", [
    ({"worker": ["a:1", "b:2"]}, "worker", 0, True),
    ({"worker": ["a:1", "b:2"]}, "worker", 1, False),
    ({"chief": ["a:1"], "worker": ["b:2"]}, "chief", 0, True),
    ({"chief": ["a:1"], "worker": ["b:2"]}, "worker", 0, False),
])
def test_the_chief_is_tensorflows(monkeypatch, cluster, task_type, index, chief):
    _tf_config(monkeypatch, cluster, task_type, index)
    assert workers.is_chief() is chief


def test_no_cluster_means_chief(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert workers.is_chief()


@pytest.mark.parametrize("text", ["{not json", '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}'])
def test_a_bad_tf_config_is_one_line(monkeypatch, text):
    monkeypatch.setenv("TF_CONFIG", text)
    with pytest.raises(RunDirError, match="TF_CONFIG") as error:
        workers.is_chief()
    assert "\n" not in str(error.value)


def _chief_run(tmp_path) -> RunDir:
    run = RunDir(tmp_path / "run")
    run.write_json("config.json", {"seed": 1})
    run.write_json("stage1/backup/state.json", {"epoch": 2, "weights": "epoch-00002.weights.h5"})
    (run / "stage1/backup/epoch-00002.weights.h5").write_bytes(b"w")
    (run / "features/train").mkdir(parents=True)
    (run / "model.keras").write_bytes(b"m")
    (run / "run.lock").write_text("pid 1\n")
    return run


def test_a_resuming_worker_copies_the_chiefs_state_and_writes_nothing_there(tmp_path, monkeypatch):
    monkeypatch.delenv(workers.WORKER_DIR_ENV, raising=False)
    run = _chief_run(tmp_path)
    before = sorted(p.relative_to(run.path) for p in run.path.rglob("*"))
    private = workers.worker_run_dir(run, resume=True)
    assert private.path != run.path and not private.path.is_relative_to(run.path)
    assert private.read_json("stage1/backup/state.json")["epoch"] == 2
    assert (private / "stage1/backup/epoch-00002.weights.h5").read_bytes() == b"w"
    for recomputed in ("features", "model.keras", "run.lock"):
        assert not (private / recomputed).exists()
    private.write_json("state.json", {"completed": ["stage1"]})
    workers.remove_worker_dir(private)
    assert not private.path.exists()
    assert sorted(p.relative_to(run.path) for p in run.path.rglob("*")) == before


def test_a_fresh_worker_starts_empty_and_a_chosen_folder_is_kept(tmp_path, monkeypatch):
    chosen = tmp_path / "worker1"
    monkeypatch.setenv(workers.WORKER_DIR_ENV, str(chosen))
    (chosen / "stale").mkdir(parents=True)  # a previous attempt's copy is replaced
    private = workers.worker_run_dir(_chief_run(tmp_path), resume=False)
    assert private.path == chosen and list(chosen.iterdir()) == []
    workers.remove_worker_dir(private)
    assert chosen.exists()


# The main thread blocks in a system call, as it does in a collective; the signal still ends it.
BLOCKED = """
import os, sys
from dam_cnn_tf.training.workers import exit_on_signals
exit_on_signals(lambda: open(sys.argv[1], "w").write("cleaned"))
print("ready", flush=True)
os.read(os.pipe()[0], 1)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_a_blocked_worker_at_once(tmp_path, sig):
    marker = tmp_path / "cleaned"
    process = subprocess.Popen([sys.executable, "-c", BLOCKED, str(marker)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.stdout.readline().strip() == "ready"
    sent = time.time()
    process.send_signal(sig)
    try:
        _, err = process.communicate(timeout=20)
    finally:
        process.kill()
    assert time.time() - sent < 20
    assert process.returncode == 128 + sig
    ours = [line for line in err.splitlines() if line.startswith("Error:")]  # not TensorFlow's start-up log
    assert len(ours) == 1 and err.strip().endswith(ours[0]) and sig.name in ours[0] and "--resume" in ours[0]
    assert marker.read_text() == "cleaned"
