"""The distilled student: builds at tiny sizes, reads colour as grey, counts its FLOPs, saves and
loads in safe mode, and exports to LiteRT and ONNX with the Keras model's outputs."""

import keras
import numpy as np
import pytest

from dam_cnn_tf import export_formats as ef
from dam_cnn_tf.layers.class_names import class_names_of
from dam_cnn_tf.layers.serd import SERDLayer
from dam_cnn_tf.models.model_file import load_model_file
from dam_cnn_tf.models.student import Luma, build_student, logits_model, student_flops

NAMES = ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise")


def _tiny(**kwargs):
    options = dict(input_size=8, widths=(4, 8), convs_per_block=(1, 2), dense_units=(6,))
    options.update(kwargs)
    return build_student(NAMES, **options)


@pytest.fixture
def faces():
    return np.random.default_rng(0).uniform(0, 255, (3, 8, 8, 3)).astype(np.float32)


def test_outputs_and_shapes(faces):
    model = _tiny()
    out = model.predict(faces, verbose=0)
    assert set(out) == {"probabilities", "attention"}
    assert out["probabilities"].shape == (3, 7) and out["attention"].shape == (3, 2, 2)
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, rtol=1e-5)
    assert class_names_of(model) == list(NAMES)
    assert isinstance(model.get_layer("serd"), SERDLayer)
    logits = logits_model(model).predict(faces, verbose=0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.softmax(logits)), out["probabilities"],
                               rtol=1e-5, atol=1e-6)


def test_without_serd_the_attention_is_uniform(faces):
    out = _tiny(serd=False).predict(faces, verbose=0)
    np.testing.assert_allclose(out["attention"], 1.0)


def test_luma_is_bt601_grey_in_one_channel():
    rgb = np.array([[[[255.0, 0.0, 0.0], [0.0, 255.0, 0.0], [0.0, 0.0, 255.0], [255.0, 255.0, 255.0]]]])
    grey = keras.ops.convert_to_numpy(Luma()(rgb))
    assert grey.shape == (1, 1, 4, 1)
    np.testing.assert_allclose(grey[0, 0, :, 0], [0.299, 0.587, 0.114, 1.0], rtol=1e-5)


def test_colour_and_its_grey_give_the_same_answer(faces):
    model = _tiny()
    luma = faces @ np.array([0.299, 0.587, 0.114], np.float32)
    grey = np.repeat(luma[..., None], 3, axis=-1)
    np.testing.assert_allclose(model.predict(faces, verbose=0)["probabilities"],
                               model.predict(grey, verbose=0)["probabilities"], atol=1e-5)


def test_flops_are_counted_from_the_layers():
    model = _tiny()
    # 8x8: 1->4; 4x4: 4->8, 8->8; SERD 2x2x8; fc 32->6; logits 6->7
    expected = 2 * (9 * 1 * 4 * 64 + 9 * 4 * 8 * 16 + 9 * 8 * 8 * 16 + 2 * 2 * 8 + 32 * 6 + 6 * 7)
    assert student_flops(model) == expected


def test_bad_architectures_are_refused():
    with pytest.raises(ValueError, match="not a multiple of 2\\*\\*3"):
        build_student(NAMES, input_size=12, widths=(4, 8, 16))
    with pytest.raises(ValueError, match="one positive count per block"):
        build_student(NAMES, input_size=8, widths=(4, 8), convs_per_block=(1,))


def test_saves_and_loads_in_safe_mode(tmp_path, faces):
    model = _tiny()
    path = tmp_path / "student.keras"
    model.save(path)
    loaded = load_model_file(path)
    np.testing.assert_allclose(loaded.predict(faces, verbose=0)["probabilities"],
                               model.predict(faces, verbose=0)["probabilities"], atol=1e-6)
    assert class_names_of(loaded) == list(NAMES)


@pytest.mark.parametrize("fmt", ["litert", "onnx"])
def test_light_files_give_the_keras_outputs(tmp_path, faces, fmt):
    if fmt == "onnx":
        pytest.importorskip("tf2onnx", reason='ONNX export needs the onnx extra: pip install ".[onnx]"')
        pytest.importorskip("onnxruntime", reason='ONNX parity needs the onnx extra: pip install ".[onnx]"')
    model = _tiny()
    reference = model.predict(faces, verbose=0)
    path = ef.export_model_file(model, tmp_path / f"m{ef.SUFFIXES[fmt]}", NAMES, fmt)
    run = ef.litert_runner(path) if fmt == "litert" else ef.onnx_runner(path)
    out = run(faces)
    for key in ("probabilities", "attention"):
        np.testing.assert_allclose(out[key], reference[key], atol=1e-5)
    assert ef.file_class_names(path) == list(NAMES)
