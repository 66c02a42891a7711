"""Moved to ``dam_cnn_tf.backbones.face_resnet.weights``; this name keeps working until release 0.3."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("dam_cnn_tf.backbones.face_resnet.weights")
