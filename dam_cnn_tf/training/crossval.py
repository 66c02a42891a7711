"""Cross-validation of DAM-CNN (§4.1.2): train and test on every fold of a protocol.

Each fold is a run directory of its own inside the output directory, so an interrupted
cross-validation resumes at the fold, and within the fold at the epoch, where it stopped.
Model selection uses each fold's validation part; the test part is only predicted once.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from dam_cnn_tf.data.protocols import Fold, save_folds
from dam_cnn_tf.training.config import TrainConfig
from dam_cnn_tf.training.evaluation import classification_report, predict_probabilities
from dam_cnn_tf.training.prepare import PreparedData
from dam_cnn_tf.training.reports import crossval_markdown, mean_std, write_evaluation
from dam_cnn_tf.training.run_dir import RunDir, atomic_write_json, atomic_write_text
from dam_cnn_tf.training.stages import train_dam_cnn


def run_fold(data: PreparedData, fold: Fold, config: TrainConfig, run: RunDir, stage: str = "all", verbose: int = 1) -> dict:
    """Train on ``fold.train`` (selecting on ``fold.val``), test on ``fold.test``."""
    done = run.read_json("test_evaluation.json")
    if done is not None and "test" in run.completed():
        return done
    with run.locked():
        train = data.face_set(fold.train, config.pair_attribute)
        val = data.face_set(fold.val, config.pair_attribute)
        model = train_dam_cnn(config, train, val, run, data.class_names, stage=stage, verbose=verbose)
        probabilities = predict_probabilities(model, data.faces[fold.test], config.input_size)
        result = classification_report(data.labels[fold.test], probabilities, data.class_names)
        result["fold"] = fold.name
        write_evaluation(result, run.path, stem="test_evaluation", title=f"{fold.name}: test")
        run.mark_completed("test", accuracy=result["accuracy"])
    keras.backend.clear_session()
    return result


def run_crossval(data: PreparedData, folds: list, config: TrainConfig, out_dir, name: str, stage: str = "all",
                 verbose: int = 1) -> dict:
    """All folds, then per-fold and mean ± std accuracy and the summed confusion matrix."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", config.to_dict())
    save_folds(out / "folds.json", folds, dataset=data.dataset.name, class_names=list(data.class_names))
    results = []
    for i, fold in enumerate(folds):
        if verbose:
            print(f"Fold {i + 1}/{len(folds)} ({fold.name}): {len(fold.train)} train, {len(fold.val)} val, "
                  f"{len(fold.test)} test")
        results.append(run_fold(data, fold, config, RunDir(out / f"fold-{i:02d}"), stage, verbose))
    accuracies = [r["accuracy"] for r in results]
    mean, std = mean_std(accuracies)
    summed = np.sum([r["confusion_matrix"] for r in results], axis=0)
    summary = {
        "name": name,
        "dataset": data.dataset.name,
        "stage": stage,
        "folds": len(results),
        "fold_accuracies": accuracies,
        "mean_accuracy": mean,
        "std_accuracy": std,
        "num_samples": int(summed.sum()),
        "pooled_accuracy": float(np.trace(summed) / max(1, summed.sum())),
        "confusion_matrix": summed.tolist(),
        "class_names": list(data.class_names),
    }
    rows = [{"fold": r["fold"], "accuracy": r["accuracy"], "num_samples": r["num_samples"]} for r in results]
    write_evaluation(summary, out, stem="results", title=f"{name}: {100 * mean:.1f} +/- {100 * std:.1f}%")
    atomic_write_text(out / "results.md", crossval_markdown(name, rows, summary))
    return summary
