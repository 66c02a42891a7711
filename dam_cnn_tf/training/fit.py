"""One phase's ``fit``: validation rounds with a resumable backup, the best checkpoint, early
stopping after the floor, a stop on NaN, and the start competing where the plan says so.

Model selection uses the validation part carved from the training data, never a test fold.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np

from dam_cnn_tf.recipes.options import STAGE2_MONITORS
from dam_cnn_tf.training.callbacks import (
    AtomicBackupAndRestore,
    AtomicModelCheckpoint,
    ResumableCSVLogger,
    ResumableEarlyStopping,
    StopOnNaN,
    completed_epochs,
    keep_start_as_best,
    restore_best_weights,
)
from dam_cnn_tf.training.distribute import prebuild_for_workers, worker_callbacks
from dam_cnn_tf.training.run_dir import atomic_write_json

# A phase's best checkpoint so far, in its directory (weights only; ``AtomicModelCheckpoint``).
BEST_WEIGHTS = "best.weights.npz"


def fit_rounds(model, train, val, epochs: int, stage_dir: Path, stage: str, patience: int, verbose: int,
               monitor: str = "val_loss", min_epochs: int = 0, start_competes: bool = False, **fit_kwargs):
    """``fit`` for ``epochs`` validation rounds; returns ``(history, rounds completed)``.

    ``monitor`` (a key of ``STAGE2_MONITORS``) picks the best round and drives early stopping,
    which cannot end the phase before ``min_epochs`` (the plan's floor). With
    ``start_competes`` the weights before the first step are scored too, and kept if no round
    beats them. The model ends with its best round's weights.
    """
    best = stage_dir / BEST_WEIGHTS
    if start_competes and not best.exists() and completed_epochs(stage_dir / "backup") == 0:
        scores = model.evaluate(val, verbose=0, return_dict=True)
        keep_start_as_best(model, best, monitor, float(scores[monitor.removeprefix("val_")]))
    nan_stop = StopOnNaN(stage)
    mode = STAGE2_MONITORS[monitor]
    callbacks = [  # the backup last: a round counts as done once everything else is written
        *worker_callbacks(model),
        nan_stop,
        AtomicModelCheckpoint(best, monitor=monitor, mode=mode),
        ResumableEarlyStopping(stage_dir / "early_stopping.json", monitor=monitor, mode=mode, patience=patience,
                               start_from_epoch=min_epochs),
        ResumableCSVLogger(stage_dir / "metrics.csv", stage_dir / "backup"),
        AtomicBackupAndRestore(stage_dir / "backup"),
    ]
    prebuild_for_workers(model, train)
    # The tf.data pipelines shuffle themselves (seeded), so fit must not.
    history = model.fit(train, validation_data=val, epochs=epochs, callbacks=callbacks, verbose=verbose,
                        shuffle=False, **fit_kwargs)
    nan_stop.raise_if_failed()
    if best.exists():
        restore_best_weights(model, best)  # the round with the best monitored validation metric
    metrics_as_json(stage_dir / "metrics.csv", stage_dir / "metrics.json")
    return history, completed_epochs(stage_dir / "backup")


def fit_phase(model, train, val, phase, stage_dir: Path, stage: str, verbose: int, **fit_kwargs):
    """``fit_rounds`` with a plan's ``Phase``: its rounds, floor, patience, monitor and start policy."""
    if not phase.by_epochs:
        fit_kwargs.setdefault("steps_per_epoch", phase.steps_per_round)
    return fit_rounds(model, train, val, phase.rounds, stage_dir, stage, phase.patience, verbose,
                      monitor=phase.monitor, min_epochs=phase.floor_rounds, start_competes=phase.start_competes,
                      **fit_kwargs)


def metrics_as_json(csv_path: Path, json_path: Path) -> None:
    """The per-round metrics also as JSON: a list of ``{"epoch": …, "loss": …, …}``."""
    if not csv_path.exists():
        return
    with open(csv_path, newline="") as f:
        rows = [{key: (int(value) if key == "epoch" else float(value)) for key, value in row.items()}
                for row in csv.DictReader(f)]
    atomic_write_json(json_path, rows)


def weights_fingerprint(model) -> str:
    """16 hex digits of the model's weights: what makes a cache of its outputs valid."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.asarray(weight.numpy()).tobytes())
    return digest.hexdigest()[:16]
