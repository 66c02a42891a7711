"""The Keras model ``from_preset`` returns: the preset's functional model, warning on 0-1 input.

A Keras graph cannot warn about its input from inside, so the check sits in ``predict``,
``predict_on_batch`` and ``__call__`` on concrete arrays; inside a traced graph it is skipped.
The class is registered, so a saved preset model loads back as one.
"""

from __future__ import annotations

import warnings

import keras

from dam_cnn_tf.input_range import InputRangeWarning, unit_range_max, unit_range_message


def warn_on_unit_range(images, stacklevel: int = 3) -> None:
    largest = unit_range_max(images)
    if largest is not None:
        warnings.warn(unit_range_message(largest), InputRangeWarning, stacklevel=stacklevel)


@keras.saving.register_keras_serializable(package="dam_cnn_tf")
class PresetModel(keras.Model):
    """A functional DAM-CNN that warns (``InputRangeWarning``) when given 0-1 images."""

    @classmethod
    def wrapping(cls, model: keras.Model) -> "PresetModel":
        """The same layers and weights as the functional ``model``, as a ``PresetModel``."""
        return cls(inputs=model.input, outputs=model.output, name=model.name)

    def predict(self, x, *args, **kwargs):
        warn_on_unit_range(x)
        return super().predict(x, *args, **kwargs)

    def predict_on_batch(self, x):
        warn_on_unit_range(x)
        return super().predict_on_batch(x)

    def __call__(self, *args, **kwargs):
        if args:
            warn_on_unit_range(args[0])
        return super().__call__(*args, **kwargs)
