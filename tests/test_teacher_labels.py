"""The teacher-label cache: written once, read back only for the same faces and teacher."""

import numpy as np
import pytest

from dam_cnn_tf.training.teacher_labels import (TeacherLabelsError, cached_teacher_labels, load_teacher_labels,
                                                save_teacher_labels, teacher_fingerprint, teacher_probabilities)

NAMES = ("a", "b", "c")
TEACHER = teacher_fingerprint("0" * 64, 150, NAMES)


@pytest.fixture
def faces():
    return np.random.default_rng(0).integers(0, 255, (5, 6, 6, 3), dtype=np.uint8)


@pytest.fixture
def stored(tmp_path, faces):
    probabilities = np.random.default_rng(1).dirichlet(np.ones(3), 5).astype(np.float32)
    return save_teacher_labels(tmp_path / "labels.npz", probabilities, faces, TEACHER, NAMES), probabilities


def test_round_trip(stored, faces):
    path, probabilities = stored
    np.testing.assert_array_equal(load_teacher_labels(path, faces, TEACHER, NAMES), probabilities)


def test_refuses_other_faces(stored, faces):
    path, _ = stored
    changed = faces.copy()
    changed[2, 0, 0, 0] ^= 1  # one pixel
    with pytest.raises(TeacherLabelsError, match="stale: made from other faces"):
        load_teacher_labels(path, changed, TEACHER, NAMES)
    with pytest.raises(TeacherLabelsError, match="stale: made from other faces"):
        load_teacher_labels(path, faces[::-1], TEACHER, NAMES)  # same faces, another order
    with pytest.raises(TeacherLabelsError, match="4 given"):
        load_teacher_labels(path, faces[:4], TEACHER, NAMES)


def test_refuses_another_teacher_or_class_order(stored, faces):
    path, _ = stored
    for other in (teacher_fingerprint("1" * 64, 150, NAMES), teacher_fingerprint("0" * 64, 112, NAMES)):
        with pytest.raises(TeacherLabelsError, match="another teacher"):
            load_teacher_labels(path, faces, other, NAMES)
    with pytest.raises(TeacherLabelsError, match="stale: classes"):
        load_teacher_labels(path, faces, TEACHER, ("b", "a", "c"))


def test_damaged_or_missing_file_is_one_line_naming_it(tmp_path, faces):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    for path, reason in ((bad, "unreadable"), (tmp_path / "none.npz", "no such file")):
        with pytest.raises(TeacherLabelsError, match=reason) as info:
            load_teacher_labels(path, faces, TEACHER, NAMES)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_cached_labels_are_computed_once_and_a_stale_file_is_never_overwritten(tmp_path, faces):
    calls = []

    def compute():
        calls.append(1)
        return np.full((5, 3), 1 / 3, np.float32)

    path = tmp_path / "cache.npz"
    first = cached_teacher_labels(path, faces, TEACHER, NAMES, compute)
    second = cached_teacher_labels(path, faces, TEACHER, NAMES, compute)
    assert len(calls) == 1
    np.testing.assert_array_equal(first, second)
    before = path.read_bytes()
    with pytest.raises(TeacherLabelsError, match="stale"):
        cached_teacher_labels(path, faces[:, ::-1].copy(), TEACHER, NAMES, compute)
    assert len(calls) == 1 and path.read_bytes() == before


def test_teacher_sees_each_face_enlarged_to_its_input():
    seen = []

    def predict(batch):
        seen.append(batch.shape)
        return np.tile(batch.mean(axis=(1, 2, 3))[:, None], (1, 3)) / 255.0

    faces = np.full((5, 4, 4, 3), 51, np.uint8)
    out = teacher_probabilities(predict, faces, input_size=12, batch_size=2)
    assert seen == [(2, 12, 12, 3), (2, 12, 12, 3), (1, 12, 12, 3)]
    np.testing.assert_allclose(out, 0.2, atol=1e-6)
