"""NaN in the data stops a fit with a message naming the epoch and batch (``StopOnNaN``).

The exported SavedModel's refusal of wrong input shapes and dtypes is tested in
tests/test_export.py (``test_signatures_reject_wrong_shapes_dtypes_and_bytes``).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from dam_cnn_tf.training.callbacks import StopOnNaN, TrainingDiverged


def _fit(nan_at, initial_epoch=0, epochs=3, batch_size=2):
    images = np.random.default_rng(0).uniform(0, 1, (8, 4, 4, 1)).astype("float32")
    labels = np.arange(8) % 2
    if nan_at is not None:
        images[nan_at, 1, 2, 0] = np.nan
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    guard = StopOnNaN("stage 1")
    history = model.fit(images, labels, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0,
                        initial_epoch=initial_epoch, callbacks=[guard])
    return guard, history


@pytest.mark.parametrize("nan_at, initial_epoch, batch", [(5, 0, 3), (0, 0, 1), (7, 2, 4)])
def test_nan_image_stops_the_fit_naming_epoch_and_batch(nan_at, initial_epoch, batch):
    guard, history = _fit(nan_at, initial_epoch)
    assert len(history.history["loss"]) == 1  # stopped inside the first epoch it ran
    assert guard.failure[:2] == (initial_epoch + 1, batch)
    with pytest.raises(TrainingDiverged) as info:
        guard.raise_if_failed()
    message = str(info.value)
    assert "\n" not in message and message.startswith("stage 1: loss became nan")
    assert f"epoch {initial_epoch + 1}, batch {batch}" in message


def test_finite_losses_run_every_epoch():
    guard, history = _fit(None)
    assert guard.failure is None and len(history.history["loss"]) == 3
    guard.raise_if_failed()  # nothing to raise
