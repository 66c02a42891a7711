"""scripts/build_preset.py's distilled recipes end to end on tiny data and a tiny teacher: the
teacher labels every face once, the student trains on the training part only, and the preset it
writes is complete, is the files its card describes, and its light files match its Keras model."""

import argparse
import json
import re
import shutil
import types
from pathlib import Path

import numpy as np
import pytest

import dam_cnn_tf.presets as presets
from dam_cnn_tf.models.model_file import load_model_file
from dam_cnn_tf.models.student import build_student
from dam_cnn_tf.presets.packing import sha256_of
from dam_cnn_tf.recipes import distilled as distilled_recipes
from dam_cnn_tf.recipes.distilled import distilled_recipe_path
from dam_cnn_tf.training.distillation_data import DistillationSet, load_distillation_set
from dam_cnn_tf.training.distillation_recipe import (RecipeError, check_recipe, read_recipe, teacher_of,
                                                     training_faces)

from cli_helpers import synthetic_folder
from scripts_loader import build_preset_script as _script

RECIPE = """kind = "distilled"
teacher = "tiny-teacher"
datasets = ["faces"]
select_on = "faces"
val_fraction = 0.25

[student]
input_size = 16
widths = [4, 8]
convs_per_block = [1, 1]
dense_units = [8]
dropout = 0.0
serd = true

[training]
epochs = 1
batch_size = 8
learning_rate = 1e-3
seed = 0
"""


def _args(**given):
    """build_preset.py's parsed options for a distilled preset."""
    options = dict(extra_data=[], teacher_labels=None, skip_training=False, speed_json=None, replace=False)
    return types.SimpleNamespace(**{**options, **given})


def _teacher_preset(root: Path, class_names, split_sizes) -> None:
    """A tiny stand-in for a shipped teacher: a student at 16x16, with the card fields the build reads."""
    folder = root / "tiny-teacher"
    folder.mkdir(parents=True)
    build_student(class_names, input_size=16, widths=(4,), convs_per_block=1, dense_units=(4,)).save(folder / "model.keras")
    card = {"class_names": list(class_names), "input_shape": [16, 16, 3],
            "file": {"sha256": sha256_of(folder / "model.keras")},
            "data": {"train_faces": split_sizes[0], "validation_faces": split_sizes[1]},
            "validation": {"accuracy": 0.5}, "baselines": {}}
    (folder / "card.json").write_text(json.dumps(card))


def test_shipped_recipe_is_valid():
    recipe = read_recipe(distilled_recipe_path("fer2013-student"))
    assert recipe["teacher"] == "fer2013-face-resnet" and recipe["select_on"] in recipe["datasets"]
    broken = dict(recipe, training=dict(recipe["training"], epoch=3))
    with pytest.raises(RecipeError, match=r"unknown \[training\] keys \['epoch'\]"):
        check_recipe(broken)
    with pytest.raises(RecipeError, match="not a distillation recipe"):
        check_recipe({k: v for k, v in recipe.items() if k != "kind"})
    with pytest.raises(RecipeError, match=r"light_quantize must be one of none, float16, int8, got 'int4'"):
        check_recipe(dict(recipe, shipping={"light_quantize": "int4"}))
    with pytest.raises(RecipeError, match=r"unknown \[shipping\] keys \['mirror'\]"):
        check_recipe(dict(recipe, shipping={"mirror": True}))
    with pytest.raises(RecipeError, match="calibration_faces must be a whole number of at least 16"):
        check_recipe(dict(recipe, shipping={"calibration_faces": 4}))


def test_each_data_set_may_have_its_own_teacher():
    recipe = read_recipe(distilled_recipe_path("fer2013-student"))
    assert teacher_of(recipe, recipe["select_on"]) == recipe["teacher"]
    own = dict(recipe, teachers={"rafdb": "rafdb-face-resnet"})
    check_recipe(own)
    assert (teacher_of(own, "rafdb"), teacher_of(own, "fer2013")) == ("rafdb-face-resnet", recipe["teacher"])
    with pytest.raises(RecipeError, match=r"\[teachers\] names \['ckplus'\]"):
        check_recipe(dict(recipe, teachers={"ckplus": "rafdb-face-resnet"}))


def test_training_faces_never_include_a_validation_face():
    faces = np.arange(10)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    labels = np.arange(10) % 2
    soft = np.eye(2)[labels]
    sets = [DistillationSet("a", faces, labels, np.array([0, 1, 2, 3, 4, 5]), np.array([6, 7, 8, 9]), ("x", "y"), soft),
            DistillationSet("b", faces + 100, labels, np.array([1, 3, 5, 7]), np.array([0, 2]), ("x", "y"), soft)]
    got, got_labels, got_soft = training_faces(sets, ["a", "b"])
    assert sorted(got[:, 0, 0, 0].tolist()) == [0, 1, 2, 3, 4, 5, 101, 103, 105, 107]
    assert len(got_labels) == len(got_soft) == 10
    assert training_faces(sets, ["b"])[0][:, 0, 0, 0].tolist() == [101, 103, 105, 107]


@pytest.mark.slow
def test_build_distils_packs_and_describes_a_student(tmp_path, monkeypatch):
    data = synthetic_folder(tmp_path / "faces", subjects=4, per_class=3, size=32)
    probe = load_distillation_set("faces", data, 16, val_fraction=0.25)
    monkeypatch.setattr(presets, "PRESETS_DIR", tmp_path / "shipped")
    _teacher_preset(tmp_path / "shipped", probe.class_names, (len(probe.train), len(probe.val)))
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "tiny-student.toml").write_text(RECIPE)
    monkeypatch.setattr(distilled_recipes, "DISTILLED_DIR", tmp_path / "recipes")
    build = _script()
    distilled = build.sibling_script("build_distilled")
    monkeypatch.setitem(distilled.DISTILLED_PRESETS, "tiny-student",
                        dict(distilled.DISTILLED_PRESETS["fer2013-student"], datasets={"faces": "synthetic faces"}))
    run = tmp_path / "run"
    args = _args(data=data, run_dir=run, out=tmp_path / "out")
    distilled.build_distilled("tiny-student", args, argparse.ArgumentParser(), build)

    folder = tmp_path / "out" / "tiny-student"
    card = json.loads((folder / "card.json").read_text())
    assert card["file"]["sha256"] == sha256_of(folder / "model.keras")
    light = card["light"]
    assert light["shipped"] and light["sha256"] == sha256_of(folder / light["name"])
    assert light["made_from"] == card["file"]["sha256"]
    for parity in (light["parity"], light["validation_parity"]):
        assert parity["max_abs_probability_difference"] <= light["tolerance"] and parity["same_prediction"] == 1.0
    assert card["recipe"]["sha256"] == sha256_of(tmp_path / "recipes" / "tiny-student.toml")
    assert card["data"]["datasets"]["faces"]["train_faces"] == len(probe.train)
    assert card["training"]["train_faces"] == {"faces": len(probe.train)}  # the validation part stays out
    assert card["validation"]["num_samples"] == len(probe.val)
    assert len(list((run / "teacher").glob("faces-16-*.npz"))) == 1  # the teacher's labels, kept for the next build
    assert (folder / "card.md").read_text().startswith("# Preset `tiny-student`")
    for name in ("classes.json", "train.log"):
        assert (folder / name).is_file()

    model = load_model_file(folder / "model.keras")
    got = build.check_faces(model, card["input_shape"][0])
    assert got["labels"] == card["check_faces"]["labels"]
    np.testing.assert_allclose(got["probabilities"], card["check_faces"]["probabilities"], atol=1e-5)

    # built again from the same run: the student is reused, not trained again
    trained = (run / "model.keras").stat().st_mtime_ns
    with pytest.raises(FileExistsError):  # a preset folder is replaced only when asked
        distilled.build_distilled("tiny-student", _args(**{**vars(args), "skip_training": True}),
                                  argparse.ArgumentParser(), build)
    distilled.build_distilled("tiny-student", _args(**{**vars(args), "skip_training": True, "replace": True}),
                              argparse.ArgumentParser(), build)
    again = json.loads((folder / "card.json").read_text())
    assert (run / "model.keras").stat().st_mtime_ns == trained
    assert again["check_faces"] == card["check_faces"] and again["validation"] == card["validation"]

    # [shipping] changes how the same run is served, not its training: packed again with the mirror
    # average and an int8 light file scaled on training faces, whose answers are the figures
    recipe_path = tmp_path / "recipes" / "tiny-student.toml"
    recipe_path.write_text(RECIPE + '\n[shipping]\nmirror_average = true\nlight_quantize = "int8"\ncalibration_faces = 16\n')
    # this student's answers are nearly uniform after one epoch: int8's steps of 1/256 change its
    # classes, so the build refuses to ship it, and the preset already there stays
    before = sha256_of(folder / "card.json")
    with pytest.raises(SystemExit, match="the int8 light file gives the Keras model's class to only"):
        distilled.build_distilled("tiny-student", _args(**{**vars(args), "skip_training": True, "replace": True}),
                                  argparse.ArgumentParser(), build)
    assert sha256_of(folder / "card.json") == before and not list(folder.parent.glob(".*staging"))
    monkeypatch.setattr(distilled, "MIN_QUANTIZED_AGREEMENT", 0.0)
    distilled.build_distilled("tiny-student", _args(**{**vars(args), "skip_training": True, "replace": True}),
                              argparse.ArgumentParser(), build)
    served = json.loads((folder / "card.json").read_text())
    assert (run / "model.keras").stat().st_mtime_ns == trained
    assert served["mirror_average"] and served["light"]["quantize"] == "int8" and served["light"]["shipped"]
    assert served["served"]["flops_per_face"] == 2 * served["student"]["flops_per_face"]
    mirrored = load_model_file(folder / "model.keras")
    assert mirrored.get_layer("mirror_average") is not None
    from dam_cnn_tf.presets.light import LightModel

    light_model = LightModel(folder / "model.tflite")
    faces = probe.faces[probe.val].astype(np.float32)
    right = light_model(faces)["probabilities"].argmax(1) == probe.labels[probe.val]
    assert served["validation"]["accuracy"] == pytest.approx(right.mean())  # the light file's figures
    keras_right = mirrored.predict(faces, verbose=0)["probabilities"].argmax(1) == probe.labels[probe.val]
    assert served["validation_by_dataset"]["faces"]["keras_model_accuracy"] == pytest.approx(keras_right.mean())
    assert "mirror average" in (folder / "card.md").read_text() and "int8" in (folder / "card.md").read_text()
    recipe_path.write_text(RECIPE)

    # benchmarks/student_runs.py reads the run as the build did: the same validation figures
    from benchmarks import student_runs

    shutil.copytree(run, tmp_path / "run-again")
    out = tmp_path / "runs.json"
    student_runs.main(["--run", str(run), "--run", str(tmp_path / "run-again"), "--data", f"faces={data}",
                       "--teacher-labels", str(run / "teacher"), "--json", str(out)])
    figures = json.loads(out.read_text())["figures"]["faces"]
    assert figures["run"]["validation_accuracy"] == pytest.approx(card["validation"]["accuracy"])
    assert figures["teacher_validation_accuracy"] == pytest.approx(card["teacher"]["validation_accuracy_from_its_labels"])
    assert figures["run-again"]["against_first"]["only_first_right"] == 0 == figures["run-again"]["against_first"]["only_second_right"]
    with pytest.raises(SystemExit):  # labels for other faces or another teacher are not computed here
        student_runs.main(["--run", str(run), "--data", f"faces={data}", "--teacher-labels", str(tmp_path / "none")])


def test_a_recipe_needs_each_of_its_data_sets(tmp_path):
    build = _script()
    args = _args(data=tmp_path, run_dir=tmp_path / "run", out=tmp_path / "out")
    with pytest.raises(SystemExit):  # rafdb= is missing
        build.sibling_script("build_distilled").build_distilled("fer2013-student", args, argparse.ArgumentParser(), build)


@pytest.mark.parametrize("name", presets.available_presets())
def test_each_shipped_card_md_is_its_card_json_rendered(name):
    """card.md is made from card.json by the script that writes it (a distilled preset's by
    build_distilled.py), so a card rewritten later (an eye template, a light file) keeps both in step."""
    card = presets.preset_card(name)
    assert _script().any_card_markdown(card) == (presets.preset_dir(name) / "card.md").read_text(encoding="utf-8")


def test_each_other_data_sets_baselines_come_from_its_teachers_card():
    """A distilled card puts the trivial baselines beside the student on every data set it reports,
    taken from the teacher's card only where that card measured them on the same validation faces."""
    distilled = _script().sibling_script("build_distilled")
    recipe = {"teacher": "ta", "teachers": {"b": "tb", "c": "tc"}, "select_on": "a"}
    probe = {"label": "logistic regression on frozen backbone features", "C": 0.01, "accuracy": 0.7}
    cards = {"ta": {"baselines": {"frozen": dict(probe, accuracy=0.5)}, "data": {"validation_faces": 4}},
             "tb": {"baselines": {"frozen": probe}, "data": {"validation_faces": 3}},
             "tc": {"baselines": {"frozen": probe}, "data": {"validation_faces": 9}}}  # another split: left out
    sets = [types.SimpleNamespace(name=n, val=np.arange(k)) for n, k in (("a", 4), ("b", 3), ("c", 5))]
    assert distilled.other_baselines(recipe, sets, cards) == {"b": {"source": "tb", "baselines": {"frozen": probe}}}


def test_runs_compared_side_by_side_share_their_faces(tmp_path):
    """benchmarks/student_runs.py compares runs only on one split of the same data sets by the same teachers."""
    from benchmarks import student_runs

    recipe = {"datasets": ["faces"], "val_fraction": 0.25, "teacher": "t", "training": {"seed": 0},
              "student": {"input_size": 16}}
    for name, changes in (("a", {}), ("b", {"student": {"input_size": 16, "widths": [8]}}),
                          ("c", {"val_fraction": 0.1}), ("d", {"teachers": {"faces": "u"}})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "recipe.json").write_text(json.dumps({**recipe, **changes}))
    assert student_runs.read_runs([tmp_path / "a", tmp_path / "b"])["val_fraction"] == 0.25  # another width: fine
    for other in ("c", "d"):
        with pytest.raises(SystemExit, match=re.escape(f"--run {tmp_path / other}:")):
            student_runs.read_runs([tmp_path / "a", tmp_path / other])
