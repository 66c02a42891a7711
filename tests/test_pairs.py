"""MPAE sample pairs (paper §3.3.1, Eq. 8; §4.3.2 DAM-CNN-g)."""

import logging
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dam_cnn_tf.data.pairs import (
    PairSamplingError,
    attribute_pair_targets,
    pair_target_schedule,
    sample_pair_targets,
)


def _labels(n=200, classes=5, seed=0):
    return np.random.default_rng(seed).integers(0, classes, n)


def test_targets_share_the_anchor_class_and_are_distinct_others():
    labels = _labels()
    targets = sample_pair_targets(labels, 4, seed=1)
    assert targets.shape == (200, 4) and targets.dtype == np.int64
    assert np.all(labels[targets] == labels[:, None])
    assert not np.any(targets == np.arange(200)[:, None])
    # Every class here has well over 4 members: the 4 paths get 4 different targets.
    assert all(len(set(row)) == 4 for row in targets.tolist())


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.integers(0, 3), min_size=1, max_size=40),
    num_paths=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
)
def test_pair_invariants_for_any_labels(labels, num_paths, seed):
    labels = np.array(labels)
    targets = sample_pair_targets(labels, num_paths, seed=seed)
    n = len(labels)
    assert targets.shape == (n, num_paths)
    assert np.all((targets >= 0) & (targets < n))
    assert np.all(labels[targets] == labels[:, None])
    for i in range(n):
        others = int((labels == labels[i]).sum()) - 1
        row = targets[i].tolist()
        if others == 0:
            assert row == [i] * num_paths  # a class of one: the anchor is its own target
        else:
            assert i not in row
            # As many distinct targets as the class allows.
            assert len(set(row)) == min(num_paths, others)


def test_draws_are_uniform_over_the_other_class_members():
    labels = np.array([0] * 5 + [1] * 3)
    counts = np.zeros((8, 8))
    for epoch in range(2000):
        t = sample_pair_targets(labels, 2, seed=0, epoch=epoch)
        np.add.at(counts, (np.repeat(np.arange(8), 2), t.ravel()), 1)
    # Anchor 0 (class 0): each of samples 1..4 in about half the draws (2 of 4 others per epoch).
    np.testing.assert_allclose(counts[0, 1:5] / 2000, 0.5, atol=0.05)
    # Anchor 5 (class 1, two others, two paths): both others every epoch.
    np.testing.assert_array_equal(counts[5, 6:8], [2000, 2000])
    assert counts[0, 0] == counts[5, 5] == 0


def test_seed_and_epoch_reproducible_and_different():
    labels = _labels()
    a = sample_pair_targets(labels, 3, seed=5, epoch=2)
    np.testing.assert_array_equal(a, sample_pair_targets(labels, 3, seed=5, epoch=2))
    assert not np.array_equal(a, sample_pair_targets(labels, 3, seed=5, epoch=3))
    assert not np.array_equal(a, sample_pair_targets(labels, 3, seed=6, epoch=2))


def test_schedule_resamples_per_epoch_or_keeps_a_fixed_table():
    labels = _labels()
    fresh = pair_target_schedule(labels, 2, seed=3)
    np.testing.assert_array_equal(fresh(4), sample_pair_targets(labels, 2, seed=3, epoch=4))
    assert not np.array_equal(fresh(0), fresh(1))
    fixed = pair_target_schedule(labels, 2, seed=3, resample=False)
    np.testing.assert_array_equal(fixed(0), fixed(7))


def test_include_self_when_asked():
    labels = np.zeros(3, np.int64)
    hits = sum(np.any(sample_pair_targets(labels, 1, seed=0, exclude_self=False, epoch=e)[:, 0] == np.arange(3))
               for e in range(50))
    assert hits > 0
    # With all three members allowed, three paths take all three, the anchor included.
    t = sample_pair_targets(labels, 3, seed=0, exclude_self=False)
    assert all(sorted(row) == [0, 1, 2] for row in t.tolist())


def test_attribute_mode_decoder_j_gets_value_j():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 300)
    gender = rng.choice(["male", "female"], 300)
    result = attribute_pair_targets(labels, gender, seed=2)
    assert result.values == ("female", "male")
    assert result.targets.shape == (300, 2) and result.fallbacks == 0
    assert np.all(labels[result.targets] == labels[:, None])
    assert np.all(gender[result.targets[:, 0]] == "female")
    assert np.all(gender[result.targets[:, 1]] == "male")
    assert not np.any(result.targets == np.arange(300)[:, None])
    np.testing.assert_array_equal(result.targets, sample_pair_targets(labels, 2, seed=2, attributes=gender))
    np.testing.assert_array_equal(result.targets, sample_pair_targets(labels, None, seed=2, attributes=gender))


def test_attribute_mode_falls_back_and_counts(caplog):
    # Class 0 has no "b"; in class 1 the only "b" is sample 4, which cannot target itself.
    labels = np.array([0, 0, 0, 1, 1, 1])
    attr = np.array(["a", "a", "a", "a", "b", "a"])
    with caplog.at_level(logging.WARNING, logger="dam_cnn_tf.data.pairs"):
        targets = sample_pair_targets(labels, 2, seed=0, attributes=attr)
    result = attribute_pair_targets(labels, attr, seed=0)
    np.testing.assert_array_equal(targets, result.targets)
    expected = np.zeros((6, 2), bool)
    expected[[0, 1, 2], 1] = True  # class 0 lacks "b"
    expected[4, 1] = True  # sample 4 is class 1's only "b"
    np.testing.assert_array_equal(result.fallback, expected)
    assert result.fallbacks == 4 and "4 of 12" in caplog.text
    assert np.all(labels[targets] == labels[:, None])
    assert not np.any(targets == np.arange(6)[:, None])
    assert np.all(attr[targets[[3, 5], 1]] == "b")
    assert attr[targets[4, 0]] == "a"


def test_bad_input_raises_one_line_errors():
    with pytest.raises(PairSamplingError, match="num-paths"):
        sample_pair_targets([0, 1], 0)
    with pytest.raises(PairSamplingError, match="1-D integer"):
        sample_pair_targets([0.5, 1.0], 2)
    with pytest.raises(PairSamplingError, match="attribute values"):
        sample_pair_targets([0, 0, 1], 3, attributes=["a", "b", "a"])
    with pytest.raises(PairSamplingError, match="sample 1 has no attribute"):
        sample_pair_targets([0, 0, 1], None, attributes=["a", None, "b"])
    with pytest.raises(PairSamplingError, match="entries"):
        sample_pair_targets([0, 0, 1], None, attributes=["a", "b"])
    with pytest.raises(PairSamplingError, match="non-negative"):
        sample_pair_targets([0, 0], 1, seed=-1)


def test_vectorised_fast_for_30k_samples():
    labels = _labels(30000, 7)
    attr = np.random.default_rng(1).choice(["a", "b"], 30000)
    start = time.perf_counter()
    targets = sample_pair_targets(labels, 5, seed=0)
    random_time = time.perf_counter() - start
    start = time.perf_counter()
    sample_pair_targets(labels, None, seed=0, attributes=attr)
    attribute_time = time.perf_counter() - start
    print(f"30k anchors: random mode {random_time * 1e3:.1f} ms, attribute mode {attribute_time * 1e3:.1f} ms")
    assert np.all(labels[targets] == labels[:, None])
    assert random_time < 1.0 and attribute_time < 1.0
