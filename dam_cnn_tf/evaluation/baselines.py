"""The trivial bars every result must clear: linear probes on the same folds as the models.

Two baselines, each a scikit-learn logistic regression on standardised inputs:

- ``pixels``: the grey face itself, shrunk to ``PIXEL_SIZE`` squared (what a model that learnt
  nothing about faces could still use);
- ``frozen``: the flattened feature map SERD would sit on, from the configuration's backbone
  with its pretrained weights and nothing trained (what fine-tuning and SERD must add to).

As for the models, the validation part of each fold selects (here the inverse regularisation
strength ``C``), the probe is fitted on the training part only and the test part is predicted
once. Each baseline is written like a cross-validation (``OUT/<key>/results.json`` and one
``fold-XX.json`` per fold), so tables can compare models with it fold by fold.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
from scipy.stats import wilcoxon
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dam_cnn_tf.recipes.options import TrainConfig
from dam_cnn_tf.evaluation.metrics import classification_report
from dam_cnn_tf.evaluation.reports import crossval_markdown, mean_std, write_evaluation
from dam_cnn_tf.training.run_dir import atomic_write_json, atomic_write_text

PIXEL_SIZE = 48  # CK+48's own size; larger faces are shrunk to it (INTER_AREA, as faces are prepared)
# The inverse regularisation strengths tried first; where the best sits at an edge of those
# tried, the next decade beyond it is tried too, within C_LIMITS (both FER2013 baselines chose
# the lowest of the four, so the grid alone cannot say the choice is not cut off).
C_GRID = (1e-3, 1e-2, 1e-1, 1.0)
C_LIMITS = (1e-6, 1e3)


@dataclasses.dataclass(frozen=True)
class Baseline:
    key: str
    label: str


PIXELS = Baseline("baseline-pixels", f"logistic regression on raw pixels ({PIXEL_SIZE}x{PIXEL_SIZE} grey)")
FROZEN = Baseline("baseline-frozen", "logistic regression on frozen backbone features")


def pixel_features(faces: np.ndarray, size: int = PIXEL_SIZE) -> np.ndarray:
    """uint8 RGB faces ``(n, S, S, 3)`` to flattened grey ``size`` x ``size`` pixels, float32."""
    out = np.empty((len(faces), size * size), np.float32)
    for i, face in enumerate(faces):
        grey = cv2.cvtColor(np.ascontiguousarray(face), cv2.COLOR_RGB2GRAY) if face.ndim == 3 else face
        if grey.shape != (size, size):
            grey = cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)
        out[i] = grey.reshape(-1)
    return out


def frozen_features(faces: np.ndarray, config: TrainConfig, batch_size: int = 32) -> np.ndarray:
    """The configuration's backbone, pretrained and frozen: its feature map, flattened."""
    import keras

    from dam_cnn_tf.backbones import frozen_feature_model
    from dam_cnn_tf.data.pipeline import image_dataset

    model = frozen_feature_model(config.backbone, config.input_size, config.backbone_weights)
    batches = image_dataset(faces, None, batch_size, config.input_size, preprocess=False)
    features = model.predict(batches, verbose=0)
    keras.backend.clear_session()
    return features.reshape(len(faces), -1).astype(np.float32)


def probe_fold(features: np.ndarray, labels: np.ndarray, fold, class_names, seed: int = 0) -> dict:
    """Fit on ``fold.train`` for each C, keep the C best on ``fold.val``, test once on ``fold.test``.

    A fold without a validation part (a predefined split without one) keeps C = 1.
    """
    def fit(c):
        probe = make_pipeline(StandardScaler(),
                              LogisticRegression(C=c, max_iter=2000, random_state=seed))
        return probe.fit(features[fold.train], labels[fold.train])

    if len(fold.val):
        best, scores = choose_c(lambda c: fit(c).score(features[fold.val], labels[fold.val]))
    else:
        best, scores = 1.0, {}
    probe = fit(best)
    probabilities = np.zeros((len(fold.test), len(class_names)))
    probabilities[:, probe.classes_] = probe.predict_proba(features[fold.test])
    result = classification_report(labels[fold.test], probabilities, class_names)
    result.update(fold=fold.name, C=best, C_scores={f"{c:g}": s for c, s in sorted(scores.items())})
    return result


def choose_c(score, grid=C_GRID, limits=C_LIMITS) -> tuple:
    """``(best C, {C: validation score})``: ``score(C)`` over ``grid``, then one decade further
    beyond whichever edge the best sits at, until it sits inside the Cs tried or the next
    decade would leave ``limits``. Ties go to the stronger regularisation (the smaller C)."""
    scores = {c: score(c) for c in grid}
    while True:
        best = max(scores, key=lambda c: (scores[c], -c))
        low, high = min(scores), max(scores)
        beyond = best / 10 if best == low else best * 10 if best == high else None
        beyond = None if beyond is None else float(f"{beyond:.6g}")  # 1e-05, not 1.0000000000000002e-05
        if beyond is None or not limits[0] <= beyond <= limits[1]:
            return best, scores
        scores[beyond] = score(beyond)


def available(config: TrainConfig) -> tuple:
    """The baselines that mean something for ``config``: the frozen probe needs pretrained weights."""
    return (PIXELS, FROZEN) if config.backbone_weights else (PIXELS,)


def run_baselines(data, folds: list, config: TrainConfig, out, log=print) -> dict:
    """Every available baseline on every fold; ``{key: summary}`` as ``run_crossval`` writes them."""
    out = Path(out)
    summaries = {}
    for baseline in available(config):
        folder = out / baseline.key
        done = _read_if_same_folds(folder, folds)
        if done is not None:
            summaries[baseline.key] = done
            continue
        log(f"Baseline: {baseline.label}")
        features = pixel_features(data.faces) if baseline is PIXELS else frozen_features(data.faces, config)
        results = [probe_fold(features, data.labels, fold, data.class_names, config.seed) for fold in folds]
        summaries[baseline.key] = _write_summary(folder, baseline, results, folds, data, config)
    return summaries


def _write_summary(folder: Path, baseline: Baseline, results: list, folds: list, data, config) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    for i, result in enumerate(results):
        atomic_write_json(folder / f"fold-{i:02d}.json", result)
    accuracies = [r["accuracy"] for r in results]
    mean, std = mean_std(accuracies)
    summed = np.sum([r["confusion_matrix"] for r in results], axis=0)
    label = baseline.label if baseline is PIXELS else f"{baseline.label} ({config.backbone})"
    summary = {
        "name": label, "dataset": data.dataset.name, "stage": "baseline", "folds": len(results),
        "fold_names": [f.name for f in folds], "fold_accuracies": accuracies, "chosen_C": [r["C"] for r in results],
        "mean_accuracy": mean, "std_accuracy": std, "num_samples": int(summed.sum()),
        "pooled_accuracy": float(np.trace(summed) / max(1, summed.sum())),
        "confusion_matrix": summed.tolist(), "class_names": list(data.class_names),
        "test_indices": [f.test.tolist() for f in folds],
    }
    write_evaluation(summary, folder, stem="results", title=f"{label}: {100 * mean:.1f} +/- {100 * std:.1f}%")
    rows = [{"fold": r["fold"], "accuracy": r["accuracy"], "num_samples": r["num_samples"]} for r in results]
    atomic_write_text(folder / "results.md", crossval_markdown(label, rows, summary))
    return summary


def _read_if_same_folds(folder: Path, folds: list):
    """A baseline already computed on exactly these folds (same test faces) is not computed again."""
    import json

    path = folder / "results.json"
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    if summary.get("test_indices") != [f.test.tolist() for f in folds]:
        return None
    return summary


def paired_difference(accuracies, reference) -> dict:
    """Per-fold paired comparison of two models on the same folds (accuracies as fractions).

    The mean and std of the per-fold differences, the folds won, tied and lost, and the
    two-sided Wilcoxon signed-rank p-value (None with fewer than two untied folds).
    """
    a, b = np.asarray(accuracies, np.float64), np.asarray(reference, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired comparison needs the same folds ({len(a)} against {len(b)})")
    differences = a - b
    ties = np.isclose(differences, 0.0, atol=1e-12)
    p_value = None
    if int((~ties).sum()) >= 2:
        p_value = float(wilcoxon(differences[~ties]).pvalue)
    mean, std = mean_std(differences)
    return {"mean": mean, "std": std, "wins": int(((differences > 0) & ~ties).sum()), "ties": int(ties.sum()),
            "losses": int(((differences < 0) & ~ties).sum()), "p_value": p_value}


def mcnemar(a_correct, b_correct) -> dict:
    """McNemar's exact test on paired correctness, face by face: the faces only A gets right
    against those only B gets right (two-sided binomial p; 1 when they never disagree)."""
    from scipy.stats import binomtest

    a_correct, b_correct = np.asarray(a_correct, bool), np.asarray(b_correct, bool)
    only_a = int(np.sum(a_correct & ~b_correct))
    only_b = int(np.sum(~a_correct & b_correct))
    p = 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return {"only_first_right": only_a, "only_second_right": only_b, "p_value": p}


def below_probe_warning(summary: dict, baselines: dict):
    """One line when the model's mean is below the frozen-feature probe's on the same folds, else None."""
    frozen = baselines.get(FROZEN.key)
    if frozen is None or summary["mean_accuracy"] >= frozen["mean_accuracy"]:
        return None
    return (f"Warning: the model's mean ({100 * summary['mean_accuracy']:.2f}%) is below the logistic regression on "
            f"its frozen backbone features ({100 * frozen['mean_accuracy']:.2f}%) on the same folds: training lost "
            "what the pretrained features already give; see 'Below the frozen probe' in docs/results.md")


def comparison_markdown(summary: dict, baselines: dict) -> str:
    """A cross-validation's result next to its baselines, with the per-fold paired differences."""
    lines = ["", "## Against the baselines (same folds)", "",
             "| model | accuracy (%) mean ± std | model − baseline, per fold (points) | folds won / tied / lost "
             "| Wilcoxon p |", "|---|---:|---:|:---:|---:|",
             f"| {summary['name']} | {100 * summary['mean_accuracy']:.2f} ± {100 * summary['std_accuracy']:.2f} "
             "| — | — | — |"]
    references = list(baselines.values())
    if "stage1_fold_accuracies" in summary:  # what stage 2 (MPVS-Net) adds over stage 1 (Table 4)
        mean, std = mean_std(summary["stage1_fold_accuracies"])
        references.append({"name": "VGG-SERD: stage 1's own classifier (fc6-fc8), same runs",
                           "fold_accuracies": summary["stage1_fold_accuracies"], "mean_accuracy": mean,
                           "std_accuracy": std})
    for b in references:
        d = paired_difference(summary["fold_accuracies"], b["fold_accuracies"])
        p = "n/a" if d["p_value"] is None else f"{d['p_value']:.3f}"
        lines.append(f"| {b['name']} | {100 * b['mean_accuracy']:.2f} ± {100 * b['std_accuracy']:.2f} "
                     f"| {100 * d['mean']:+.2f} ± {100 * d['std']:.2f} | {d['wins']} / {d['ties']} / {d['losses']} "
                     f"| {p} |")
    warning = below_probe_warning(summary, baselines)
    if warning:
        lines += ["", f"**{warning}**"]
    return "\n".join(lines) + "\n"
