"""Cross-validation of DAM-CNN (§4.1.2): train and test on every fold of a protocol.

Each fold is a run directory of its own inside the output directory, so an interrupted
cross-validation resumes at the fold, and within the fold at the epoch, where it stopped.
Model selection uses each fold's validation part; the test part is only predicted once.

With several workers (``--strategy multiworker``) every worker runs every fold that is not done,
in the same order, so that their collectives match; the chief writes ``out_dir``, the others
train each fold in a private copy of the chief's fold and write nothing there.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Optional

import numpy as np

from dam_cnn_tf.data.protocols import Fold, save_folds
from dam_cnn_tf.evaluation.protocol import finished_result, fold_plan, train_and_evaluate
from dam_cnn_tf.evaluation.reports import crossval_markdown, mean_std, write_evaluation
from dam_cnn_tf.recipes.options import TrainConfig, config_from_saved
from dam_cnn_tf.recipes.plan import PlanError
from dam_cnn_tf.training.prepare import PreparedData
from dam_cnn_tf.training.run_dir import RunDir, atomic_write_json, atomic_write_text
from dam_cnn_tf.training.workers import private_copy


def fold_dir(out_dir, index: int) -> Path:
    return Path(out_dir) / f"fold-{index:02d}"


def fold_result(run: RunDir) -> Optional[dict]:
    """The test result of a fold whose run is complete, else None."""
    return finished_result(run)


def completed_folds(out_dir) -> set:
    """The indices of the folds complete in ``out_dir``. With several workers, each reads this
    before they meet (the chief writes only after), so the folds skipped are the same on all."""
    indices = {int(p.name[5:]) for p in Path(out_dir).glob("fold-*") if p.name[5:].isdigit()}
    return {i for i in indices if fold_result(RunDir(fold_dir(out_dir, i))) is not None}


def run_fold(data: PreparedData, fold: Fold, plan, run: RunDir, stage: str = "all", verbose: int = 1) -> dict:
    """Train on ``fold.train`` (selecting on ``fold.val``), test on ``fold.test``: see
    ``protocol.train_and_evaluate``. VGG-SERD's own classifier (stage 1, fc6-fc8) is tested on
    the same faces too (``stage1_test_evaluation.json``): what stage 2 adds, as Table 4 asks."""
    return train_and_evaluate(data, fold, plan, run, stage, verbose, remedy=RESTART_HINT)


RESTART_HINT = "use another --out, or --restart to discard its folds"


def check_same_settings(out: Path, settings: TrainConfig, restart: bool = False) -> None:
    """A cross-validation folder holds folds of one set of settings: refuse others in one line
    naming the fields (its finished folds would be reported as if they were theirs), or, with
    ``restart``, discard the folds it holds."""
    saved_path = out / "config.json"
    if not saved_path.exists():
        return
    if restart:
        for old in [*out.glob("fold-*"), saved_path, out / "folds.json"]:
            shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)
        return
    saved = config_from_saved(RunDir(out).read_json("config.json"), saved_path)
    differing = sorted(k for k, v in settings.to_dict().items() if saved.to_dict().get(k) != v)
    if differing:
        raise PlanError(f"{out}: holds folds of other settings (differs in {', '.join(differing)}); {RESTART_HINT}")


def format_duration(seconds: float) -> str:
    """``"40 s"``, ``"12 min"``, ``"2 h 05 min"``."""
    seconds = round(seconds)
    if seconds < 90:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 90 else f"{minutes // 60} h {minutes % 60:02d} min"


def run_crossval(data: PreparedData, folds: list, config: TrainConfig, out_dir, name: str, stage: str = "all",
                 verbose: int = 1, done: Optional[set] = None, private_dir=None, restart: bool = False,
                 sources: Optional[dict] = None) -> dict:
    """All folds, then per-fold and mean ± std accuracy and the summed confusion matrix.

    ``config``: the settings; each fold runs their plan on its training part (``sources``: the
    recipes they came from). ``done``: the folds complete in ``out_dir`` (default: read now),
    reported, not retrained. ``private_dir``: this process is a non-chief worker; it trains
    each other fold in a copy of the chief's fold there and writes nothing to ``out_dir``.
    A folder holding folds of other settings is refused, or emptied first with ``restart``.
    """
    out = Path(out_dir)
    chief = private_dir is None
    if chief:
        check_same_settings(out, config, restart)
    done = completed_folds(out) if done is None or restart else done
    if chief:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", config.to_dict())
        save_folds(out / "folds.json", folds, dataset=data.dataset.name, class_names=list(data.class_names))
    results, durations = [], []  # durations: of the folds trained in this call
    for i, fold in enumerate(folds):
        run = RunDir(fold_dir(out, i))
        if i in done:
            results.append(fold_result(run))
            if verbose:
                print(f"Fold {i + 1}/{len(folds)} ({fold.name}): done before, {100 * results[-1]['accuracy']:.2f}%")
            continue
        if verbose:
            left = f"; about {format_duration(np.mean(durations) * (len(folds) - i))} left" if durations else ""
            print(f"Fold {i + 1}/{len(folds)} ({fold.name}): {len(fold.train)} train, {len(fold.val)} val, "
                  f"{len(fold.test)} test{left}")
        if not chief:
            run = private_copy(run, fold_dir(private_dir, i))
        start = time.monotonic()
        results.append(run_fold(data, fold, fold_plan(config, fold, sources), run, stage, verbose))
        durations.append(time.monotonic() - start)
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
    if all("stage1_accuracy" in r for r in results):  # folds run before this was recorded have none
        summary["stage1_fold_accuracies"] = [r["stage1_accuracy"] for r in results]
    if all("stage1_validation_accuracy" in r for r in results):
        summary["validation_fold_accuracies"] = [r["validation_accuracy"] for r in results]
        summary["stage1_validation_fold_accuracies"] = [r["stage1_validation_accuracy"] for r in results]
    if all("stage1_kept" in r for r in results):
        summary["stage1_kept"] = [r["stage1_kept"] for r in results]
    if all("stage2_kept_round" in r for r in results):
        summary["stage2_kept_rounds"] = [r["stage2_kept_round"] for r in results]
    rows = [{"fold": r["fold"], "accuracy": r["accuracy"], "num_samples": r["num_samples"]} for r in results]
    if chief:
        write_evaluation(summary, out, stem="results", title=f"{name}: {100 * mean:.1f} +/- {100 * std:.1f}%")
        atomic_write_text(out / "results.md", crossval_markdown(name, rows, summary))
    return summary
