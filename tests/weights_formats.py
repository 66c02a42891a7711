"""Small VGG-Face files in each published format, and a NumPy forward pass in each original layout.

Every writer produces the exact container, field names and axis orders of the real release,
with tiny widths, from weights drawn in that release's own layout. The reference forward
passes compute what the original network computes, in its own axis and colour order, so a
test can compare them with our converted backbone on the same RGB image.
"""

from __future__ import annotations

import h5py
import numpy as np

CONV_NAMES = (
    "conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
    "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3",
)
BLOCK_ENDS = {"conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3"}
MEAN_RGB = np.array([129.1863, 104.7624, 93.5940])
WIDTHS = (2, 2, 3, 3, 3)
DEPTHS = (2, 2, 3, 3, 3)
FC_UNITS = 8
CLASSES = 5


def conv_widths(widths=WIDTHS):
    return [w for w, d in zip(widths, DEPTHS) for _ in range(d)]


# ---------------------------------------------------------------- weights in original layouts


def hwio_params(rng, size, widths=WIDTHS, fc_units=FC_UNITS, classes=CLASSES):
    """Conv kernels (3, 3, in, out) and fc6-fc8 as (h, w, in, out) convolutions."""
    params, channels = {}, 3
    for name, width in zip(CONV_NAMES, conv_widths(widths)):
        kernel = rng.normal(0, np.sqrt(2 / (9 * channels)), (3, 3, channels, width))
        params[name] = (kernel, rng.normal(0, 0.1, width))
        channels = width
    side = size // 32
    fc6 = rng.normal(0, np.sqrt(2 / (side * side * channels)), (side, side, channels, fc_units))
    params["fc6"] = (fc6, rng.normal(0, 0.1, fc_units))
    params["fc7"] = (rng.normal(0, np.sqrt(2 / fc_units), (1, 1, fc_units, fc_units)), rng.normal(0, 0.1, fc_units))
    params["fc8"] = (rng.normal(0, np.sqrt(2 / fc_units), (1, 1, fc_units, classes)), rng.normal(0, 0.1, classes))
    return {k: (w.astype(np.float32), b.astype(np.float32)) for k, (w, b) in params.items()}


def oihw_params(rng, size, widths=WIDTHS, fc_units=FC_UNITS, classes=CLASSES):
    """Caffe blobs: conv (out, in, h, w); fc (out, in) over a (C, H, W)-flattened input."""
    params, channels = {}, 3
    for name, width in zip(CONV_NAMES, conv_widths(widths)):
        params[name] = (rng.normal(0, np.sqrt(2 / (9 * channels)), (width, channels, 3, 3)), rng.normal(0, 0.1, width))
        channels = width
    fan_in = (size // 32) ** 2 * channels
    params["fc6"] = (rng.normal(0, np.sqrt(2 / fan_in), (fc_units, fan_in)), rng.normal(0, 0.1, fc_units))
    params["fc7"] = (rng.normal(0, np.sqrt(2 / fc_units), (fc_units, fc_units)), rng.normal(0, 0.1, fc_units))
    params["fc8"] = (rng.normal(0, np.sqrt(2 / fc_units), (classes, fc_units)), rng.normal(0, 0.1, classes))
    return {k: (w.astype(np.float32), b.astype(np.float32)) for k, (w, b) in params.items()}


def keras_params(rng, size, widths=WIDTHS, fc_units=FC_UNITS, classes=CLASSES):
    """keras-vggface: conv (3, 3, in, out), Dense (in, out) over an (H, W, C)-flattened input."""
    params = hwio_params(rng, size, widths, fc_units, classes)
    for name in ("fc6", "fc7", "fc8"):
        kernel, bias = params[name]
        params[name] = (kernel.reshape(-1, kernel.shape[-1]), bias)
    return params


# ---------------------------------------------------------------- NumPy forward passes


def _conv_hwc(x, kernel, bias):
    h, w, _ = x.shape
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    patches = np.stack([np.stack([padded[i : i + h, j : j + w] for j in range(3)]) for i in range(3)])
    return np.maximum(np.einsum("uvhwc,uvco->hwo", patches, kernel.astype(np.float64)) + bias, 0)


def _conv_chw(x, kernel, bias):
    _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    rows = [np.stack([padded[:, i : i + h, j : j + w] for j in range(3)], axis=1) for i in range(3)]
    patches = np.stack(rows, axis=1)
    return np.maximum(np.einsum("cuvhw,ocuv->ohw", patches, kernel.astype(np.float64)) + bias[:, None, None], 0)


def _pool_hwc(x):
    h, w, c = x.shape
    return x.reshape(h // 2, 2, w // 2, 2, c).max(axis=(1, 3))


def _pool_chw(x):
    c, h, w = x.shape
    return x.reshape(c, h // 2, 2, w // 2, 2).max(axis=(2, 4))


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def forward_hwio(params, image_hwc):
    """MatConvNet / deepface: (h, w, in, out) convolutions all the way, fc as valid convolutions."""
    x = image_hwc.astype(np.float64)
    for name in CONV_NAMES:
        x = _conv_hwc(x, *params[name])
        if name in BLOCK_ENDS:
            x = _pool_hwc(x)
    fc6 = np.maximum(np.einsum("hwc,hwco->o", x, params["fc6"][0].astype(np.float64)) + params["fc6"][1], 0)
    fc7 = np.maximum(fc6 @ params["fc7"][0][0, 0] + params["fc7"][1], 0)
    return fc7, _softmax(fc7 @ params["fc8"][0][0, 0] + params["fc8"][1])


def forward_caffe(params, image_chw):
    """Caffe: (C, H, W) blobs, (out, in, h, w) kernels, InnerProduct over the flattened blob."""
    x = image_chw.astype(np.float64)
    for name in CONV_NAMES:
        x = _conv_chw(x, *params[name])
        if name in BLOCK_ENDS:
            x = _pool_chw(x)
    fc6 = np.maximum(params["fc6"][0] @ x.reshape(-1) + params["fc6"][1], 0)
    fc7 = np.maximum(params["fc7"][0] @ fc6 + params["fc7"][1], 0)
    return fc7, _softmax(params["fc8"][0] @ fc7 + params["fc8"][1])


def forward_keras(params, image_hwc):
    """keras-vggface: channels-last convolutions, Flatten in (H, W, C) order, Dense (in, out)."""
    x = image_hwc.astype(np.float64)
    for name in CONV_NAMES:
        x = _conv_hwc(x, *params[name])
        if name in BLOCK_ENDS:
            x = _pool_hwc(x)
    fc6 = np.maximum(x.reshape(-1) @ params["fc6"][0] + params["fc6"][1], 0)
    fc7 = np.maximum(fc6 @ params["fc7"][0] + params["fc7"][1], 0)
    return fc7, _softmax(fc7 @ params["fc8"][0] + params["fc8"][1])


# ---------------------------------------------------------------- writers


def _cell(items):
    cell = np.empty((1, len(items)), dtype=object)
    for i, item in enumerate(items):
        cell[0, i] = item
    return cell


def write_matconvnet(path, params, *, style="weights", mean_rgb=MEAN_RGB, size=224, drop=()):
    """A MatConvNet SimpleNN .mat: ``style`` "weights" (net.layers{i}.weights = {filters, biases},
    net.normalization), "filters" (pre-beta-13 filters/biases fields), or "meta" (top-level
    layers and meta.normalization, as vlfeat.org's vgg-face.mat)."""
    from scipy.io import savemat

    layers = []

    def conv(name, pad):
        filters, biases = params[name]
        layer = {"name": name, "type": "conv", "stride": np.array([[1.0, 1.0]]), "pad": np.full((1, 4), float(pad))}
        if style == "filters":
            layer.update(filters=filters, biases=biases.reshape(1, -1))
        else:
            layer["weights"] = _cell([filters, biases.reshape(1, -1)])
        return layer

    for name in CONV_NAMES:
        if name not in drop:
            layers.append(conv(name, 1))
        layers.append({"name": "relu" + name[4:], "type": "relu"})
        if name in BLOCK_ENDS:
            block = name[4]
            layers.append({"name": f"pool{block}", "type": "pool", "method": "max", "pool": np.array([[2.0, 2.0]]),
                           "stride": np.array([[2.0, 2.0]]), "pad": np.zeros((1, 4))})
    for name in ("fc6", "fc7", "fc8"):
        if name not in drop:
            layers.append(conv(name, 0))
        if name != "fc8":
            layers.append({"name": "relu" + name[2:], "type": "relu"})
    layers.append({"name": "prob", "type": "softmax"})
    normalization = {"averageImage": np.asarray(mean_rgb, dtype=np.float32).reshape(1, 1, 3),
                     "imageSize": np.array([[size, size, 3]], dtype=np.float64)}
    if style == "meta":
        savemat(path, {"layers": _cell(layers), "meta": {"normalization": normalization}})
    else:
        savemat(path, {"net": {"layers": _cell(layers), "normalization": normalization,
                               "classes": {"name": _cell([f"id{i}" for i in range(5)])}}})


def _caffe_classes(packed: bool):
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="caffe_subset.proto", package="caffe", syntax="proto2")

    def message(name, fields):
        msg = proto.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            field = msg.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name
            if label == F.LABEL_REPEATED and kind in (F.TYPE_FLOAT, F.TYPE_INT64, F.TYPE_DOUBLE):
                field.options.packed = packed if kind == F.TYPE_FLOAT else True

    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    message("BlobShape", [("dim", 1, F.TYPE_INT64, rep, None)])
    message("BlobProto", [
        ("num", 1, F.TYPE_INT32, opt, None), ("channels", 2, F.TYPE_INT32, opt, None),
        ("height", 3, F.TYPE_INT32, opt, None), ("width", 4, F.TYPE_INT32, opt, None),
        ("data", 5, F.TYPE_FLOAT, rep, None), ("diff", 6, F.TYPE_FLOAT, rep, None),
        ("shape", 7, F.TYPE_MESSAGE, opt, ".caffe.BlobShape"),
    ])
    message("LayerParameter", [
        ("name", 1, F.TYPE_STRING, opt, None), ("type", 2, F.TYPE_STRING, opt, None),
        ("bottom", 3, F.TYPE_STRING, rep, None), ("top", 4, F.TYPE_STRING, rep, None),
        ("blobs", 7, F.TYPE_MESSAGE, rep, ".caffe.BlobProto"),
    ])
    message("V1LayerParameter", [
        ("bottom", 2, F.TYPE_STRING, rep, None), ("top", 3, F.TYPE_STRING, rep, None),
        ("name", 4, F.TYPE_STRING, opt, None), ("type", 5, F.TYPE_INT32, opt, None),
        ("blobs", 6, F.TYPE_MESSAGE, rep, ".caffe.BlobProto"),
    ])
    message("NetParameter", [
        ("name", 1, F.TYPE_STRING, opt, None), ("input", 3, F.TYPE_STRING, rep, None),
        ("input_dim", 4, F.TYPE_INT32, rep, None),
        ("layers", 2, F.TYPE_MESSAGE, rep, ".caffe.V1LayerParameter"),
        ("layer", 100, F.TYPE_MESSAGE, rep, ".caffe.LayerParameter"),
    ])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe.NetParameter"))


def write_caffemodel(path, params, *, v1=True, packed=True, size=224, drop=()):
    """A Caffe NetParameter, serialised by protobuf itself from a descriptor of caffe.proto's
    field numbers: V1 ``layers`` with legacy num/channels/height/width blobs (as the 2015
    VGG_FACE.caffemodel), or current ``layer`` with BlobShape."""
    NetParameter = _caffe_classes(packed)
    net = NetParameter(name="VGG_FACE_16_layers")
    net.input.append("data")
    net.input_dim.extend([1, 3, size, size])

    def add(name, kind_v1, kind, blobs=()):
        layer = net.layers.add() if v1 else net.layer.add()
        layer.name = name
        layer.type = kind_v1 if v1 else kind
        for array in blobs:
            blob = layer.blobs.add()
            if v1:  # legacy 4-D blob dimensions, fc as (1, 1, out, in), bias as (1, 1, 1, out)
                dims = (1,) * (4 - array.ndim) + array.shape
                blob.num, blob.channels, blob.height, blob.width = dims
            else:
                blob.shape.dim.extend(array.shape)
            blob.data.extend(array.reshape(-1).tolist())

    for name in CONV_NAMES:
        if name not in drop:
            add(name, 4, "Convolution", params[name])
        add("relu" + name[4:], 18, "ReLU")
        if name in BLOCK_ENDS:
            add("pool" + name[4], 17, "Pooling")
    for name in ("fc6", "fc7", "fc8"):
        if name not in drop:
            add(name, 14, "InnerProduct", params[name])
        if name != "fc8":
            add("relu" + name[2:], 18, "ReLU")
            add("drop" + name[2:], 6, "Dropout")
    add("prob", 20, "Softmax")
    with open(path, "wb") as handle:
        handle.write(net.SerializeToString())


def _write_keras2(path, layers, *, model_weights=False):
    with h5py.File(path, "w") as handle:
        if model_weights:
            handle.attrs["keras_version"] = b"2.2.4"
            handle.attrs["backend"] = b"tensorflow"
            handle.attrs["model_config"] = b"{}"
            root = handle.create_group("model_weights")
        else:
            root = handle
        root.attrs["layer_names"] = np.array([name.encode() for name, _ in layers])
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.2.4"
        for name, arrays in layers:
            group = root.require_group(name)
            group.attrs["weight_names"] = np.array([w.encode() for w, _ in arrays], dtype="S")
            for weight_name, array in arrays:
                group.create_dataset(weight_name, data=array)


def write_keras_vggface(path, params, *, include_top=True, model_weights=False, drop=()):
    """keras-vggface's VGG16 file: layers named as the original, kernel:0 / bias:0 datasets."""
    layers = [("input_1", [])]
    for name in CONV_NAMES:
        if name not in drop:
            kernel, bias = params[name]
            layers.append((name, [(f"{name}/kernel:0", kernel), (f"{name}/bias:0", bias)]))
        if name in BLOCK_ENDS:
            layers.append((f"pool{name[4]}", []))
    if include_top:
        layers.append(("flatten", []))
        for name, after in (("fc6", "relu"), ("fc7", "relu"), ("fc8", "softmax")):
            if name not in drop:
                kernel, bias = params[name]
                layers.append((name, [(f"{name}/kernel:0", kernel), (f"{name}/bias:0", bias)]))
            layers.append((f"{name}/{after}", []))
    _write_keras2(path, layers, model_weights=model_weights)


def write_deepface(path, params, *, drop=()):
    """deepface's Sequential: ZeroPadding2D + unnamed Conv2D pairs, fc6-fc8 as convolutions."""
    layers, conv, pad, pool, dropout = [], 0, 0, 0, 0
    for name in CONV_NAMES + ("fc6", "fc7", "fc8"):
        if name.startswith("conv"):
            pad += 1
            layers.append((f"zero_padding2d_{pad}", []))
        if name not in drop:
            conv += 1
            kernel, bias = params[name]
            layers.append((f"conv2d_{conv}", [(f"conv2d_{conv}/kernel:0", kernel), (f"conv2d_{conv}/bias:0", bias)]))
        if name in BLOCK_ENDS:
            pool += 1
            layers.append((f"max_pooling2d_{pool}", []))
        if name in ("fc6", "fc7"):
            dropout += 1
            layers.append((f"dropout_{dropout}", []))
    layers += [("flatten_1", []), ("activation_1", [])]
    _write_keras2(path, layers)
