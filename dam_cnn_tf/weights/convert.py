"""From any published VGG-Face file to one weights file for our backbone, and back into a model.

``convert_weights`` reads a release (MatConvNet, Caffe, keras-vggface or deepface), brings it
to our layout (see ``layout``) and writes an HDF5 file with one group per layer
(``/conv1_1/kernel``, ``/conv1_1/bias``, …) and root attributes recording where it came from
and the input convention it expects. ``load_backbone_weights`` assigns such a file by layer
name to a VGG-Face backbone (paper §3.1), alone or nested inside a larger model. fc8, the
2622-identity classifier, is re-initialised for expression recognition (§3.1) and so is only
loaded when asked for.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

import h5py
import numpy as np

from dam_cnn_tf.checksums import sha256_of
from dam_cnn_tf.weights.vgg_face_layout import CONV_LAYER_NAMES, VGG_FACE_MEAN_BGR
from dam_cnn_tf.weights import layout
from dam_cnn_tf.weights.caffe import read_caffemodel
from dam_cnn_tf.weights.errors import MissingLayerError, WeightsError, WeightsFormatError, WeightsShapeError
from dam_cnn_tf.weights.hdf5 import child, keras_root, read_array, reading_hdf5, text_list
from dam_cnn_tf.weights.keras_h5 import read_deepface, read_keras_vggface
from dam_cnn_tf.weights.matconvnet import MAT5_MAGIC, MAT73_MAGIC, read_matconvnet

FORMATS = ("matconvnet", "caffe", "keras-vggface", "deepface")
CONVERTED_FORMAT = "dam_cnn_tf.vgg_face_weights"
CONVERTED_VERSION = 1
# What each release's first convolution was trained on, before conversion.
SOURCE_INPUT = {
    "matconvnet": "RGB minus averageImage",
    "caffe": "BGR minus mean",
    "keras-vggface": "BGR minus mean",
    "deepface": "see colour_order",
}


def detect_format(path) -> str:
    """The release format of ``path``, from its content (the extension only breaks ties)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsFormatError(f"{path}: no such file")
    with open(path, "rb") as handle:
        head = handle.read(len(MAT5_MAGIC))
    if head in (MAT5_MAGIC, MAT73_MAGIC):
        return "matconvnet"
    if h5py.is_hdf5(path):
        with reading_hdf5(path, "HDF5 weights file") as handle:
            if handle.attrs.get("format") == CONVERTED_FORMAT:
                raise WeightsFormatError(f"{path}: already converted; pass it to load_backbone_weights")
            names = set(text_list(keras_root(handle, path).attrs.get("layer_names", [])))
        if "conv1_1" in names:
            return "keras-vggface"
        if names:
            return "deepface"
        raise WeightsFormatError(f"{path}: an HDF5 file but not a Keras 2 weights file")
    caffe_lead = head[:1] in (b"\x0a", b"\x12", b"\x1a", b"\xa2")
    if path.suffix.lower() in (".caffemodel", ".binaryproto", ".pb") or caffe_lead:
        # NetParameter starts with a length-delimited field: name (1), layers (2), input (3)
        # or layer (100), whose tags begin with these bytes.
        return "caffe"
    raise WeightsFormatError(f"{path}: unrecognised weights format (expected .mat, .caffemodel or Keras .h5)")


def read_weights(path, format: str = "auto", *, colour_order: str = "rgb") -> tuple[str, layout.Weights]:
    """``(format, {layer: (kernel, bias)})`` in our layout from any supported release."""
    if not Path(path).is_file():
        raise WeightsFormatError(f"{path}: no such file")
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "matconvnet":
        return fmt, read_matconvnet(path)
    if fmt == "caffe":
        return fmt, read_caffemodel(path)
    if fmt == "keras-vggface":
        return fmt, read_keras_vggface(path)
    if fmt == "deepface":
        return fmt, read_deepface(path, colour_order=colour_order)
    raise WeightsFormatError(f"unknown format {format!r}; choose auto or one of {', '.join(FORMATS)}")


def write_converted(weights: layout.Weights, dst, attrs: dict) -> Path:
    """Write ``weights`` to ``dst`` through a temporary file, so no half file is ever left."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dst.name + ".", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as handle:
            for key, value in attrs.items():
                handle.attrs[key] = value
            for name in layout.LAYER_NAMES:
                if name in weights:
                    kernel, bias = weights[name]
                    group = handle.create_group(name)
                    group.create_dataset("kernel", data=kernel)
                    group.create_dataset("bias", data=bias)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dst


def convert_weights(src, dst, format: str = "auto", *, colour_order: str = "rgb") -> Path:
    """Convert a published VGG-Face file ``src`` to our weights file ``dst``; returns ``dst``.

    ``colour_order`` only matters for deepface's file (see ``keras_h5.read_deepface``).
    """
    fmt, weights = read_weights(src, format, colour_order=colour_order)
    side = layout.pool5_side(weights)
    attrs = {
        "format": CONVERTED_FORMAT,
        "format_version": CONVERTED_VERSION,
        "source_format": fmt,
        "source_file": Path(src).name,
        "source_sha256": sha256_of(src),
        "source_input": SOURCE_INPUT[fmt] if fmt != "deepface" else f"{colour_order.upper()} minus mean",
        "colour_order": "BGR",
        "mean_bgr": np.asarray(VGG_FACE_MEAN_BGR, dtype=np.float64),
        "preprocessing": "dam_cnn_tf.models.vgg_face.preprocess_input: RGB->BGR, minus mean_bgr",
        # fc6 fixes the input size (pool5 is input/32); a no-top file takes any size.
        "input_size": np.asarray([side * 32, side * 32] if side else [], dtype=np.int64),
        "layers": json.dumps([n for n in layout.LAYER_NAMES if n in weights]),
    }
    return write_converted(weights, dst, attrs)


def read_converted(path) -> tuple[layout.Weights, dict]:
    """``({layer: (kernel, bias)}, attrs)`` from a file written by ``convert_weights``."""
    path = Path(path)
    if not path.is_file():
        raise WeightsFormatError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise WeightsFormatError(f"{path}: not an HDF5 weights file; convert it first with convert_weights")
    with reading_hdf5(path, "converted weights file") as handle:
        if handle.attrs.get("format") != CONVERTED_FORMAT:
            raise WeightsFormatError(
                f"{path}: not a converted VGG-Face weights file; convert it first (damcnn-tf weights convert)"
            )
        attrs = dict(handle.attrs)
        weights = {}
        for name in layout.LAYER_NAMES:
            if name in handle:
                group = child(handle, name, h5py.Group, path, "/")
                if "kernel" not in group or "bias" not in group:
                    raise WeightsFormatError(f"{path}: layer {name} lacks its kernel or bias")
                weights[name] = (read_array(group, "kernel", path, group.name),
                                 read_array(group, "bias", path, group.name))
    return layout.validate(weights, path), attrs


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """Which stored layers went into the model, and why the others did not."""

    loaded: tuple[str, ...]
    skipped: dict[str, str]

    def __str__(self) -> str:
        parts = [f"loaded {', '.join(self.loaded) or 'nothing'}"]
        parts += [f"skipped {name} ({why})" for name, why in self.skipped.items()]
        return "; ".join(parts)


def _layers_by_name(model) -> dict[str, list]:
    """Every layer of ``model`` and of the models nested in it, by name."""
    found: dict[str, list] = {}

    def visit(container):
        for layer in container.layers:
            found.setdefault(layer.name, []).append(layer)
            if hasattr(layer, "layers") and layer is not container:
                visit(layer)

    visit(model)
    return found


def load_backbone_weights(model, path, *, include_fc8: bool = False, skip=()) -> LoadReport:
    """Assign a converted weights file to ``model`` by layer name; returns what was done.

    ``model`` is the backbone or any model containing it (as a nested model, or with fc6/fc7
    at its own level). Every conv layer must be in both the file and the model. fc6 and fc7
    are loaded wherever the model has them, and refused if the model has them but the file
    (a no-top release) does not, unless named in ``skip``. fc8 is loaded only with
    ``include_fc8``. Shapes must match exactly.
    """
    weights, _ = read_converted(path)
    layers = _layers_by_name(model)
    skip = set(skip)
    unknown = skip - set(layout.LAYER_NAMES)
    if unknown:
        raise WeightsError(f"skip names unknown layer(s) {', '.join(sorted(unknown))}")
    required = [n for n in CONV_LAYER_NAMES if n not in skip]
    absent = [n for n in required if n not in layers]
    if absent:
        raise MissingLayerError(
            f"model {model.name!r} has no layer(s) {', '.join(absent)}: not a VGG-Face backbone"
        )
    wanted = [n for n in layout.LAYER_NAMES if n in CONV_LAYER_NAMES or n in ("fc6", "fc7") or include_fc8]
    plan, skipped = [], {}
    for name in layout.LAYER_NAMES:
        if name in skip:
            skipped[name] = "asked to skip"
        elif name not in wanted:
            skipped[name] = "re-initialised for the new classes (load with include_fc8)"
        elif name not in layers:
            skipped[name] = "not in the model"
        elif name not in weights:
            raise MissingLayerError(
                f"{path}: no weights for layer {name}, which the model has (a no-top release?); "
                f"skip it to keep its initial values"
            )
        elif len(layers[name]) > 1:
            raise WeightsError(f"model {model.name!r} has {len(layers[name])} layers named {name}; cannot choose")
        else:
            plan.append(name)
    for name in plan:  # check every shape before changing anything
        layer = layers[name][0]
        current = [tuple(w.shape) for w in layer.get_weights()]
        stored = [tuple(a.shape) for a in weights[name]]
        if current != stored:
            raise WeightsShapeError(
                f"{path}: layer {name} stores kernel/bias {stored[0]}/{stored[1]} "
                f"but the model's layer has {' / '.join(map(str, current)) or 'no weights (not built)'}"
            )
    for name in plan:
        layers[name][0].set_weights(list(weights[name]))
    return LoadReport(loaded=tuple(plan), skipped=skipped)
