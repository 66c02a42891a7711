"""scripts/build_preset.py end to end on a tiny run: the preset it writes is complete, is the
file its card describes, and reads and classifies as the card says."""

import hashlib
import json
import math
import shutil
import types

import numpy as np
import pytest

from dam_cnn_tf.layers.class_names import class_names_of
from dam_cnn_tf.models.model_file import load_model_file
from dam_cnn_tf.evaluation.baselines import C_LIMITS
from dam_cnn_tf.presets import PRESETS_DIR
from dam_cnn_tf.presets.packing import sha256_of
from dam_cnn_tf.recipes.plan import PlanError

from cli_helpers import invoke, synthetic_folder
from scripts_loader import build_preset_script as _script

# The tiny run's settings as a recipe file: the build checks the run against it.
TINY_RECIPE = """
backbone = "compact-tiny"
input_size = 32
fc_units = 16
encoder_units = 16
num_paths = 2
stage1_epochs = 2
stage2_epochs = 2
stage1_batch_size = 16
stage2_batch_size = 16
alpha_s = 1e-3
alpha_m = 1e-3
alpha_fc = 1e-3
"""


@pytest.fixture
def recipes(tmp_path, monkeypatch):
    """The package's recipes and a ``tiny`` one, in a folder of the test's own."""
    import dam_cnn_tf.recipes as recipes_module

    folder = tmp_path / "recipes"
    shutil.copytree(recipes_module.RECIPES_DIR, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__", "candidates"))
    (folder / "tiny.toml").write_text(TINY_RECIPE)
    monkeypatch.setattr(recipes_module, "RECIPES_DIR", folder)
    return folder


def _mcnemar_p(only_a: int, only_b: int) -> float:
    """McNemar's exact two-sided p, computed here from the binomial distribution's terms."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def test_build_packs_measures_and_describes_a_run(tmp_path, recipes):
    data = synthetic_folder(tmp_path / "faces", subjects=4, per_class=2)
    run = tmp_path / "run"
    invoke("train", "--recipe", "tiny", "--data", data, "--no-detect", "--run-dir", run, "--quiet")
    (run / "train.log").write_text("the training's output\n")
    build = _script()
    build.RECIPES["tiny"] = dict(build.RECIPES["fer2013-face-resnet"], recipe="tiny")
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
    pixels = card["baselines"]["baseline-pixels"]
    scores = {float(c): v for c, v in pixels["C_scores"].items()}  # every C tried, on the validation part
    assert len(scores) >= 4 and pixels["C"] == min(c for c, v in scores.items() if v == max(scores.values()))
    assert min(scores) < pixels["C"] < max(scores) or pixels["C"] in C_LIMITS  # never cut off by the grid
    assert f"C = {pixels['C']:g}, chosen among {min(scores):g}-{max(scores):g}" in (folder / "card.md").read_text()
    m = card["stage2_against_stage1"]
    assert m["only_first_right"] + m["only_second_right"] <= len(split["val"])
    assert m["p_value"] == pytest.approx(_mcnemar_p(m["only_first_right"], m["only_second_right"]))
    # The recipe by name and hash, and the plan the run followed (not a copy of its settings).
    assert card["recipe"] == {"name": "tiny", "sha256": hashlib.sha256((recipes / "tiny.toml").read_bytes()).hexdigest()}
    plan = json.loads((run / "plan.json").read_text())
    assert plan["settings"]["backbone_weights"] is None and card["plan"] == plan
    assert "config" not in card and not (folder / "config.toml").exists()
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

    # Built again into the same folder: refused unless asked, and the preset there left as it was.
    with pytest.raises(FileExistsError, match="--replace"):
        build.build("tiny", types.SimpleNamespace(run_dir=run, out=tmp_path / "presets"))
    assert card == json.loads((folder / "card.json").read_text())

    # A recipe that no longer says what the run did: the run is refused, naming the field.
    (recipes / "tiny.toml").write_text(TINY_RECIPE.replace("fc_units = 16", "fc_units = 8"))
    with pytest.raises(PlanError, match="settings.fc_units"):
        build.build("tiny", types.SimpleNamespace(run_dir=run, out=tmp_path / "elsewhere", replace=False))
    assert not (tmp_path / "elsewhere").exists()
    with pytest.raises(SystemExit) as refused:  # the command: one line, exit 1, before any training
        build.main(["tiny", "--run-dir", str(run), "--out", str(tmp_path / "elsewhere")])
    assert refused.value.code == 1 and not (tmp_path / "elsewhere").exists()


def _snapshot(folder):
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def test_the_package_s_presets_are_written_only_when_asked(monkeypatch, tmp_path):
    build = _script()
    written = []
    monkeypatch.setattr(build, "build", lambda name, args: written.append(args.out))  # no training, no packing
    monkeypatch.chdir(tmp_path)
    shipped = "fer2013-face-resnet"  # a preset the package ships
    options = [shipped, "--run-dir", str(tmp_path / "run"), "--skip-training"]
    before = _snapshot(PRESETS_DIR)
    build.main(options)
    assert written == [build.DEFAULT_OUT] and PRESETS_DIR not in written
    # Into the package only with --install, and over a shipped preset only with --replace too.
    with pytest.raises(SystemExit) as refused:
        build.main([*options, "--install"])
    assert refused.value.code == 1 and len(written) == 1
    assert _snapshot(PRESETS_DIR) == before
    build.main([*options, "--install", "--replace"])
    assert written[-1] == PRESETS_DIR
