"""``--resample-pairs``: stage 2 draws fresh same-class targets every epoch, and resumes in step.

The features are one-hot rows, so every batch tells which anchor and which targets it holds.
"""

import keras
import numpy as np
import pytest

from dam_cnn_tf import MPVSNet
from dam_cnn_tf.recipes.options import ConfigError, TrainConfig
from dam_cnn_tf.data.face_set import FaceSet
from dam_cnn_tf.training.fit import fit_rounds as _fit
from dam_cnn_tf.training.stage2 import training_pairs as _training_pairs

N, PATHS, BATCH, EPOCHS = 24, 2, 5, 3
LABELS = np.arange(N) % 3


def faces():
    return FaceSet(np.zeros((N, 4, 4, 3), np.uint8), LABELS)


def config(**changes):
    return TrainConfig(num_paths=PATHS, stage2_batch_size=BATCH, stage2_epochs=EPOCHS, seed=4, **changes)


def targets_by_epoch(dataset, steps_per_epoch, epochs):
    """``{epoch: (N, PATHS) target table}`` read back from the one-hot batches."""
    tables, table, seen = [], np.full((N, PATHS), -1), 0
    for s, y in dataset.as_numpy_iterator():
        table[s.argmax(1)] = y["targets"].argmax(2)
        seen += 1
        if seen == steps_per_epoch:
            tables.append(table)
            table, seen = np.full((N, PATHS), -1), 0
    assert len(tables) == epochs and seen == 0, "the pass holds exactly the remaining epochs"
    return tables


def test_each_epoch_gets_new_same_class_targets(tmp_path):
    dataset, fit_kwargs = _training_pairs(config(resample_pairs=True), np.eye(N, dtype="float32"), faces(), PATHS,
                                          tmp_path)
    steps = fit_kwargs["steps_per_epoch"]
    assert steps == -(-N // BATCH)
    tables = targets_by_epoch(dataset, steps, EPOCHS)
    for table in tables:
        assert (table >= 0).all(), "every anchor appears once per epoch"
        assert (LABELS[table] == LABELS[:, None]).all(), "targets share the anchor's class"
        assert (table != np.arange(N)[:, None]).all(), "an anchor is not its own target"
    # Fresh draws: most anchors get other targets from one epoch to the next.
    assert (tables[0] != tables[1]).any(1).mean() > 0.5
    assert (tables[1] != tables[2]).any(1).mean() > 0.5
    again, _ = _training_pairs(config(resample_pairs=True), np.eye(N, dtype="float32"), faces(), PATHS, tmp_path)
    assert all((a == b).all() for a, b in zip(tables, targets_by_epoch(again, steps, EPOCHS))), "seeded"


def test_without_the_flag_the_stored_pairs_repeat(tmp_path):
    dataset, fit_kwargs = _training_pairs(config(), np.eye(N, dtype="float32"), faces(), PATHS, tmp_path)
    assert fit_kwargs == {}
    first, second = (targets_by_epoch(dataset, -(-N // BATCH), 1)[0] for _ in range(2))
    assert (first == second).all()


class StopAfter(keras.callbacks.Callback):
    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            self.model.stop_training = True


def test_fit_runs_every_epoch_and_a_resumed_run_continues_with_its_epochs_targets(tmp_path, monkeypatch):
    cfg = config(resample_pairs=True)
    features = np.eye(N, dtype="float32")
    net = MPVSNet(N, 3, encoder_units=4, num_paths=PATHS, fc_units=4, dropout=0.0)
    net.compile(optimizer="adam", mpae_optimizer="adam")
    net.mpae.adapt(features)
    val = (features, {"label": LABELS, "targets": features[np.stack([np.roll(np.arange(N), 3)] * PATHS, 1)]})
    train, fit_kwargs = _training_pairs(cfg, features, faces(), PATHS, tmp_path)
    # Interrupted after one epoch (the backup records it), as a kill would leave it.
    original_fit = keras.Model.fit
    monkeypatch.setattr(keras.Model, "fit", lambda self, *a, **k: original_fit(
        self, *a, **{**k, "callbacks": [*k["callbacks"][:-1], StopAfter(1), k["callbacks"][-1]]}))
    _fit(net, train, val, EPOCHS, tmp_path, "stage 2", patience=10, verbose=0, **fit_kwargs)
    monkeypatch.undo()
    resumed, _ = _training_pairs(cfg, features, faces(), PATHS, tmp_path)
    uninterrupted, _ = _training_pairs(cfg, features, faces(), PATHS, tmp_path / "fresh")
    steps = fit_kwargs["steps_per_epoch"]
    left = targets_by_epoch(resumed, steps, EPOCHS - 1)
    whole = targets_by_epoch(uninterrupted, steps, EPOCHS)
    assert all((a == b).all() for a, b in zip(left, whole[1:])), "the resumed pass starts at epoch 1"
    _, epochs = _fit(net, resumed, val, EPOCHS, tmp_path, "stage 2", patience=10, verbose=0,
                     **fit_kwargs)
    assert epochs == EPOCHS
    rows = (tmp_path / "metrics.csv").read_text().strip().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in rows] == list(range(EPOCHS))


def test_resampling_is_refused_with_end_to_end_training():
    with pytest.raises(ConfigError, match="^--resample-pairs: "):
        TrainConfig(resample_pairs=True, end_to_end=True)
