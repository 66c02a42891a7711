"""Moved to ``dam_cnn_tf.backbones.vgg_face.model`` (and ``build_compact_backbone`` to
``dam_cnn_tf.backbones.compact.model``); this name keeps working until release 0.3."""

from dam_cnn_tf.backbones.compact.model import build_compact_backbone  # noqa: F401
from dam_cnn_tf.backbones.vgg_face.model import *  # noqa: F401,F403
from dam_cnn_tf.backbones.vgg_face.model import VGGFacePreprocess, build_vgg_face, preprocess_input  # noqa: F401
