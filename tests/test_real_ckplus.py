"""Cross-validation on real faces: CK+48, subject-independent, a CPU-sized configuration.

Skips when ``../shared/data`` is absent. The full 10-fold figure is in README.md.
"""

import pytest

from cli_helpers import invoke, read_json


@pytest.mark.realdata
def test_ckplus48_two_folds_clearly_above_chance(shared_data, tmp_path):
    out = tmp_path / "ck48"
    invoke(
        "crossval", "--data", shared_data / "ckplus48", "--no-detect", "--protocol", "subject-kfold",
        "--folds", "10", "--max-folds", "2", "--out", out, "--face-cache", tmp_path / "faces",
        "--input-size", "48", "--backbone", "compact", "--fc-units", "64", "--encoder-units", "512",
        "--num-paths", "2", "--dropout", "0.3", "--alpha-s", "3e-3", "--alpha-m", "1e-3", "--alpha-fc", "1e-3",
        "--stage1-epochs", "10", "--stage2-epochs", "10", "--stage1-batch-size", "32", "--quiet",
    )
    summary = read_json(out / "results.json")
    chance = 1.0 / len(summary["class_names"])
    assert len(summary["class_names"]) == 6  # CK+48 has no neutral; contempt is outside the 7-class set
    assert summary["mean_accuracy"] > 2.5 * chance, summary
