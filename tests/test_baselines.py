"""The baselines (logistic regressions on pixels and frozen features) and their paired comparisons."""

import numpy as np
import pytest

from cli_helpers import invoke, read_json
from dam_cnn_tf.data.protocols import Fold
from dam_cnn_tf.evaluation.baselines import C_GRID, C_LIMITS, choose_c, paired_difference, pixel_features, probe_fold

TOY = ["--input-size", "32", "--backbone", "compact-tiny", "--folds", "2", "--quiet"]


def test_paired_difference_counts_folds_and_agrees_with_numpy():
    model, baseline = [0.90, 0.80, 0.70, 0.85, 0.95], [0.80, 0.80, 0.75, 0.80, 0.90]
    d = paired_difference(model, baseline)
    diffs = np.array(model) - np.array(baseline)
    assert d["mean"] == pytest.approx(diffs.mean()) and d["std"] == pytest.approx(diffs.std())
    assert (d["wins"], d["ties"], d["losses"]) == (3, 1, 1)
    assert 0.0 < d["p_value"] <= 1.0  # Wilcoxon on the four untied folds
    with pytest.raises(ValueError, match="same folds"):
        paired_difference([0.5], [0.5, 0.6])


def test_one_untied_fold_has_no_p_value():
    assert paired_difference([0.9, 0.8], [0.9, 0.7])["p_value"] is None


def test_pixel_features_are_grey_levels_at_48():
    faces = np.zeros((2, 96, 96, 3), np.uint8)
    faces[0] = (200, 100, 50)
    faces[1, :48] = 255  # top half white
    features = pixel_features(faces)
    assert features.shape == (2, 48 * 48)
    assert features[0] == pytest.approx(np.full(48 * 48, 0.299 * 200 + 0.587 * 100 + 0.114 * 50), abs=1.0)
    image = features[1].reshape(48, 48)
    assert (image[:24] == 255).all() and (image[24:] == 0).all()


def _blobs(n, seed, informative=True):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    features = rng.normal(0, 1, (n, 20))
    if informative:
        features[:, :3] += 4.0 * np.eye(3)[labels]
    return features, labels


def test_probe_selects_on_validation_and_never_fits_on_the_test_part():
    features, labels = _blobs(90, 0)
    fold = Fold("f", train=np.arange(0, 60), test=np.arange(60, 75), val=np.arange(75, 90))
    result = probe_fold(features, labels, fold, ("a", "b", "c"))
    assert result["accuracy"] > 0.9 and C_LIMITS[0] <= result["C"] <= C_LIMITS[1]
    # Relabelling the test part changes the score, never what was fitted or chosen.
    shuffled = labels.copy()
    shuffled[60:75] = (labels[60:75] + 1) % 3
    again = probe_fold(features, shuffled, fold, ("a", "b", "c"))
    assert again["C"] == result["C"] and again["accuracy"] < 0.2


def test_the_grid_grows_past_an_edge_until_the_best_c_is_inside_it():
    tried = []

    def peaked(at):
        def score(c):
            tried.append(c)
            return -abs(np.log10(c) - np.log10(at))  # best at ``at``, worse a decade either way
        return score

    best, scores = choose_c(peaked(1e-5))  # below the grid's lowest C
    assert best == pytest.approx(1e-5) and min(scores) < best < max(scores)
    assert sorted(scores) == pytest.approx([1e-6, 1e-5, 1e-4, *C_GRID]) and len(tried) == len(scores)
    best, scores = choose_c(peaked(100.0))  # above its highest
    assert best == pytest.approx(100.0) and min(scores) < best < max(scores)
    best, _ = choose_c(peaked(0.01))  # inside: nothing more is tried
    assert best == 0.01
    # Never beyond the limits: a best C past them stops at the limit.
    best, scores = choose_c(peaked(1e-9), limits=(1e-4, 10.0))
    assert best == pytest.approx(1e-4) and min(scores) == pytest.approx(1e-4)
    # Ties go to the stronger regularisation.
    assert choose_c(lambda c: 1.0 if c >= 0.01 else 0.5)[0] == 0.01


def test_a_probe_whose_best_c_lies_beyond_the_old_grid_chooses_it_inside_the_cs_tried():
    # Wide and weakly informative, so that weaker regularisation than C = 1 pays on validation.
    rng = np.random.default_rng(2)
    labels = rng.choice(3, size=400, p=[0.5, 0.3, 0.2])
    features = rng.normal(0, 1, (400, 1000)) + 0.1 * np.eye(3)[labels] @ rng.normal(0, 1, (3, 1000))
    fold = Fold("f", train=np.arange(150), val=np.arange(150, 300), test=np.arange(300, 400))
    result = probe_fold(features.astype(np.float32), labels, fold, ("a", "b", "c"))
    scores = {float(c): s for c, s in result["C_scores"].items()}
    assert scores[1.0] > scores[0.1]  # today's grid alone would have stopped at its edge, C = 1
    assert result["C"] > 1.0 and min(scores) < result["C"] < max(scores)
    assert scores[result["C"]] == max(scores.values())


def test_experiment_baselines_through_the_command_line(tmp_path):
    out = tmp_path / "out"
    result = invoke("experiment", "baselines", "--synthetic", "6", "--synthetic-images", "1", *TOY, "--out", out)
    table = read_json(out / "baselines.json")
    assert [r["key"] for r in table["rows"]] == ["baseline-pixels"]  # no pretrained weights: no frozen probe
    pixels = read_json(out / "baseline-pixels" / "results.json")
    assert pixels["folds"] == 2 and np.asarray(pixels["confusion_matrix"]).sum() == 6 * 7
    # The command's folds and faces are the ones a direct call sees (the synthetic faces at seed 0).
    from dam_cnn_tf.commands.crossval import make_folds
    from dam_cnn_tf.commands.demo import synthetic_prepared
    from dam_cnn_tf.recipes.options import TrainConfig

    data = synthetic_prepared(TrainConfig(input_size=32), 6, 1, 0)
    _, folds = make_folds("subject-kfold", data, 2, 0, TrainConfig().val_fraction, "synthetic")
    assert pixels["test_indices"] == [f.test.tolist() for f in folds]
    expected = [probe_fold(pixel_features(data.faces), data.labels, f, data.class_names)["accuracy"] for f in folds]
    assert pixels["fold_accuracies"] == pytest.approx(expected)
    assert "raw pixels" in result.output
    # Same folds again: read back, not refitted.
    stamp = (out / "baseline-pixels" / "results.json").stat().st_mtime_ns
    invoke("experiment", "baselines", "--synthetic", "6", "--synthetic-images", "1", *TOY, "--out", out)
    assert (out / "baseline-pixels" / "results.json").stat().st_mtime_ns == stamp


def test_a_model_below_the_frozen_probe_is_told_in_one_line():
    from dam_cnn_tf.evaluation.baselines import FROZEN, PIXELS, below_probe_warning, comparison_markdown

    model = {"name": "DAM-CNN", "mean_accuracy": 0.80, "std_accuracy": 0.05, "fold_accuracies": [0.75, 0.85]}
    frozen = {"name": "frozen", "mean_accuracy": 0.82, "std_accuracy": 0.01, "fold_accuracies": [0.81, 0.83]}
    pixels = {"name": "pixels", "mean_accuracy": 0.60, "std_accuracy": 0.01, "fold_accuracies": [0.59, 0.61]}
    warning = below_probe_warning(model, {PIXELS.key: pixels, FROZEN.key: frozen})
    assert warning is not None and "\n" not in warning
    assert "mean (80.00%) is below" in warning and "(82.00%)" in warning and "docs/results.md" in warning
    assert warning in comparison_markdown(model, {PIXELS.key: pixels, FROZEN.key: frozen})
    assert below_probe_warning({**model, "mean_accuracy": 0.82}, {FROZEN.key: frozen}) is None  # a tie is not below
    assert below_probe_warning(model, {PIXELS.key: pixels}) is None  # no probe, no claim


def test_a_stage_2_that_lowers_stage_1s_mean_is_told_in_one_line():
    from dam_cnn_tf.evaluation.reports import below_stage1_note, crossval_markdown

    summary = {"folds": 2, "fold_accuracies": [0.70, 0.80], "mean_accuracy": 0.75, "std_accuracy": 0.05,
               "stage1_fold_accuracies": [0.80, 0.84], "num_samples": 20, "class_names": ["a", "b"],
               "confusion_matrix": [[8, 2], [3, 7]]}
    note = below_stage1_note(summary)
    assert note is not None and "\n" not in note
    assert "scored 82.00%" in note and "DAM-CNN 75.00%" in note and "docs/results.md" in note
    rows = [{"fold": f"f{i}", "accuracy": a, "num_samples": 10} for i, a in enumerate(summary["fold_accuracies"])]
    report = crossval_markdown("run", rows, summary)
    assert "80.00, 84.00; **82.00 ± 2.00**" in report and note in report
    # Stage 2 at or above stage 1, a run without stage-1 figures, or figures of other folds: no note.
    assert below_stage1_note({**summary, "mean_accuracy": 0.82}) is None
    without = {k: v for k, v in summary.items() if k != "stage1_fold_accuracies"}
    assert below_stage1_note(without) is None
    assert below_stage1_note({**summary, "stage1_fold_accuracies": [0.9]}) is None
    assert "Stage 1 alone" not in crossval_markdown("run", rows, without)
    # With the validation parts scored too, the report and the note give them: where to choose.
    scored = {**summary, "validation_fold_accuracies": [0.5, 0.6], "stage1_validation_fold_accuracies": [0.9, 1.0]}
    assert "VGG-SERD 95.00%, DAM-CNN 55.00%" in below_stage1_note(scored)
    assert "On the validation parts, where a choice between the two belongs: VGG-SERD 95.00%, DAM-CNN 55.00%" \
        in crossval_markdown("run", rows, scored)
    assert "validation parts" not in note


def test_the_report_says_on_how_many_folds_stage_1_kept_the_probes_state():
    from dam_cnn_tf.evaluation.reports import crossval_markdown

    summary = {"folds": 3, "fold_accuracies": [0.7, 0.8, 0.9], "mean_accuracy": 0.8, "std_accuracy": 0.08,
               "stage1_fold_accuracies": [0.7, 0.8, 0.9], "num_samples": 30, "class_names": ["a", "b"],
               "confusion_matrix": [[12, 3], [3, 12]], "stage1_kept": ["probe", "fine-tuned", "probe"]}
    rows = [{"fold": f"f{i}", "accuracy": a, "num_samples": 10} for i, a in enumerate(summary["fold_accuracies"])]
    assert "kept the probe's state (SERD and fc6-fc8 on the frozen backbone) on 2 of 3 folds" \
        in crossval_markdown("run", rows, summary)
    tuned = {**summary, "stage1_kept": ["fine-tuned"] * 3}
    assert "probe's state" not in crossval_markdown("run", rows, tuned)


def test_mcnemar_counts_the_disagreements_and_their_exact_p():
    """Face-level paired test: only the faces one model gets right and the other wrong count,
    and p is the two-sided exact binomial tail, computed here from its terms."""
    import math

    from dam_cnn_tf.evaluation.baselines import mcnemar

    a = np.array([1, 1, 1, 1, 1, 0, 0, 1, 0, 1], bool)
    b = np.array([1, 0, 0, 0, 0, 1, 0, 1, 0, 0], bool)
    result = mcnemar(a, b)
    assert (result["only_first_right"], result["only_second_right"]) == (5, 1)
    expected = min(1.0, 2 * sum(math.comb(6, k) for k in range(2)) / 2 ** 6)
    assert result["p_value"] == pytest.approx(expected)
    assert mcnemar(a, a)["p_value"] == 1.0
