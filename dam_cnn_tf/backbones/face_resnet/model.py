"""``face-resnet``: dlib's ResNet face-recognition network, as face-api publishes it.

A face-pretrained backbone that anyone can get (dlib released the network into the public
domain; face-api's TensorFlow.js files are MIT). It replaces VGG-Face (paper §3.1) where
VGG-Face's non-commercial weights cannot be had. The layers follow face-api's
``FaceRecognitionNet`` exactly:

* input: RGB 0-255, zero-padded to a square (centred; an odd difference puts the extra row or
  column after the image), resized bilinearly to 150x150 with
  ``align_corners=False, half_pixel_centers=False``, then ``(x - mean_rgb) / 255``;
* every convolution is conv + bias followed by a per-channel scale layer (``x * w + b``);
* stem: 7x7 stride-2 valid convolution (32) + ReLU, 3x3 stride-2 valid max-pool;
* residual blocks: conv3x3 + ReLU, conv3x3, add the input, ReLU; a down-sampling block
  starts with a stride-2 valid convolution and its shortcut is a 2x2 average pool with the
  new channels zero-filled, the conv path getting a zero row and column at the end where it
  comes out one pixel short;
* stages 32 x3, 64 (down +3), 128 (down +2), 256 (down +2), 256 (down); global average pool;
  dense 256 -> 128 without bias. The 128-d descriptor is not normalised.

At 150x150 the maps are 35, 17, 8, 4 and 2 pixels wide. Without the top the model returns
the 4x4x256 map of the 256-channel stage (``conv256_2``), the last map that is still spatial
enough for SERD to weigh face regions: the final down-sampling block leaves 2x2, four
quadrants, and a linear probe scores the 4x4 map no lower (94.6 against 94.3% on CK+48).
"""

from __future__ import annotations

from typing import Optional

import keras
from keras import ops

# face-api's per-channel mean, in R, G, B order, and its divisor.
FACE_RESNET_MEAN_RGB = (122.782, 117.001, 104.298)
FACE_RESNET_SCALE = 255.0
FACE_RESNET_SIZE = 150
DESCRIPTOR_SIZE = 128
# (block name, output channels, whether it down-samples), in face-api's order.
BLOCKS = (
    ("conv32_1", 32, False), ("conv32_2", 32, False), ("conv32_3", 32, False),
    ("conv64_down", 64, True), ("conv64_1", 64, False), ("conv64_2", 64, False), ("conv64_3", 64, False),
    ("conv128_down", 128, True), ("conv128_1", 128, False), ("conv128_2", 128, False),
    ("conv256_down", 256, True), ("conv256_1", 256, False), ("conv256_2", 256, False),
    ("conv256_down_out", 256, True),
)
# The block whose output the backbone gives SERD (see the module docstring).
FEATURE_BLOCK = "conv256_2"


def _non_negative(x):
    # Sides are Python ints where the shape is known (always on JAX) and tensors where it is
    # not (a TensorFlow graph of any image size); both take the same arithmetic.
    return max(x, 0) if isinstance(x, int) else ops.maximum(x, 0)


def _split(diff):
    after = (diff + 1) // 2  # JavaScript's Math.round(diff / 2): halves round up
    return diff - after, after


def pad_to_square(images):
    """Zero-pad ``(B, H, W, C)`` to a square as face-api's ``padToSquare(x, true)`` does."""
    shape = ops.shape(images)
    height, width = shape[1], shape[2]
    rows = _split(_non_negative(width - height))
    cols = _split(_non_negative(height - width))
    return ops.pad(images, [[0, 0], list(rows), list(cols), [0, 0]])


def _resize_axis(x, axis: int, size: int):
    """TensorFlow's legacy bilinear resize along one axis (``align_corners=False,
    half_pixel_centers=False``, what face-api calls): output ``i`` reads the input at
    ``i · in / out``, between its two neighbours, the last one repeated at the edge."""
    length = ops.shape(x)[axis]
    position = ops.arange(size, dtype="float32") * (ops.cast(length, "float32") / size)
    lower = ops.floor(position)
    weight = ops.cast(position - lower, x.dtype)
    lower = ops.cast(lower, "int32")
    upper = ops.minimum(lower + 1, ops.cast(length, "int32") - 1)
    shape = [1, 1, 1, 1]
    shape[axis] = size
    weight = ops.reshape(weight, shape)
    low, high = ops.take(x, lower, axis=axis), ops.take(x, upper, axis=axis)
    return low + (high - low) * weight


def resize_bilinear_legacy(images, size: int):
    """``(B, H, W, C)`` to ``(B, size, size, C)`` as ``tf.image.resize_bilinear`` (TF 1) did."""
    return _resize_axis(_resize_axis(images, 2, size), 1, size)


@keras.saving.register_keras_serializable(package="dam_cnn_tf")
class FaceResNetPreprocess(keras.layers.Layer):
    """Raw RGB 0-255 (or grey, repeated to RGB) to face-api's normalised input.

    Pads to a square and resizes to ``size`` x ``size`` where the input is not already that,
    then subtracts ``FACE_RESNET_MEAN_RGB`` and divides by 255.
    """

    def __init__(self, size: int = FACE_RESNET_SIZE, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)

    def call(self, images):
        x = ops.cast(images, self.compute_dtype if self.compute_dtype == "float64" else "float32")
        if x.shape[-1] == 1:
            x = ops.repeat(x, 3, axis=-1)
        if not (x.shape[1] == x.shape[2] == self.size):
            x = resize_bilinear_legacy(pad_to_square(x), self.size)
        x = (x - ops.convert_to_tensor(FACE_RESNET_MEAN_RGB, x.dtype)) / FACE_RESNET_SCALE
        return ops.cast(x, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, 3)

    def get_config(self):
        return {**super().get_config(), "size": self.size}


@keras.saving.register_keras_serializable(package="dam_cnn_tf")
class ChannelScale(keras.layers.Layer):
    """face-api's scale layer: ``x * scale + offset`` with one scale and offset per channel."""

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.scale = self.add_weight(name="scale", shape=(channels,), initializer="ones")
        self.offset = self.add_weight(name="offset", shape=(channels,), initializer="zeros")

    def call(self, x):
        return x * keras.ops.cast(self.scale, x.dtype) + keras.ops.cast(self.offset, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="dam_cnn_tf")
class DownsampleShortcut(keras.layers.Layer):
    """The shortcut of a down-sampling block: 2x2 average pool, new channels zero-filled."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)

    def call(self, x):
        pooled = ops.average_pool(x, 2, 2, "valid")
        extra = self.channels - pooled.shape[-1]
        return ops.pad(pooled, [[0, 0], [0, 0], [0, 0], [0, extra]]) if extra else pooled

    def compute_output_shape(self, input_shape):
        side = lambda n: None if n is None else n // 2  # noqa: E731
        return (input_shape[0], side(input_shape[1]), side(input_shape[2]), self.channels)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


def map_sides(size: int) -> list[int]:
    """The side of the map after the stem and after each down-sampling stage, for ``size``
    x ``size`` images (35, 17, 8, 4, 2 at 150); 0 where a stage has nothing left to convolve."""
    side = ((size - 7) // 2 + 1 - 3) // 2 + 1
    sides = [side]
    for _ in range(4):
        side = max((side - 3) // 2 + 1, side // 2) if side >= 3 else 0
        sides.append(side)
    return sides


def _conv(x, name: str, filters: int, kernel: int = 3, strides: int = 1, relu: bool = True):
    """face-api's ``convLayer``: conv + bias, the scale layer, optionally ReLU."""
    padding = "valid" if strides > 1 else "same"
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding, name=f"{name}_conv")(x)
    x = ChannelScale(name=f"{name}_scale")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _residual(x, name: str, filters: int, down: bool):
    out = _conv(x, f"{name}_conv1", filters, strides=2 if down else 1)
    out = _conv(out, f"{name}_conv2", filters, relu=False)
    shortcut = x
    if down:
        shortcut = DownsampleShortcut(filters, name=f"{name}_shortcut")(x)
        if out.shape[1] != shortcut.shape[1]:  # the valid stride-2 conv came out one pixel short
            out = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{name}_pad")(out)
    out = keras.layers.Add(name=f"{name}_add")([out, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(out)


def build_face_resnet(
    weights=None,
    include_top: bool = True,
    input_shape=(FACE_RESNET_SIZE, FACE_RESNET_SIZE, 3),
    size: Optional[int] = None,
    name: str = "face_resnet",
) -> keras.Model:
    """dlib's face-recognition ResNet: raw RGB 0-255 in (normalisation inside the model).

    With ``include_top`` the output is the 128-d descriptor; without, the 256-channel feature
    map SERD sits on (``(B, 4, 4, 256)`` at 150x150). ``input_shape`` may be any size (also
    ``(None, None, 3)``); images are padded to a square and resized to ``size`` (default: the
    input's side when it is square and known, else 150) as face-api does. ``weights`` is
    face-api's ``face_recognition_model-weights_manifest.json`` or a file written by
    ``damcnn-tf weights convert``.
    """
    height, width = input_shape[0], input_shape[1]
    if size is None:
        size = height if (height is not None and height == width) else FACE_RESNET_SIZE
    sides = map_sides(size)
    if min(sides if include_top else sides[:-1]) < 1:
        smallest = next(s for s in range(size, 1000) if min(map_sides(s) if include_top else map_sides(s)[:-1]) >= 1)
        raise ValueError(f"face-resnet {'with' if include_top else 'without'} its top needs images of at least "
                         f"{smallest}x{smallest}, got {size}x{size}")
    images = keras.Input(shape=tuple(input_shape), name="image")
    x = FaceResNetPreprocess(size, name="preprocess")(images)
    x = _conv(x, "conv32_down", 32, kernel=7, strides=2)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="valid", name="conv32_down_pool")(x)
    for block, filters, down in BLOCKS:
        if not include_top and block == "conv256_down_out":
            break
        x = _residual(x, block, filters, down)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
        x = keras.layers.Dense(DESCRIPTOR_SIZE, use_bias=False, name="fc")(x)
    model = keras.Model(images, x, name=name)
    if weights is not None:
        from dam_cnn_tf.backbones.face_resnet.weights import load_face_resnet_weights

        load_face_resnet_weights(model, weights)
    return model
