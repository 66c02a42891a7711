"""Stage 2's model selection: the monitored validation metric picks the kept epoch."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from dam_cnn_tf.recipes.options import ConfigError, TrainConfig
from dam_cnn_tf.training.stages import _fit

# Per epoch: the reconstruction keeps improving (val_loss falls every epoch), while the
# classifier is best at epoch 2 by cross-entropy and at epoch 3 by accuracy.
SCRIPT = {
    "loss": [50.0, 40.0, 30.0, 20.0],
    "cross_entropy": [1.0, 0.4, 0.6, 0.9],
    "accuracy": [0.3, 0.6, 0.7, 0.5],
}


class ScriptedNet(keras.Model):
    """One weight counts the training epochs; validation reports the scripted metrics."""

    def __init__(self):
        super().__init__()
        self.epochs_trained = self.add_weight(shape=(), initializer="zeros", trainable=False, name="epochs_trained")
        self.built = True

    def train_step(self, data):
        self.epochs_trained.assign_add(1.0)
        return {"epochs_trained": self.epochs_trained.value}

    def test_step(self, data):
        epoch = keras.ops.cast(self.epochs_trained, "int32") - 1
        return {name: keras.ops.take(keras.ops.convert_to_tensor(values), epoch) for name, values in SCRIPT.items()}


@pytest.mark.parametrize("monitor, kept_epoch", [("val_cross_entropy", 2), ("val_accuracy", 3), ("val_loss", 4)])
def test_the_monitor_picks_the_kept_epoch(tmp_path, monitor, kept_epoch):
    net = ScriptedNet()
    net.compile(optimizer="sgd")
    x = np.zeros((1, 1), "float32")
    _fit(net, x, (x, x), 4, tmp_path, "stage 2", patience=10, verbose=0, monitor=monitor, batch_size=1)
    assert float(net.epochs_trained.numpy()) == kept_epoch


def test_early_stopping_watches_the_monitor(tmp_path):
    net = ScriptedNet()
    net.compile(optimizer="sgd")
    x = np.zeros((1, 1), "float32")
    _fit(net, x, (x, x), 4, tmp_path, "stage 2", patience=1, verbose=0, monitor="val_cross_entropy", batch_size=1)
    # Best at epoch 2, no better at epoch 3: stopped there (val_loss would have run all 4).
    assert len((tmp_path / "metrics.csv").read_text().strip().splitlines()) == 1 + 3


def test_default_monitor_is_the_cross_entropy_and_bad_names_are_refused():
    assert TrainConfig().stage2_monitor == "val_cross_entropy"
    with pytest.raises(ConfigError, match="--stage2-monitor: must be one of val_cross_entropy, val_accuracy, val_loss"):
        TrainConfig(stage2_monitor="cross_entropy")


def test_the_best_checkpoint_holds_the_model_alone(tmp_path):
    # Adam's moments are not written with the best epoch: it is only loaded to end the stage.
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    net.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 3)).astype("float32"), rng.normal(size=(8, 2)).astype("float32")
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    _fit(net, train, (x, y), 3, tmp_path, "stage 1", patience=10, verbose=0)
    with np.load(tmp_path / "best.weights.npz") as saved:
        assert [saved[name].shape for name in saved.files] == [(3, 2), (2,)]
    assert len(net.optimizer.variables) > 2  # what the checkpoint left out
