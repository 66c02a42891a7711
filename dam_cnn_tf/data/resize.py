"""The one resize of the project, inside a TensorFlow graph: ``data.faces.resize_face``'s twin.

Training faces are cut out and resized by ``resize_face`` (OpenCV, uint8): area averaging
along an axis that shrinks, bilinear along one that grows, each pass rounded to uint8. The
export's ``serving_bytes`` signature and the file-path pipeline resize in the graph with
:func:`resize_like_faces`, which makes the same passes: ``tf.image.resize(method="area")``
equals ``cv2.INTER_AREA`` when shrinking (integer and non-integer factors) to within 0.005 on
float32 pixels, and half-pixel bilinear equals ``cv2.INTER_LINEAR``; rounded half up, as
OpenCV's uint8 paths do, the two agree to within one grey level. :func:`decode_rgb` decodes
as ``cv2.imdecode`` does.
"""

from __future__ import annotations

from typing import Tuple

import tensorflow as tf


def _to_uint8_levels(images: tf.Tensor) -> tf.Tensor:
    return tf.clip_by_value(tf.floor(images + 0.5), 0.0, 255.0)


def resize_like_faces(images: tf.Tensor, size: Tuple[int, int]) -> tf.Tensor:
    """``(H, W, C)`` or ``(N, H, W, C)`` 0-255 pixels → float32 at ``size`` = ``(height, width)``,
    holding the uint8 values ``resize_face`` gives; unchanged when already that size."""
    height, width = (int(s) for s in size)
    images = tf.cast(images, tf.float32)
    shape = tf.shape(images)
    in_height, in_width = shape[-3], shape[-2]
    shrunk = (tf.minimum(in_height, height), tf.minimum(in_width, width))
    images = tf.cond(
        tf.logical_or(in_height > height, in_width > width),
        lambda: _to_uint8_levels(tf.image.resize(images, shrunk, method="area")),
        lambda: images,
    )
    images = tf.cond(
        tf.logical_or(in_height < height, in_width < width),
        lambda: _to_uint8_levels(tf.image.resize(images, (height, width), method="bilinear")),
        lambda: images,
    )
    static = images.shape.as_list()
    static[-3:-1] = [height, width]
    return tf.ensure_shape(images, static)


def decode_rgb(encoded: tf.Tensor) -> tf.Tensor:
    """An encoded JPEG/PNG/BMP/GIF image → uint8 RGB ``(H, W, 3)``, pixel for pixel as OpenCV decodes it.

    JPEGs use the accurate integer DCT (libjpeg's default, so OpenCV's; TensorFlow's default
    differs by up to 4 grey levels); grey images are repeated to three channels.
    """
    image = tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False),
    )
    image.set_shape([None, None, 3])
    return image
