"""DAM-CNN (Xie, Hu & Wu, Pattern Recognition 2019) in TensorFlow 2 / Keras 3."""

__version__ = "0.1.0"

from dam_cnn_tf.layers.serd import SERDLayer, serd_regularizer  # noqa: E402
from dam_cnn_tf.models.vgg_face import build_vgg_face, preprocess_input  # noqa: E402

__all__ = [
    "__version__",
    "SERDLayer",
    "serd_regularizer",
    "build_vgg_face",
    "preprocess_input",
]
