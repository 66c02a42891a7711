"""DAM-CNN assembled for inference (paper Fig. 2): backbone → SERD → MPAE encoder → FC → softmax.

The decoders only serve training (Eq. 8-11); the inference model holds none of their weights.
"""

from __future__ import annotations

import keras
from keras import ops

from dam_cnn_tf.models.mpvs_net import MPVSNet
from dam_cnn_tf.models.outputs import ATTENTION, PROBABILITIES  # noqa: F401  (re-exported)
from dam_cnn_tf.models.vgg_serd import FLATTEN, SERD, has_serd

def build_dam_cnn(vgg_serd: keras.Model, mpvs_net: MPVSNet, name: str = "dam_cnn") -> keras.Model:
    """The inference model from a trained VGG-SERD (stage 1) and MPVS-Net (stage 2).

    Raw RGB images ``(B, H, W, 3)`` in 0-255 in; ``{"probabilities": (B, K),
    "attention": (B, h, w)}`` out, the attention being SERD's mask ``M`` (Eq. 1).
    Shares its layers with the two models, so it needs no copy of their weights.
    """
    if not has_serd(vgg_serd):
        raise ValueError("build_dam_cnn needs a VGG-SERD model with its SERD layer")
    features = vgg_serd.get_layer(FLATTEN).output
    mask = vgg_serd.get_layer(SERD).output[1]
    mpae = mpvs_net.mpae
    code = mpae.encoder(mpae.scaler(features))  # Eq. 6; dropout is inactive at inference
    probabilities = mpvs_net.classifier(mpvs_net.fc1(code))
    attention = keras.layers.Reshape(tuple(mask.shape[1:3]), name=ATTENTION)(mask)
    probabilities = keras.layers.Activation("linear", dtype="float32", name=PROBABILITIES)(probabilities)
    return keras.Model(vgg_serd.input, {PROBABILITIES: probabilities, ATTENTION: attention}, name=name)

def predict_classes(model: keras.Model, images, batch_size: int = 32):
    """Class ids and probabilities for raw RGB images with a DAM-CNN inference model."""
    outputs = model.predict(images, batch_size=batch_size, verbose=0)
    probabilities = outputs[PROBABILITIES]
    return ops.convert_to_numpy(ops.argmax(probabilities, axis=-1)), probabilities, outputs[ATTENTION]
