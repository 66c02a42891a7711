"""Loaders, folds and face detection on the real images of ../shared/data (skipped when absent)."""

import collections

import numpy as np
import pytest

from data_helpers import shared_data_dir
from dam_cnn_tf.data.datasets import detect_layout, load_dataset
from dam_cnn_tf.data.faces import FacePreparer
from dam_cnn_tf.data.images import read_image
from dam_cnn_tf.data.manifest import load_manifest
from dam_cnn_tf.data.protocols import default_protocol, subject_kfold

pytestmark = pytest.mark.realdata


def _folder(name):
    path = shared_data_dir() / name
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


def test_ckplus48_counts_and_subject_independent_folds():
    root = _folder("ckplus48")
    data = load_dataset(root)
    assert detect_layout(root) == "manifest"
    assert len(data) == 981 and len(data.classes) == 7 and "neutral" not in data.classes
    subjects = data.subjects()
    assert len(set(subjects)) == 118
    assert collections.Counter(s.label for s in data.samples)["happiness"] == 207
    folds = subject_kfold(data.labels(), subjects, 10, seed=0)
    owner = {}
    for i, fold in enumerate(folds):
        for subject in set(subjects[fold.test]):
            assert owner.setdefault(subject, i) == i, f"{subject} in folds {owner[subject]} and {i}"
        assert not set(subjects[fold.test]) & set(subjects[fold.train])
    assert len(owner) == 118
    assert len(default_protocol("ckplus48").make_folds(data, seed=0)) == 10


def test_ckplus48_folder_layout_agrees_with_manifest():
    data = load_dataset(_folder("ckplus48"), layout="folders", subject_pattern=r"^(S\d+)_")
    assert len(data) == 981 and len(set(data.subjects())) == 118


def test_yale_manifest_and_face_detection_rate():
    root = _folder("yalefaces_expr")
    data = load_manifest(root / "index.csv", unknown_labels="drop")
    assert data.report.dropped_labels == {"sleepy": 15, "wink": 15}
    assert data.classes == ("neutral", "happiness", "sadness", "surprise") and len(data) == 59
    image = read_image(data.samples[0].path)
    assert image.shape == (243, 320, 3) and image.dtype == np.uint8
    result = FacePreparer(64, progress=False).prepare(data)
    rate = len(result.indices) / len(data)
    assert rate >= 0.95, result.report.summary()
    assert result.faces.shape[1:] == (64, 64, 3)
