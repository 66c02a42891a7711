"""A small DAM-CNN for fast inference: a few convolution blocks, SERD on the last spatial map.

The student (``build_student``) is what a distilled preset ships (``training.distillation``
trains it on a large model's answers). It keeps from DAM-CNN (paper §3) what costs little:

* SERD (Eq. 1-3, ``SERDLayer``) on the last spatial map: a 1x1 convolution to one channel and a
  product, with its regularizer during training; its mask is the model's ``attention`` output.
* The salient features ``h_s`` flattened into fully connected layers with dropout, as VGG-SERD's
  fc6-fc8 and MPVS-Net's head take them (§3.2-3.3), at widths chosen for speed.

It leaves out MPAE's decoders (training-only in the paper, and meant for the 25,088-wide
features of VGG-Face, not for a map of a few thousand values) and VGG-Face itself. The
backbone is VGG-like: blocks of 3x3 convolutions with batch normalisation (folded into the
convolutions by the exporters) and ReLU, each block ending in a 2x2 max-pool.

Input: RGB 0-255 ``(B, S, S, 3)``, read as grey (``Luma``: FER2013's faces are grey, and
RAF-DB's are turned grey for training); outputs ``probabilities`` ``(B, K)`` (with the class
names inside) and ``attention`` ``(B, h, w)``.
"""

from __future__ import annotations

from typing import Sequence, Union

import keras
from keras import ops

from dam_cnn_tf.layers.class_names import NamedProbabilities
from dam_cnn_tf.layers.read_faces import LUMA_RGB
from dam_cnn_tf.layers.serd import SERDLayer
from dam_cnn_tf.models.outputs import ATTENTION, PROBABILITIES

DEFAULT_WIDTHS = (32, 64, 128)
LOGITS = "logits"  # the layer whose output distillation's loss takes (``logits_model``)


@keras.saving.register_keras_serializable(package="dam_cnn_tf")
class Luma(keras.layers.Layer):
    """RGB 0-255 ``(B, H, W, 3)`` → grey in [0, 1], ``(B, H, W, 1)``: ITU-R BT.601 luma (as
    ``ReadFacesAs`` and OpenCV's ``RGB2GRAY``), one channel so the first convolution costs a third."""

    def call(self, images):
        x = ops.cast(images, self.compute_dtype)
        weights = ops.convert_to_tensor([w / 255.0 for w in LUMA_RGB], dtype=x.dtype)
        return ops.sum(x * weights, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (1,)


def _conv_block(x, filters: int, convs: int, name: str):
    for i in range(convs):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i + 1}")(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn{i + 1}")(x)
        x = keras.layers.ReLU(name=f"{name}_relu{i + 1}")(x)
    return keras.layers.MaxPooling2D(2, name=f"{name}_pool")(x)


def build_student(class_names: Sequence[str], input_size: int = 48, widths: Sequence[int] = DEFAULT_WIDTHS,
                  convs_per_block: Union[int, Sequence[int]] = 2, dense_units: Sequence[int] = (256,), dropout: float = 0.5,
                  gamma1: float = 1e-3, gamma2: float = 1e-4, serd: bool = True,
                  name: str = "dam_cnn_student") -> keras.Model:
    """The student: ``len(widths)`` blocks (each ``convs_per_block`` 3x3 convolutions of the
    block's width, one number for all blocks or one per block, and a 2x2 max-pool, so the last map is ``input_size / 2**len(widths)`` on a
    side), SERD on that map (``serd``; without it the attention output is all ones), its
    flattened ``h_s`` through ``dense_units`` (ReLU, dropout) to a softmax over the classes."""
    class_names = [str(c) for c in class_names]
    if input_size % (2 ** len(widths)):
        raise ValueError(f"input_size {input_size} is not a multiple of 2**{len(widths)} (one pool per block)")
    convs = [int(convs_per_block)] * len(widths) if isinstance(convs_per_block, int) else list(convs_per_block)
    if len(convs) != len(widths) or min(convs) < 1:
        raise ValueError(f"convs_per_block {convs_per_block}: one positive count per block of {list(widths)}")
    images = keras.Input((input_size, input_size, 3), name="image")
    x = Luma(name="luma")(images)
    for i, (width, count) in enumerate(zip(widths, convs)):
        x = _conv_block(x, int(width), count, f"block{i + 1}")
    if serd:
        h_s, mask = SERDLayer(gamma1=gamma1, gamma2=gamma2, return_attention=True, name="serd")(x)
    else:
        h_s, mask = x, keras.layers.Conv2D(1, 1, kernel_initializer="zeros", bias_initializer="ones",
                                           trainable=False, name="no_attention")(x)
    x = keras.layers.Flatten(name="flatten")(h_s)
    for i, units in enumerate(dense_units):
        x = keras.layers.Dropout(dropout, name=f"fc{i + 1}_dropout")(x)
        x = keras.layers.Dense(int(units), activation="relu", name=f"fc{i + 1}")(x)
    x = keras.layers.Dropout(dropout, name="logits_dropout")(x)
    logits = keras.layers.Dense(len(class_names), name=LOGITS)(x)  # distillation trains on these
    probabilities = keras.layers.Softmax(name="softmax")(logits)
    probabilities = NamedProbabilities(class_names, dtype="float32", name=PROBABILITIES)(probabilities)
    attention = keras.layers.Reshape(tuple(mask.shape[1:3]), name=ATTENTION)(mask)
    return keras.Model(images, {PROBABILITIES: probabilities, ATTENTION: attention}, name=name)


def student_flops(model: keras.Model) -> int:
    """Floating-point operations of one face's forward pass (2 per multiply-add), counted from the
    convolutions (SERD's, separable and depthwise ones included) and dense layers; batch
    normalisation is folded into the convolutions on export, and pooling, ReLU and the softmax
    are left out. Counts any Keras model of these layers the same way (fer's, for comparison)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, SERDLayer):
            _, h, w, c = layer.input.shape
            total += 2 * h * w * c
        elif isinstance(layer, keras.layers.SeparableConv2D):
            _, h, w, out = layer.output.shape
            kh, kw = layer.kernel_size
            cin = layer.depthwise_kernel.shape[2]
            total += 2 * h * w * (kh * kw * cin + cin * out)
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, out = layer.output.shape
            kh, kw = layer.kernel_size
            total += 2 * h * w * kh * kw * out
        elif isinstance(layer, keras.layers.Conv2D) and layer.trainable:
            _, h, w, out = layer.output.shape
            kh, kw = layer.kernel_size
            total += 2 * kh * kw * layer.kernel.shape[2] * h * w * out
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
    return int(total)


def student_config(model: keras.Model) -> dict:
    """The architecture's figures for a card: input size, parameters, FLOPs per face."""
    return {"input_size": int(model.input_shape[1]), "parameters": int(model.count_params()),
            "flops_per_face": student_flops(model)}


def logits_model(student: keras.Model) -> keras.Model:
    """The student up to its logits (sharing its layers and weights): what distillation trains."""
    return keras.Model(student.input, student.get_layer(LOGITS).output, name=f"{student.name}_logits")
