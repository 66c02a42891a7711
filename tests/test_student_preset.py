"""The distilled preset shipped inside the package: it loads by name in safe mode, is the files
its card describes, classifies faces as its card recorded when it was built, and its light file
(LiteRT) gives its Keras model's answers within the card's tolerance. No data set is needed."""

import hashlib
import json

import cv2
import numpy as np
import pytest

import dam_cnn_tf
from dam_cnn_tf.presets.light import LightModel
from dam_cnn_tf.recipes.distilled import distilled_recipe_path
from dam_cnn_tf.training.distillation_recipe import read_recipe
from dam_cnn_tf.data.faces import resize_face
from dam_cnn_tf.data.synthetic import make_synthetic_faces
from dam_cnn_tf.presets import PRESETS_DIR, available_presets, preset_card

from cli_helpers import invoke

NAME = "fer2013-student"
FOLDER = PRESETS_DIR / NAME


@pytest.fixture(scope="module")
def card():
    return preset_card(NAME)


@pytest.fixture(scope="module")
def model():
    return dam_cnn_tf.from_preset(NAME)


def _check_faces(size):
    """The faces the build script classified into the card (scripts/build_preset.py, check_faces)."""
    dataset = make_synthetic_faces(num_subjects=2, images_per_class=1, image_size=size, seed=0)
    return np.stack([resize_face(s.image, (size, size)) for s in dataset.samples]).astype(np.float32)


def test_the_preset_ships_complete_and_small():
    assert NAME in available_presets()
    for name in ("model.keras", "model.tflite", "card.json", "card.md", "classes.json", "train.log"):
        assert (FOLDER / name).is_file(), name
    assert sum(p.stat().st_size for p in FOLDER.iterdir() if p.is_file()) <= 10_000_000


def test_the_files_are_the_ones_the_card_describes(card):
    entries = [card["file"], card["light"]]
    assert {e["name"] for e in entries} == {"model.keras", "model.tflite"}
    assert card["light"]["shipped"] and card["light"]["made_from"] == card["file"]["sha256"]
    for entry in entries:
        data = (FOLDER / entry["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"], entry["name"]


def test_validation_figures_stand_beside_the_teacher_on_the_same_faces(card):
    teacher = preset_card(card["teacher"]["preset"])
    fer = card["data"]["datasets"]["fer2013"]
    assert (fer["train_faces"], fer["validation_faces"]) == (teacher["data"]["train_faces"],
                                                             teacher["data"]["validation_faces"])
    # the teacher's answers the student learnt from reproduce the teacher's own card on those faces
    assert card["teacher"]["validation_accuracy_from_its_labels"] == pytest.approx(teacher["validation"]["accuracy"],
                                                                                   abs=5e-4)
    assert card["validation"]["num_samples"] == fer["validation_faces"]


@pytest.mark.backends  # the shipped model on every Keras backend
def test_classifies_synthetic_faces_as_recorded_at_build_time(model, card):
    assert list(model.class_names) == card["class_names"]
    assert tuple(model.input_shape[1:]) == tuple(card["input_shape"])
    faces = _check_faces(model.input_shape[1])
    first = model.predict(faces, verbose=0)
    second = model.predict(faces[::-1], verbose=0)["probabilities"][::-1]  # other batch order, same answers
    np.testing.assert_allclose(first["probabilities"], second, atol=1e-5)
    assert first["probabilities"].argmax(axis=1).tolist() == card["check_faces"]["labels"]
    np.testing.assert_allclose(first["probabilities"], card["check_faces"]["probabilities"], atol=1e-4)
    assert first["attention"].shape[1:] == tuple(card["outputs"]["attention"])


def test_the_light_file_matches_the_keras_model_within_the_cards_tolerance(model, card):
    faces = _check_faces(model.input_shape[1])
    got = LightModel(FOLDER / card["light"]["name"])(faces)["probabilities"]
    expected = model.predict(faces, verbose=0)["probabilities"]
    assert np.abs(got - expected).max() <= card["light"]["tolerance"]
    same = np.mean(got.argmax(axis=1) == np.asarray(card["check_faces"]["labels"]))
    if card["light"]["quantize"] is None:
        assert same == 1.0
    else:  # int8 moves near-ties: on these synthetic faces as at build time, and rarely on real ones
        assert same == pytest.approx(card["light"]["parity"]["same_prediction"])
        assert card["light"]["validation_parity"]["same_prediction"] >= 0.95


def test_the_card_names_the_recipe_it_was_trained_with(card):
    recipe_file = distilled_recipe_path(NAME)
    assert card["recipe"]["sha256"] == hashlib.sha256(recipe_file.read_bytes()).hexdigest()
    assert card["distillation"] == read_recipe(recipe_file)


def test_colour_is_read_as_grey(model):
    faces = _check_faces(model.input_shape[1])[:3].astype(np.uint8)
    tinted = faces.copy()
    tinted[..., 0] = np.clip(tinted[..., 0].astype(int) + 40, 0, 255)  # a red cast on the same faces
    luma = tinted.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    grey = np.repeat(luma[..., None], 3, -1).astype(np.float32)
    np.testing.assert_allclose(model.predict(tinted.astype(np.float32), verbose=0)["probabilities"],
                               model.predict(grey, verbose=0)["probabilities"], atol=1e-4)


def test_predict_takes_the_preset_by_name(tmp_path, card):
    face = _check_faces(card["input_shape"][0])[0].astype(np.uint8)
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    rows = [json.loads(line) for line in invoke("predict", NAME, path, "--no-detect").output.splitlines()
            if line.startswith("{")]
    assert len(rows) == 1 and rows[0]["class_id"] == card["check_faces"]["labels"][0]


def test_predict_with_the_preset_never_imports_tensorflow(tmp_path, card):
    """``damcnn-tf predict fer2013-student photo`` in a fresh interpreter: its int8 light file
    answers, and neither TensorFlow nor Keras is imported."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    face = _check_faces(card["input_shape"][0])[0].astype(np.uint8)
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    script = (f"import json, sys\nfrom dam_cnn_tf.cli import main\n"
              f"try:\n    main(['predict', {NAME!r}, {str(path)!r}, '--no-detect'])\n"
              f"except SystemExit as exit:\n    assert exit.code in (0, None), exit.code\n"
              "print('HEAVY ' + json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
              "('tensorflow', 'keras', 'tf_keras', 'jax', 'torch'))))\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 1 and rows[0]["class_id"] == card["check_faces"]["labels"][0]
    assert next(line for line in proc.stdout.splitlines() if line.startswith("HEAVY ")) == "HEAVY []"
