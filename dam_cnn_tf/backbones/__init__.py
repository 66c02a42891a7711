"""The backbones a run can use, by name: one folder per family, one registry line each.

A family folder (``vgg_face/``, ``face_resnet/``, ``compact/``) holds the network
(``model.py``), how its published weights are read and loaded where it has any
(``weights.py``), and, in its ``__init__``, the ``Backbone`` entries it registers: how each is
built, its native input size, what ``--backbone-weights`` takes, its recipe of defaults
(``dam_cnn_tf/recipes/<name>.toml``), the layers ``--fine-tune-from`` is meant to take, and
where users download its weights.

* ``vgg-face`` (and its narrower variants): the paper's VGG-Face (§3.1).
* ``face-resnet``: dlib's face-pretrained ResNet, which anyone can get.
* ``compact``: a small network with batch normalisation that trains from scratch.

A new backbone is a folder that calls ``register`` and one line in ``FAMILIES``; a program of
your own may also ``register`` one before training. Nothing here imports Keras until a
backbone is built, so options and ``--help`` can name backbones cheaply.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable, Optional

# The layer name every backbone gets inside a stage-1 model.
BACKBONE = "backbone"
# The family folders registered on first use (the registry line a new family adds).
FAMILIES = ("face_resnet", "vgg_face", "compact")


class UnknownBackboneError(ValueError):
    """A backbone name nothing registered; one line naming the known ones."""


@dataclasses.dataclass(frozen=True)
class Backbone:
    """One entry of the registry.

    ``build(input_size, weights)`` returns ``(keras model, preprocessing layer or None)``: raw
    RGB 0-255 in, the feature map SERD weighs out (after ``preprocessing`` where it is not
    None). ``weights_at_build``: ``build`` loads ``weights`` itself; otherwise
    ``load_weights(stage1_model, weights)`` gives them to the whole stage-1 model (VGG-Face's
    releases hold fc6 and fc7 too) and returns a report. ``check_weights(path)`` reads a
    weights file and raises ``WeightsError`` if it cannot serve. ``recipe``: the name of the
    recipe file of its defaults. ``cut_points``: layers ``--fine-tune-from`` is meant to take,
    shallowest last. ``download``: the ``damcnn-tf weights download`` source of its weights.
    """

    name: str
    family: str
    build: Callable
    description: str
    weights_description: Optional[str] = None
    weights_at_build: bool = False
    load_weights: Optional[Callable] = None
    check_weights: Optional[Callable] = None
    recipe: Optional[str] = None
    cut_points: tuple = ()
    download: Optional[str] = None

    @property
    def takes_weights(self) -> bool:
        return self.weights_description is not None


_REGISTRY: dict = {}
_loaded = False


def register(backbone: Backbone) -> Backbone:
    """Add ``backbone`` to the registry (a later entry of the same name replaces it)."""
    _REGISTRY[backbone.name] = backbone
    return backbone


def _load_families() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for family in FAMILIES:
            importlib.import_module(f"{__name__}.{family}")


def names() -> tuple:
    """Every registered backbone name, in registration order."""
    _load_families()
    return tuple(_REGISTRY)


def get(name: str) -> Backbone:
    """The registered ``Backbone`` called ``name``."""
    _load_families()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownBackboneError(f"--backbone: must be one of {', '.join(_REGISTRY)}, got {name!r}") from None


def family(name: str) -> str:
    return get(name).family


def build_backbone(name: str, input_size: int, weights=None):
    """``(backbone, preprocessing)`` for images of ``input_size``: see ``Backbone.build``.
    ``weights`` are used only by a backbone that loads them at build time."""
    backbone = get(name)
    return backbone.build(input_size, weights if backbone.weights_at_build else None)


def load_weights(model, name: str, weights) -> str:
    """Give the stage-1 ``model`` its backbone's pretrained weights where they are loaded into
    the whole model (VGG-Face); returns a report, empty where ``build`` loaded them already."""
    backbone = get(name)
    if backbone.load_weights is None or backbone.weights_at_build:
        return ""
    return str(backbone.load_weights(model, weights))


def check_weights_file(name: str, weights) -> None:
    """Refuse an unreadable or unsuitable weights file before any data is prepared."""
    backbone = get(name)
    if backbone.check_weights is not None:
        backbone.check_weights(weights)


def frozen_feature_model(name: str, input_size: int, weights=None):
    """Raw RGB 0-255 ``(B, S, S, 3)`` to the backbone's feature map, with its weights, frozen.

    The model behind the frozen-feature baseline: what a linear probe sees of the backbone.
    """
    import keras

    backbone = get(name)
    network, preprocessing = build_backbone(name, input_size, weights)
    images = keras.Input(shape=(input_size, input_size, 3), name="image")
    features = network(preprocessing(images) if preprocessing is not None else images)
    model = keras.Model(images, features, name=f"{name}_features")
    if weights is not None and not backbone.weights_at_build and backbone.load_weights is not None:
        backbone.load_weights(model, weights)
    model.trainable = False
    return model


def __getattr__(name):
    # The tables of earlier releases, computed from the registry.
    if name == "BACKBONES":
        return {n: (get(n).family, ()) for n in names()}
    if name == "WEIGHTS_FILES":
        return {get(n).family: get(n).weights_description for n in names() if get(n).takes_weights}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
