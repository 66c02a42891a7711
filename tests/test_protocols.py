"""Evaluation protocols (§4.1.2): folds, subject grouping, validation carving, JSON."""

import json

import numpy as np
import pytest

from dam_cnn_tf.data.protocols import (
    Fold, Protocol, carve_validation, cross_dataset, default_protocol, leave_one_subject_out, load_folds,
    predefined_split, save_folds, stratified_kfold, subject_kfold,
)
from dam_cnn_tf.data.samples import Dataset, Sample


def _toy(n_subjects=12, per_subject=6, classes=("anger", "happiness", "sadness"), seed=0):
    rng = np.random.default_rng(seed)
    samples = [Sample(f"s{s}_{i}.png", classes[rng.integers(len(classes))], subject=f"S{s:03d}")
               for s in range(n_subjects) for i in range(per_subject)]
    return Dataset("toy", samples, tuple(classes))


def _assert_partition(folds, n):
    tests = np.concatenate([f.test for f in folds])
    np.testing.assert_array_equal(np.sort(tests), np.arange(n))  # each sample tested exactly once
    for f in folds:
        assert set(f.train) | set(f.test) | set(f.val) == set(range(n))


def test_stratified_kfold_partitions_and_stratifies():
    labels = np.repeat([0, 1], [40, 20])
    folds = stratified_kfold(labels, 5, seed=1)
    _assert_partition(folds, 60)
    for f in folds:
        assert np.bincount(labels[f.test]).tolist() == [8, 4]
    assert [f.test.tolist() for f in folds] == [f.test.tolist() for f in stratified_kfold(labels, 5, seed=1)]
    assert [f.test.tolist() for f in folds] != [f.test.tolist() for f in stratified_kfold(labels, 5, seed=2)]


def test_subject_folds_never_share_a_subject():
    data = _toy()
    subjects = data.subjects()
    folds = subject_kfold(data.labels(), subjects, 4, seed=0)
    _assert_partition(folds, len(data))
    seen = set()
    for f in folds:
        test_subjects = set(subjects[f.test])
        assert not test_subjects & set(subjects[f.train])
        assert not test_subjects & seen
        seen |= test_subjects
    with pytest.raises(ValueError, match="at least 20 subjects, found 12"):
        subject_kfold(data.labels(), subjects, 20)


def test_leave_one_subject_out():
    data = _toy(n_subjects=5, per_subject=3)
    folds = leave_one_subject_out(data.subjects())
    assert len(folds) == 5 and folds[0].name == "subject-S000"
    for f in folds:
        assert len(set(data.subjects()[f.test])) == 1 and len(f.test) == 3


def test_predefined_split_fer2013_and_sfew():
    splits = ["train", "public_test", "private_test", "train", "private_test"]
    fold = default_protocol("FER2013").make_folds(
        Dataset("fer", [Sample(None, "anger", split=s) for s in splits], ("anger",)))[0]
    assert fold.train.tolist() == [0, 3] and fold.val.tolist() == [1] and fold.test.tolist() == [2, 4]
    sfew = predefined_split(["train", "val", "train"], train=("train",), test=("val",))
    assert sfew.train.tolist() == [0, 2] and sfew.test.tolist() == [1]
    with pytest.raises(ValueError, match="no sample in test"):
        predefined_split(["train"], test=("test",))


def test_validation_comes_from_train_only_and_is_grouped():
    data = _toy(n_subjects=20)
    labels, subjects = data.labels(), data.subjects()
    for fold in subject_kfold(labels, subjects, 5, seed=0):
        carved = carve_validation(fold, labels, subjects, fraction=0.2, seed=0)
        assert set(carved.val) <= set(fold.train) and len(carved.val) > 0
        assert set(carved.train) | set(carved.val) == set(fold.train)
        np.testing.assert_array_equal(carved.test, fold.test)
        assert not set(subjects[carved.val]) & set(subjects[carved.train])
    ungrouped = carve_validation(Fold("f", np.arange(50), [50, 51]), np.arange(52) % 2, None, 0.2, 0)
    assert len(ungrouped.val) == 10 and not set(ungrouped.val) & {50, 51}


def test_default_protocols_follow_the_paper():
    expected = {"CK+": 10, "jaffe": 10, "TFEID": 5, "BAUM-2i": 7}
    for name, k in expected.items():
        protocol = default_protocol(name)
        assert protocol.kind == "kfold" and protocol.k == k and protocol.grouped
    assert default_protocol("sfew").test_splits == ("val",)
    assert default_protocol("fer2013").test_splits == ("private_test",)
    with pytest.raises(ValueError, match="no default protocol for dataset 'kdef'"):
        default_protocol("kdef")


def test_protocol_make_folds_groups_and_carves_validation():
    data = _toy(n_subjects=14)
    folds = Protocol("p", "kfold", k=7).make_folds(data, seed=3, val_fraction=0.15)
    assert len(folds) == 7
    subjects = data.subjects()
    for f in folds:
        parts = [set(subjects[p]) for p in (f.train, f.val, f.test)]
        assert len(f.val) and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])


def test_cross_dataset_uses_common_classes():
    a = Dataset("ck", [Sample("a1", "anger"), Sample("a2", "contempt"), Sample("a3", "happiness")],
                ("anger", "contempt", "happiness"))
    b = Dataset("jaffe", [Sample("b1", "happiness"), Sample("b2", "neutral"), Sample("b3", "anger")],
                ("neutral", "anger", "happiness"))
    combined, fold = cross_dataset(a, b)
    assert combined.classes == ("anger", "happiness")
    assert [s.path for s in combined.samples] == ["a1", "a3", "b1", "b3"]
    assert fold.train.tolist() == [0, 1] and fold.test.tolist() == [2, 3]


def test_folds_round_trip_through_json(tmp_path):
    folds = subject_kfold(_toy().labels(), _toy().subjects(), 3, seed=0)
    folds = [carve_validation(f, _toy().labels(), _toy().subjects(), 0.2) for f in folds]
    path = tmp_path / "folds.json"
    save_folds(path, folds, dataset="toy", protocol="3-fold")
    assert json.loads(path.read_text())["meta"] == {"dataset": "toy", "protocol": "3-fold"}
    again = load_folds(path)
    for a, b in zip(folds, again):
        assert a.name == b.name
        for part in ("train", "val", "test"):
            np.testing.assert_array_equal(getattr(a, part), getattr(b, part))
    assert [p.name for p in tmp_path.iterdir()] == ["folds.json"]


def test_overlapping_fold_is_refused():
    with pytest.raises(ValueError, match="train and test share"):
        Fold("bad", [0, 1, 2], [2, 3])
