"""The synthetic face dataset: determinism, layout, masks, and that the expression is learnable."""

import csv

import cv2
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dam_cnn_tf.data.labels import CANONICAL_LABELS, SEVEN_CLASSES
from dam_cnn_tf.data.synthetic import (
    EXPRESSIONS,
    SyntheticDataError,
    make_synthetic_faces,
    random_identity,
    render_face,
    synthetic_dataset_to_folder,
)


@pytest.fixture(scope="module")
def faces():
    return make_synthetic_faces(num_subjects=6, images_per_class=2, image_size=48, seed=3)


def test_same_seed_same_arrays_different_seed_different():
    a = make_synthetic_faces(num_subjects=2, images_per_class=2, image_size=32, seed=7)
    b = make_synthetic_faces(num_subjects=2, images_per_class=2, image_size=32, seed=7)
    c = make_synthetic_faces(num_subjects=2, images_per_class=2, image_size=32, seed=8)
    assert len(a) == len(b) == len(c) == 2 * 7 * 2
    for sa, sb in zip(a.samples, b.samples):
        np.testing.assert_array_equal(sa.image, sb.image)
        np.testing.assert_array_equal(sa.extras["expression_mask"], sb.extras["expression_mask"])
        assert (sa.label, sa.subject, sa.attributes) == (sb.label, sb.subject, sb.attributes)
    assert any(not np.array_equal(sa.image, sc.image) for sa, sc in zip(a.samples, c.samples))


def test_shapes_dtypes_and_layout(faces):
    assert faces.classes == SEVEN_CLASSES
    for s in faces.samples:
        assert s.image.shape == (48, 48, 3) and s.image.dtype == np.uint8
        assert s.extras["expression_mask"].shape == (48, 48) and s.extras["expression_mask"].dtype == bool
        assert s.attributes["gender"] in ("a", "b")
        assert s.subject.startswith("syn")
    subjects = sorted(set(faces.subjects()))
    assert subjects == [f"syn{i:03d}" for i in range(6)]
    for subject in subjects:
        labels = [s.label for s in faces.samples if s.subject == subject]
        assert sorted(labels) == sorted(SEVEN_CLASSES * 2)
        # The attribute is a property of the subject, not of the image.
        assert len({s.attributes["gender"] for s in faces.samples if s.subject == subject}) == 1
    assert set(faces.attribute("gender")) == {"a", "b"}
    # Near-duplicates differ: the two images of one subject and class are not identical.
    first = [s for s in faces.samples if s.subject == "syn000" and s.label == "anger"]
    assert not np.array_equal(first[0].image, first[1].image)


def test_contempt_and_subset_of_classes():
    ds = make_synthetic_faces(num_subjects=1, images_per_class=1, image_size=32, classes=CANONICAL_LABELS)
    assert [s.label for s in ds.samples] == list(CANONICAL_LABELS)
    ds = make_synthetic_faces(num_subjects=1, images_per_class=1, image_size=32, classes=("happiness", "fear"))
    assert ds.classes == ("happiness", "fear")
    np.testing.assert_array_equal(ds.labels(), [0, 1])


@pytest.mark.parametrize(
    "kwargs", [dict(classes=("joy",)), dict(classes=()), dict(num_subjects=0), dict(images_per_class=0),
               dict(image_size=8)]
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(SyntheticDataError):
        make_synthetic_faces(**{"num_subjects": 1, "images_per_class": 1, **kwargs})


def test_masks_non_empty_and_inside_the_face(faces):
    for s in faces.samples:
        mask, face = s.extras["expression_mask"], s.extras["face_mask"]
        assert 0.03 < mask.mean() < 0.4
        assert np.all(face[mask]), "expression mask leaks outside the face"
        # Brows and eyes in the upper part of the mask, the mouth in the lower: two separated bands.
        rows = np.flatnonzero(mask.any(1))
        assert np.diff(rows).max() > 1


def test_expression_only_changes_masked_pixels():
    """Without per-image jitter, changing only the expression changes only masked pixels."""
    rng = np.random.default_rng(0)
    for gender in ("a", "b"):
        ident = random_identity(rng, gender)
        base, base_mask, _ = render_face(ident, EXPRESSIONS["neutral"], 64)
        for label in CANONICAL_LABELS[1:]:
            img, mask, _ = render_face(ident, EXPRESSIONS[label], 64)
            diff = np.abs(img.astype(int) - base.astype(int)).max(-1)
            assert diff.max() > 30, label
            assert np.all(diff[~(mask | base_mask)] == 0), label


def test_expression_difference_lives_in_the_masks(faces):
    """Same subject, other expression: the strong pixel changes all fall in the masks. Other
    subject, same expression: most of them fall outside (face shape, hair, colours)."""

    def inside_share(a, b):
        strong = np.abs(a.image.astype(int) - b.image.astype(int)).sum(-1) > 60  # well above the noise
        union = a.extras["expression_mask"] | b.extras["expression_mask"]
        return strong[union].sum() / max(strong.sum(), 1), union.mean()

    by_key = {}
    for s in faces.samples:
        by_key.setdefault((s.subject, s.label), []).append(s)
    same_subject, same_expression, areas = [], [], []
    for subject in ("syn000", "syn001", "syn002"):
        for label in ("anger", "happiness", "sadness", "surprise"):
            share, area = inside_share(by_key[(subject, "neutral")][0], by_key[(subject, label)][0])
            same_subject.append(share)
            areas.append(area)
            other = f"syn{int(subject[3:]) + 3:03d}"
            same_expression.append(inside_share(by_key[(subject, label)][0], by_key[(other, label)][0])[0])
    # The masks cover a minority of the pixels but hold the expression change.
    assert np.mean(areas) < 0.35
    assert np.min(same_subject) > 0.9
    assert np.mean(same_expression) < 0.6


def test_learnable_by_a_linear_model_across_subjects():
    """A linear model on 16x16 grey pixels recognises the expressions of subjects it never saw."""
    ds = make_synthetic_faces(num_subjects=12, images_per_class=4, image_size=32, seed=1)
    grey = [cv2.cvtColor(s.image, cv2.COLOR_RGB2GRAY) for s in ds.samples]
    x = np.stack([cv2.resize(g, (16, 16), interpolation=cv2.INTER_AREA) for g in grey]).reshape(len(ds), -1) / 255.0
    y, groups = ds.labels(), ds.subjects()
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=300))
    folds = GroupKFold(n_splits=3)
    chance = 1 / len(ds.classes)
    accuracy = cross_val_score(model, x, y, groups=groups, cv=folds).mean()
    assert accuracy > 2 * chance, accuracy
    # Shuffled labels score near chance: the accuracy comes from the expression, not from leakage.
    shuffled = np.random.default_rng(0).permutation(y)
    assert cross_val_score(model, x, shuffled, groups=groups, cv=folds).mean() < 1.6 * chance


def test_generation_is_fast():
    import time

    start = time.perf_counter()
    make_synthetic_faces(num_subjects=12, images_per_class=6, image_size=64)
    assert time.perf_counter() - start < 10  # about 1 s on a 2-core machine


def test_folder_round_trip(faces, tmp_path):
    root = synthetic_dataset_to_folder(faces.subset(range(20)), tmp_path / "syn")
    with open(root / "index.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 20
    assert list(rows[0]) == ["path", "label", "subject", "gender"]
    for row, sample in zip(rows, faces.samples[:20]):
        assert row["path"].startswith(row["label"] + "/") and row["path"].endswith(".png")
        assert (row["label"], row["subject"], row["gender"]) == (
            sample.label, sample.subject, sample.attributes["gender"]
        )
        image = cv2.cvtColor(cv2.imread(str(root / row["path"])), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(image, sample.image)
    assert len({row["path"] for row in rows}) == 20
    # Nothing but the dataset was left beside it.
    assert [p.name for p in tmp_path.iterdir()] == ["syn"]


def test_folder_refuses_non_empty_target_and_cleans_up(faces, tmp_path):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "file.txt").write_text("x")
    with pytest.raises(SyntheticDataError, match="busy"):
        synthetic_dataset_to_folder(faces, target)
    broken = faces.subset(range(3))
    broken.samples[2].image = None
    with pytest.raises(SyntheticDataError):
        synthetic_dataset_to_folder(broken, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]
