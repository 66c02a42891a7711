"""VGG-SERD, the stage-1 model (paper §3.2, Eq. 4-5).

Backbone → SERD → fc6 → fc7 → a re-initialised K-way fc8. Its loss is
``L_vs = L_ce + L_reg`` (Eq. 4): the cross-entropy comes from ``compile`` and ``L_reg`` from
the SERD layer's ``add_loss``. Without SERD (``use_serd=False``) the same builder gives the
fine-tuned VGG-Face baseline of Table 2.

The model takes raw RGB images in 0-255; the backbone's preprocessing is its first layer.
"""

from __future__ import annotations

from typing import Optional

import keras

from dam_cnn_tf import hparams
from dam_cnn_tf.layers.serd import SERDLayer
from dam_cnn_tf.backbones.vgg_face.model import VGG_FACE_WIDTHS, VGGFacePreprocess, build_vgg_face
from dam_cnn_tf.optimizers import FusedAdam

BACKBONE = "backbone"
SERD = "serd"
FLATTEN = "flatten"


def build_vgg_serd(
    num_classes: int,
    input_shape=(hparams.INPUT_SIZE, hparams.INPUT_SIZE, 3),
    use_serd: bool = True,
    gamma1: float = hparams.GAMMA1,
    gamma2: float = hparams.GAMMA2,
    fc_units: int = hparams.FC_UNITS,
    dropout: float = hparams.DROPOUT,
    backbone: Optional[keras.Model] = None,
    preprocessing: Optional[keras.layers.Layer] = None,
    backbone_widths=VGG_FACE_WIDTHS,
    fc6_activation: str = "relu",
    name: str = "vgg_serd",
) -> keras.Model:
    """The stage-1 model: raw RGB images ``(B, H, W, 3)`` in, class probabilities out.

    ``backbone`` may be any Keras model from preprocessed images to a feature map
    ``(B, h, w, C)`` (beyond the paper); give its ``preprocessing`` too. By default it is
    VGG-Face (Table 1) with its own preprocessing, so that converted VGG-Face weights
    (``dam_cnn_tf.weights``) load by layer name.

    ``fc6_activation`` is VGG-Face's ReLU by default; ``"sigmoid"`` gives fc6 the MPAE encoder's
    activation (Eq. 6), so that MPVS-Net can start as exactly this classifier (beyond the paper,
    for a backbone with no pretrained fc6).
    """
    if fc6_activation not in hparams.FC6_ACTIVATIONS:
        raise ValueError(f"fc6_activation must be one of {', '.join(hparams.FC6_ACTIVATIONS)}, got {fc6_activation!r}")
    if backbone is None:
        backbone = build_vgg_face(input_shape=input_shape, include_top=False, widths=backbone_widths, name=BACKBONE)
        preprocessing = preprocessing or VGGFacePreprocess(name="preprocess")
    images = keras.Input(shape=tuple(input_shape), name="image")
    x = preprocessing(images) if preprocessing is not None else images
    h_c = backbone(x)
    if len(h_c.shape) != 4:
        raise ValueError(f"the backbone must output a feature map (B, h, w, C), got shape {tuple(h_c.shape)}")
    if use_serd:
        h_s, _ = SERDLayer(gamma1=gamma1, gamma2=gamma2, return_attention=True, name=SERD)(h_c)
    else:
        h_s = h_c
    x = keras.layers.Flatten(name=FLATTEN)(h_s)
    x = keras.layers.Dense(fc_units, activation=fc6_activation, name="fc6")(x)
    x = keras.layers.Dropout(dropout, name="fc6_dropout")(x)
    x = keras.layers.Dense(fc_units, activation="relu", name="fc7")(x)
    x = keras.layers.Dropout(dropout, name="fc7_dropout")(x)
    # fc8 is re-initialised for the K expressions (§3.1); softmax in float32 for mixed precision.
    probabilities = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="fc8")(x)
    return keras.Model(images, probabilities, name=name)


def compile_vgg_serd(model: keras.Model, learning_rate: float = hparams.ALPHA_S, optimizer=None, **kwargs) -> keras.Model:
    """Compile for Eq. 4: cross-entropy (Eq. 5) plus the SERD regularizer from ``add_loss``."""
    model.compile(
        optimizer=optimizer or FusedAdam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        **kwargs,
    )
    return model


def has_serd(model: keras.Model) -> bool:
    return any(layer.name == SERD for layer in model.layers)


def salient_feature_model(vgg_serd: keras.Model) -> keras.Model:
    """The frozen front of stage 2: raw images → flattened salient features ``s`` (§3.3.1).

    Outputs ``{"features": (B, h·w·C), "attention": (B, h, w, 1)}``; without SERD the
    attention is absent and the features are the backbone's.
    """
    outputs = {"features": vgg_serd.get_layer(FLATTEN).output}
    if has_serd(vgg_serd):
        outputs["attention"] = vgg_serd.get_layer(SERD).output[1]
    return keras.Model(vgg_serd.input, outputs, name="salient_features")


def feature_map_shape(vgg_serd: keras.Model) -> tuple:
    """``(h, w, C)`` of the salient feature map (7x7x512 for VGG-Face at 224x224)."""
    return tuple(vgg_serd.get_layer(FLATTEN).input.shape[1:])
