"""The backbones a run can use, by name: how each is built, fed and given its weights.

* ``vgg-face`` (and its narrower variants): the paper's VGG-Face (§3.1); weights are a
  converted VGG-Face release and include fc6/fc7 where the release has them.
* ``face-resnet``: dlib's face-pretrained ResNet (``models.face_resnet``); weights are face-api's
  manifest or its converted file. SERD sits on its 256-channel 4x4 map (at 150x150).
* ``compact``: a small network with batch normalisation that trains from scratch.

Every backbone maps raw RGB 0-255 to a feature map ``(B, h, w, C)`` once its preprocessing
(returned beside it, or inside it) is applied. Nothing here imports Keras until a backbone
is built, so the configuration can name backbones cheaply.
"""

from __future__ import annotations

from typing import Optional

BACKBONE = "backbone"
# name -> (family, widths); widths only matter for the VGG-Face and compact families.
BACKBONES = {
    "vgg-face": ("vgg-face", (64, 128, 256, 512, 512)),
    "vgg-face-small": ("vgg-face", (16, 32, 64, 64, 64)),
    "vgg-face-tiny": ("vgg-face", (4, 8, 8, 16, 16)),
    "face-resnet": ("face-resnet", ()),
    "compact": ("compact", (16, 32, 64)),
    "compact-tiny": ("compact", (4, 8, 8)),
}
# The families whose weights a file can give, and what that file is.
WEIGHTS_FILES = {
    "vgg-face": "converted VGG-Face weights (damcnn-tf weights convert)",
    "face-resnet": "face-api's face_recognition_model-weights_manifest.json or its converted file",
}


def family(name: str) -> str:
    return BACKBONES[name][0]


def build_backbone(name: str, input_size: int, weights=None) -> tuple["keras.Model", Optional["keras.layers.Layer"]]:
    """``(backbone, preprocessing)`` for images of ``input_size``; ``preprocessing`` is None
    where the backbone takes raw RGB itself. face-resnet loads ``weights`` here; VGG-Face's
    go into the whole stage-1 model (``load_weights``), since they may hold fc6 and fc7."""
    from dam_cnn_tf.models.vgg_face import VGGFacePreprocess, build_compact_backbone, build_vgg_face

    kind, widths = BACKBONES[name]
    shape = (input_size, input_size, 3)
    if kind == "face-resnet":
        from dam_cnn_tf.models.face_resnet import build_face_resnet

        return build_face_resnet(weights=weights, include_top=False, input_shape=shape, name=BACKBONE), None
    if kind == "compact":
        return build_compact_backbone(shape, widths=widths, name=BACKBONE), VGGFacePreprocess(name="preprocess")
    return build_vgg_face(input_shape=shape, include_top=False, widths=widths, name=BACKBONE), VGGFacePreprocess(name="preprocess")


def load_weights(model: "keras.Model", name: str, weights) -> str:
    """Give ``model`` (a stage-1 model holding the backbone) a VGG-Face release; returns a report."""
    if family(name) != "vgg-face":
        return ""
    from dam_cnn_tf.weights.convert import load_backbone_weights, read_converted

    # fc6 and fc7 are fine-tuned from VGG-Face when the release has them; fc8 is new (§3.1).
    stored, _ = read_converted(weights)
    no_top = tuple(layer for layer in ("fc6", "fc7") if layer not in stored)
    return str(load_backbone_weights(model, weights, skip=no_top))


def check_weights_file(name: str, weights) -> None:
    """Refuse an unreadable or unsuitable weights file before any data is prepared."""
    kind = family(name)
    if kind == "face-resnet":
        from dam_cnn_tf.weights.face_resnet import read_face_resnet_weights

        read_face_resnet_weights(weights)
    elif kind == "vgg-face":
        from dam_cnn_tf.weights.convert import read_converted

        read_converted(weights)


def frozen_feature_model(name: str, input_size: int, weights=None) -> "keras.Model":
    """Raw RGB 0-255 ``(B, S, S, 3)`` to the backbone's feature map, with its weights, frozen.

    The model behind the frozen-feature baseline: what a linear probe sees of the backbone.
    """
    import keras

    backbone, preprocessing = build_backbone(name, input_size, weights if family(name) == "face-resnet" else None)
    images = keras.Input(shape=(input_size, input_size, 3), name="image")
    features = backbone(preprocessing(images) if preprocessing is not None else images)
    model = keras.Model(images, features, name=f"{name}_features")
    if weights is not None and family(name) == "vgg-face":
        from dam_cnn_tf.weights.convert import load_backbone_weights

        load_backbone_weights(model, weights, skip=("fc6", "fc7"))
    model.trainable = False
    return model
