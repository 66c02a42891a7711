"""Our layout of VGG-Face weights, and the re-orderings every reader shares.

A converted backbone is a dict ``{layer_name: (kernel, bias)}`` with Keras channels-last
kernels: ``(kh, kw, in, out)`` for conv1_1 … conv5_3 and ``(in, out)`` for fc6 … fc8, where
fc6's input rows follow Keras' ``Flatten`` of pool5, i.e. ``(H, W, C)`` order. conv1_1's input
channels are in B, G, R order, so that the backbone fed ``preprocess_input`` (RGB → BGR minus
the mean) computes what the original release computes on the same image.
"""

from __future__ import annotations

import math

import numpy as np

from dam_cnn_tf.weights.vgg_face_layout import CONV_LAYER_NAMES, VGG_FACE_MEAN_BGR
from dam_cnn_tf.weights.errors import MissingLayerError, WeightsFormatError, WeightsShapeError

FC_LAYER_NAMES = ("fc6", "fc7", "fc8")
LAYER_NAMES = CONV_LAYER_NAMES + FC_LAYER_NAMES
# VGG-Face's mean pixel in the release's R, G, B order (MatConvNet's averageImage).
VGG_FACE_MEAN_RGB = tuple(reversed(VGG_FACE_MEAN_BGR))
# Tolerance on a file's recorded mean pixel: the releases print it to four decimals.
MEAN_TOLERANCE = 1e-3

Weights = dict[str, tuple[np.ndarray, np.ndarray]]


def conv_from_hwio(kernel: np.ndarray, bias: np.ndarray, *, flip_input_colour: bool = False):
    """An ``(h, w, in, out)`` kernel as ours; ``flip_input_colour`` turns RGB input into BGR."""
    kernel = np.asarray(kernel, dtype=np.float32)
    if flip_input_colour:
        kernel = kernel[:, :, ::-1, :]
    return np.ascontiguousarray(kernel), np.asarray(bias, dtype=np.float32).reshape(-1)


def conv_from_oihw(kernel: np.ndarray, bias: np.ndarray):
    """A Caffe ``(out, in, h, w)`` kernel as ours ``(h, w, in, out)``."""
    kernel = np.asarray(kernel, dtype=np.float32).transpose(2, 3, 1, 0)
    return np.ascontiguousarray(kernel), np.asarray(bias, dtype=np.float32).reshape(-1)


def dense_from_hwio(kernel: np.ndarray, bias: np.ndarray):
    """An fc layer stored as an ``(h, w, in, out)`` convolution as a Dense kernel.

    The convolution sums over (h, w, c); a row-major reshape lists them in exactly the
    (H, W, C) order of Keras' channels-last ``Flatten``.
    """
    kernel = np.asarray(kernel, dtype=np.float32)
    out = kernel.shape[-1]
    return np.ascontiguousarray(kernel.reshape(-1, out)), np.asarray(bias, dtype=np.float32).reshape(-1)


def dense_from_out_in_chw(weight: np.ndarray, bias: np.ndarray, channels: int, *, layer: str, path):
    """A Caffe InnerProduct ``(out, in)`` matrix whose input is a flattened (C, H, W) blob.

    Rows are re-ordered to the (H, W, C) order of our ``Flatten``; the spatial size is
    ``in / channels`` and must be a square, as pool5 of a square input is.
    """
    weight = np.asarray(weight, dtype=np.float32)
    out, fan_in = weight.shape
    spatial = fan_in // channels if channels else 0
    side = math.isqrt(spatial) if spatial > 0 else 0
    if channels <= 0 or spatial * channels != fan_in or side * side != spatial:
        raise WeightsShapeError(
            f"{path}: layer {layer} has {fan_in} inputs, not a square map of {channels} channels"
        )
    kernel = weight.reshape(out, channels, side, side).transpose(2, 3, 1, 0).reshape(-1, out)
    return np.ascontiguousarray(kernel), np.asarray(bias, dtype=np.float32).reshape(-1)


def dense_from_out_in(weight: np.ndarray, bias: np.ndarray):
    """A Caffe ``(out, in)`` matrix over a flat input as a Dense ``(in, out)`` kernel."""
    weight = np.asarray(weight, dtype=np.float32)
    return np.ascontiguousarray(weight.T), np.asarray(bias, dtype=np.float32).reshape(-1)


def check_mean(mean_rgb, path) -> None:
    """Refuse a release whose mean pixel differs from the one ``preprocess_input`` subtracts."""
    mean_rgb = np.asarray(mean_rgb, dtype=np.float64).reshape(-1)
    if mean_rgb.shape != (3,) or not np.allclose(mean_rgb, VGG_FACE_MEAN_RGB, atol=MEAN_TOLERANCE):
        raise WeightsFormatError(
            f"{path}: the release subtracts mean pixel (R, G, B) {tuple(np.round(mean_rgb, 4))}, "
            f"not VGG-Face's {VGG_FACE_MEAN_RGB}; preprocess_input would not match it"
        )


def validate(weights: Weights, path) -> Weights:
    """Check a converted dict: every conv layer present, shapes chained, fc layers consistent."""
    missing = [name for name in CONV_LAYER_NAMES if name not in weights]
    if missing:
        raise MissingLayerError(f"{path}: no weights for layer(s) {', '.join(missing)}")
    unknown = sorted(set(weights) - set(LAYER_NAMES))
    if unknown:
        raise WeightsFormatError(f"{path}: unexpected layer(s) {', '.join(unknown)}")
    channels = 3
    for name in CONV_LAYER_NAMES:
        kernel, bias = weights[name]
        if kernel.ndim != 4 or kernel.shape[:3] != (3, 3, channels) or bias.shape != (kernel.shape[3],):
            raise WeightsShapeError(
                f"{path}: layer {name} has kernel {kernel.shape} and bias {bias.shape}; "
                f"expected (3, 3, {channels}, out) and (out,)"
            )
        channels = kernel.shape[3]
    previous = None
    for name in FC_LAYER_NAMES:
        if name not in weights:
            previous = None
            continue
        kernel, bias = weights[name]
        if kernel.ndim != 2 or bias.shape != (kernel.shape[1],):
            raise WeightsShapeError(f"{path}: layer {name} has kernel {kernel.shape} and bias {bias.shape}")
        if name == "fc6" and kernel.shape[0] % channels:
            raise WeightsShapeError(
                f"{path}: layer fc6 has {kernel.shape[0]} inputs, not a multiple of conv5_3's {channels}"
            )
        if previous is not None and kernel.shape[0] != previous:
            raise WeightsShapeError(f"{path}: layer {name} takes {kernel.shape[0]} inputs, its input has {previous}")
        previous = kernel.shape[1]
    return weights


def pool5_side(weights: Weights) -> int | None:
    """Side of the square pool5 map fc6 was trained on, or None without fc6."""
    if "fc6" not in weights:
        return None
    channels = weights["conv5_3"][0].shape[3]
    return math.isqrt(weights["fc6"][0].shape[0] // channels)
