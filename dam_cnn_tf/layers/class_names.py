"""Class probabilities that carry their classes' names into the saved model."""

from __future__ import annotations

from typing import Sequence

import keras


@keras.saving.register_keras_serializable(package="dam_cnn_tf")
class NamedProbabilities(keras.layers.Layer):
    """The identity on ``(B, K)`` class probabilities; ``class_names`` (K of them) are saved
    with the model, so a shipped model needs no ``classes.json`` to say what it predicts."""

    def __init__(self, class_names: Sequence[str], **kwargs):
        super().__init__(**kwargs)
        names = [str(name) for name in class_names]
        if not names or len(set(names)) != len(names) or not all(names):
            raise ValueError(f"class_names must be distinct non-empty names, got {list(class_names)}")
        self.class_names = tuple(names)

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] != len(self.class_names):
            raise ValueError(f"{len(self.class_names)} class names for {input_shape[-1]} probabilities")
        super().build(input_shape)

    def call(self, probabilities):
        return probabilities

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "class_names": list(self.class_names)}


def class_names_of(model: keras.Model):
    """The class names a model carries in a ``NamedProbabilities`` layer, or None."""
    for layer in model.layers:
        if isinstance(layer, NamedProbabilities):
            return list(layer.class_names)
    return None
