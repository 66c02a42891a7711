"""``damcnn-tf demo``: the built-in default job, at its smallest, and at full size (slow)."""

import csv

import cv2
import pytest

from cli_helpers import invoke, read_json

# What the full demo must show on unseen people (README); chance is 1/7.
FULL_DEMO_FLOOR = 0.85


def test_demo_trains_tests_and_draws(tmp_path):
    out = tmp_path / "demo"
    result = invoke("demo", "--out", out, "--subjects", "8", "--epochs", "1", "--quiet")
    assert "Test accuracy on unseen subjects" in result.output
    evaluation = read_json(out / "test_evaluation.json")
    # A quarter of the 8 people, each showing 7 expressions twice.
    assert evaluation["num_samples"] == 2 * 7 * 2
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert rows and set(rows[0]) >= {"subject", "true", "predicted", "happiness"}
    picture = cv2.imread(str(out / "attention.png"))
    assert picture is not None and picture.shape[0] > 64
    for name in ("model.keras", "classes.json", "test_evaluation_confusion.png"):
        assert (out / name).exists()
    # The pixel baseline, on the same unseen people, beside the model's accuracy.
    pixels = read_json(out / "baseline_pixels.json")
    assert pixels["num_samples"] == evaluation["num_samples"] and pixels["C"] in (1e-3, 1e-2, 1e-1, 1.0)
    assert f"raw pixels (48x48 grey): {100 * pixels['accuracy']:.1f}%)" in result.output


@pytest.mark.slow
def test_full_demo_works_on_unseen_people(tmp_path):
    invoke("demo", "--out", tmp_path / "demo", "--quiet")
    evaluation = read_json(tmp_path / "demo" / "test_evaluation.json")
    assert evaluation["accuracy"] >= FULL_DEMO_FLOOR, f"accuracy {evaluation['accuracy']:.3f} on unseen people"


def test_demo_refuses_too_few_subjects(tmp_path):
    result = invoke("demo", "--out", tmp_path / "x", "--subjects", "3", expect_ok=False)
    assert result.exit_code != 0 and "--subjects" in result.output
