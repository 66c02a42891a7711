"""``damcnn-tf train``, ``evaluate``, ``export`` and ``crossval`` end to end on tiny synthetic data."""

import numpy as np
import pytest

from cli_helpers import TINY_OPTIONS, invoke, read_json, synthetic_folder


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One run of both stages on the built-in synthetic faces, shared by the tests below."""
    run = tmp_path_factory.mktemp("run") / "run"
    invoke("train", "--run-dir", run, *TINY_OPTIONS)
    return run


def test_train_writes_a_complete_run(trained_run):
    for name in ("config.json", "data.json", "split.json", "classes.json", "model.keras", "val_evaluation.json",
                 "stage1/metrics.csv", "stage2/metrics.csv", "features/train.npy"):
        assert (trained_run / name).exists(), name
    state = read_json(trained_run / "state.json")
    assert state["completed"] == ["stage1", "stage2", "model"]
    assert state["info"]["stage1"]["epochs"] == 2 and state["info"]["stage2"]["epochs"] == 2
    config = read_json(trained_run / "config.json")
    assert config["num_paths"] == 2 and config["lam"] == 20.0  # the paper's λ unless overridden
    split = read_json(trained_run / "split.json")
    assert split["val"] and not set(split["val"]) & set(split["train"])
    stage2 = (trained_run / "stage2/metrics.csv").read_text().splitlines()
    assert "path_2_loss" in stage2[0] and len(stage2) == 3
    epochs = read_json(trained_run / "stage2/metrics.json")
    assert [e["epoch"] for e in epochs] == [0, 1] and {"path_1_loss", "val_accuracy"} <= set(epochs[0])


def test_validation_split_is_subject_independent(trained_run):
    from dam_cnn_tf.commands.demo import synthetic_prepared
    from dam_cnn_tf.recipes.options import TrainConfig

    config = TrainConfig(**read_json(trained_run / "config.json"))
    data = synthetic_prepared(config)
    split = read_json(trained_run / "split.json")
    subjects = data.dataset.subjects()
    assert not set(subjects[split["train"]]) & set(subjects[split["val"]])


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")  # the weights alone are loaded
def test_train_scores_stage_one_on_the_validation_faces_too(trained_run):
    from dam_cnn_tf.commands.demo import synthetic_prepared
    from dam_cnn_tf.recipes.options import TrainConfig
    from dam_cnn_tf.evaluation.metrics import predict_probabilities
    from dam_cnn_tf.training.stages import build_stage1_model

    config = TrainConfig(**read_json(trained_run / "config.json"))
    data = synthetic_prepared(config)
    val = read_json(trained_run / "split.json")["val"]
    vgg_serd = build_stage1_model(config, len(data.class_names))
    vgg_serd.load_weights(trained_run / "stage1" / "vgg_serd.weights.h5")
    predicted = predict_probabilities(vgg_serd, data.faces[val], config.input_size).argmax(axis=1)
    result = read_json(trained_run / "val_evaluation.json")
    assert result["stage1_accuracy"] == pytest.approx(np.mean(predicted == data.labels[val]))
    assert result["num_samples"] == len(val)


def test_evaluate_and_export(trained_run, tmp_path):
    folder = synthetic_folder(tmp_path / "faces")
    result = invoke("evaluate", trained_run, "--data", folder, "--no-detect", "--out", tmp_path / "eval", "--quiet")
    assert "Accuracy:" in result.output
    report = read_json(tmp_path / "eval/evaluation.json")
    assert report["num_samples"] == 6 * 7 * 2
    assert np.asarray(report["confusion_matrix"]).sum() == report["num_samples"]
    assert (tmp_path / "eval/evaluation_confusion.png").stat().st_size > 0
    invoke("export", trained_run, tmp_path / "export")
    invoke("export", trained_run, tmp_path / "export")
    assert (tmp_path / "export/1/saved_model.pb").exists() and (tmp_path / "export/2/saved_model.pb").exists()


def test_stage_one_then_stage_two(tmp_path):
    run = tmp_path / "staged"
    first = invoke("train", "--run-dir", run, "--stage", "1", *TINY_OPTIONS)
    assert read_json(run / "state.json")["completed"] == ["stage1"]
    assert not (run / "model.keras").exists()
    assert "Validation accuracy:" in first.output and "VGG-SERD" not in first.output  # stage 1 is the model
    second = invoke("train", "--run-dir", run, "--stage", "2", *TINY_OPTIONS)
    stage1 = read_json(run / "val_evaluation.json")["stage1_accuracy"]
    assert f"; VGG-SERD, stage 1's own classifier: {100 * stage1:.2f}%" in second.output
    assert read_json(run / "state.json")["completed"] == ["stage1", "stage2", "model"]


def test_crossval_subject_grouped(tmp_path):
    folder = synthetic_folder(tmp_path / "faces")
    out = tmp_path / "cv"
    result = invoke("crossval", "--data", folder, "--no-detect", "--protocol", "subject-kfold", "--folds", "2",
                    "--out", out, *TINY_OPTIONS)
    assert "mean ± std" in result.output
    summary = read_json(out / "results.json")
    assert summary["folds"] == 2 and len(summary["fold_accuracies"]) == 2
    assert np.asarray(summary["confusion_matrix"]).sum() == 6 * 7 * 2  # every face tested exactly once
    folds = read_json(out / "folds.json")["folds"]
    from dam_cnn_tf.data.datasets import load_dataset

    subjects = load_dataset(folder).subjects()
    for fold in folds:
        assert not set(subjects[fold["test"]]) & set(subjects[fold["train"] + fold["val"]])
    # Each fold's predictions, face by face, agree with its confusion matrix.
    from dam_cnn_tf.evaluation.metrics import read_predictions

    for i, fold in enumerate(folds):
        predictions = read_predictions(out / f"fold-{i:02d}" / "test_predictions.csv")
        assert sorted(predictions) == sorted(fold["test"])
        matrix = read_json(out / f"fold-{i:02d}" / "test_evaluation.json")["confusion_matrix"]
        assert sum(true == predicted for true, predicted in predictions.values()) == np.trace(matrix)
    for name in ("results.md", "results_confusion.csv", "results_confusion.png"):
        assert (out / name).stat().st_size > 0
    # A second call finds every fold done and trains nothing; --baselines adds the probes on the same folds.
    written = {p: p.stat().st_mtime_ns for p in out.glob("fold-*/**/*") if p.is_file()}
    again = invoke("crossval", "--data", folder, "--no-detect", "--protocol", "subject-kfold", "--folds", "2",
                   "--out", out, "--baselines", *TINY_OPTIONS)
    assert {p: p.stat().st_mtime_ns for p in written} == written
    assert read_json(out / "results.json")["fold_accuracies"] == summary["fold_accuracies"]
    pixels = read_json(out / "baseline-pixels" / "results.json")
    assert pixels["test_indices"] == [f["test"] for f in folds]
    difference = 100 * (np.mean(summary["fold_accuracies"]) - np.mean(pixels["fold_accuracies"]))
    report = (out / "results.md").read_text()
    assert report.count("## Against the baselines") == 1 and f"{difference:+.2f} ±" in report
    assert "## Against the baselines" in again.output
    # VGG-SERD's own classifier was tested on the same faces: its row reads DAM-CNN − VGG-SERD.
    stage1 = [read_json(out / f"fold-{i:02d}" / "stage1_test_evaluation.json")["accuracy"] for i in range(2)]
    assert summary["stage1_fold_accuracies"] == stage1
    gain = 100 * (np.mean(summary["fold_accuracies"]) - np.mean(stage1))
    assert f"| VGG-SERD: stage 1's own classifier (fc6-fc8), same runs | {100 * np.mean(stage1):.2f} ± " in report
    assert f"{gain:+.2f} ±" in report
    assert f"**{100 * np.mean(stage1):.2f} ± {100 * np.std(stage1):.2f}**" in report  # also without --baselines
    assert (np.mean(summary["fold_accuracies"]) < np.mean(stage1)) == ("Note: stage 2 lowered" in again.output)
    # Both models are also scored on each fold's validation faces: fractions of that many faces.
    for key in ("validation_fold_accuracies", "stage1_validation_fold_accuracies"):
        for accuracy, fold in zip(summary[key], folds):
            correct = accuracy * len(fold["val"])
            assert 0 <= accuracy <= 1 and np.isclose(correct, round(correct))
    assert f"VGG-SERD {100 * np.mean(summary['stage1_validation_fold_accuracies']):.2f}%" in report
