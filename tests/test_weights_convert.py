"""Each published VGG-Face format, converted and loaded, computes what the original computes.

Files are written in the release's exact container and axis order from known random weights;
the reference is a NumPy forward pass in the release's own layout and colour order, fed the
release's own preprocessing of the same RGB image.
"""

from __future__ import annotations

import hashlib
import json
import os

import h5py
import keras
import numpy as np
import pytest
from click.testing import CliRunner

import weights_formats as wf
from dam_cnn_tf.backbones.vgg_face.model import build_vgg_face, preprocess_input
from dam_cnn_tf.weights import (
    MissingLayerError,
    WeightsFormatError,
    WeightsShapeError,
    convert_weights,
    detect_format,
    load_backbone_weights,
    read_converted,
)
from dam_cnn_tf.commands.weights import weights as weights_cli

SIZES = (32, 64)  # pool5 of 1x1, and of 2x2 where fc6's flatten order matters


@pytest.fixture(scope="module")
def models():
    """One small top-included backbone per input size, with fc7 and the softmax as outputs."""
    built = {}
    for size in SIZES:
        model = build_vgg_face((size, size, 3), include_top=True, classes=wf.CLASSES, widths=wf.WIDTHS,
                               fc_units=wf.FC_UNITS)
        built[size] = (model, keras.Model(model.input, [model.get_layer("fc7").output, model.output]))
    return built


def _image(size, seed=1):
    return np.random.default_rng(seed).uniform(0, 255, (size, size, 3))


def _bgr_minus_mean(rgb):
    return rgb[..., ::-1] - wf.MEAN_RGB[::-1]


# variant -> (param maker, writer, reference forward given params and the RGB image)
VARIANTS = {
    "matconvnet-weights": (wf.hwio_params, lambda p, P, s: wf.write_matconvnet(p, P, style="weights", size=s),
                           lambda P, rgb: wf.forward_hwio(P, rgb - wf.MEAN_RGB)),
    "matconvnet-filters": (wf.hwio_params, lambda p, P, s: wf.write_matconvnet(p, P, style="filters", size=s),
                           lambda P, rgb: wf.forward_hwio(P, rgb - wf.MEAN_RGB)),
    "matconvnet-meta": (wf.hwio_params, lambda p, P, s: wf.write_matconvnet(p, P, style="meta", size=s),
                        lambda P, rgb: wf.forward_hwio(P, rgb - wf.MEAN_RGB)),
    "caffe-v1-layers": (wf.oihw_params, lambda p, P, s: wf.write_caffemodel(p, P, v1=True, packed=True, size=s),
                        lambda P, rgb: wf.forward_caffe(P, _bgr_minus_mean(rgb).transpose(2, 0, 1))),
    "caffe-layer-unpacked": (wf.oihw_params, lambda p, P, s: wf.write_caffemodel(p, P, v1=False, packed=False, size=s),
                             lambda P, rgb: wf.forward_caffe(P, _bgr_minus_mean(rgb).transpose(2, 0, 1))),
    "keras-vggface": (wf.keras_params, lambda p, P, s: wf.write_keras_vggface(p, P),
                      lambda P, rgb: wf.forward_keras(P, _bgr_minus_mean(rgb))),
    "keras-vggface-model": (wf.keras_params, lambda p, P, s: wf.write_keras_vggface(p, P, model_weights=True),
                            lambda P, rgb: wf.forward_keras(P, _bgr_minus_mean(rgb))),
    "deepface": (wf.hwio_params, lambda p, P, s: wf.write_deepface(p, P),
                 lambda P, rgb: wf.forward_hwio(P, rgb - wf.MEAN_RGB)),
}
SUFFIX = {"matconvnet": ".mat", "caffe": ".caffemodel", "keras": ".h5", "deepface": ".h5"}
FORMAT_OF = {"matconvnet": "matconvnet", "caffe": "caffe", "keras": "keras-vggface", "deepface": "deepface"}


def _write(tmp_path, variant, size, seed=0):
    make, write, reference = VARIANTS[variant]
    params = make(np.random.default_rng(seed), size)
    family = variant.split("-")[0]
    src = tmp_path / f"{variant}{SUFFIX[family]}"
    write(src, params, size)
    return src, params, reference


def _ours(models, size, path, **kwargs):
    model, features = models[size]
    report = load_backbone_weights(model, path, include_fc8=True, **kwargs)
    fc7, probs = features(preprocess_input(_image(size)[None].astype("float32")))
    return report, np.asarray(fc7)[0], np.asarray(probs)[0]


def _assert_matches(ours, reference):
    scale = np.abs(reference).max()
    assert scale > 0
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_converted_backbone_computes_the_original(tmp_path, models, variant, size):
    src, params, reference = _write(tmp_path, variant, size)
    assert detect_format(src) == FORMAT_OF[variant.split("-")[0]]
    dst = convert_weights(src, tmp_path / "vggface.weights.h5")
    report, fc7, probs = _ours(models, size, dst)
    assert "fc8" in report.loaded and not report.skipped
    ref_fc7, ref_probs = reference(params, _image(size))
    _assert_matches(fc7, ref_fc7)
    _assert_matches(probs, ref_probs)


def test_deepface_colour_order_is_honoured(tmp_path, models):
    size = 32
    params = wf.hwio_params(np.random.default_rng(3), size)
    src = tmp_path / "vgg_face_weights.h5"
    wf.write_deepface(src, params)
    dst = convert_weights(src, tmp_path / "bgr.weights.h5", colour_order="bgr")
    _, fc7, _ = _ours(models, size, dst)
    # A file trained on BGR input is fed BGR minus the mean, channel by channel.
    ref_fc7, _ = wf.forward_hwio(params, _bgr_minus_mean(_image(size)))
    _assert_matches(fc7, ref_fc7)


def test_references_are_sensitive_to_colour_and_flatten_order():
    """The checks above could fail: swapping colours, or Caffe's fc6 rows left in (C, H, W)
    order, changes the output (the latter only once pool5 is larger than 1x1)."""
    rgb = _image(64)
    params = wf.hwio_params(np.random.default_rng(4), 64)
    right = wf.forward_hwio(params, rgb - wf.MEAN_RGB)[0]
    swapped = wf.forward_hwio(params, _bgr_minus_mean(rgb))[0]
    assert not np.allclose(right, swapped, rtol=1e-3)
    for size, differs in ((32, False), (64, True)):
        caffe = wf.oihw_params(np.random.default_rng(5), size)
        chw = wf.forward_caffe(caffe, _bgr_minus_mean(_image(size)).transpose(2, 0, 1))[0]
        naive = {k: (w.transpose(2, 3, 1, 0) if w.ndim == 4 else w.T, b) for k, (w, b) in caffe.items()}
        hwc = wf.forward_keras(naive, _bgr_minus_mean(_image(size)))[0]
        assert (not np.allclose(chw, hwc, rtol=1e-3)) == differs


def test_converted_file_records_its_source(tmp_path):
    src, _, _ = _write(tmp_path, "caffe-v1-layers", 64)
    dst = convert_weights(src, tmp_path / "out" / "vggface.weights.h5")
    weights, attrs = read_converted(dst)
    assert attrs["source_format"] == "caffe"
    assert attrs["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert attrs["colour_order"] == "BGR"
    np.testing.assert_allclose(attrs["mean_bgr"], wf.MEAN_RGB[::-1])
    assert list(attrs["input_size"]) == [64, 64]
    assert json.loads(attrs["layers"]) == list(weights)
    with h5py.File(dst, "r") as handle:
        assert handle["conv1_1/kernel"].shape == (3, 3, 3, 2) and handle["fc6/kernel"].shape == (12, 8)
    assert [p.name for p in dst.parent.iterdir()] == ["vggface.weights.h5"]  # no temporary left


def test_fc8_is_left_alone_unless_asked(tmp_path, models):
    src, _, _ = _write(tmp_path, "keras-vggface", 32)
    dst = convert_weights(src, tmp_path / "w.h5")
    model, _ = models[32]
    before = [w.copy() for w in model.get_layer("fc8").get_weights()]
    report = load_backbone_weights(model, dst)
    assert "fc8" not in report.loaded and "fc8" in report.skipped
    assert report.loaded[-2:] == ("fc6", "fc7")
    for old, new in zip(before, model.get_layer("fc8").get_weights()):
        np.testing.assert_array_equal(old, new)


def test_nested_backbone_and_outer_fc_layers(tmp_path):
    """A backbone nested as a sub-model, with fc6/fc7 and a new K-way fc8 in the outer model."""
    size = 64
    src, params, reference = _write(tmp_path, "caffe-v1-layers", size)
    dst = convert_weights(src, tmp_path / "w.h5")
    backbone = build_vgg_face((size, size, 3), widths=wf.WIDTHS, name="backbone")
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Flatten()(backbone(inputs))
    x = keras.layers.Dense(wf.FC_UNITS, activation="relu", name="fc6")(x)
    fc7 = keras.layers.Dense(wf.FC_UNITS, activation="relu", name="fc7")(x)
    outputs = keras.layers.Dense(7, activation="softmax", name="fc8")(fc7)
    model = keras.Model(inputs, outputs, name="vgg_serd")
    report = load_backbone_weights(model, dst)
    assert set(report.loaded) == {n for n in wf.CONV_NAMES} | {"fc6", "fc7"}
    assert report.skipped == {"fc8": report.skipped["fc8"]}
    ours = keras.Model(inputs, fc7)(preprocess_input(_image(size)[None].astype("float32")))
    _assert_matches(np.asarray(ours)[0], reference(params, _image(size))[0])


def test_no_top_release(tmp_path):
    params = wf.keras_params(np.random.default_rng(6), 32)
    src = tmp_path / "rcmalli_vggface_tf_notop_vgg16.h5"
    wf.write_keras_vggface(src, params, include_top=False)
    dst = convert_weights(src, tmp_path / "notop.weights.h5")
    _, attrs = read_converted(dst)
    assert len(attrs["input_size"]) == 0
    notop = build_vgg_face((32, 32, 3), widths=wf.WIDTHS)
    assert load_backbone_weights(notop, dst).loaded == tuple(wf.CONV_NAMES)
    np.testing.assert_array_equal(notop.get_layer("conv5_3").get_weights()[0], params["conv5_3"][0])
    top = build_vgg_face((32, 32, 3), include_top=True, widths=wf.WIDTHS, fc_units=wf.FC_UNITS)
    with pytest.raises(MissingLayerError, match="no weights for layer fc6"):
        load_backbone_weights(top, dst)
    report = load_backbone_weights(top, dst, skip=("fc6", "fc7"))
    assert report.skipped["fc6"] == "asked to skip" and "fc6" not in report.loaded


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize("variant", ["matconvnet-weights", "caffe-v1-layers", "keras-vggface", "deepface"])
def test_missing_layer_is_refused(tmp_path, variant):
    make, _, _ = VARIANTS[variant]
    params = make(np.random.default_rng(0), 32)
    family = variant.split("-")[0]
    src = tmp_path / f"broken{SUFFIX[family]}"
    writer = {"matconvnet": wf.write_matconvnet, "caffe": wf.write_caffemodel,
              "keras": wf.write_keras_vggface, "deepface": wf.write_deepface}[family]
    writer(src, params, drop=("conv3_2",))
    dst = tmp_path / "out.h5"
    # deepface's layers are mapped by order, so a missing one shows as a wrong count.
    expected = WeightsFormatError if family == "deepface" else MissingLayerError
    with pytest.raises(expected, match=str(src)) as raised:
        convert_weights(src, dst)
    assert "\n" not in str(raised.value)
    assert family == "deepface" or "conv3_2" in str(raised.value)
    assert not dst.exists() and [p.name for p in tmp_path.iterdir()] == [src.name]


@pytest.mark.parametrize("family", ["matconvnet", "caffe", "keras"])
def test_wrong_shape_in_file_is_refused(tmp_path, family):
    make = {"matconvnet": wf.hwio_params, "caffe": wf.oihw_params, "keras": wf.keras_params}[family]
    params = make(np.random.default_rng(0), 32)
    kernel, bias = params["conv2_1"]
    # conv2_1 reads 4 channels, but conv1_2 gives 2.
    params["conv2_1"] = (np.concatenate([kernel, kernel], axis=1 if family == "caffe" else 2), bias)
    src = tmp_path / f"bad{SUFFIX[family]}"
    writer = {"matconvnet": wf.write_matconvnet, "caffe": wf.write_caffemodel, "keras": wf.write_keras_vggface}
    writer[family](src, params)
    with pytest.raises(WeightsShapeError, match=r"layer conv2_1 has kernel \(3, 3, 4, 2\)"):
        convert_weights(src, tmp_path / "out.h5")


def test_model_shape_mismatch_names_layer_and_shapes(tmp_path):
    src, _, _ = _write(tmp_path, "keras-vggface", 32)
    dst = convert_weights(src, tmp_path / "w.h5")
    wider = build_vgg_face((32, 32, 3), widths=(2, 4, 3, 3, 3))
    before = wider.get_layer("conv1_1").get_weights()[0].copy()
    expected = r"layer conv2_1 stores kernel/bias \(3, 3, 2, 2\)/\(2,\) .*\(3, 3, 2, 4\)"
    with pytest.raises(WeightsShapeError, match=expected):
        load_backbone_weights(wider, dst)
    # Nothing was assigned before the mismatch was found.
    np.testing.assert_array_equal(wider.get_layer("conv1_1").get_weights()[0], before)


def test_model_without_backbone_layers_is_refused(tmp_path):
    src, _, _ = _write(tmp_path, "keras-vggface", 32)
    dst = convert_weights(src, tmp_path / "w.h5")
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="fc6")], name="other")
    with pytest.raises(MissingLayerError, match="model 'other' has no layer.*conv1_1"):
        load_backbone_weights(other, dst)


def test_mean_pixel_mismatch_is_refused(tmp_path):
    src = tmp_path / "vgg_face.mat"
    wf.write_matconvnet(src, wf.hwio_params(np.random.default_rng(0), 32), mean_rgb=(123.68, 116.779, 103.939))
    with pytest.raises(WeightsFormatError, match="mean pixel"):
        convert_weights(src, tmp_path / "w.h5")


def test_unreadable_files_are_refused(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01not weights" * 10)
    with pytest.raises(WeightsFormatError, match="unrecognised weights format"):
        convert_weights(junk, tmp_path / "w.h5")
    src, _, _ = _write(tmp_path, "caffe-v1-layers", 32)
    truncated = tmp_path / "cut.caffemodel"
    truncated.write_bytes(src.read_bytes()[:-100])
    with pytest.raises(WeightsFormatError, match="not a Caffe NetParameter"):
        convert_weights(truncated, tmp_path / "w.h5")
    with pytest.raises(WeightsFormatError, match="convert it first"):
        load_backbone_weights(build_vgg_face((32, 32, 3), widths=wf.WIDTHS), src)
    assert not (tmp_path / "w.h5").exists()


# ---------------------------------------------------------------- command line


def test_cli_convert_and_errors(tmp_path):
    src, _, _ = _write(tmp_path, "matconvnet-weights", 64)
    runner = CliRunner()
    result = runner.invoke(weights_cli, ["convert", str(src), str(tmp_path / "w.h5")])
    assert result.exit_code == 0, result.output
    assert "16 layers from matconvnet" in result.output and "input 64x64" in result.output
    assert read_converted(tmp_path / "w.h5")[1]["source_format"] == "matconvnet"

    result = runner.invoke(weights_cli, ["convert", str(tmp_path / "absent.mat"), str(tmp_path / "x.h5")])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [f"Error: {tmp_path / 'absent.mat'}: no such file"]

    result = runner.invoke(weights_cli, ["convert", str(src), str(tmp_path / "x.h5"), "--format", "caffe"])
    assert result.exit_code != 0 and len(result.output.strip().splitlines()) == 1
    assert str(src) in result.output and not (tmp_path / "x.h5").exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
