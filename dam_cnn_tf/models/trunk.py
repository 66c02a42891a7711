"""A stage-1 model cut where fine-tuning starts: the frozen trunk below, the trained top above.

When stage 1 fine-tunes only the backbone's last blocks (``--fine-tune-from``), everything
before them gives the same output for a face in every epoch, every phase and every fold. Cut
there, the trunk runs once per face (``data.trunk_cache``) and training runs the top alone:

* ``trunk``: raw RGB 0-255 → the map entering layer ``first_trained`` (preprocessing included);
* ``top``: that map → class probabilities, through the trained blocks, SERD and fc6-fc8;
* ``front``: that map → the flattened salient features ``s`` (and SERD's mask), stage 2's input;
* ``upper`` (trunk map → the backbone's output ``h_c``) and ``head`` (``h_c`` → probabilities:
  SERD and fc6-fc8), the two halves of ``top``, for a phase that trains the head alone.

The three share their layers (and so their weights) with the VGG-SERD they were cut from:
training ``top`` trains VGG-SERD, and ``trunk`` then ``top`` computes exactly what VGG-SERD does.
"""

from __future__ import annotations

import dataclasses

import keras

from dam_cnn_tf.backbones import BACKBONE
from dam_cnn_tf.models.vgg_serd import FLATTEN, SERD, has_serd


class TrunkSplitError(ValueError):
    """The backbone cannot be cut at the layer asked for."""


@dataclasses.dataclass
class SplitModel:
    trunk: keras.Model
    top: keras.Model
    front: keras.Model
    upper: keras.Model
    head: keras.Model
    first_trained: str

    @property
    def trunk_shape(self) -> tuple:
        """The per-face shape of the trunk's map, e.g. ``(8, 8, 128)`` for face-resnet at 150."""
        return tuple(self.trunk.output.shape[1:])


def split_at(vgg_serd: keras.Model, first_trained: str) -> SplitModel:
    """Cut ``vgg_serd`` (from ``build_vgg_serd``) at the input of backbone layer ``first_trained``.

    Every layer from ``first_trained`` on must depend on that input alone (true of a plain
    chain such as VGG-Face and of face-resnet at a block's first convolution, whose shortcut
    starts from the same map); otherwise the cut is refused.
    """
    backbone = vgg_serd.get_layer(BACKBONE)
    try:
        boundary = backbone.get_layer(first_trained).input
    except ValueError:
        raise TrunkSplitError(f"--fine-tune-from: the backbone has no layer {first_trained!r}") from None
    try:
        upper = keras.Model(boundary, backbone.output, name="backbone_top")
    except ValueError as error:
        raise TrunkSplitError(f"--fine-tune-from {first_trained}: the layers after it also read maps from before "
                              f"it, so the backbone cannot be cut there ({error})") from None
    lower = keras.Model(backbone.input, boundary, name="backbone_trunk")

    images = keras.Input(shape=tuple(vgg_serd.input.shape[1:]), name="image")
    names = {layer.name for layer in vgg_serd.layers}
    x = vgg_serd.get_layer("preprocess")(images) if "preprocess" in names else images
    trunk = keras.Model(images, lower(x), name="trunk")

    # The outer graph's backbone output is what SERD (or, without it, the flattening) reads.
    h_c = vgg_serd.get_layer(SERD if has_serd(vgg_serd) else FLATTEN).input
    front_outputs = {"features": vgg_serd.get_layer(FLATTEN).output}
    if has_serd(vgg_serd):
        front_outputs["attention"] = vgg_serd.get_layer(SERD).output[1]
    classify = keras.Model(h_c, vgg_serd.output, name="head")
    salient = keras.Model(h_c, front_outputs, name="salient_head")

    maps = keras.Input(shape=tuple(boundary.shape[1:]), name="trunk_map")
    top = keras.Model(maps, classify(upper(maps)), name=f"{vgg_serd.name}_top")
    maps = keras.Input(shape=tuple(boundary.shape[1:]), name="trunk_map")
    front = keras.Model(maps, salient(upper(maps)), name="salient_features_top")
    return SplitModel(trunk=trunk, top=top, front=front, upper=upper, head=classify, first_trained=first_trained)
