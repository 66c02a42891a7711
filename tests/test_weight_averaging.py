"""Polyak averaging in training (``ema_momentum``): what is validated, kept and resumed."""

import numpy as np
import pytest
import keras
import tensorflow as tf

from dam_cnn_tf.training.config import ConfigError, TrainConfig
from dam_cnn_tf.training.distribute import make_optimizer
from dam_cnn_tf.training.stages import _fit

MOMENTUM = 0.8


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 5)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    # One fixed batch per epoch: training is deterministic, so runs can be compared exactly.
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    val = tf.data.Dataset.from_tensor_slices((x[:8] + 0.5, y[:8])).batch(8)
    return train, val


def model(momentum=MOMENTUM):
    keras.utils.set_random_seed(1)
    net = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)])
    net.compile(optimizer=make_optimizer("adam", 0.05, momentum),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return net


class RawWeights(keras.callbacks.Callback):
    """The raw weights after every step (before any callback swaps anything at the epoch's end)."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append([w.numpy().copy() for w in self.model.trainable_weights])


def numpy_average(steps, momentum):
    average = [w.copy() for w in steps[0]]
    for weights in steps[1:]:
        average = [momentum * a + (1 - momentum) * w for a, w in zip(average, weights)]
    return average


def test_the_average_is_validated_and_kept_not_the_last_step(tmp_path, monkeypatch):
    import dam_cnn_tf.training.stages as stages

    train, val = data()
    net = model()
    raw = RawWeights()
    monkeypatch.setattr(stages, "worker_callbacks", lambda model: [raw])
    epochs = 3
    history, done = _fit(net, train, val, epochs, tmp_path, "test", patience=10, verbose=0)
    assert done == epochs and len(raw.steps) == 2 * epochs
    expected = [numpy_average(raw.steps[:2 * (e + 1)], MOMENTUM) for e in range(epochs)]
    # Each epoch's validation loss is that of the average at the epoch's end.
    probe = model(momentum=0.0)
    for epoch, weights in enumerate(expected):
        probe.set_weights(weights)
        assert history.history["val_loss"][epoch] == pytest.approx(probe.evaluate(val, verbose=0), rel=1e-5)
    # The stage ends with the average of its best epoch, which differs from the last raw step.
    best = int(np.argmin(history.history["val_loss"]))
    for got, want in zip(net.get_weights(), expected[best]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not all(np.allclose(a, b) for a, b in zip(expected[-1], raw.steps[-1]))


def test_a_resumed_run_trains_on_from_the_raw_weights(tmp_path):
    train, val = data()
    for name in ("whole", "cut"):
        (tmp_path / name).mkdir()
    whole = model()
    _fit(whole, train, val, 4, tmp_path / "whole", "test", patience=10, verbose=0)
    first = model()
    _fit(first, train, val, 2, tmp_path / "cut", "test", patience=10, verbose=0)
    resumed = model()  # a new process: fresh model and optimizer, the backup on disk
    _, done = _fit(resumed, train, val, 4, tmp_path / "cut", "test", patience=10, verbose=0)
    assert done == 4
    for a, b in zip(whole.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    raw_whole = [v.numpy() for v in whole.optimizer._model_variables_moving_average]
    raw_resumed = [v.numpy() for v in resumed.optimizer._model_variables_moving_average]
    assert len(raw_whole) == len(whole.trainable_weights)
    for a, b in zip(raw_whole, raw_resumed):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_momentum_outside_zero_to_one_is_refused():
    with pytest.raises(ConfigError, match="--ema-momentum"):
        TrainConfig(ema_momentum=1.0)
    assert not getattr(make_optimizer("adam", 1e-3), "use_ema", False)


def test_stage1_with_averaging_resumes_a_killed_phase_and_completes_it(tmp_path, monkeypatch):
    """Both phases of a face-resnet stage 1 average their weights; a run killed just after a
    round's backup resumes and completes every round. (Its weights are not compared with an
    uninterrupted run's: a resumed stage draws its batches anew. The exact resume of the
    average is the test above.)"""
    import dam_cnn_tf.training.stages as stages
    from test_face_resnet import _manifest_of, _randomised
    from test_lp_ft import SIZE, config, faces
    from dam_cnn_tf.models.face_resnet import build_face_resnet
    from dam_cnn_tf.training.run_dir import RunDir

    manifest = _manifest_of(_randomised(build_face_resnet(input_shape=(SIZE, SIZE, 3))), tmp_path / "w")
    train, val = faces(8, 4), faces(4, 5)
    settings = config(manifest, ema_momentum=0.5, probe_steps=4, stage1_steps=4, patience=5)

    class Killed(Exception):
        pass

    class KilledAfterFirstBackup(stages.AtomicBackupAndRestore):
        kills = 0

        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            if KilledAfterFirstBackup.kills == 0 and self.backup_path.parent.name == "stage1":
                KilledAfterFirstBackup.kills += 1
                raise Killed

    monkeypatch.setattr(stages, "AtomicBackupAndRestore", KilledAfterFirstBackup)
    with pytest.raises(Killed):  # in fine-tuning, after its first round of 2 steps
        stages.train_stage1(settings, train, val, RunDir(tmp_path / "cut"), 3, verbose=0)
    run = RunDir(tmp_path / "cut")
    assert run.read_json("state.json")["completed"] == ["stage1_probe"]
    stages.train_stage1(settings, train, val, run, 3, verbose=0)
    assert KilledAfterFirstBackup.kills == 1
    assert run.read_json("state.json")["info"]["stage1_fine-tune"]["epochs"] == 2
    rows = (tmp_path / "cut" / "stage1" / "metrics.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in rows] == [0, 1]
