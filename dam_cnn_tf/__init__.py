"""DAM-CNN (Xie, Hu & Wu, Pattern Recognition 2019) in TensorFlow 2 / Keras 3.

The paper's parts, each in one place:

* Eq. 1-3, SERD and its regularizer: ``dam_cnn_tf.layers.serd``
* Eq. 4-5, VGG-SERD (stage 1): ``dam_cnn_tf.models.vgg_serd``
* Eq. 6-9, the multi-path autoencoder: ``dam_cnn_tf.models.mpae`` (decoders in ``layers.decoders``)
* Eq. 10-11, MPVS-Net and its update rules (stage 2): ``dam_cnn_tf.models.mpvs_net``
* Fig. 2, the assembled inference model: ``dam_cnn_tf.models.dam_cnn``

Backbones: VGG-Face (§3.1, ``models.vgg_face``) and ``face-resnet``, dlib's face-pretrained
ResNet that anyone can get (``models.face_resnet``).
"""

import os as _os

# TensorFlow's C++ start-up chatter is not for our users; TF_CPP_MIN_LOG_LEVEL set by them wins.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

from dam_cnn_tf.layers.serd import SERDLayer, serd_regularizer  # noqa: E402
from dam_cnn_tf.models.dam_cnn import build_dam_cnn  # noqa: E402
from dam_cnn_tf.models.face_resnet import build_face_resnet  # noqa: E402
from dam_cnn_tf.models.mpae import MultiPathAutoencoder  # noqa: E402
from dam_cnn_tf.models.mpvs_net import MPVSNet  # noqa: E402
from dam_cnn_tf.models.vgg_face import build_vgg_face, preprocess_input  # noqa: E402
from dam_cnn_tf.models.vgg_serd import build_vgg_serd, compile_vgg_serd, salient_feature_model  # noqa: E402

__all__ = [
    "__version__",
    "SERDLayer",
    "serd_regularizer",
    "MultiPathAutoencoder",
    "MPVSNet",
    "build_vgg_face",
    "build_face_resnet",
    "preprocess_input",
    "build_vgg_serd",
    "compile_vgg_serd",
    "salient_feature_model",
    "build_dam_cnn",
]
