"""VGG-Face's published weights for a stage-1 model: converted releases (``damcnn-tf weights``)."""

from __future__ import annotations


def check_vgg_face_weights(path) -> None:
    """Read a converted release, refusing what cannot serve (``WeightsError``)."""
    from dam_cnn_tf.weights.convert import read_converted

    read_converted(path)


def load_vgg_face_weights(model, path):
    """Give ``model`` (a stage-1 model holding the backbone, or the backbone itself) a converted
    release by layer name. fc6 and fc7 are fine-tuned from VGG-Face where the release has them
    and the model too; fc8 is new (§3.1). Returns the loader's report."""
    from dam_cnn_tf.weights.convert import load_backbone_weights, read_converted

    stored, _ = read_converted(path)
    no_top = tuple(layer for layer in ("fc6", "fc7") if layer not in stored)
    return load_backbone_weights(model, path, skip=no_top)
