"""The presets shipped inside the package: each loads by name with no network, says what it
predicts, classifies faces as its card recorded when it was built, and is the file the card
describes. No data set is needed."""

import hashlib
import json

import cv2
import numpy as np
import pytest

import dam_cnn_tf
from dam_cnn_tf.data.faces import resize_face
from dam_cnn_tf.data.synthetic import make_synthetic_faces
from dam_cnn_tf.presets import PRESETS_DIR, PresetError, available_presets, model_folder, preset_card

from cli_helpers import invoke

NAME = "fer2013-face-resnet"  # the default preset
SHIPPED = ("fer2013-face-resnet", "rafdb-face-resnet")
FER2013_CLASSES = {"neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise"}


@pytest.fixture(scope="module", params=SHIPPED)
def name(request):
    return request.param


@pytest.fixture(scope="module")
def card(name):
    return preset_card(name)


@pytest.fixture(scope="module")
def model(name):
    return dam_cnn_tf.from_preset(name)


def _check_faces(size):
    """The faces the build script classified into the card (scripts/build_preset.py, check_faces)."""
    dataset = make_synthetic_faces(num_subjects=2, images_per_class=1, image_size=size, seed=0)
    return np.stack([resize_face(s.image, (size, size)) for s in dataset.samples]).astype(np.float32)


def test_the_preset_ships_with_the_package(name):
    assert name in available_presets() and NAME == dam_cnn_tf.presets.DEFAULT_PRESET
    assert model_folder(name) == PRESETS_DIR / name
    for file in ("model.keras", "card.json", "card.md", "classes.json", "train.log"):
        assert (PRESETS_DIR / name / file).is_file(), file
    # The package's budget for shipped models: 20 MB a preset, 45 MB in all.
    sizes = {folder.name: sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
             for folder in PRESETS_DIR.iterdir() if folder.is_dir() and not folder.name.startswith("__")}
    assert all(size <= 20_000_000 for size in sizes.values()), sizes
    assert sum(sizes.values()) <= 45_000_000, sizes


def test_the_preset_s_recipe_resolves_to_the_plan_it_was_built_with(card):
    """The card names its recipe rather than copying it: that recipe, resolved today on the
    preset's training faces, is the plan the run followed, value by value."""
    from dam_cnn_tf.recipes import recipe_path, resolve_settings
    from dam_cnn_tf.recipes.plan import Plan, make_plan

    assert recipe_path(card["recipe"]["name"]).is_file()
    built = Plan.from_dict(card["plan"], "card.json")
    assert built.settings.backbone_weights == "face_recognition_model-weights_manifest.json"  # by name
    settings, sources = resolve_settings(recipe=card["recipe"]["name"],
                                         options={"backbone_weights": built.settings.backbone_weights})
    assert built.num_train == card["data"]["train_faces"] and [p.name for p in built.stage1] == ["probe", "fine-tune"]
    assert make_plan(settings, built.num_train, sources).differences(built) == []


def test_the_file_is_the_one_the_card_describes(name, card):
    data = (PRESETS_DIR / name / "model.keras").read_bytes()
    assert hashlib.sha256(data).hexdigest() == card["file"]["sha256"]
    assert len(data) == card["file"]["bytes"]


@pytest.mark.backends  # the shipped model on every Keras backend
def test_class_names_and_output_signature(name, model, card):
    assert list(model.class_names) == card["class_names"]
    assert set(model.class_names) == FER2013_CLASSES
    classes = json.loads((PRESETS_DIR / name / "classes.json").read_text())["class_names"]
    assert classes == list(model.class_names)
    assert tuple(model.input_shape[1:]) == tuple(card["input_shape"]) and model.input_shape[-1] == 3
    assert set(model.output) == {"probabilities", "attention"}
    faces = _check_faces(model.input_shape[1])[:2]
    out = model.predict(faces, verbose=0)
    assert out["probabilities"].shape == (2, len(FER2013_CLASSES))
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, rtol=1e-5)
    assert out["attention"].shape[1:] == tuple(card["outputs"]["attention"])


@pytest.mark.backends  # the shipped model on every Keras backend
def test_classifies_synthetic_faces_as_recorded_at_build_time(model, card):
    faces = _check_faces(model.input_shape[1])
    first = model.predict(faces, verbose=0)["probabilities"]
    second = model.predict(faces[::-1], verbose=0)["probabilities"][::-1]  # other batch order, same answers
    np.testing.assert_allclose(first, second, atol=1e-5)
    assert first.argmax(axis=1).tolist() == card["check_faces"]["labels"]
    np.testing.assert_allclose(first, card["check_faces"]["probabilities"], atol=1e-4)


@pytest.mark.backends  # the shipped model on every Keras backend
def test_colour_is_read_as_its_card_says(model, card):
    """A grey preset reads colour as BT.601 luma (a red cast and its grey version, the same
    answer); a colour preset sees the cast."""
    faces = _check_faces(model.input_shape[1])[:3].astype(np.uint8)
    tinted = faces.copy()
    tinted[..., 0] = np.clip(tinted[..., 0].astype(int) + 40, 0, 255)  # a red cast on the same faces
    luma = tinted.astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # BT.601, unrounded
    grey = np.repeat(luma[..., None], 3, -1).astype(np.float32)
    as_colour = model.predict(tinted.astype(np.float32), verbose=0)["probabilities"]
    as_grey = model.predict(grey, verbose=0)["probabilities"]
    if card["reading_layer"] == "grey":
        np.testing.assert_allclose(as_colour, as_grey, atol=1e-4)
    else:
        assert card["reading_layer"] is None and np.abs(as_colour - as_grey).max() > 1e-3


def test_unknown_preset_is_one_line_naming_the_known_ones(tmp_path):
    with pytest.raises(PresetError, match=f"unknown preset 'fer2031'.*{NAME}"):
        dam_cnn_tf.from_preset("fer2031")
    assert model_folder(str(tmp_path)) is None  # a path is a path, never a preset


def test_presets_command_lists_and_shows_the_card(name, card):
    listing = invoke("presets").output
    assert name in listing and f"{100 * card['validation']['accuracy']:.2f}%" in listing
    assert invoke("presets", name).output.startswith(f"# Preset `{name}`")
    result = invoke("presets", "nope", expect_ok=False)
    assert result.exit_code == 1 and "unknown preset 'nope'" in result.output


def test_predict_takes_the_preset_by_name(tmp_path, name, card):
    face = _check_faces(card["input_shape"][0])[0].astype(np.uint8)
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    rows = [json.loads(line) for line in invoke("predict", name, path, "--no-detect").output.splitlines()
            if line.startswith("{")]
    assert len(rows) == 1 and rows[0]["label"] in FER2013_CLASSES
    assert rows[0]["class_id"] == card["check_faces"]["labels"][0]


def test_a_card_names_the_split_its_validation_part_was_carved_with():
    """A trained preset's run settings, or a distilled preset's recipe (the split of its teachers)."""
    from dam_cnn_tf.presets import card_split

    assert card_split({"plan": {"settings": {"val_fraction": 0.2, "seed": 3}}}) == (0.2, 3)
    assert card_split({"distillation": {"val_fraction": 0.25, "training": {"seed": 5}}}) == (0.25, 5)
    with pytest.raises(KeyError):
        card_split({"name": "a card that records no split"})
