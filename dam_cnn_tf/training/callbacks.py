"""Keras callbacks made safe for runs that are killed and resumed.

Keras's own ``ModelCheckpoint``, ``BackupAndRestore`` and ``EarlyStopping`` write files in
place and keep their progress in memory; a run killed while saving leaves a broken file, and a
resumed run forgets the best score so far. These subclasses write to a temporary name and
rename, and keep their progress in a JSON file beside their output.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
from pathlib import Path

import keras
import numpy as np

from dam_cnn_tf.training.run_dir import RunDirError, atomic_write_json, atomic_write_text, temporary_sibling


def _read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


BACKUP_NAME = re.compile(r"epoch-\d{5}\.weights\.h5")


def _checked_state(path, valid=lambda state: True, **fields):
    """A state file's JSON with each field of the given type and passing ``valid``, or None if
    there is no file.

    A file that is there but malformed (edited, or from a foreign source) is refused in one
    line rather than trusted: its values choose which weights are loaded.
    """
    path = Path(path)
    if not path.exists():
        return None
    state = _read_json(path)
    ok = isinstance(state, dict) and all(
        isinstance(state.get(name), kind) and not isinstance(state.get(name), bool) for name, kind in fields.items()
    ) and valid(state)
    if not ok:
        raise RunDirError(f"{path}: malformed training state; delete it to restart this stage")
    return state


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """``ModelCheckpoint`` (best only) that writes atomically and remembers the best score.

    It keeps the model's weights alone, as ``.npz``: the best epoch is only ever loaded to end
    a stage (``restore_best_weights``), never trained on from, so the optimizer's state (two
    moments a weight with Adam, two thirds of a ``save_weights`` file) would be written at every
    improvement for nothing. Resuming reads the backup, which holds both.
    """

    def __init__(self, filepath, monitor: str = "val_loss", **kwargs):
        # Keras insists on its own file name for weights-only checkpoints; it only ever prints
        # that name here, since _save_model below writes filepath itself.
        super().__init__(f"{filepath}.weights.h5", monitor=monitor, save_best_only=True, save_weights_only=True,
                         **kwargs)
        self.final_path = Path(filepath)
        self.state_path = _best_state_path(self.final_path)

    def on_train_begin(self, logs=None):
        state = _checked_state(self.state_path, best=(int, float))
        if state and self.final_path.exists():
            self.best = float(state["best"])

    def _save_model(self, epoch, batch, logs):
        if self._should_save_model(epoch, batch, logs, str(self.final_path)):
            _write_best(self.model, self.final_path, self.best, epoch + 1, self.monitor)


def keep_start_as_best(model, filepath, monitor: str, value: float) -> None:
    """Make the model's weights before its first epoch the best checkpoint so far ("epoch" 0),
    with ``value`` its monitored score: ``AtomicModelCheckpoint(filepath)`` then keeps only an
    epoch that beats the start, and a stage that only got worse ends where it began."""
    _write_best(model, Path(filepath), value, 0, monitor)


def kept_epoch(filepath):
    """The epoch whose weights ``AtomicModelCheckpoint(filepath)`` holds (1 = the first, 0 = the
    start, with ``keep_start_as_best``), or None when nothing was checkpointed."""
    state = _checked_state(_best_state_path(Path(filepath)), epoch=int, valid=lambda state: state["epoch"] >= 0)
    return state["epoch"] if state else None


def _best_state_path(path: Path) -> Path:
    """Beside a best checkpoint, the JSON of its score and epoch."""
    return path.with_name(path.name + ".json")


def _write_best(model, path: Path, best: float, epoch: int, monitor: str) -> None:
    tmp = temporary_sibling(path)
    with open(tmp, "wb") as f:
        np.savez(f, *model.get_weights())
    os.replace(tmp, path)
    atomic_write_json(_best_state_path(path), {"best": float(best), "epoch": epoch, "monitor": monitor})


def restore_best_weights(model, path) -> None:
    """Load what ``AtomicModelCheckpoint`` kept into ``model`` (the same architecture)."""
    with np.load(path, allow_pickle=False) as saved:
        model.set_weights([saved[f"arr_{i}"] for i in range(len(saved.files))])


def _backup_state(backup_dir):
    return _checked_state(Path(backup_dir) / "state.json", epoch=int, weights=str,
                          valid=lambda state: state["epoch"] >= 0 and BACKUP_NAME.fullmatch(state["weights"]))


def completed_epochs(backup_dir) -> int:
    """Epochs a backup holds: how many a (possibly resumed) ``fit`` has completed."""
    state = _backup_state(backup_dir)
    return state["epoch"] if state else 0


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` at each epoch's end, whose backup is never half-written.

    Weights go to ``epoch-NNNNN.weights.h5`` (temporary name, then rename) and only then does
    ``state.json`` point to them, so a kill at any moment leaves the previous complete backup.
    """

    def __init__(self, backup_dir):
        super().__init__(str(backup_dir), save_freq="epoch", delete_checkpoint=False)
        self.backup_path = Path(backup_dir)
        self.state_path = self.backup_path / "state.json"

    def on_train_begin(self, logs=None):
        self._load_model()

    def _load_model(self):
        state = _backup_state(self.backup_path)
        if not state:
            return
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:  # so its moments are restored too
            optimizer.build(self.model.trainable_variables)
        self.model.load_weights(self.backup_path / state["weights"])
        self.model._initial_epoch = int(state["epoch"])

    def _save_model(self):
        self.backup_path.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{self._current_epoch:05d}.weights.h5"
        final = self.backup_path / name
        tmp = temporary_sibling(final)
        self.model.save_weights(tmp, overwrite=True)
        os.replace(tmp, final)
        atomic_write_json(self.state_path, {"epoch": self._current_epoch, "weights": name})
        for old in glob.glob(str(self.backup_path / "epoch-*.weights.h5")):
            if Path(old).name != name:
                os.remove(old)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """``EarlyStopping`` whose patience counter and best score survive a resume."""

    def __init__(self, state_path, **kwargs):
        super().__init__(**kwargs)
        self.state_path = Path(state_path)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        state = _checked_state(self.state_path, wait=int, best=(int, float))
        if state:
            self.wait, self.best = state["wait"], float(state["best"])

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if self.best is not None and math.isfinite(float(self.best)):
            atomic_write_json(self.state_path, {"wait": self.wait, "best": float(self.best)})


class ResumableCSVLogger(keras.callbacks.CSVLogger):
    """``CSVLogger`` that, on resume, drops rows of epochs the backup in ``backup_dir`` does
    not hold (they will run again). Put it before the backup callback, so an epoch's row is
    written before the backup that counts the epoch as done."""

    def __init__(self, filename, backup_dir):
        super().__init__(str(filename), append=True)
        self.path = Path(filename)
        self.backup_dir = Path(backup_dir)

    def on_train_begin(self, logs=None):
        restart = completed_epochs(self.backup_dir)
        if self.path.exists():
            lines = self.path.read_text().splitlines()
            kept = lines[:1] + [line for line in lines[1:] if line and int(line.split(self.sep)[0]) < restart]
            if len(kept) > 1:
                atomic_write_text(self.path, "\n".join(kept) + "\n")
            else:
                self.path.unlink()
        super().on_train_begin(logs)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the stage, epoch and batch."""


class StopOnNaN(keras.callbacks.Callback):
    """Stop at the first batch whose loss is NaN or infinite, remembering where it happened."""

    def __init__(self, stage: str):
        super().__init__()
        self.stage = stage
        self.epoch = 0
        self.failure = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.failure = (self.epoch + 1, batch + 1, float(loss))
            self.model.stop_training = True

    def raise_if_failed(self):
        if self.failure:
            epoch, batch, loss = self.failure
            raise TrainingDiverged(
                f"{self.stage}: loss became {loss} at epoch {epoch}, batch {batch}; "
                "check the input images for NaN/Inf or lower the learning rate"
            )
