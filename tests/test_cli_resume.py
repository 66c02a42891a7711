"""A training run killed mid-epoch resumes from its last completed epoch; a run in use is refused."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cli_helpers import TINY_OPTIONS, invoke, read_json

EPOCHS = 6


def _options(epochs):
    options = list(TINY_OPTIONS)
    options[options.index("--stage1-epochs") + 1] = str(epochs)
    options[options.index("--stage2-epochs") + 1] = str(epochs)
    return options + ["--patience", "100"]


def _backup_epoch(run: Path, stage: str) -> int:
    state = run / stage / "backup" / "state.json"
    return read_json(state)["epoch"] if state.exists() else 0


def test_killed_run_resumes_with_the_right_epoch_count(tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "dam_cnn_tf.cli", "train", "--run-dir", str(run), *_options(EPOCHS)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    try:
        deadline = time.time() + 240
        while _backup_epoch(run, "stage1") < 2 and time.time() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert process.poll() is None, "training ended before it could be interrupted"
        process.send_signal(signal.SIGKILL)  # no chance to clean up
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    interrupted_at = _backup_epoch(run, "stage1")
    assert 2 <= interrupted_at < EPOCHS
    state_file = run / "state.json"
    assert not state_file.exists() or "stage1" not in read_json(state_file)["completed"]

    result = invoke("train", "--resume", run)
    assert "Run written" in result.output
    state = read_json(run / "state.json")
    assert state["completed"] == ["stage1", "stage2", "model"]
    assert state["info"]["stage1"]["epochs"] == EPOCHS and state["info"]["stage2"]["epochs"] == EPOCHS
    rows = (run / "stage1" / "metrics.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(EPOCHS))  # each epoch logged once


def test_a_run_in_use_is_refused(tmp_path):
    from dam_cnn_tf.training.run_dir import RunDir

    run = RunDir(tmp_path / "busy")
    with run.locked():
        result = invoke("train", "--run-dir", run.path, *TINY_OPTIONS, expect_ok=False)
    assert result.exit_code != 0
    assert "in use" in result.output and len(result.output.strip().splitlines()) == 1


def test_a_finished_run_removes_its_lock(tmp_path, monkeypatch):
    from dam_cnn_tf.training import run_dir
    from dam_cnn_tf.training.run_dir import RunDir

    run = RunDir(tmp_path / "run")
    with run.locked():
        assert (run / "run.lock").read_text() == f"pid {os.getpid()}\n"
    assert not (run / "run.lock").exists()
    # A holder that removes the file between our open and our lock leaves us locking a file
    # no one else can find: the lock must be taken on the file that is there now.
    real_open = open

    def open_then_lose_the_file(path, *args, **kwargs):
        handle = real_open(path, *args, **kwargs)
        monkeypatch.setattr(run_dir, "open", real_open, raising=False)
        Path(path).unlink()
        Path(path).write_text("pid 1\n")  # another process's lock file
        return handle

    monkeypatch.setattr(run_dir, "open", open_then_lose_the_file, raising=False)
    with run.locked():
        assert (run / "run.lock").read_text() == f"pid {os.getpid()}\n"
        result = invoke("train", "--run-dir", run.path, *TINY_OPTIONS, expect_ok=False)
        assert "in use" in result.output


def test_a_tampered_backup_state_is_refused(tmp_path):
    run = tmp_path / "run"
    invoke("train", "--run-dir", run, "--stage", "1", *TINY_OPTIONS)
    assert not (run / "run.lock").exists()  # removed at the end of a clean run
    state = run / "stage1" / "backup" / "state.json"
    (run / "state.json").write_text('{"completed": []}')  # make stage 1 run again, from its backup
    for payload in ('{"epoch": 1, "weights": "../../elsewhere.weights.h5"}', '{"epoch": "1"}', "[]"):
        state.write_text(payload)
        result = invoke("train", "--resume", run, expect_ok=False)
        assert result.exit_code != 0
        assert "malformed training state" in result.output and str(state) in result.output
