"""DAM-CNN (Xie, Hu & Wu, Pattern Recognition 2019) in TensorFlow 2 / Keras 3.

The paper's parts, each in one place:

* Eq. 1-3, SERD and its regularizer: ``dam_cnn_tf.layers.serd``
* Eq. 4-5, VGG-SERD (stage 1): ``dam_cnn_tf.models.vgg_serd``
* Eq. 6-9, the multi-path autoencoder: ``dam_cnn_tf.models.mpae`` (decoders in ``layers.decoders``)
* Eq. 10-11, MPVS-Net and its update rules (stage 2): ``dam_cnn_tf.models.mpvs_net``
* Fig. 2, the assembled inference model: ``dam_cnn_tf.models.dam_cnn``

Backbones, one folder per family with a registry (``dam_cnn_tf.backbones``): VGG-Face (§3.1,
``backbones.vgg_face``) and ``face-resnet``, dlib's face-pretrained
ResNet that anyone can get (``backbones.face_resnet``).
"""

import os as _os

# TensorFlow's C++ start-up chatter is not for our users; TF_CPP_MIN_LOG_LEVEL set by them wins
# (and the command line then shows TensorFlow's log unfiltered, see dam_cnn_tf.tf_log).
USER_TF_LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL" in _os.environ
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

# The public API is imported on first use, so that ``import dam_cnn_tf`` (and ``damcnn-tf
# --help``) does not start TensorFlow.
_EXPORTS = {
    "SERDLayer": "dam_cnn_tf.layers.serd",
    "serd_regularizer": "dam_cnn_tf.layers.serd",
    "build_dam_cnn": "dam_cnn_tf.models.dam_cnn",
    "build_face_resnet": "dam_cnn_tf.backbones.face_resnet.model",
    "MultiPathAutoencoder": "dam_cnn_tf.models.mpae",
    "MPVSNet": "dam_cnn_tf.models.mpvs_net",
    "build_vgg_face": "dam_cnn_tf.backbones.vgg_face.model",
    "preprocess_input": "dam_cnn_tf.backbones.vgg_face.model",
    "build_vgg_serd": "dam_cnn_tf.models.vgg_serd",
    "compile_vgg_serd": "dam_cnn_tf.models.vgg_serd",
    "salient_feature_model": "dam_cnn_tf.models.vgg_serd",
    "from_preset": "dam_cnn_tf.presets",
    "DEFAULT_PRESET": "dam_cnn_tf.presets",
    "ReadFacesAs": "dam_cnn_tf.layers.read_faces",
    # Prediction on photos; neither starts TensorFlow for a preset with a light file.
    "analyze": "dam_cnn_tf.face_analysis",
    "Predictor": "dam_cnn_tf.predict",
}


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dam_cnn_tf' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


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
    "from_preset",
    "DEFAULT_PRESET",
    "ReadFacesAs",
    "analyze",
    "Predictor",
]
