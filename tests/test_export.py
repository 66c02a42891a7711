"""The SavedModel export, checked the way TensorFlow Serving and its clients use it."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from dam_cnn_tf import MPVSNet, build_dam_cnn, build_vgg_serd, salient_feature_model
from dam_cnn_tf import export as export_mod
from dam_cnn_tf.data.faces import resize_face
from dam_cnn_tf.data.images import read_image
from dam_cnn_tf.export import (
    ExportError,
    ExportExistsError,
    decode_and_resize,
    export_saved_model,
    load_class_names,
    next_version,
)
from dam_cnn_tf.predict import Predictor

HEIGHT, WIDTH = 64, 96  # not square, so a swapped H and W shows
MASK = (HEIGHT // 32, WIDTH // 32)  # five 2x2 poolings
CLASS_NAMES = ["happiness", "sadness", "surprise"]
OUTPUTS = {
    "probabilities": ("float32", [None, len(CLASS_NAMES)]),
    "class_id": ("int64", [None]),
    "class_name": ("string", [None]),
    "attention": ("float32", [None, *MASK]),
}


def _tiny_model(seed: int, images):
    keras.utils.set_random_seed(seed)  # module fixtures run before the per-test seeding
    rng = np.random.default_rng(seed)
    vgg_serd = build_vgg_serd(3, input_shape=(HEIGHT, WIDTH, 3), fc_units=8, backbone_widths=(4, 4, 8, 8, 8))
    # A mask leaning positive, so ReLU(M ⊙ h_c) (Eq. 2) keeps some features of a fresh net.
    vgg_serd.get_layer("serd").attention_conv.bias.assign([1.0])
    net = MPVSNet(MASK[0] * MASK[1] * 8, 3, encoder_units=6, num_paths=4, fc_units=5)
    net.mpae.adapt(salient_feature_model(vgg_serd).predict(images, verbose=0)["features"])
    model = build_dam_cnn(vgg_serd, net)
    # Centre and spread the last layer's logits on these images so that, as after training,
    # the classes differ between images (a fresh tiny net gives every image the same class).
    hidden = keras.Model(model.input, model.get_layer("mpvs_fc1").output).predict(images, verbose=0)
    kernel = rng.normal(size=tuple(net.classifier.kernel.shape)).astype("float32")
    logits = hidden @ kernel
    kernel /= logits.std(axis=0, keepdims=True) + 1e-12
    net.classifier.kernel.assign(kernel)
    net.classifier.bias.assign(-(hidden @ kernel).mean(axis=0))
    return model, net


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    images = np.random.default_rng(1).uniform(0, 255, size=(6, HEIGHT, WIDTH, 3)).astype("float32")
    model, net = _tiny_model(0, images)
    path = export_saved_model(model, tmp_path_factory.mktemp("export"), CLASS_NAMES)
    return model, net, path, images


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(str(exported[2]))


def test_layout_is_what_serving_watches(exported):
    _, _, path, _ = exported
    assert path == path.parent / "1"
    assert (path / "saved_model.pb").is_file() and (path / "variables").is_dir()
    assert sorted(p.name for p in path.parent.iterdir()) == ["1"]  # no staging left beside it


FRESH_PROCESS = r"""
import json, sys
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
spec = lambda s: [s.dtype.name, s.shape.as_list()]
report = {
    "dam_cnn_tf_imported": "dam_cnn_tf" in sys.modules,
    "class_names": [n.decode() for n in loaded.class_names.numpy()],
    "signatures": {},
}
for name, fn in loaded.signatures.items():
    report["signatures"][name] = {
        "inputs": {k: spec(s) for k, s in fn.structured_input_signature[1].items()},
        "outputs": {k: spec(s) for k, s in fn.structured_outputs.items()},
    }
print(json.dumps(report))
"""


def test_fresh_process_loads_it_without_the_package(exported, tmp_path):
    _, _, path, _ = exported
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    command = [sys.executable, "-c", FRESH_PROCESS, str(path)]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert not report["dam_cnn_tf_imported"]
    assert report["class_names"] == CLASS_NAMES
    signatures = report["signatures"]
    assert set(signatures) == {"serving_default", "serving_bytes"}
    assert signatures["serving_default"]["inputs"] == {"image": ["float32", [None, HEIGHT, WIDTH, 3]]}
    assert signatures["serving_bytes"]["inputs"] == {"image_bytes": ["string", [None]]}
    for name in signatures:
        assert signatures[name]["outputs"] == {k: [d, s] for k, (d, s) in OUTPUTS.items()}


def _saved_model_cli(*args):
    script = Path(sys.executable).with_name("saved_model_cli")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(command + list(args), env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _parse_signature_defs(text):
    """``{signature: {"inputs"|"outputs": {name: (DT_..., shape)}}}`` from ``saved_model_cli show --all``."""
    signatures = {}
    for block in re.split(r"^signature_def\['", text, flags=re.M)[1:]:
        name = block.split("'", 1)[0]
        entries = re.findall(r"(inputs|outputs)\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+shape: ([^\n]+)", block)
        sig = signatures.setdefault(name, {"inputs": {}, "outputs": {}})
        for kind, key, dtype, shape in entries:
            sig[kind][key] = (dtype, shape.strip())
        sig["method"] = re.search(r"Method name is: ([^\n]*)", block).group(1).strip()
    return signatures


def test_saved_model_cli_agrees(exported):
    _, _, path, _ = exported
    signatures = _parse_signature_defs(_saved_model_cli("show", "--dir", str(path), "--all"))
    assert {"serving_default", "serving_bytes"} <= set(signatures)
    assert signatures["serving_default"]["inputs"] == {"image": ("DT_FLOAT", f"(-1, {HEIGHT}, {WIDTH}, 3)")}
    assert signatures["serving_bytes"]["inputs"] == {"image_bytes": ("DT_STRING", "(-1)")}
    expected_outputs = {
        "probabilities": ("DT_FLOAT", f"(-1, {len(CLASS_NAMES)})"),
        "class_id": ("DT_INT64", "(-1)"),
        "class_name": ("DT_STRING", "(-1)"),
        "attention": ("DT_FLOAT", f"(-1, {MASK[0]}, {MASK[1]})"),
    }
    for name in ("serving_default", "serving_bytes"):
        assert signatures[name]["outputs"] == expected_outputs
        assert signatures[name]["method"] == "tensorflow/serving/predict"


def _keras_outputs(model, images):
    out = model.predict(images, verbose=0)
    return out["probabilities"], out["attention"]


def test_predict_request_gives_the_keras_models_outputs(exported, loaded):
    predict_pb2 = pytest.importorskip("tensorflow_serving.apis.predict_pb2")
    model, _, _, images = exported
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "damcnn"
    request.model_spec.signature_name = "serving_default"
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(images))
    # What the server does: look the signature up, feed each named input from its proto.
    signature = loaded.signatures[request.model_spec.signature_name]
    assert set(request.inputs) == set(signature.structured_input_signature[1])
    feeds = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
    outputs = {k: v.numpy() for k, v in signature(**feeds).items()}

    probabilities, attention = _keras_outputs(model, images)
    np.testing.assert_allclose(outputs["probabilities"], probabilities, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(outputs["attention"], attention, rtol=1e-5, atol=1e-7)
    assert outputs["class_id"].dtype == np.int64
    np.testing.assert_array_equal(outputs["class_id"], probabilities.argmax(axis=1))
    assert [n.decode() for n in outputs["class_name"]] == [CLASS_NAMES[i] for i in probabilities.argmax(axis=1)]
    assert len(set(outputs["class_id"])) > 1  # the images are told apart, so the check has teeth

    # The response a client receives decodes back to the same values.
    response = predict_pb2.PredictResponse()
    for key, value in outputs.items():
        response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["probabilities"]), outputs["probabilities"])
    assert list(tf.make_ndarray(response.outputs["class_name"])) == list(outputs["class_name"])


def _smooth_image(rng, height, width):
    noise = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (5, 5), 0)


def _png(image_bgr):
    ok, buffer = cv2.imencode(".png", image_bgr)
    assert ok
    return buffer.tobytes()


def test_bytes_signature_decodes_resizes_and_classifies_pngs(exported, loaded):
    model, _, _, _ = exported
    rng = np.random.default_rng(2)
    larger, smaller = _smooth_image(rng, 90, 131), _smooth_image(rng, 40, 57)
    exact = _smooth_image(rng, HEIGHT, WIDTH)
    grey = _smooth_image(rng, 50, 70)[..., 0]
    pngs = [_png(larger), _png(smaller), _png(exact), _png(grey)]

    out = loaded.signatures["serving_bytes"](image_bytes=tf.constant(pngs))

    def reference(bgr_or_grey):
        rgb = np.repeat(bgr_or_grey[..., None], 3, -1) if bgr_or_grey.ndim == 2 else bgr_or_grey[..., ::-1]
        return resize_face(np.ascontiguousarray(rgb), (HEIGHT, WIDTH)).astype(np.float32)

    images = np.stack([reference(im) for im in (larger, smaller, exact, grey)])
    np.testing.assert_array_equal(images[2], exact[..., ::-1].astype(np.float32))  # same size: untouched
    probabilities, attention = _keras_outputs(model, images)
    # Within one grey level of resize_face's uint8 pixels (OpenCV's fixed-point rounding).
    np.testing.assert_allclose(out["probabilities"].numpy(), probabilities, atol=1e-4)
    np.testing.assert_allclose(out["attention"].numpy(), attention, rtol=1e-2, atol=1e-3)
    np.testing.assert_array_equal(out["class_id"].numpy(), probabilities.argmax(axis=1))


@pytest.mark.parametrize("source, target", [
    ((64, 64), (32, 32)),    # integer factor: OpenCV's fast area path
    ((731, 613), (64, 96)),  # non-integer factors
    ((45, 37), (32, 20)),    # non-integer, small
    ((20, 15), (32, 20)),    # enlarging: bilinear
    ((90, 15), (32, 20)),    # one axis shrinks, the other grows
])
def test_decode_and_resize_is_training_resize(source, target):
    image = _smooth_image(np.random.default_rng(3), *source)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    for encoded in (_png(image), jpeg.tobytes()):
        decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        ours = decode_and_resize(tf.constant(encoded), target).numpy()
        assert ours.shape == (*target, 3) and ours.dtype == np.float32
        # Same decoder output (JPEG too) and the uint8 values of resize_face, give or take
        # one grey level where OpenCV's fixed-point weights round the other way.
        diff = np.abs(ours - resize_face(decoded, target).astype(np.float32))
        assert diff.max() <= 1.0 and diff.mean() < 0.15


def test_area_resize_matches_opencv_inter_area_on_float_pixels():
    # The fact the graph resize rests on: tf's area resize is cv2.INTER_AREA when shrinking.
    image = _smooth_image(np.random.default_rng(4), 731, 613).astype(np.float32)
    for target in ((64, 96), (100, 100), (731 // 3, 613 // 3)):
        ours = tf.image.resize(image[None], target, method="area").numpy()[0]
        ref = cv2.resize(image, target[::-1], interpolation=cv2.INTER_AREA)
        np.testing.assert_allclose(ours, ref, atol=5e-3)


def _textured(rng, height, width):
    """Stripes, gradients and fine noise: detail that a bilinear shrink would alias."""
    y, x = np.mgrid[:height, :width]
    stripes = 127.5 + 127.5 * np.sin(x * 0.9 + y * 0.35)
    image = np.stack([stripes, 255.0 * x / width, 255.0 * y / height], -1)
    image += rng.normal(0, 25, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def test_bytes_signature_gives_the_predictors_probabilities_on_large_images(exported, loaded, tmp_path):
    model, _, _, _ = exported
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "model.keras")
    (run / "classes.json").write_text(json.dumps({"class_names": CLASS_NAMES}))
    predictor = Predictor(run, detect=False)
    rng = np.random.default_rng(5)
    files = {"big.jpg": _textured(rng, 900, 700), "big.png": _textured(rng, 613, 731)}
    encoded = []
    for name, rgb in files.items():
        assert cv2.imwrite(str(tmp_path / name), rgb[..., ::-1])
        encoded.append((tmp_path / name).read_bytes())
    expected = np.stack([
        [face.probabilities[c] for c in CLASS_NAMES]
        for name in files for face in predictor.predict_image(read_image(tmp_path / name))
    ])
    out = loaded.signatures["serving_bytes"](image_bytes=tf.constant(encoded))["probabilities"].numpy()
    # One grey level here and there moves a probability by well under 1e-3.
    np.testing.assert_allclose(out, expected, atol=1e-3)
    # The old bilinear resize (no antialiasing) gives visibly different inputs on these images.
    aliased = [tf.image.resize(rgb[None].astype(np.float32), (HEIGHT, WIDTH)).numpy()[0] for rgb in files.values()]
    assert np.abs(np.stack(aliased) - np.stack([predictor.crop(rgb, (0, 0, rgb.shape[1], rgb.shape[0]))
                                                for rgb in files.values()])).max() > 30


def test_signatures_reject_wrong_shapes_dtypes_and_bytes(loaded):
    serve, serve_bytes = loaded.signatures["serving_default"], loaded.signatures["serving_bytes"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"Shape of tensor image \[1,32,32,3\] is not compatible"):
        serve(image=tf.zeros((1, 32, 32, 3)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="not compatible"):
        serve(image=tf.zeros((HEIGHT, WIDTH, 3)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="float tensor but is a double tensor"):
        serve(image=tf.zeros((1, HEIGHT, WIDTH, 3), tf.float64))
    with pytest.raises(tf.errors.InvalidArgumentError, match="string tensor but is a float tensor"):
        serve_bytes(image_bytes=tf.zeros((1,)))
    with pytest.raises(tf.errors.InvalidArgumentError):
        serve_bytes(image_bytes=tf.constant([b"not an image"]))
    with pytest.raises(TypeError):
        serve(images=tf.zeros((1, HEIGHT, WIDTH, 3)))


def test_class_names_travel_inside(exported, loaded):
    _, _, path, _ = exported
    assert [n.decode() for n in loaded.class_names.numpy()] == CLASS_NAMES
    assert load_class_names(path) == CLASS_NAMES
    assert (path / "assets" / "class_names.txt").read_text() == "happiness\nsadness\nsurprise\n"


def test_no_decoder_weights_in_the_export(exported, loaded):
    model, net, path, _ = exported
    stored = {
        name: shape
        for name, shape in tf.train.list_variables(str(path / "variables" / "variables"))
        if name.endswith("VARIABLE_VALUE") and not name.startswith("class_names/")
    }
    assert sum(int(np.prod(s)) for s in stored.values()) == model.count_params()
    # The kernels' (H, D) shape is the decoders' own (the biases share (D,) with the scaler).
    decoder_shapes = {tuple(k.shape) for k in net.mpae.decoders.kernels}
    assert decoder_shapes and net.mpae.decoders.count_params() > 0
    assert not decoder_shapes & {tuple(s) for s in stored.values()}
    used = loaded.signatures["serving_default"].variables
    assert not [v.name for v in used if "decoder" in v.name]
    assert len([v for v in used if v.dtype != tf.string]) == len(model.weights)


def test_failed_export_leaves_nothing(exported, tmp_path, monkeypatch):
    model = exported[0]

    def half_written_then_fail(obj, export_dir, *args, **kwargs):
        Path(export_dir).mkdir(parents=True)
        (Path(export_dir) / "saved_model.pb").write_bytes(b"partial")
        raise OSError("disk full")

    base = tmp_path / "models"
    export_saved_model(model, base, CLASS_NAMES)
    before = (base / "1" / "saved_model.pb").read_bytes()
    monkeypatch.setattr(export_mod.tf.saved_model, "save", half_written_then_fail)
    with pytest.raises(OSError, match="disk full"):
        export_saved_model(model, base, CLASS_NAMES)
    with pytest.raises(OSError, match="disk full"):
        export_saved_model(model, base, CLASS_NAMES, version=1, overwrite=True)
    assert sorted(p.name for p in base.iterdir()) == ["1"]
    assert (base / "1" / "saved_model.pb").read_bytes() == before
    with pytest.raises(OSError, match="disk full"):
        export_saved_model(model, tmp_path / "fresh", CLASS_NAMES)
    assert list((tmp_path / "fresh").iterdir()) == []


def test_failed_rename_keeps_the_version_it_would_replace(exported, tmp_path, monkeypatch):
    model = exported[0]
    base = tmp_path / "models"
    export_saved_model(model, base, CLASS_NAMES)
    before = {p.relative_to(base): p.read_bytes() for p in base.rglob("*") if p.is_file()}
    real_replace = os.replace

    def failing_replace(src, dst):
        if Path(src).name == "saved_model":  # the finished export moving into place
            raise OSError("rename failed")
        real_replace(src, dst)

    monkeypatch.setattr(export_mod.os, "replace", failing_replace)
    with pytest.raises(OSError, match="rename failed"):
        export_saved_model(model, base, CLASS_NAMES, version=1, overwrite=True)
    assert {p.relative_to(base): p.read_bytes() for p in base.rglob("*") if p.is_file()} == before


def test_versions_increment_and_are_never_overwritten_silently(exported, tmp_path):
    model, _, _, images = exported
    base = tmp_path / "models"
    for name in ("1", "3", "7.partial", "notes"):
        (base / name).mkdir(parents=True)
    (base / "12").write_text("a file, not a version")
    assert next_version(base) == 4
    assert export_saved_model(model, base, CLASS_NAMES) == base / "4"
    assert export_saved_model(model, base, CLASS_NAMES) == base / "5"
    assert export_saved_model(model, base, CLASS_NAMES, version=9) == base / "9"
    assert next_version(base) == 10

    with pytest.raises(ExportExistsError, match=re.escape(str(base / "5"))):
        export_saved_model(model, base, CLASS_NAMES, version=5)
    other, _ = _tiny_model(7, images)
    assert export_saved_model(other, base, CLASS_NAMES, version=5, overwrite=True) == base / "5"
    replaced = tf.saved_model.load(str(base / "5")).signatures["serving_default"](image=tf.constant(images))
    np.testing.assert_allclose(replaced["probabilities"].numpy(), _keras_outputs(other, images)[0], rtol=1e-5, atol=1e-7)
    assert not [p for p in base.iterdir() if p.name.startswith(".")]


def test_bad_arguments_fail_with_one_line_messages(exported, tmp_path):
    model = exported[0]
    cases = [
        (dict(class_names=CLASS_NAMES[:2]), "2 class names given for a model with 3 classes"),
        (dict(class_names=["a", "a", "b"]), "unique"),
        (dict(class_names=["a", "b\nc", "d"]), "single lines"),
        (dict(class_names=CLASS_NAMES, version=0), "positive integer"),
        (dict(class_names=CLASS_NAMES, version="2"), "positive integer"),
        (dict(class_names=CLASS_NAMES, input_size=(32, 32)), "differs from the model's input size"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ExportError, match=re.escape(message)) as info:
            export_saved_model(model, tmp_path / "models", **kwargs)
        assert "\n" not in str(info.value)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(ExportError, match=re.escape(str(not_a_dir))):
        export_saved_model(model, not_a_dir, CLASS_NAMES)
    with pytest.raises(ExportError, match="class_names.txt"):
        load_class_names(tmp_path)
    assert not (tmp_path / "models").exists()


def test_serving_guide_names_what_the_export_has():
    guide = (Path(__file__).resolve().parents[1] / "docs" / "serving.md").read_text()
    names = (export_mod.SERVING_DEFAULT, export_mod.SERVING_BYTES, export_mod.IMAGE, export_mod.IMAGE_BYTES)
    for name in names + export_mod.OUTPUT_KEYS:
        assert f"`{name}`" in guide, name
    assert f"assets/{export_mod.CLASS_NAMES_ASSET}" in guide
    assert "--model_base_path" in guide and "/v1/models/damcnn:predict" in guide and '{"b64":' in guide


def _graph_ops(graph_def) -> set:
    ops = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        ops |= {node.op for node in function.node_def}
    return ops


def test_serving_graph_does_not_compute_serds_regularizer(exported, loaded):
    # Eq. 3 is the only place with Abs; its sums of squares come with it. Training still adds it
    # (tests/test_serd.py); the serving functions must not spend time on it.
    for name in ("serving_default", "serving_bytes"):
        ops = _graph_ops(loaded.signatures[name].graph.as_graph_def())
        assert "Tanh" in ops  # SERD's mask is computed: the check sees into the model's call
        assert "Abs" not in ops, name
