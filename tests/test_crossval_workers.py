"""``crossval --strategy multiworker``: which folds each worker trains and where, without a cluster."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from cli_helpers import TINY_OPTIONS, invoke, read_json, synthetic_folder
from dam_cnn_tf.data.protocols import Fold
from dam_cnn_tf.evaluation import crossval
from dam_cnn_tf.training import workers
from dam_cnn_tf.recipes.options import TrainConfig
from dam_cnn_tf.training.run_dir import RunDir

CLASSES = ["happy", "sad"]
FOLDS = [Fold(f"fold {i}", [2 * i, 2 * i + 1], [4 + i], [6 + i]) for i in range(3)]
DATA = SimpleNamespace(dataset=SimpleNamespace(name="faces"), class_names=CLASSES)


def _result(accuracy):
    right = int(4 * accuracy)
    return {"accuracy": accuracy, "num_samples": 4, "confusion_matrix": [[right, 4 - right], [0, 0]],
            "class_names": CLASSES}


def _complete(run: RunDir, accuracy, name):
    run.write_json("test_evaluation.json", {**_result(accuracy), "fold": name})
    run.mark_completed("test", accuracy=accuracy)


def _chief_out(tmp_path) -> Path:
    """Fold 0 complete, fold 1 interrupted after one epoch of stage 1, fold 2 not started."""
    out = tmp_path / "cv"
    _complete(RunDir(out / "fold-00"), 0.75, "fold 0")
    RunDir(out / "fold-01").write_json("stage1/backup/state.json", {"epoch": 1})
    (out / "fold-01" / "run.lock").write_text("pid 1\n")
    return out


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def trained(monkeypatch):
    """``run_fold`` replaced by one that records where it trained and completes the fold."""
    calls = []

    def fake_run_fold(data, fold, config, run, stage, verbose):
        calls.append((fold.name, run.path, run.read_json("stage1/backup/state.json")))
        _complete(run, 0.5, fold.name)
        return {**_result(0.5), "fold": fold.name}

    monkeypatch.setattr(crossval, "run_fold", fake_run_fold)
    return calls


def test_completed_folds_are_those_whose_test_is_done(tmp_path):
    out = _chief_out(tmp_path)
    RunDir(out / "fold-03").write_json("test_evaluation.json", _result(1.0))  # no "test" in its state
    RunDir(out / "fold-04").mark_completed("test", accuracy=1.0)  # no evaluation file
    (out / "fold-x").mkdir()
    assert crossval.completed_folds(out) == {0}
    assert crossval.completed_folds(tmp_path / "nowhere") == set()


def test_a_worker_trains_the_folds_not_done_in_private_copies_and_writes_nothing(tmp_path, trained):
    out = _chief_out(tmp_path)
    before = _snapshot(out)
    private = tmp_path / "worker1"
    summary = crossval.run_crossval(DATA, FOLDS, TrainConfig(), out, "2-fold", verbose=0,
                                    done=crossval.completed_folds(out), private_dir=private)
    assert [name for name, _, _ in trained] == ["fold 1", "fold 2"]  # fold 0 is done on the chief
    assert [path for _, path, _ in trained] == [private / "fold-01", private / "fold-02"]
    assert [state for _, _, state in trained] == [{"epoch": 1}, None]  # resumes where the chief stands
    assert not (private / "fold-01" / "run.lock").exists()
    assert _snapshot(out) == before
    assert summary["fold_accuracies"] == [0.75, 0.5, 0.5]


def test_the_chief_skips_the_same_folds_and_writes_the_report(tmp_path, trained):
    out = _chief_out(tmp_path)
    summary = crossval.run_crossval(DATA, FOLDS, TrainConfig(), out, "2-fold", verbose=0,
                                    done=crossval.completed_folds(out))
    assert [(name, path) for name, path, _ in trained] == [("fold 1", out / "fold-01"), ("fold 2", out / "fold-02")]
    assert read_json(out / "results.json")["fold_accuracies"] == summary["fold_accuracies"] == [0.75, 0.5, 0.5]
    assert "75.00" in (out / "results.md").read_text()
    assert len(read_json(out / "folds.json")["folds"]) == 3


def test_the_folds_skipped_are_read_before_the_workers_meet(tmp_path, monkeypatch, trained):
    """A fold the chief completes once the workers have met is trained by every worker alike."""
    folder = synthetic_folder(tmp_path / "faces", per_class=1)
    out = tmp_path / "cv"
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                                                "task": {"type": "worker", "index": 1}}))
    monkeypatch.setenv(workers.WORKER_DIR_ENV, str(tmp_path / "worker1"))
    met = []

    def meet(on_exit, resume_hint):
        met.append(resume_hint)
        _complete(RunDir(out / "fold-00"), 1.0, "by the chief")  # what the chief may write from now on

    monkeypatch.setattr(workers, "start_workers", meet)
    result = invoke("crossval", "--data", folder, "--no-detect", "--protocol", "subject-kfold", "--folds", "2",
                    "--out", out, *TINY_OPTIONS, "--strategy", "multiworker")
    assert met == ["the same `damcnn-tf crossval` command"]
    assert [path for _, path, _ in trained] == [tmp_path / "worker1" / "fold-00", tmp_path / "worker1" / "fold-01"]
    assert sorted(p.name for p in out.iterdir()) == ["fold-00"]  # only what the chief wrote
    assert "Worker done" in result.output


def test_experiment_refuses_several_workers(tmp_path):
    result = invoke("experiment", "dam-cnn", "--synthetic", "8", "--out", tmp_path / "out", *TINY_OPTIONS,
                    "--strategy", "multiworker", expect_ok=False)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and len(lines) == 1 and "--strategy multiworker" in lines[0], result.output
    assert not (tmp_path / "out").exists()
