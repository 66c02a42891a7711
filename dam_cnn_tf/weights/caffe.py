"""Reader for Oxford's Caffe release of VGG-Face (``VGG_FACE.caffemodel``), without Caffe.

A ``.caffemodel`` is a serialized ``caffe.NetParameter`` protobuf. Only a handful of fields
are needed, so they are decoded straight from the protobuf wire format; float arrays are
viewed in place with ``np.frombuffer`` (the release holds ~145M floats). Field numbers, from
Caffe's ``caffe.proto``::

    NetParameter      layer = 100 (LayerParameter), layers = 2 (V1LayerParameter, old files)
    LayerParameter    name = 1, type = 2 (string), blobs = 7
    V1LayerParameter  name = 4, type = 5 (enum: CONVOLUTION = 4, INNER_PRODUCT = 14), blobs = 6
    BlobProto         num = 1, channels = 2, height = 3, width = 4, data = 5 (float, packed),
                      shape = 7 (BlobShape: dim = 1, packed int64), double_data = 8

Caffe's convolution blobs are ``(out, in, h, w)``; its VGG-Face takes BGR images minus the
same mean pixel as ours, so no colour change is needed. InnerProduct blobs are ``(out, in)``,
and fc6's input is pool5 flattened in Caffe's (C, H, W) order, so its rows are re-ordered to
our channels-last (H, W, C) ``Flatten``.
"""

from __future__ import annotations

import mmap

import numpy as np

from dam_cnn_tf.weights.vgg_face_layout import CONV_LAYER_NAMES
from dam_cnn_tf.weights import layout
from dam_cnn_tf.weights.errors import WeightsFormatError

V1_CONVOLUTION, V1_INNER_PRODUCT = 4, 14
WEIGHTED_TYPES = {"Convolution", "InnerProduct", V1_CONVOLUTION, V1_INNER_PRODUCT}


class _WireError(Exception):
    pass


def _varint(buf, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _WireError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _WireError("varint too long")


def _fields(buf):
    """Yield ``(field_number, wire_type, value)``; value is an int or a memoryview slice."""
    pos, end = 0, len(buf)
    while pos < end:
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise _WireError(f"unsupported wire type {wire}")
        if pos > end:
            raise _WireError("truncated field")
        yield number, wire, value


def _packed_varints(value, wire) -> list[int]:
    if wire == 0:
        return [value]
    out, pos = [], 0
    while pos < len(value):
        item, pos = _varint(value, pos)
        out.append(item)
    return out


def _blob(buf) -> np.ndarray:
    dims4 = {1: 0, 2: 0, 3: 0, 4: 0}
    shape: list[int] = []
    floats: list[np.ndarray] = []
    doubles: list[np.ndarray] = []
    for number, wire, value in _fields(buf):
        if number in dims4 and wire == 0:
            dims4[number] = value
        elif number == 7 and wire == 2:
            for sub_number, sub_wire, sub_value in _fields(value):
                if sub_number == 1:
                    shape.extend(_packed_varints(sub_value, sub_wire))
        elif number == 5:  # packed (wire 2) or one float per field (wire 5)
            floats.append(np.frombuffer(value, dtype="<f4"))
        elif number == 8:
            doubles.append(np.frombuffer(value, dtype="<f8"))
    data = np.concatenate(floats) if floats else (np.concatenate(doubles) if doubles else np.zeros(0))
    if not shape:
        shape = [dims4[n] for n in (1, 2, 3, 4)]
    if int(np.prod(shape)) != data.size:
        raise _WireError(f"blob of shape {tuple(shape)} holds {data.size} values")
    return data.astype(np.float32).reshape(shape)


def _layer(buf, v1: bool):
    name_field, type_field, blob_field = (4, 5, 6) if v1 else (1, 2, 7)
    name, kind, blobs = "", None, []
    for number, wire, value in _fields(buf):
        if number == name_field and wire == 2:
            name = bytes(value).decode("utf-8", "replace")
        elif number == type_field:
            kind = value if v1 else bytes(value).decode("utf-8", "replace")
        elif number == blob_field and wire == 2:
            blobs.append(value)
    return name, kind, blobs


def _squeeze_to(array: np.ndarray, ndim: int) -> np.ndarray:
    """Old 4-D blobs hold an fc matrix as (1, 1, out, in) and a bias as (1, 1, 1, out)."""
    shape = [d for d in array.shape]
    while len(shape) > ndim and shape[0] == 1:
        shape.pop(0)
    return array.reshape(shape)


def read_caffemodel(path) -> layout.Weights:
    """``{layer: (kernel, bias)}`` in our layout from a Caffe VGG-Face ``.caffemodel``."""
    with open(path, "rb") as handle:
        try:
            data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError as error:  # an empty file cannot be mapped
            raise WeightsFormatError(f"{path}: not a Caffe NetParameter protobuf (empty file)") from error
    # Blobs are copied out of the map, so it is released once parsing ends.
    raw: dict[str, tuple[object, list]] = {}
    try:
        for number, wire, value in _fields(memoryview(data)):
            if number in (2, 100) and wire == 2:
                name, kind, blobs = _layer(value, v1=number == 2)
                if kind in WEIGHTED_TYPES:
                    raw[name] = (kind, [_blob(b) for b in blobs])
    except _WireError as error:
        raise WeightsFormatError(f"{path}: not a Caffe NetParameter protobuf ({error})") from None
    if not raw:
        raise WeightsFormatError(f"{path}: no Convolution or InnerProduct layers with weights")

    weights: layout.Weights = {}
    channels = None
    for name, (kind, blobs) in raw.items():
        if name not in layout.LAYER_NAMES:
            raise WeightsFormatError(f"{path}: unexpected layer {name!r} of type {kind}")
        if len(blobs) != 2:
            raise WeightsFormatError(f"{path}: layer {name} has {len(blobs)} blobs, expected weights and bias")
        weight, bias = blobs
        if name in CONV_LAYER_NAMES:
            if weight.ndim != 4:
                raise WeightsFormatError(f"{path}: layer {name} weights have shape {weight.shape}, expected 4-D")
            weights[name] = layout.conv_from_oihw(weight, bias)
        else:
            weight = _squeeze_to(weight, 2)
            if weight.ndim != 2:
                raise WeightsFormatError(f"{path}: layer {name} weights have shape {weight.shape}, expected 2-D")
            if name == "fc6":
                channels = raw["conv5_3"][1][0].shape[0] if "conv5_3" in raw else 0
                weights[name] = layout.dense_from_out_in_chw(weight, bias, channels, layer=name, path=path)
            else:
                weights[name] = layout.dense_from_out_in(weight, bias)
    return layout.validate(weights, path)
