"""``compact``: a small convolutional body that trains from scratch (beyond the paper)."""

from __future__ import annotations

import keras


def build_compact_backbone(
    input_shape=(64, 64, 3),
    widths=(32, 64, 128, 128),
    name: str = "compact_backbone",
) -> keras.Model:
    """A small convolutional body with batch normalisation, for training from scratch.

    Not part of the paper: VGG-Face without its pretrained weights barely trains on a few
    hundred faces, and costs minutes per epoch on a CPU. Each block is two 3x3 convolutions
    with batch normalisation and ReLU, then a 2x2 max-pool; the output is a feature map like
    pool5 (``(h, w, widths[-1])``). Takes images preprocessed like VGG-Face's.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = keras.layers.Rescaling(1.0 / 64.0, name="rescale")(inputs)  # mean-free BGR to about unit scale
    for block, width in enumerate(widths, 1):
        for i in range(1, 3):
            x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"block{block}_conv{i}")(x)
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"block{block}_bn{i}")(x)
            x = keras.layers.ReLU(name=f"block{block}_relu{i}")(x)
        x = keras.layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)
    return keras.Model(inputs, x, name=name)
