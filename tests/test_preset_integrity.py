"""Every preset file is checked against the SHA-256 its card records before it is used, once per
process: a file changed inside a still valid archive is refused in one line, by from_preset and by
every command that takes a preset's name."""

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import dam_cnn_tf.checksums as checksums
import dam_cnn_tf.presets as presets
from dam_cnn_tf.cli import main
from dam_cnn_tf.models.model_file import load_model_file
from dam_cnn_tf.presets import PresetIntegrityError, checked_model_path, from_preset

from preset_helpers import change_one_weight, copy_preset, write_tiny_preset

REAL = "fer2013-face-resnet"
SHIPPED = presets.PRESETS_DIR  # the package's own presets, before a test points lookup elsewhere
REINSTALL = "pip install --force-reinstall dam-cnn-tf"


@pytest.fixture
def presets_root(tmp_path, monkeypatch):
    """Preset lookup pointed at an empty folder of the test's own."""
    root = tmp_path / "presets"
    root.mkdir()
    monkeypatch.setattr(presets, "PRESETS_DIR", root)
    return root


def _one_error_line(args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def test_the_real_preset_with_one_weight_changed_is_refused_everywhere(presets_root, tmp_path):
    folder = copy_preset(SHIPPED / REAL, presets_root)
    change_one_weight(folder / "model.keras")
    assert load_model_file(folder / "model.keras") is not None  # still a valid archive that Keras would serve
    with pytest.raises(PresetIntegrityError) as error:
        from_preset(REAL)
    message = str(error.value)
    assert str(folder / "model.keras") in message and REINSTALL in message and "\n" not in message

    image = tmp_path / "face.png"
    cv2.imwrite(str(image), np.full((150, 150, 3), 128, np.uint8))
    for args in (["predict", REAL, image, "--no-detect"], ["predict", REAL, image, "--no-detect", "--runtime", "keras"],
                 ["evaluate", REAL, "--data", tmp_path], ["export", REAL, tmp_path / "out.tflite", "--format", "litert"]):
        line = _one_error_line(args)
        assert "model.keras" in line and REINSTALL in line, (args, line)
    assert not (tmp_path / "out.tflite").exists()


def test_a_tiny_preset_is_checked_once_per_process(presets_root, monkeypatch):
    write_tiny_preset(presets_root)
    calls = []
    original = checksums.sha256_of
    monkeypatch.setattr(checksums, "sha256_of", lambda path: calls.append(path) or original(path))
    monkeypatch.setattr(checksums, "_DIGESTS", {})
    first = checked_model_path("tiny")
    assert checked_model_path("tiny") == first and len(calls) == 1
    model = from_preset("tiny")
    assert model.class_names == ("anger", "happiness", "surprise") and len(calls) == 1


@pytest.mark.parametrize("damage", ["byte", "missing", "no_hash", "other_model"])
def test_a_shipped_light_file_that_disagrees_with_its_card_is_refused(presets_root, tmp_path, damage):
    from dam_cnn_tf.presets.light import light_path

    folder = write_tiny_preset(presets_root, light="ship")
    card = json.loads((folder / "card.json").read_text())
    light = folder / "model.tflite"
    assert light_path("tiny") == light  # intact: used as it is
    if damage == "byte":
        data = bytearray(light.read_bytes())
        data[len(data) // 2] ^= 1
        light.write_bytes(bytes(data))
    elif damage == "missing":
        light.unlink()
    elif damage == "no_hash":
        del card["light"]["sha256"]
    else:
        card["light"]["made_from"] = "0" * 64
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(PresetIntegrityError) as error:
        light_path("tiny")
    message = str(error.value)
    assert "model.tflite" in message and REINSTALL in message and "\n" not in message
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), np.full((32, 32, 3), 128, np.uint8))
    line = _one_error_line(["predict", "tiny", image, "--no-detect"])
    assert "model.tflite" in line and REINSTALL in line
