"""Readers for the Keras 2 HDF5 ports: keras-vggface and deepface.

Keras 2 wrote weights as one HDF5 group per layer, listed in order by the ``layer_names``
attribute (of the root for ``save_weights``, of ``/model_weights`` for ``save``); each group's
``weight_names`` attribute names its datasets, e.g. ``conv1_1/kernel:0``, ``conv1_1/bias:0``.

* keras-vggface (``rcmalli_vggface_tf_vgg16.h5``, ``rcmalli_vggface_tf_notop_vgg16.h5``) keeps
  the original names conv1_1 … fc8, TF kernels ``(kh, kw, in, out)`` and Dense kernels whose
  rows follow a channels-last ``Flatten`` of pool5 — our layout already. Its
  ``utils.preprocess_input(version=1)`` turns RGB into BGR and subtracts the same means as
  ours, so the weights expect BGR.
* deepface (``vgg_face_weights.h5``) is an unnamed ``Sequential`` (conv2d_1 …), whose fc6, fc7
  and fc8 are 7x7, 1x1 and 1x1 convolutions; its 16 weighted layers are mapped to ours by
  order. Which colour order the file expects is not documented by its publisher (see
  docs/weights.md), so it is an explicit choice, RGB by default.
"""

from __future__ import annotations

import h5py
import numpy as np

from dam_cnn_tf.weights.vgg_face_layout import CONV_LAYER_NAMES
from dam_cnn_tf.weights import layout
from dam_cnn_tf.weights.errors import WeightsFormatError
from dam_cnn_tf.weights.hdf5 import child, keras_root, read_array, reading_hdf5, text_list

COLOUR_ORDERS = ("rgb", "bgr")


def _weighted_layers(path) -> list[tuple[str, list[np.ndarray]]]:
    """``[(layer_name, [arrays...])]`` in model order, layers without weights left out."""
    with reading_hdf5(path, "Keras weights file") as handle:
        root = keras_root(handle, path)
        if "layer_names" not in root.attrs:
            raise WeightsFormatError(f"{path}: no 'layer_names' attribute: not a Keras 2 weights file")
        layers = []
        for layer_name in text_list(root.attrs["layer_names"]):
            group = child(root, layer_name, h5py.Group, path, root.name)
            names = text_list(group.attrs.get("weight_names", []))
            if names:
                layers.append((layer_name, [read_array(group, n, path, group.name).astype(np.float32) for n in names]))
        return layers


def _kernel_and_bias(name, arrays, path):
    if len(arrays) != 2:
        raise WeightsFormatError(f"{path}: layer {name} holds {len(arrays)} arrays, expected kernel and bias")
    kernel, bias = arrays
    if bias.ndim != 1:  # tolerate either storage order of the two datasets
        kernel, bias = bias, kernel
    return kernel, bias


def read_keras_vggface(path) -> layout.Weights:
    """``{layer: (kernel, bias)}`` from a keras-vggface VGG16 file (with or without top)."""
    weights: layout.Weights = {}
    for name, arrays in _weighted_layers(path):
        if name not in layout.LAYER_NAMES:
            raise WeightsFormatError(f"{path}: unexpected layer {name!r}: not a keras-vggface VGG16 file")
        kernel, bias = _kernel_and_bias(name, arrays, path)
        expected = 4 if name in CONV_LAYER_NAMES else 2
        if kernel.ndim != expected:
            raise WeightsFormatError(f"{path}: layer {name} kernel has shape {kernel.shape}, expected {expected}-D")
        weights[name] = (np.ascontiguousarray(kernel), bias.reshape(-1))
    return layout.validate(weights, path)


def read_deepface(path, colour_order: str = "rgb") -> layout.Weights:
    """``{layer: (kernel, bias)}`` from deepface's ``vgg_face_weights.h5``.

    ``colour_order`` is the input order the file's first convolution expects: "rgb" reverses
    conv1_1's input channels for our BGR input, "bgr" keeps them.
    """
    if colour_order not in COLOUR_ORDERS:
        raise WeightsFormatError(f"colour order must be one of {COLOUR_ORDERS}, got {colour_order!r}")
    layers = _weighted_layers(path)
    names = layout.LAYER_NAMES
    if len(layers) != len(names):
        raise WeightsFormatError(
            f"{path}: {len(layers)} layers with weights, expected {len(names)} "
            "(13 convolutions and fc6-fc8 as convolutions)"
        )
    weights: layout.Weights = {}
    for ours, (theirs, arrays) in zip(names, layers):
        kernel, bias = _kernel_and_bias(theirs, arrays, path)
        if kernel.ndim != 4:
            raise WeightsFormatError(f"{path}: layer {theirs} ({ours}) kernel has shape {kernel.shape}, expected 4-D")
        if ours in CONV_LAYER_NAMES:
            weights[ours] = layout.conv_from_hwio(
                kernel, bias, flip_input_colour=ours == "conv1_1" and colour_order == "rgb"
            )
        else:
            weights[ours] = layout.dense_from_hwio(kernel, bias)
    return layout.validate(weights, path)
