"""Every mistake a user can make exits non-zero with one line naming what is wrong."""

import h5py
import numpy as np
import pytest

from cli_helpers import TINY_OPTIONS, invoke, synthetic_folder


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default run directory lands here, not in the checkout


def fails_with(*args, match):
    result = invoke(*args, expect_ok=False)
    assert result.exit_code != 0, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    for word in match if isinstance(match, (list, tuple)) else [match]:
        assert word in lines[0], lines[0]
    return lines[0]


def test_missing_path(tmp_path):
    fails_with("train", "--data", tmp_path / "nowhere", match=["--data", "nowhere"])


def test_empty_class_folder(tmp_path):
    for label in ("happy", "sad"):
        (tmp_path / "empty" / label).mkdir(parents=True)
    fails_with("train", "--data", tmp_path / "empty", "--no-detect", *TINY_OPTIONS, match=str(tmp_path / "empty"))


def test_unknown_layout(tmp_path):
    folder = synthetic_folder(tmp_path / "faces", subjects=2, per_class=1)
    fails_with("train", "--data", folder, "--layout", "pascal-voc", *TINY_OPTIONS, match="pascal-voc")


def test_image_that_does_not_decode(tmp_path):
    folder = synthetic_folder(tmp_path / "faces", subjects=2, per_class=1)
    broken = sorted(folder.rglob("*.png"))[0]
    broken.write_bytes(broken.read_bytes()[:60])  # a PNG header, then nothing
    fails_with("train", "--data", folder, "--no-detect", "--on-bad", "error", *TINY_OPTIONS, match=broken.name)


def test_incompatible_weights_file(tmp_path):
    weights = tmp_path / "vggface.weights.h5"
    with h5py.File(weights, "w") as f:
        f.create_dataset("conv1_1/kernel", data=np.zeros((3, 3, 3, 7), "float32"))
        f.create_dataset("conv1_1/bias", data=np.zeros(7, "float32"))
    folder = synthetic_folder(tmp_path / "faces", subjects=2, per_class=1)
    fails_with("train", "--data", folder, "--no-detect", "--backbone", "vgg-face", "--input-size", "32",
               "--backbone-weights", weights, "--quiet", match=str(weights))


@pytest.mark.parametrize(
    "args, match",
    [
        (["train", "--resume", "RUN", "--num-paths", "3"], "--resume"),
        (["train", "--backbone", "compact", "--backbone-weights", "setup.py"], "--backbone-weights"),
        (["train", "--classes", "5"], "--classes"),
        (["train", "--num-paths", "0"], "--num-paths"),
        (["train", "--stage", "2", "--run-dir", "RUN"], "--stage 2"),
        (["crossval", "--data", "DATA", "--protocol", "cross-dataset", "--out", "OUT"], "--test-data"),
        (["evaluate", "RUN", "--data", "DATA"], "model.keras"),
    ],
)
def test_invalid_option_combinations(tmp_path, args, match):
    (tmp_path / "RUN").mkdir()
    folder = synthetic_folder(tmp_path / "DATA", subjects=2, per_class=1)
    args = [str(tmp_path / a) if a in ("RUN", "OUT") else str(folder) if a == "DATA" else a for a in args]
    fails_with(*args, match=match)


def test_config_file_with_unknown_option(tmp_path):
    config = tmp_path / "config.json"
    config.write_text('{"num_paths": 3, "num_pahts": 4}')
    fails_with("train", "--config", config, match=["num_pahts", str(config)])
