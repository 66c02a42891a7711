"""The VGG-Face backbone (paper §3.1, Table 1) and its input convention.

Layer names follow the original Oxford release (conv1_1 … conv5_3, pool1 … pool5, fc6,
fc7, fc8) so that converted weights load by name.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from dam_cnn_tf import hparams
from dam_cnn_tf.weights.vgg_face_layout import (  # noqa: F401  (re-exported)
    CONV_LAYER_NAMES,
    VGG_FACE_CLASSES,
    VGG_FACE_DEPTHS,
    VGG_FACE_MEAN_BGR,
    VGG_FACE_WIDTHS,
)


def preprocess_input(images):
    """RGB images in 0-255 to the VGG-Face convention: BGR order, channel mean subtracted.

    Accepts ``(..., H, W, 1)`` grey images (repeated to three channels) or ``(..., H, W, 3)``
    RGB images, as NumPy arrays or tensors; returns float32 of shape ``(..., H, W, 3)``.
    """
    is_numpy = isinstance(images, np.ndarray)
    x = ops.cast(ops.convert_to_tensor(images), "float32")
    if x.shape[-1] == 1:
        x = ops.repeat(x, 3, axis=-1)
    elif x.shape[-1] != 3:
        raise ValueError(f"preprocess_input expects 1 or 3 channels, got shape {tuple(x.shape)}")
    x = ops.flip(x, axis=-1) - ops.convert_to_tensor(VGG_FACE_MEAN_BGR, "float32")
    return ops.convert_to_numpy(x) if is_numpy else x


@keras.saving.register_keras_serializable(package="dam_cnn_tf")
class VGGFacePreprocess(keras.layers.Layer):
    """``preprocess_input`` as a layer, so a saved or exported model takes raw RGB."""

    def call(self, images):
        return ops.cast(preprocess_input(images), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (3,)


def build_vgg_face(
    input_shape=(hparams.INPUT_SIZE, hparams.INPUT_SIZE, 3),
    include_top: bool = False,
    classes: int = VGG_FACE_CLASSES,
    widths=VGG_FACE_WIDTHS,
    fc_units: int = hparams.FC_UNITS,
    name: str = "vgg_face",
) -> keras.Model:
    """VGG-Face as in Table 1: 13 3x3 ReLU convolutions in five blocks, each closed by a 2x2 max-pool.

    Takes preprocessed images (see ``preprocess_input``). Without the top, the output is
    pool5, the ``h_c`` of Eq. 1 (7x7x512 at 224x224). With it, fc6, fc7 (ReLU) and fc8
    (softmax over ``classes``) follow. ``widths`` shrinks the blocks for tests and small
    machines; the default is the original network.
    """
    if len(widths) != len(VGG_FACE_DEPTHS):
        raise ValueError(f"widths needs {len(VGG_FACE_DEPTHS)} entries, got {widths}")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    for block, (width, depth) in enumerate(zip(widths, VGG_FACE_DEPTHS), 1):
        for i in range(1, depth + 1):
            x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name=f"conv{block}_{i}")(x)
        x = keras.layers.MaxPooling2D(2, strides=2, name=f"pool{block}")(x)
    if include_top:
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(fc_units, activation="relu", name="fc6")(x)
        x = keras.layers.Dense(fc_units, activation="relu", name="fc7")(x)
        x = keras.layers.Dense(classes, activation="softmax", name="fc8")(x)
    return keras.Model(inputs, x, name=name)
