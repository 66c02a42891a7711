"""LiteRT and ONNX exports give the SavedModel's outputs; the SavedModel's ops are ones TF Serving has."""

import json
import sys

import cv2
import keras

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from dam_cnn_tf import export_formats as ef
from dam_cnn_tf.data.synthetic import make_synthetic_faces
from dam_cnn_tf.export import ExportError, ExportExistsError, export_saved_model
from dam_cnn_tf.serving_ops import minimum_serving_version, saved_model_ops
from test_export import CLASS_NAMES, HEIGHT, WIDTH, _tiny_model

# float32 all the way, but the runtimes order and fuse the sums differently: 1e-4 on a
# probability is far above that rounding (~1e-6 seen) and far below a changed class.
FLOAT_TOL = 1e-4
# Quantized weights move the outputs by up to ~0.03 on a trained CK+48 model (docs/serving.md).
QUANT_TOL = 0.05
# int8 activations too: the fast preset's probabilities moved by up to 0.08 on 300 training faces.
INT8_TOL = 0.1


@pytest.fixture(scope="module")
def faces():
    synthetic = make_synthetic_faces(num_subjects=2, images_per_class=1, image_size=HEIGHT, classes=CLASS_NAMES, seed=3)
    return np.stack([cv2.resize(s.image, (WIDTH, HEIGHT)) for s in synthetic.samples]).astype(np.float32)


@pytest.fixture(scope="module")
def exported(faces, tmp_path_factory):
    model, _ = _tiny_model(0, faces)
    root = tmp_path_factory.mktemp("formats")
    saved = export_saved_model(model, root / "saved", CLASS_NAMES)
    reference = tf.saved_model.load(str(saved)).signatures["serving_default"](image=tf.constant(faces))
    return model, root, saved, {k: v.numpy() for k, v in reference.items()}


def _assert_close(outputs, reference, tol):
    assert set(outputs) == {"probabilities", "attention"}
    for key in outputs:
        assert outputs[key].shape == reference[key].shape, key
        np.testing.assert_allclose(outputs[key], reference[key], atol=tol, err_msg=key)


def test_litert_gives_the_saved_models_outputs(exported, faces):
    model, root, _, reference = exported
    path = ef.export_model_file(model, root / "m.tflite", CLASS_NAMES, "litert")
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []
    plain = root / "plain-write"
    plain.write_bytes(b"")
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777  # not mkstemp's private 0600
    _assert_close(ef.litert_runner(path)(faces), reference, FLOAT_TOL)
    assert ef.litert_runner(path)(faces[:1])["probabilities"].shape == (1, len(CLASS_NAMES))  # batch is free
    assert ef.file_class_names(path) == CLASS_NAMES


@pytest.mark.parametrize("quantize", ["float16", "dynamic"])
def test_quantized_litert_runs_and_stays_close(exported, faces, quantize):
    model, root, _, reference = exported
    plain = (root / "m.tflite")
    if not plain.exists():
        ef.export_model_file(model, plain, CLASS_NAMES, "litert")
    path = ef.export_model_file(model, root / f"m-{quantize}.tflite", CLASS_NAMES, "litert", quantize=quantize)
    outputs = ef.litert_runner(path)(faces)
    _assert_close(outputs, reference, QUANT_TOL)
    np.testing.assert_allclose(outputs["probabilities"].sum(axis=1), 1.0, atol=1e-3)


def test_int8_litert_is_scaled_on_calibration_faces_and_stays_close(tmp_path):
    """int8 on a small student (what the fast preset ships); the build measures each model it
    quantizes on validation faces, since int8 does not suit every model (a tiny DAM-CNN trained
    to saturation moved its probabilities by 0.5)."""
    from ai_edge_litert.interpreter import Interpreter

    from dam_cnn_tf.models.student import build_student

    keras.utils.set_random_seed(3)  # a student whose answers differ from face to face
    model = build_student(CLASS_NAMES, input_size=32, widths=(8, 16), convs_per_block=1, dense_units=(16,))
    logits = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][-1]
    kernel, bias = logits.get_weights()
    logits.set_weights([10 * kernel, bias])  # confident answers, as a trained model's: a wrong scale would show
    synthetic = make_synthetic_faces(num_subjects=4, images_per_class=1, image_size=32, classes=CLASS_NAMES, seed=5)
    faces = np.stack([s.image for s in synthetic.samples]).astype(np.float32)
    reference = model.predict(faces, verbose=0)
    assert np.ptp(reference["probabilities"], axis=0).max() > 0.3
    target = tmp_path / "m-int8.tflite"
    with pytest.raises(ExportError, match="needs calibration faces"):
        ef.export_model_file(model, target, CLASS_NAMES, "litert", quantize="int8")
    with pytest.raises(ExportError, match="at least 16 faces"):
        ef.export_model_file(model, target, CLASS_NAMES, "litert", quantize="int8", calibration=faces[:3])
    assert not target.exists()
    # the faces mirrored and darkened: other faces than those compared below
    calibration = np.concatenate([faces[:, :, ::-1], 0.8 * faces])
    path = ef.export_model_file(model, target, CLASS_NAMES, "litert", quantize="int8", calibration=calibration)
    outputs = ef.litert_runner(path)(faces)
    _assert_close(outputs, {k: np.asarray(v) for k, v in reference.items()}, INT8_TOL)
    assert outputs["probabilities"].dtype == np.float32  # int8 inside, float32 at the edges
    assert np.array_equal(outputs["probabilities"].argmax(1), reference["probabilities"].argmax(1))
    kernels = [t for t in Interpreter(model_path=str(path)).get_tensor_details() if t["dtype"] == np.int8]
    assert len(kernels) > 10  # weights and activations, not a float32 file under another name
    assert ef.file_class_names(path) == CLASS_NAMES


def test_onnx_gives_the_saved_models_outputs(exported, faces):
    pytest.importorskip("tf2onnx", reason='ONNX export needs the onnx extra: pip install ".[onnx]"')
    pytest.importorskip("onnxruntime", reason='ONNX parity needs the onnx extra: pip install ".[onnx]"')
    model, root, _, reference = exported
    path = ef.export_model_file(model, root / "m.onnx", CLASS_NAMES, "onnx")
    _assert_close(ef.onnx_runner(path)(faces), reference, FLOAT_TOL)
    assert ef.file_class_names(path) == CLASS_NAMES


def test_missing_extra_is_one_line_naming_it(exported, monkeypatch):
    model, root, _, _ = exported
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # what Python does for a module not installed
    with pytest.raises(ef.MissingExtraError, match=r'pip install "dam-cnn-tf\[onnx\]"') as error:
        ef.export_model_file(model, root / "none.onnx", CLASS_NAMES, "onnx")
    assert "\n" not in str(error.value)
    assert not (root / "none.onnx").exists()


def test_failed_conversion_leaves_nothing(exported, monkeypatch):
    model, root, _, _ = exported
    target = root / "keep.tflite"
    target.write_bytes(b"old")

    def broken(*args, **kwargs):
        raise ValueError("converter exploded\nwith many lines")

    monkeypatch.setattr(tf.lite.TFLiteConverter, "convert", broken)
    with pytest.raises(ExportError, match="^LiteRT conversion failed: converter exploded$"):
        ef.export_model_file(model, target, CLASS_NAMES, "litert", overwrite=True)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize(
    "name, fmt, quantize, error",
    [
        ("m.onnx", "litert", None, ExportError),
        ("m.tflite", "onnx", "float16", ExportError),
        ("m.tflite", "litert", "int4", ExportError),
        ("m.tflite", "tfjs", None, ExportError),
    ],
)
def test_bad_options_are_refused(exported, name, fmt, quantize, error):
    model, root, _, _ = exported
    with pytest.raises(error):
        ef.export_model_file(model, root / "bad" / name, CLASS_NAMES, fmt, quantize=quantize)
    assert not (root / "bad").exists()


def test_existing_file_needs_overwrite(exported):
    model, root, _, _ = exported
    target = root / "exists.tflite"
    target.write_bytes(b"old")
    with pytest.raises(ExportExistsError):
        ef.export_model_file(model, target, CLASS_NAMES, "litert")
    assert target.read_bytes() == b"old"


def test_cli_exports_litert(exported, tmp_path, faces):
    from dam_cnn_tf.cli import main

    model, _, _, reference = exported
    model_file = tmp_path / "model.keras"
    model.save(model_file)
    (tmp_path / "classes.json").write_text(json.dumps({"class_names": CLASS_NAMES}))
    out = tmp_path / "out" / "damcnn.tflite"
    result = CliRunner().invoke(main, ["export", str(model_file), str(out), "--format", "litert", "--quantize", "float16"])
    assert result.exit_code == 0, result.output
    _assert_close(ef.litert_runner(out)(faces), reference, QUANT_TOL)
    bad = CliRunner().invoke(main, ["export", str(model_file), str(tmp_path / "x"), "--quantize", "float16"])
    assert bad.exit_code != 0 and "--quantize is for --format litert" in bad.output


def test_saved_model_ops_are_all_known_to_tf_serving(exported):
    _, _, saved, _ = exported
    ops = saved_model_ops(saved)
    assert {"Conv2D", "Softmax", "DecodeImage"} <= ops  # the graph and its function library were read
    assert minimum_serving_version(ops) == "2.16.1"
    with pytest.raises(ValueError, match="NotARealOp"):
        minimum_serving_version(ops | {"NotARealOp"})


def test_cli_exports_int8_scaled_on_a_folder_of_faces(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from cli_helpers import synthetic_folder
    from dam_cnn_tf.cli import main
    from dam_cnn_tf.models.student import build_student

    model_file = tmp_path / "student.keras"
    build_student(CLASS_NAMES, input_size=32, widths=(4, 8), convs_per_block=1, dense_units=(8,)).save(model_file)
    (tmp_path / "classes.json").write_text(json.dumps({"class_names": CLASS_NAMES}))
    faces = synthetic_folder(tmp_path / "faces", subjects=2, per_class=2, size=40)
    out = tmp_path / "int8.tflite"
    runner = CliRunner()
    missing = runner.invoke(main, ["export", str(model_file), str(out), "--format", "litert", "--quantize", "int8"])
    assert missing.exit_code == 2 and "--quantize int8 needs --calibration FOLDER" in missing.output
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(main, ["export", str(model_file), str(out), "--format", "litert", "--quantize", "int8",
                                 "--calibration", str(tmp_path / "empty")])
    assert empty.exit_code == 2 and "holds 0 images" in empty.output and not out.exists()
    result = runner.invoke(main, ["export", str(model_file), str(out), "--format", "litert", "--quantize", "int8",
                                  "--calibration", str(faces), "--calibration-faces", "20"])
    assert result.exit_code == 0, result.output
    assert "int8, scaled on 20 faces" in result.output
    details = Interpreter(model_path=str(out)).get_tensor_details()
    assert sum(t["dtype"] == np.int8 for t in details) > 10
