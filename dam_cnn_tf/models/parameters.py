"""Parameter counts of DAM-CNN's parts (Table 1), read from built models."""

from __future__ import annotations

import keras

from dam_cnn_tf import hparams
from dam_cnn_tf.models.dam_cnn import build_dam_cnn
from dam_cnn_tf.models.mpvs_net import MPVSNet
from dam_cnn_tf.models.vgg_serd import build_vgg_serd, feature_map_shape


def _count(layer: keras.layers.Layer) -> int:
    return sum(_size(v.shape) for v in layer.weights)


def _size(shape) -> int:
    size = 1
    for dim in shape:
        size *= int(dim)
    return size


def parameter_table(num_classes: int = 7, num_paths: int = hparams.NUM_PATHS, input_size: int = hparams.INPUT_SIZE):
    """Rows ``(part, shape, parameters)`` for the full-size model of Table 1.

    Builds VGG-SERD and a one-path MPVS-Net at full size (about 1.4 GB of weights) and
    scales the decoder count by ``num_paths``, since the paths are identical in size.
    """
    vgg_serd = build_vgg_serd(num_classes, input_shape=(input_size, input_size, 3))
    h, w, c = feature_map_shape(vgg_serd)
    features = h * w * c
    net = MPVSNet(features, num_classes, num_paths=1)
    inference = build_dam_cnn(vgg_serd, net)
    mpae = net.mpae
    per_path = _count(mpae.decoders)
    rows = [
        ("VGG-Face convolutions (13 conv)", "3x3 convs, 64-512 channels", _count(vgg_serd.get_layer("backbone"))),
        ("SERD attention (Eq. 1)", f"1x1x{c}x1", _count(vgg_serd.get_layer("serd"))),
        ("VGG-SERD fc6", f"{features}x{vgg_serd.get_layer('fc6').units}", _count(vgg_serd.get_layer("fc6"))),
        ("VGG-SERD fc7", "4096x4096", _count(vgg_serd.get_layer("fc7"))),
        ("VGG-SERD fc8", f"4096x{num_classes}", _count(vgg_serd.get_layer("fc8"))),
        ("MPAE encoder (Eq. 6)", f"{features}x{mpae.encoder_units}", _count(mpae.encoder)),
        ("MPAE decoder, each path (Eq. 7)", f"{mpae.encoder_units}x{features}", per_path),
        (f"MPAE decoders, N = {num_paths}", f"{num_paths} x {mpae.encoder_units}x{features}", num_paths * per_path),
        ("MPVS-Net FC (ReLU)", f"{mpae.encoder_units}x{net.fc_units}", _count(net.fc1)),
        ("MPVS-Net FC (softmax)", f"{net.fc_units}x{num_classes}", _count(net.classifier)),
        ("Feature scaling (non-trainable)", f"{features}", _count(mpae.scaler)),
        ("Inference model (no decoders)", "image to probabilities", inference.count_params()),
    ]
    return rows


def markdown_table(rows) -> str:
    lines = ["| part | shape | parameters |", "|---|---|---:|"]
    lines += [f"| {part} | {shape} | {count:,} |" for part, shape, count in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table(parameter_table()))
