"""Reader for Oxford's MatConvNet release of VGG-Face (``vgg_face.mat``).

The file is a MATLAB v5 .mat holding a SimpleNN network: either a ``net`` struct or the
struct's fields at top level (the vlfeat.org ``vgg-face.mat``). ``layers`` is a cell array of
structs with ``name`` and ``type``; convolutions (``type == 'conv'``, also used for fc6, fc7,
fc8) carry ``weights = {filters, biases}`` or, in files written by MatConvNet before beta-13,
separate ``filters`` and ``biases`` fields. Filters are ``(h, w, in, out)`` with h the image
row, and the network correlates them with the image exactly as Keras' ``Conv2D`` does, so
public converters use them without any h/w transpose. The input is RGB minus
``normalization.averageImage`` (under ``meta`` in newer files, at the top of ``net`` in the
Oxford release; checked against ours when present), so the only change for our BGR convention is reversing conv1_1's input
channels.
"""

from __future__ import annotations

import numpy as np

from dam_cnn_tf.weights.vgg_face_layout import CONV_LAYER_NAMES
from dam_cnn_tf.weights import layout
from dam_cnn_tf.weights.errors import WeightsFormatError

MAT5_MAGIC = b"MATLAB 5.0 MAT-file"
MAT73_MAGIC = b"MATLAB 7.3 MAT-file"


def is_mat_file(path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(len(MAT5_MAGIC))
    return head in (MAT5_MAGIC, MAT73_MAGIC)


def _field(struct, name):
    return getattr(struct, name, None) if name in getattr(struct, "_fieldnames", ()) else None


def _unwrap(value):
    """A 1x1 MATLAB container (struct or cell) as its single element."""
    while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.reshape(-1)[0]
    return value


def _text(value) -> str:
    value = _unwrap(value)
    if isinstance(value, np.ndarray):
        return "".join(str(v) for v in value.reshape(-1))
    return str(value)


def _as_kernel(filters) -> np.ndarray:
    # MATLAB drops trailing singleton dimensions; restore them to (h, w, in, out).
    filters = np.asarray(filters)
    return filters.reshape(filters.shape + (1,) * (4 - filters.ndim)) if filters.ndim < 4 else filters


def _layer_params(layer, path, name):
    weights = _field(layer, "weights")
    if weights is not None:
        cells = np.asarray(weights, dtype=object).reshape(-1)
        if cells.size != 2:
            raise WeightsFormatError(f"{path}: layer {name} has {cells.size} weight arrays, expected 2")
        return _as_kernel(cells[0]), np.asarray(cells[1])
    filters, biases = _field(layer, "filters"), _field(layer, "biases")
    if filters is None or biases is None:
        raise WeightsFormatError(f"{path}: layer {name} has neither 'weights' nor 'filters'/'biases'")
    return _as_kernel(filters), np.asarray(biases)


def _mean_rgb(net, path):
    normalization = None
    meta = _unwrap(_field(net, "meta"))
    if meta is not None:
        normalization = _unwrap(_field(meta, "normalization"))
    if normalization is None:
        normalization = _unwrap(_field(net, "normalization"))
    if normalization is None or _field(normalization, "averageImage") is None:
        return None  # nothing recorded to check against
    average = np.asarray(_field(normalization, "averageImage"), dtype=np.float64)
    # Either a 1x1x3 pixel or a full HxWx3 mean image; both reduce to a per-channel mean.
    return average.reshape(-1, 3).mean(axis=0) if average.size >= 3 else average


def read_matconvnet(path) -> layout.Weights:
    """``{layer: (kernel, bias)}`` in our layout from a MatConvNet VGG-Face ``.mat`` file."""
    with open(path, "rb") as handle:
        head = handle.read(len(MAT5_MAGIC))
    if head == MAT73_MAGIC:
        raise WeightsFormatError(f"{path}: MATLAB v7.3 files are not supported; re-save it with save(..., '-v7')")
    if head != MAT5_MAGIC:
        raise WeightsFormatError(f"{path}: not a MATLAB v5 .mat file")
    from scipy.io import loadmat  # scipy comes with scikit-learn

    try:
        contents = loadmat(path, squeeze_me=False, struct_as_record=False)
    except Exception as error:  # scipy raises several types for damaged files
        raise WeightsFormatError(f"{path}: cannot read the .mat file ({error})") from error
    net = _unwrap(contents["net"]) if "net" in contents else None
    if net is None:
        if "layers" not in contents:
            raise WeightsFormatError(f"{path}: neither a 'net' struct nor 'layers' in the file")
        net = type("TopLevel", (), {})()
        net._fieldnames = [k for k in contents if not k.startswith("__")]
        for key in net._fieldnames:
            setattr(net, key, contents[key])
    layers = _field(net, "layers")
    if layers is None:
        raise WeightsFormatError(f"{path}: the network has no 'layers' (a DagNN file? only SimpleNN is read)")
    mean_rgb = _mean_rgb(net, path)
    if mean_rgb is not None:
        layout.check_mean(mean_rgb, path)

    weights: layout.Weights = {}
    for layer in np.asarray(layers, dtype=object).reshape(-1):
        layer = _unwrap(layer)
        name, kind = _text(_field(layer, "name")), _text(_field(layer, "type"))
        if kind != "conv":
            continue
        if name not in layout.LAYER_NAMES:
            raise WeightsFormatError(f"{path}: unexpected convolution layer {name!r}")
        filters, biases = _layer_params(layer, path, name)
        if name in CONV_LAYER_NAMES:
            weights[name] = layout.conv_from_hwio(filters, biases, flip_input_colour=name == "conv1_1")
        else:
            weights[name] = layout.dense_from_hwio(filters, biases)
    return layout.validate(weights, path)
