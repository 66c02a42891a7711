"""Read a face the way a data set's training faces were: grey, and at their resolution.

A model trained on FER2013 (48x48 grey faces, enlarged to its input) meets colour photos whose
faces span hundreds of pixels. Placed in front of it, ``ReadFacesAs`` gives such a face the
training faces' form: the luma of its colours in all three channels (ITU-R BT.601, OpenCV's
``RGB2GRAY``), and no more detail than a ``source_size``-pixel face has (shrunk with
antialiasing, then enlarged back to the input's size). A face that already has that form
passes almost unchanged, so the layer can sit in front of a model trained without it.
"""

from __future__ import annotations

from typing import Optional

import keras
from keras import ops

# ITU-R BT.601 luma weights for R, G, B: what cv2.COLOR_RGB2GRAY computes.
LUMA_RGB = (0.299, 0.587, 0.114)


@keras.saving.register_keras_serializable(package="dam_cnn_tf")
class ReadFacesAs(keras.layers.Layer):
    """RGB 0-255 images ``(B, H, W, 3)`` → the same, grey (``grey``) and/or with the detail of a
    ``source_size`` x ``source_size`` face; float output, same shape."""

    def __init__(self, grey: bool = True, source_size: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        if source_size is not None and int(source_size) < 1:
            raise ValueError(f"source_size must be a positive number of pixels, got {source_size}")
        self.grey = bool(grey)
        self.source_size = None if source_size is None else int(source_size)

    def call(self, images):
        x = ops.cast(images, self.compute_dtype)
        if self.grey:
            luma = ops.sum(x * ops.convert_to_tensor(LUMA_RGB, dtype=x.dtype), axis=-1, keepdims=True)
            x = ops.concatenate([luma, luma, luma], axis=-1)
        if self.source_size is not None:
            height, width = x.shape[1], x.shape[2]
            if height is None or width is None:
                raise ValueError("ReadFacesAs with source_size needs images of a known height and width")
            small = ops.image.resize(x, (self.source_size, self.source_size), interpolation="bilinear",
                                     antialias=True)
            x = ops.image.resize(small, (height, width), interpolation="bilinear")
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "grey": self.grey, "source_size": self.source_size}
