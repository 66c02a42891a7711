"""Two MultiWorkerMirroredStrategy workers on 127.0.0.1 with the same command line."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import kill_harness as harness

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = [*harness.OPTIONS, "--strategy", "multiworker"]
PEER_DEATH_BOUND_S = 120  # the coordination service's heartbeat timeout (20 s) plus a loaded machine


def _free_ports(n=2):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_workers(args, worker_dir: Path):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports()]}
    processes = []
    for index in range(2):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2",
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
               "DAMCNN_WORKER_DIR": str(worker_dir)}
        processes.append(subprocess.Popen(harness.command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True, env=env))
    return processes


def _wait_all(processes, timeout=600):
    try:
        return [(p.wait(timeout=timeout), p.stderr.read()) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()


def _weights(path):
    from dam_cnn_tf.models.model_file import load_model_file

    return load_model_file(path).get_weights()


def _check_complete(run: Path, worker_dir: Path):
    state = harness.read_json(run / "state.json")
    assert state["completed"] == ["stage1", "stage2", "model"]
    assert state["info"]["stage1"]["epochs"] == harness.EPOCHS
    assert state["info"]["stage2"]["epochs"] == harness.EPOCHS
    for stage in ("stage1", "stage2"):
        rows = (run / stage / "metrics.csv").read_text().splitlines()[1:]
        assert [int(r.split(",")[0]) for r in rows] == list(range(harness.EPOCHS))
    harness.check_run_is_consistent(run)
    # Only the chief wrote here: the lock names one process, no other process's temporary file.
    assert not [p for p in run.rglob(".*tmp-*")]
    chief, worker = _weights(run / "model.keras"), _weights(worker_dir / "model.keras")
    assert len(chief) == len(worker)
    for a, b in zip(chief, worker):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_two_workers_train_kill_one_and_resume(tmp_path):
    run, worker_dir = tmp_path / "run", tmp_path / "worker1"
    processes = _start_workers(("train", "--run-dir", run, *OPTIONS), worker_dir)
    chief, worker = processes
    try:
        deadline = time.time() + 400
        while harness.backup_epoch(run, "stage1") < 1 and time.time() < deadline and chief.poll() is None:
            time.sleep(0.1)
        assert chief.poll() is None, chief.stderr.read()[-2000:]
        worker.send_signal(signal.SIGKILL)
        killed = time.time()
        chief.wait(timeout=PEER_DEATH_BOUND_S)
        assert time.time() - killed < PEER_DEATH_BOUND_S and chief.returncode != 0
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    assert 1 <= harness.backup_epoch(run, "stage1") < harness.EPOCHS
    harness.check_run_is_consistent(run)

    results = _wait_all(_start_workers(("train", "--resume", run), worker_dir))
    assert [code for code, _ in results] == [0, 0], [err[-1500:] for _, err in results]
    _check_complete(run, worker_dir)
