"""Presets' light files: made from the Keras model and checked against it, shipped or made once
into the cache, run by LiteRT without TensorFlow, and giving the Keras model's predictions."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

import dam_cnn_tf.presets as presets
import dam_cnn_tf.presets.light as light
from dam_cnn_tf.predict import PredictError, Predictor
from dam_cnn_tf.presets import preset_card

from preset_helpers import TINY_SIZE, write_tiny_preset

REPO = Path(__file__).resolve().parents[1]
SHIPPED = presets.PRESETS_DIR


@pytest.fixture
def presets_root(tmp_path, monkeypatch):
    root = tmp_path / "presets"
    root.mkdir()
    monkeypatch.setattr(presets, "PRESETS_DIR", root)
    monkeypatch.setenv("DAMCNN_CACHE", str(tmp_path / "cache"))
    return root


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory):
    """One cache for the tests of the shipped presets: their light files are made once."""
    return tmp_path_factory.mktemp("cache")


def _faces(n=5, seed=0, size=TINY_SIZE):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3)).astype(np.uint8)


def test_a_shipped_light_file_gives_the_keras_predictions(presets_root):
    folder = write_tiny_preset(presets_root, light="ship")
    card = preset_card("tiny")
    entry = card["light"]
    assert entry["shipped"] and entry["sha256"] == presets.sha256_of(folder / "model.tflite")
    assert entry["made_from"] == card["file"]["sha256"]
    assert entry["parity"]["max_abs_probability_difference"] < 1e-4 and entry["parity"]["faces"] == 14
    fast = Predictor("tiny", detect=False)
    slow = Predictor("tiny", detect=False, runtime="keras")
    assert (fast.runtime, slow.runtime) == ("litert", "keras") and fast.model is None
    faces = _faces()
    p_fast, a_fast = fast.predict_faces(faces)
    p_slow, a_slow = slow.predict_faces(faces)
    assert np.abs(p_slow[0] - p_slow[1]).max() > 1e-4  # the faces are told apart
    np.testing.assert_allclose(p_fast, p_slow, atol=1e-5)
    np.testing.assert_allclose(a_fast, a_slow, atol=1e-5)
    assert fast.class_names == slow.class_names == list(card["class_names"])


def test_a_light_file_too_large_to_ship_is_made_once_into_the_cache(presets_root, tmp_path, monkeypatch):
    folder = write_tiny_preset(presets_root, light="cache")
    card = preset_card("tiny")
    assert not card["light"]["shipped"] and "sha256" not in card["light"]
    assert sorted(p.name for p in folder.iterdir()) == ["card.json", "classes.json", "model.keras"]
    said = []
    predictor = Predictor("tiny", detect=False, log=said.append)
    cached = light.cache_folder(card) / "model.tflite"
    assert predictor.runtime == "litert" and predictor.opened.file == cached
    assert cached.is_file() and len(said) == 1 and "once" in said[0]
    assert str(tmp_path / "cache") in str(cached) and card["file"]["sha256"][:16] in str(cached)
    record = json.loads((cached.parent / "model.tflite.json").read_text())
    assert record["sha256"] == presets.sha256_of(cached) and record["parity"]["max_abs_probability_difference"] < 1e-4
    assert sorted(p.name for p in cached.parent.iterdir()) == ["model.tflite", "model.tflite.json"]  # no temporaries

    def never(*args, **kwargs):
        raise AssertionError("made again")

    monkeypatch.setattr(light, "make_light_file", never)
    assert Predictor("tiny", detect=False, log=said.append).runtime == "litert" and len(said) == 1
    # A damaged cache entry is made again, not used.
    cached.write_bytes(cached.read_bytes()[:1000])
    monkeypatch.undo()
    monkeypatch.setattr(presets, "PRESETS_DIR", presets_root)
    monkeypatch.setenv("DAMCNN_CACHE", str(tmp_path / "cache"))
    assert Predictor("tiny", detect=False, log=said.append).runtime == "litert" and len(said) == 2
    assert json.loads((cached.parent / "model.tflite.json").read_text())["sha256"] == presets.sha256_of(cached)


def test_a_cached_light_file_converted_another_way_is_made_again(presets_root):
    """A card that changes how its light file is converted (float32 to int8) is not served the
    file converted the old way, whose name and source model are the same."""
    folder = write_tiny_preset(presets_root, light="cache")
    said = []
    assert Predictor("tiny", detect=False, log=said.append).runtime == "litert" and len(said) == 1
    card = json.loads((folder / "card.json").read_text())
    card["light"] = light.describe_light_file(folder, card, ship=False, quantize="dynamic")
    (folder / "card.json").write_text(json.dumps(card))
    assert Predictor("tiny", detect=False, log=said.append).runtime == "litert" and len(said) == 2
    record = json.loads((light.cache_folder(card) / "model.tflite.json").read_text())
    assert (record["quantize"], record["made_from"]) == ("dynamic", card["file"]["sha256"])
    Predictor("tiny", detect=False, log=said.append)
    assert len(said) == 2  # the int8 file is kept from now on


def test_a_light_file_that_drifts_from_the_keras_model_is_not_used(presets_root, monkeypatch):
    write_tiny_preset(presets_root, light="cache")
    card = json.loads((presets_root / "tiny" / "card.json").read_text())
    card["check_faces"]["probabilities"] = (np.asarray(card["check_faces"]["probabilities"]) + 0.01).tolist()
    (presets_root / "tiny" / "card.json").write_text(json.dumps(card))
    with pytest.warns(RuntimeWarning, match="differs from the Keras model"):
        assert Predictor("tiny", detect=False).runtime == "keras"  # auto: the Keras model instead
    with pytest.raises(PredictError, match="differs from the Keras model"):
        Predictor("tiny", detect=False, runtime="light")
    assert not light.cache_folder(card).joinpath("model.tflite").exists()


def test_runtime_choices(presets_root, tmp_path):
    write_tiny_preset(presets_root)  # no light file
    assert Predictor("tiny", detect=False).runtime == "keras"
    with pytest.raises(PredictError, match="no light file"):
        Predictor("tiny", detect=False, runtime="light")
    with pytest.raises(PredictError, match="runtime light is for presets"):
        Predictor(presets_root / "tiny", detect=False, runtime="light")  # a path, not a preset's name
    with pytest.raises(PredictError, match="runtime must be one of"):
        Predictor("tiny", runtime="tflite")


def test_an_int8_light_file_is_made_at_build_time_only(presets_root):
    """An int8 file is scaled on the build's training faces: it ships with the preset, and a
    user's machine, which has none of them, never makes one in their place."""
    folder = write_tiny_preset(presets_root)
    card = preset_card("tiny")
    calibration = _faces(16, seed=1).astype(np.float32)
    with pytest.raises(light.LightFileError, match="made at build time only"):
        light.describe_light_file(folder, card, ship=False, quantize="int8", calibration=calibration)
    card["light"] = light.describe_light_file(folder, card, quantize="int8", calibration=calibration)
    assert card["light"]["shipped"] and card["light"]["quantize"] == "int8"
    (folder / "card.json").write_text(json.dumps(card))
    fast = Predictor("tiny", detect=False)
    assert fast.runtime == "litert" and fast.opened.file == folder / "model.tflite"
    p_fast, _ = fast.predict_faces(_faces())
    p_slow, _ = Predictor("tiny", detect=False, runtime="keras").predict_faces(_faces())
    assert np.abs(p_fast - p_slow).max() < 0.1
    (folder / "model.tflite").unlink()  # as if it were described but not shipped
    card["light"] = {k: v for k, v in card["light"].items() if k not in ("sha256", "bytes")} | {"shipped": False}
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(PredictError, match="int8 light file is made only when the preset is built"):
        Predictor("tiny", detect=False, runtime="light")
    assert not light.cache_folder(card).joinpath("model.tflite").exists()


def test_describe_ships_a_light_file_only_within_the_budget(presets_root, monkeypatch):
    folder = write_tiny_preset(presets_root)
    card = preset_card("tiny")
    assert light.describe_light_file(folder, card)["shipped"]  # a tiny model fits
    monkeypatch.setattr(light, "PRESET_BUDGET_BYTES", (folder / "model.keras").stat().st_size)
    entry = light.describe_light_file(folder, card)
    assert not entry["shipped"] and not (folder / "model.tflite").exists()


def test_predict_with_a_light_file_never_imports_tensorflow(presets_root, tmp_path):
    """The whole import path of ``damcnn-tf predict``, in a fresh interpreter."""
    write_tiny_preset(presets_root, light="ship")
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), _faces(1)[0])
    script = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        import dam_cnn_tf.presets as presets
        presets.PRESETS_DIR = Path({str(presets_root)!r})
        from dam_cnn_tf.cli import main
        try:
            main(["predict", "tiny", {str(image)!r}, "--no-detect"])
        except SystemExit as exit:
            assert exit.code in (0, None), exit.code
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras", "jax", "torch"))
        print("HEAVY " + json.dumps(heavy))
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user has it: the package quiets the runtimes itself
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 1 and rows[0]["label"] in ("anger", "happiness", "surprise")
    heavy = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("HEAVY "))[6:])
    assert heavy == []
    assert proc.stderr.strip().splitlines() == ["1 inputs: 1 images or frames, 1 faces, 0 without a detected face, "
                                                "0 unreadable"]  # LiteRT's own start-up line is not shown


def test_the_shipped_presets_light_files_agree_with_their_keras_models(real_cache, monkeypatch):
    """Each shipped preset's light file (made into a fresh cache where it is not shipped) on the
    card's check faces, against the probabilities the Keras model gave when the preset was built."""
    monkeypatch.setenv("DAMCNN_CACHE", str(real_cache))
    names = [n for n in presets.available_presets() if preset_card(n).get("light")]
    assert "fer2013-face-resnet" in names
    for name in names:
        card = preset_card(name)
        path = light.light_path(name)
        measured = light.check_against_card(path, card)
        if card["light"].get("quantize") in (None, "float16"):
            assert measured["same_prediction"] == 1.0, name
        else:  # int8 moves near-ties: as the build measured it, on these faces and on validation faces
            assert measured["same_prediction"] == pytest.approx(card["light"]["parity"]["same_prediction"]), name
        assert measured["max_abs_probability_difference"] <= card["light"]["tolerance"], name


@pytest.mark.realdata
def test_the_light_file_on_fer2013_training_faces(shared_data, real_cache, monkeypatch):
    """64 faces of FER2013's training folder (not a test set): the light file against the Keras model.

    The preset's light file is int8 (dynamic range): on its 2,871 validation faces it gave the
    Keras model's prediction for 99.2 % and moved a probability by 0.11 at most
    (benchmarks/light_accuracy.py), hence the bounds; a float32 file would be within 1e-4."""
    from dam_cnn_tf.data.faces import resize_face
    from dam_cnn_tf.data.images import read_image

    root = shared_data / "fer2013" / "train"
    if not root.is_dir():
        pytest.skip(f"{root} not present")
    monkeypatch.setenv("DAMCNN_CACHE", str(real_cache))
    paths = sorted(root.rglob("*.jpg"))[::401][:64]
    faces = np.stack([resize_face(read_image(p), (150, 150)) for p in paths])
    fast = Predictor("fer2013-face-resnet", detect=False)
    slow = Predictor("fer2013-face-resnet", detect=False, runtime="keras")
    assert fast.runtime == "litert"
    p_fast, _ = fast.predict_faces(faces)
    p_slow, _ = slow.predict_faces(faces)
    quantized = preset_card("fer2013-face-resnet")["light"]["quantize"] is not None
    assert np.abs(p_fast - p_slow).max() < (0.15 if quantized else 1e-4)
    assert np.mean(p_fast.argmax(1) == p_slow.argmax(1)) >= (0.95 if quantized else 1.0)
    assert fast.opened.file.parent == light.cache_folder(preset_card("fer2013-face-resnet"))


def test_evaluate_through_the_light_file_agrees_with_keras(presets_root, tmp_path):
    from cli_helpers import invoke, synthetic_folder

    write_tiny_preset(presets_root, light="ship")
    data = synthetic_folder(tmp_path / "faces", subjects=2, per_class=2)
    common = ("evaluate", "tiny", "--data", data, "--no-detect", "--face-cache", tmp_path / "cache", "--quiet")
    by_keras = invoke(*common).output
    by_light = invoke(*common, "--runtime", "light").output
    assert by_keras.startswith("Accuracy: ") and "on 12 faces" in by_keras
    assert by_light == by_keras
    result = invoke("evaluate", presets_root / "tiny", *common[2:], "--runtime", "light", expect_ok=False)
    assert result.exit_code == 1 and "--runtime light is for presets" in result.output


def test_a_cache_that_cannot_be_written_falls_back_to_keras_in_one_line(presets_root, tmp_path, monkeypatch):
    write_tiny_preset(presets_root, light="cache")
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("DAMCNN_CACHE", str(blocked))
    said = []
    assert Predictor("tiny", detect=False, log=said.append).runtime == "keras"
    assert len(said) == 1 and "cannot write" in said[0] and said[0].endswith("using the Keras model")
    with pytest.raises(PredictError, match="cannot write preset 'tiny'"):
        Predictor("tiny", detect=False, runtime="light")


def test_the_card_records_the_validation_figures_of_the_light_file_it_names():
    """make_light_file.py --validation: the figures of the conversion the card names (not another's)
    go into the card's light entry and its paragraph."""
    from scripts_loader import build_preset_script, load_script

    def figures(accuracy, only_first, only_second, different):
        return {"accuracy": accuracy, "parity_with_keras_float32": {"different_predictions": different},
                "against_litert_float32": {"only_first_right": only_first, "only_second_right": only_second,
                                           "p_value": 0.5 if only_first != only_second else 1.0}}

    measured = {"faces": {"count": 300}, "accuracy": {"litert_float32": figures(0.6, 0, 0, 0),
                                                      "litert_dynamic": figures(0.61, 5, 2, 9),
                                                      "litert_float16": figures(0.59, 0, 3, 1)}}
    script = load_script("make_light_file")
    entry = script.validation_entry(measured, "dynamic")
    assert (entry["faces"], entry["accuracy"], entry["float32_accuracy"]) == (300, 0.61, 0.6)
    assert (entry["only_this_right"], entry["only_float32_right"], entry["mcnemar_p"]) == (5, 2, 0.5)
    assert entry["different_predictions_from_keras"] == 9
    assert script.validation_entry(measured, "float16")["only_float32_right"] == 3
    with pytest.raises(SystemExit, match="litert_float32"):
        script.validation_entry({"faces": {"count": 1}, "accuracy": {}}, None)
    card = {"light": {"name": "model.tflite", "quantize": "dynamic", "shipped": False, "tolerance": 0.05,
                      "parity": {"faces": 14, "max_abs_probability_difference": 0.02, "same_prediction": 1.0},
                      "validation": entry}}
    text = "\n".join(build_preset_script().light_markdown(card))
    assert "int8 dynamic-range" in text and "300 validation faces it scores 61.00 %" in text
    assert "(the float32 file: 60.00 %)" in text and "5 faces are right only with it and 2" in text
    del card["light"]["validation"]
    assert "validation faces" not in "\n".join(build_preset_script().light_markdown(card))
