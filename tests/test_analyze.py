"""``dam_cnn_tf.analyze`` (one call from a photo to its faces), the package's top-level names,
``predict`` without a MODEL (the default preset), 0-1 input caught, and faces of several
images batched per model call."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import dam_cnn_tf
import dam_cnn_tf.presets as presets
from dam_cnn_tf.cli import main
from dam_cnn_tf.input_range import InputRangeWarning, unit_range_max
from dam_cnn_tf.predict import PredictError, Predictor, expand_inputs, PredictionReport

from preset_helpers import TINY_CLASSES, TINY_SIZE, write_tiny_preset

REPO = Path(__file__).resolve().parents[1]
FACE_KEYS = ["box", "detected", "label", "class_id", "probability", "probabilities"]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("presets")
    write_tiny_preset(root, light="ship")
    return root


@pytest.fixture
def tiny_default(tiny_root, monkeypatch):
    """A tiny preset with a shipped light file, made the default preset."""
    root = tiny_root
    monkeypatch.setattr(presets, "PRESETS_DIR", root)
    monkeypatch.setattr(presets, "DEFAULT_PRESET", "tiny")
    monkeypatch.setattr("dam_cnn_tf.face_analysis._KEPT", {})
    return root / "tiny"


def _images(tmp_path, n=3, size=TINY_SIZE):
    rng = np.random.default_rng(7)
    paths = []
    for i in range(n):
        path = tmp_path / "in" / f"face{i}.png"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 256, (size, size, 3)).astype(np.uint8))
        paths.append(path)
    return paths


def test_top_level_names_do_not_start_tensorflow():
    script = ("import sys, dam_cnn_tf; dam_cnn_tf.analyze; dam_cnn_tf.Predictor; dam_cnn_tf.DEFAULT_PRESET;"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr[-1000:]
    assert dam_cnn_tf.Predictor is Predictor and dam_cnn_tf.DEFAULT_PRESET == presets.DEFAULT_PRESET
    assert {"analyze", "Predictor", "DEFAULT_PRESET"} <= set(dam_cnn_tf.__all__)
    assert presets.DEFAULT_PRESET in presets.available_presets()


def test_analyze_a_path_an_array_and_with_options(tiny_default, tmp_path):
    path = _images(tmp_path, 1)[0]
    faces = dam_cnn_tf.analyze(path, detect=False)  # the default preset
    assert len(faces) == 1 and list(faces[0]) == FACE_KEYS
    face = faces[0]
    assert face["label"] in TINY_CLASSES and face["probability"] == max(face["probabilities"].values())
    assert face["box"] == [0, 0, TINY_SIZE, TINY_SIZE] and face["detected"] is False
    json.dumps(faces)  # plain data
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert dam_cnn_tf.analyze(rgb, "tiny", detect=False) == faces
    assert dam_cnn_tf.analyze(rgb.astype(np.float32), detect=False) == faces  # float in 0-255
    predictor = Predictor("tiny", detect=False, runtime="keras")
    by_keras = dam_cnn_tf.analyze(rgb, predictor)
    assert by_keras[0]["label"] == face["label"]
    np.testing.assert_allclose(list(by_keras[0]["probabilities"].values()), list(face["probabilities"].values()),
                               atol=1e-5)
    with pytest.raises(PredictError, match="Predictor's"):
        dam_cnn_tf.analyze(rgb, predictor, margin=0.1)
    # The same model and options: loaded once.
    from dam_cnn_tf import face_analysis

    assert len(face_analysis._KEPT) == 1
    # A flat picture has no face to detect.
    assert dam_cnn_tf.analyze(np.full((120, 100, 3), 90, np.uint8)) == []


def test_0_1_images_are_refused_by_analyze_and_predictor(tiny_default):
    rgb = np.random.default_rng(0).uniform(0, 1, (TINY_SIZE, TINY_SIZE, 3)).astype(np.float32)
    with pytest.raises(PredictError, match="0-255, not 0-1"):
        dam_cnn_tf.analyze(rgb, detect=False)
    predictor = Predictor("tiny", detect=False)
    with pytest.raises(PredictError, match="0-255, not 0-1"):
        predictor.predict_faces(rgb[None])
    with pytest.raises(PredictError, match="uint8, or float"):
        predictor.predict_image(rgb.astype(np.int32))


def test_from_preset_warns_on_0_1_input_and_saves_as_itself(tiny_default, tmp_path):
    from dam_cnn_tf.models.model_file import load_model_file
    from dam_cnn_tf.models.preset_model import PresetModel

    model = dam_cnn_tf.from_preset("tiny")
    assert isinstance(model, PresetModel) and model.class_names == TINY_CLASSES
    faces = np.random.default_rng(1).uniform(0, 1, (3, TINY_SIZE, TINY_SIZE, 3)).astype(np.float32)
    for call in (lambda x: model.predict(x, verbose=0), model.predict_on_batch, model):
        with pytest.warns(InputRangeWarning, match="0-255, not 0-1"):
            call(faces)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = model.predict(faces * 255, verbose=0)
        model(faces * 255)
        model.predict(faces.astype(np.uint8), verbose=0)  # uint8 is never 0-1 data
    assert out["probabilities"].shape == (3, len(TINY_CLASSES))
    model.save(tmp_path / "saved.keras")
    loaded = load_model_file(tmp_path / "saved.keras")
    assert isinstance(loaded, PresetModel)
    np.testing.assert_allclose(loaded.predict(faces * 255, verbose=0)["probabilities"], out["probabilities"],
                               atol=1e-6)


def test_unit_range_is_judged_on_float_arrays_only():
    assert unit_range_max(np.ones((2, 4, 4, 3), np.uint8)) is None
    assert unit_range_max(np.full((2, 4, 4, 3), 0.5, np.float32)) == 0.5
    assert unit_range_max(np.full((2, 4, 4, 3), -0.5, np.float64)) == -0.5  # -1..1 too
    assert unit_range_max(np.full((1, 2, 2, 3), 200.0)) is None
    assert unit_range_max([[0.1, 0.2]]) == pytest.approx(0.2)
    assert unit_range_max(np.zeros((0, 4), np.float32)) is None


def test_predict_without_a_model_uses_the_default_preset(tiny_default, tmp_path):
    paths = _images(tmp_path, 2)
    runner = CliRunner()
    default = runner.invoke(main, ["predict", str(paths[0]), str(paths[1]), "--no-detect"])
    named = runner.invoke(main, ["predict", "tiny", str(paths[0]), str(paths[1]), "--no-detect"])
    assert default.exit_code == named.exit_code == 0, default.output + named.output
    assert default.stdout == named.stdout and len(default.stdout.splitlines()) == 2
    folder = runner.invoke(main, ["predict", str(paths[0].parent), "--no-detect"])  # a folder of photos is INPUTS
    assert folder.exit_code == 0 and len(folder.stdout.splitlines()) == 2
    alone = runner.invoke(main, ["predict", "tiny"])
    assert alone.exit_code == 2 and "give the images" in alone.output


def test_faces_of_several_images_share_model_calls(tiny_default, tmp_path):
    paths = _images(tmp_path, 5)
    predictor = Predictor("tiny", detect=False, batch_size=4)
    calls = []
    run = predictor.opened._run
    predictor.opened._run = lambda faces: calls.append(len(faces)) or run(faces)
    report = PredictionReport()
    sources = list(predictor.iter_inputs(expand_inputs(paths), report))
    assert calls == [4, 1] and report.num_faces == 5
    for source, path in zip(sources, paths):
        alone = predictor.predict_image(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
        assert source.path == str(path)
        np.testing.assert_allclose(list(source.faces[0].probabilities.values()),
                                   list(alone[0].probabilities.values()), atol=1e-5)


def test_an_error_stops_after_the_predictions_before_it(tiny_default, tmp_path):
    from dam_cnn_tf.data.images import ImageReadError

    paths = _images(tmp_path, 3)
    bad = tmp_path / "in" / "notes.jpg"
    bad.write_text("not an image")
    predictor = Predictor("tiny", detect=False, batch_size=8)
    got = []
    with pytest.raises(ImageReadError, match="notes.jpg"):
        for source in predictor.iter_inputs(expand_inputs([*paths[:2], bad, paths[2]]), PredictionReport(),
                                            on_bad="error"):
            got.append(Path(source.path).name)
    assert got == ["face0.png", "face1.png"]
