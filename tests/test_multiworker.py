"""Two MultiWorkerMirroredStrategy workers on 127.0.0.1 with the same command line."""

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import kill_harness as harness
from cli_helpers import read_json, synthetic_folder

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


def _kill_worker_when(processes, reached, wait_s: float) -> None:
    """SIGKILL the second worker once ``reached()`` (within ``wait_s``); the chief must then
    stop, with an error, within the peer-death bound."""
    chief, worker = processes
    try:
        deadline = time.time() + wait_s
        while not reached() and time.time() < deadline and chief.poll() is None:
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


@pytest.mark.slow
def test_two_workers_train_kill_one_and_resume(tmp_path):
    run, worker_dir = tmp_path / "run", tmp_path / "worker1"
    processes = _start_workers(("train", "--run-dir", run, *OPTIONS), worker_dir)
    _kill_worker_when(processes, lambda: harness.backup_epoch(run, "stage1") >= 1, wait_s=400)
    assert 1 <= harness.backup_epoch(run, "stage1") < harness.EPOCHS
    harness.check_run_is_consistent(run)

    # --quiet: progress bars would fill the pipes the workers write to, and stop them.
    results = _wait_all(_start_workers(("train", "--resume", run, "--quiet"), worker_dir))
    assert [code for code, _ in results] == [0, 0], [err[-1500:] for _, err in results]
    _check_complete(run, worker_dir)


# Two subject-grouped folds, one epoch per stage.
CROSSVAL = [
    "--no-detect", "--protocol", "subject-kfold", "--folds", "2", "--input-size", "32", "--backbone", "compact-tiny",
    "--fc-units", "16", "--encoder-units", "16", "--num-paths", "2", "--stage1-epochs", "1", "--stage2-epochs", "1",
    "--stage1-batch-size", "16", "--stage2-batch-size", "16", "--quiet", "--strategy", "multiworker",
]
FOLD_FILES = {"state.json", "classes.json", "model.keras", "test_evaluation.json", "test_predictions.csv",
              "test_evaluation_confusion.csv", "test_evaluation_confusion.png", "stage1", "stage2", "features"}


def _files(folder: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_two_workers_crossval_kill_one_and_rerun(tmp_path):
    from dam_cnn_tf.evaluation.crossval import completed_folds

    out, worker_dir = tmp_path / "cv", tmp_path / "worker1"
    args = ("crossval", "--data", synthetic_folder(tmp_path / "faces"), "--out", out, *CROSSVAL)
    processes = _start_workers(args, worker_dir)
    # The worker dies once the chief has completed fold 0.
    _kill_worker_when(processes, lambda: bool(completed_folds(out)), wait_s=300)
    assert completed_folds(out) == {0} and not (out / "results.json").exists()
    fold0 = _files(out / "fold-00")

    results = _wait_all(_start_workers(args, worker_dir))
    assert [code for code, _ in results] == [0, 0], [err[-1500:] for _, err in results]
    assert _files(out / "fold-00") == fold0  # skipped by the chief ...
    assert sorted(p.name for p in worker_dir.iterdir()) == ["fold-01"]  # ... and by the worker
    # One complete cross-validation, written by the chief alone.
    assert {p.name for p in out.iterdir()} == {"config.json", "folds.json", "fold-00", "fold-01", "results.json",
                                                "results.md", "results_confusion.csv", "results_confusion.png"}
    assert len(read_json(out / "folds.json")["folds"]) == 2
    assert not list(out.rglob(".*tmp-*"))
    accuracies = []
    for fold in ("fold-00", "fold-01"):
        assert {p.name for p in (out / fold).iterdir()} - {"run.lock"} == FOLD_FILES
        assert read_json(out / fold / "state.json")["completed"] == ["stage1", "stage2", "model", "test"]
        accuracies.append(read_json(out / fold / "test_evaluation.json")["accuracy"])
    summary = read_json(out / "results.json")
    assert summary["fold_accuracies"] == accuracies and summary["folds"] == 2
    report = (out / "results.md").read_text()
    assert all(f"| {100 * a:.2f} |" in report for a in accuracies)
    # The worker held the chief's weights: on fold 1 it predicted the test faces alike.
    ours = read_json(worker_dir / "fold-01" / "test_evaluation.json")
    assert ours["confusion_matrix"] == read_json(out / "fold-01" / "test_evaluation.json")["confusion_matrix"]
