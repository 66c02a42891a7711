"""Images in 0-1 given to a model that reads 0-255: the commonest silent mistake with a preset.

Every DAM-CNN model takes raw RGB in 0-255 (normalisation is inside it). Images scaled to 0-1,
or -1-1, reach it as nearly black faces, and it answers one class for all of them without a
word. A batch of float images whose largest value is 1 or less is never a batch of 0-255
photos worth classifying, so it is flagged: with a warning from a Keras model (a dark or blank
batch may be legitimate in someone's pipeline), and refused by ``Predictor``/``analyze``, whose
face detector would find nothing in such an image anyway.
"""

from __future__ import annotations

import numpy as np

UNIT_RANGE_LIMIT = 1.0


class InputRangeWarning(UserWarning):
    """Float images whose values all lie in [-1, 1] given to a model that reads 0-255."""


def unit_range_max(images):
    """The largest value of ``images`` when they are a float array (or eager tensor) whose values
    are all 1 or less, i.e. clearly not 0-255; else None. Symbolic tensors (a graph being traced)
    cannot be inspected and give None."""
    if isinstance(images, (list, tuple)):
        try:
            images = np.asarray(images)
        except (ValueError, TypeError):
            return None
    if not isinstance(images, np.ndarray):
        if not hasattr(images, "dtype") or not hasattr(images, "shape"):
            return None
        try:  # an eager tensor of any backend; a traced one raises here and is left alone
            images = np.asarray(images)
        except Exception:  # noqa: BLE001  (TF, JAX and torch each raise their own type)
            return None
    if images.size == 0 or not np.issubdtype(images.dtype, np.floating):
        return None
    largest = float(np.max(images))
    return largest if largest <= UNIT_RANGE_LIMIT else None


def unit_range_message(largest: float) -> str:
    return (f"the images' largest value is {largest:.3g}: DAM-CNN models take RGB in 0-255, "
            "not 0-1 (multiply by 255), and answer one class for every such face")
