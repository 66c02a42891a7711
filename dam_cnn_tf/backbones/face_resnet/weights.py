"""face-api's face-recognition weights for the ``face-resnet`` backbone: convert and load.

face-api names a tensor ``<block>/<conv>/conv/filters`` (``bias``) and
``<block>/<conv>/scale/weights`` (``biases``); shapes are already TensorFlow's. Our Keras
layers are ``<block>_<conv>_conv`` (kernel, bias) and ``<block>_<conv>_scale`` (scale,
offset), and ``fc`` (kernel). ``convert_face_resnet`` writes them to an HDF5 file with one group
per layer; ``load_face_resnet_weights`` assigns either that file or the manifest itself to a
model by layer name, checking every shape before changing anything.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import h5py
import numpy as np

from dam_cnn_tf.weights.errors import MissingLayerError, WeightsFormatError, WeightsShapeError
from dam_cnn_tf.weights.hdf5 import child, read_array, reading_hdf5
from dam_cnn_tf.weights.tfjs import is_tfjs_manifest, read_tfjs_weights

CONVERTED_FORMAT = "dam_cnn_tf.face_resnet_weights"
CONVERTED_VERSION = 1
# face-api's last two name parts -> (our layer suffix, the variable's place in the layer).
ROLES = {
    ("conv", "filters"): ("conv", 0),
    ("conv", "bias"): ("conv", 1),
    ("scale", "weights"): ("scale", 0),
    ("scale", "biases"): ("scale", 1),
}

LayerWeights = dict[str, list[np.ndarray]]


def from_tfjs_names(tensors: dict[str, np.ndarray], source) -> LayerWeights:
    """face-api's ``{name: array}`` as ``{our layer name: [arrays in set_weights order]}``."""
    layers: dict[str, dict[int, np.ndarray]] = {}
    for name, array in tensors.items():
        if name == "fc":
            layers.setdefault("fc", {})[0] = array
            continue
        parts = name.split("/")
        role = ROLES.get(tuple(parts[-2:]))
        if role is None or len(parts) < 3:
            raise WeightsFormatError(f"{source}: {name!r} is not a face-recognition network tensor")
        suffix, index = role
        layers.setdefault("_".join(parts[:-2] + [suffix]), {})[index] = array
    result = {}
    for layer, arrays in layers.items():
        if sorted(arrays) != list(range(len(arrays))) or (layer != "fc" and len(arrays) != 2):
            raise WeightsFormatError(f"{source}: layer {layer} lacks some of its tensors")
        result[layer] = [arrays[i] for i in range(len(arrays))]
    return result


def convert_face_resnet(manifest, dst) -> Path:
    """Write face-api's recognition weights (``manifest``) to our HDF5 file ``dst``."""
    from dam_cnn_tf.checksums import sha256_of

    manifest, dst = Path(manifest), Path(dst)
    layers = from_tfjs_names(read_tfjs_weights(manifest), manifest)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dst.name + ".", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as handle:
            handle.attrs.update({
                "format": CONVERTED_FORMAT,
                "format_version": CONVERTED_VERSION,
                "source_format": "tfjs",
                "source_file": manifest.name,
                "source_sha256": sha256_of(manifest),
                "preprocessing": "dam_cnn_tf.backbones.face_resnet.model.FaceResNetPreprocess: RGB 0-255, "
                                 "pad to square, bilinear resize, (x - mean_rgb) / 255",
                "layers": json.dumps(sorted(layers)),
            })
            for layer, arrays in sorted(layers.items()):
                group = handle.create_group(layer)
                for i, array in enumerate(arrays):
                    group.create_dataset(str(i), data=array)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dst


def is_converted_face_resnet(path) -> bool:
    path = Path(path)
    if not path.is_file() or not h5py.is_hdf5(path):
        return False
    with reading_hdf5(path, "weights file") as handle:
        return handle.attrs.get("format") == CONVERTED_FORMAT


def read_face_resnet_weights(path) -> LayerWeights:
    """``{layer: [arrays]}`` from face-api's manifest or from our converted file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsFormatError(f"{path}: no such file")
    if is_tfjs_manifest(path):
        return from_tfjs_names(read_tfjs_weights(path), path)
    if not h5py.is_hdf5(path):
        raise WeightsFormatError(f"{path}: neither a TF.js weights manifest nor a converted face-resnet file")
    with reading_hdf5(path, "converted face-resnet weights file") as handle:
        if handle.attrs.get("format") != CONVERTED_FORMAT:
            raise WeightsFormatError(f"{path}: not a face-resnet weights file (damcnn-tf weights convert makes one)")
        layers = {}
        for layer in handle:
            group = child(handle, layer, h5py.Group, path, "/")
            layers[layer] = [read_array(group, str(i), path, group.name) for i in range(len(group))]
    return layers


def _layers_by_name(model) -> dict:
    found = {}

    def visit(container):
        for layer in container.layers:
            found.setdefault(layer.name, layer)
            if hasattr(layer, "layers"):
                visit(layer)

    visit(model)
    return found


def load_face_resnet_weights(model, path) -> tuple[str, ...]:
    """Assign face-api's weights (manifest or converted file) to ``model`` by layer name.

    ``model`` is a face-resnet (with or without its top) or any model containing one. Every
    weighted layer of the backbone must be in the file; the file's ``fc`` and last block are
    skipped when the model has no top. Returns the names of the layers loaded.
    """
    stored = read_face_resnet_weights(path)
    layers = _layers_by_name(model)
    wanted = [name for name, layer in layers.items() if name in stored or _is_backbone_layer(layer)]
    missing = [name for name in wanted if name not in stored]
    if missing:
        raise MissingLayerError(f"{path}: no weights for layer(s) {', '.join(missing[:5])} of model {model.name!r}")
    if not wanted:
        raise MissingLayerError(f"model {model.name!r} has no face-resnet layers for {path}")
    for name in wanted:  # every shape is checked before anything changes
        current = [tuple(w.shape) for w in layers[name].get_weights()]
        given = [tuple(a.shape) for a in stored[name]]
        if current != given:
            raise WeightsShapeError(f"{path}: layer {name} stores {given} but the model's layer has {current}")
    for name in wanted:
        layers[name].set_weights(stored[name])
    return tuple(wanted)


def _is_backbone_layer(layer) -> bool:
    # The layout names every weighted layer <block>_<conv>_conv (conv + bias) or
    # <block>_<conv>_scale (the scale layer), as face-api names its tensors.
    return layer.name.startswith("conv") and layer.name.endswith(("_conv", "_scale"))
