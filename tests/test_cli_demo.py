"""``damcnn-tf demo``: the built-in default job, at its smallest."""

import csv

import cv2

from cli_helpers import invoke, read_json


def test_demo_trains_tests_and_draws(tmp_path):
    out = tmp_path / "demo"
    result = invoke("demo", "--out", out, "--subjects", "8", "--epochs", "1", "--quiet")
    assert "Test accuracy on unseen subjects" in result.output
    evaluation = read_json(out / "test_evaluation.json")
    assert evaluation["num_samples"] > 0 and 0.0 <= evaluation["accuracy"] <= 1.0
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert rows and set(rows[0]) >= {"subject", "true", "predicted", "happiness"}
    picture = cv2.imread(str(out / "attention.png"))
    assert picture is not None and picture.shape[0] > 64
    for name in ("model.keras", "classes.json", "test_evaluation_confusion.png"):
        assert (out / name).exists()


def test_demo_refuses_too_few_subjects(tmp_path):
    result = invoke("demo", "--out", tmp_path / "x", "--subjects", "3", expect_ok=False)
    assert result.exit_code != 0 and "--subjects" in result.output
