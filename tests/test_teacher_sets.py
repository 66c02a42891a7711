"""presets.teacher_sets: the faces a distilled preset learns from, with its teachers' labels."""

import numpy as np
import pytest

from dam_cnn_tf.presets import PresetError, teacher_sets
from dam_cnn_tf.training.distillation_data import load_distillation_set


def test_teachers_must_share_their_classes(monkeypatch):
    cards = {"ta": {"class_names": ["a", "b"]}, "tb": {"class_names": ["a", "b"]}, "tc": {"class_names": ["b", "a"]}}
    monkeypatch.setattr(teacher_sets, "preset_card", cards.__getitem__)
    recipe = {"teacher": "ta", "teachers": {"y": "tb"}, "datasets": ["x", "y"]}
    assert teacher_sets.teacher_class_names(recipe) == ("a", "b")
    with pytest.raises(PresetError, match="teacher tc"):  # another order is another labelling
        teacher_sets.teacher_class_names({**recipe, "teachers": {"y": "tc"}})


def test_labels_missing_from_the_folder_are_refused_without_a_predictor(tmp_path, monkeypatch):
    """Read back only: a folder without the labels names the data set and its teacher."""
    from cli_helpers import synthetic_folder

    data = synthetic_folder(tmp_path / "faces", subjects=4, per_class=2, size=16)
    cards = {"t": {"class_names": list(load_distillation_set("faces", data, 16).class_names)}}
    monkeypatch.setattr(teacher_sets, "preset_card", cards.__getitem__)
    monkeypatch.setattr(teacher_sets, "teacher_fingerprint_of", lambda name, classes: f"{name}-fingerprint")
    recipe = {"teacher": "t", "datasets": ["faces"], "val_fraction": 0.25, "training": {"seed": 0},
              "student": {"input_size": 16}}
    with pytest.raises(PresetError, match="faces's faces by its teacher t"):
        teacher_sets.teacher_labelled_sets(recipe, {"faces": data}, tmp_path / "labels")
    # with a predictor the labels are made, kept, and read back without it
    sets = teacher_sets.teacher_labelled_sets(
        recipe, {"faces": data}, tmp_path / "labels",
        predict=lambda s: np.full((len(s.faces), len(s.class_names)), 1 / len(s.class_names), np.float32), log=print)
    again = teacher_sets.teacher_labelled_sets(recipe, {"faces": data}, tmp_path / "labels")
    np.testing.assert_array_equal(sets[0].soft, again[0].soft)
    assert again[0].soft.shape == (len(again[0].faces), len(cards["t"]["class_names"]))
