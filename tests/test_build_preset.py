"""scripts/build_preset.py end to end on a tiny run: the preset it writes is complete, is the
file its card describes, and reads and classifies as the card says."""

import importlib.util
import json
import types
from pathlib import Path

import numpy as np

from dam_cnn_tf.layers.class_names import class_names_of
from dam_cnn_tf.models.model_file import load_model_file
from dam_cnn_tf.presets.packing import sha256_of

from cli_helpers import TINY_OPTIONS, invoke, synthetic_folder

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_preset.py"


def _script():
    spec = importlib.util.spec_from_file_location("build_preset", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_packs_measures_and_describes_a_run(tmp_path):
    data = synthetic_folder(tmp_path / "faces", subjects=4, per_class=2)
    run = tmp_path / "run"
    invoke("train", "--data", data, "--no-detect", "--run-dir", run, *TINY_OPTIONS)
    (run / "train.log").write_text("the training's output\n")
    build = _script()
    build.RECIPES["tiny"] = dict(build.RECIPES["fer2013-face-resnet"], config="examples/configs/compact-cpu.toml")
    build.build("tiny", types.SimpleNamespace(run_dir=run, out=tmp_path / "presets"))

    folder = tmp_path / "presets" / "tiny"
    assert sorted(p.name for p in (tmp_path / "presets").iterdir()) == ["tiny"]  # no staging folder left
    card = json.loads((folder / "card.json").read_text())
    assert card["file"]["sha256"] == sha256_of(folder / "model.keras")
    # A tiny model's light file fits beside it: shipped, and checked against the Keras model.
    light = card["light"]
    assert light["shipped"] and light["sha256"] == sha256_of(folder / "model.tflite")
    assert light["made_from"] == card["file"]["sha256"] and light["parity"]["max_abs_probability_difference"] < 1e-4
    assert "## Light file" in (folder / "card.md").read_text()
    split = json.loads((run / "split.json").read_text())
    assert card["data"]["validation_faces"] == len(split["val"]) and card["validation"]["num_samples"] == len(split["val"])
    assert set(card["baselines"]) == {"baseline-pixels"}  # no pretrained weights: no frozen probe
    assert 0.0 <= card["stage2_against_stage1"]["p_value"] <= 1.0
    assert card["float16_parity"]["max_abs_probability_difference"] < 1e-2
    assert (folder / "train.log").read_text() == "the training's output\n"
    assert (folder / "card.md").read_text().startswith("# Preset `tiny`")

    model = load_model_file(folder / "model.keras")
    names = json.loads((run / "classes.json").read_text())["class_names"]
    assert class_names_of(model) == names == card["class_names"]
    assert type(model.get_layer("read_faces_as")).__name__ == "ReadFacesAs"  # the recipe's grey reading
    assert card["mirror_average"] and model.get_layer("mirror_average") is not None
    size = card["input_shape"][0]
    got = build.check_faces(model, size)
    assert got["labels"] == card["check_faces"]["labels"]
    np.testing.assert_allclose(got["probabilities"], card["check_faces"]["probabilities"], atol=1e-5)
