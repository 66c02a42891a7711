"""Mirror images left to right inside a model (for averaging a face's and its mirror's predictions)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="dam_cnn_tf")
class MirrorImages(keras.layers.Layer):
    """``(B, H, W, C)`` images flipped along W: what a random horizontal flip in training shows."""

    def call(self, images):
        return ops.flip(images, axis=2)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)
