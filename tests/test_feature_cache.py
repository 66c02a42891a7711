"""The salient-feature cache for stage 2: round trip, read-only memory map, interrupted writes."""

import json

import numpy as np
import pytest

from dam_cnn_tf.data.feature_cache import FeatureCache, FeatureCacheError, write_feature_cache


def _batches(x, y, size):
    for i in range(0, len(x), size):
        yield x[i:i + size], y[i:i + size]


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((23, 2, 3, 4), dtype=np.float32)
    y = rng.integers(0, 5, 23)
    cache = write_feature_cache(tmp_path / "train.npy", lambda b: b * 2.0, _batches(x, y, 5), 23,
                                fingerprint="abc", verbose=1)
    reopened = FeatureCache.open(tmp_path / "train.npy", fingerprint="abc")
    for c in (cache, reopened):
        assert c.features.shape == (23, 24) and c.features.dtype == np.float32
        np.testing.assert_array_equal(c.features, (x * 2).reshape(23, -1))
        np.testing.assert_array_equal(c.labels, y)
        assert c.feature_shape == (2, 3, 4) and c.fingerprint == "abc" and len(c) == 23
        with pytest.raises(ValueError):
            c.features[0, 0] = 1.0  # read-only
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.json", "train.npy"]
    assert json.loads((tmp_path / "train.json").read_text())["shape"] == [23, 24]
    # The .npy is a plain array file: NumPy reads it without pickle.
    np.testing.assert_array_equal(np.load(tmp_path / "train.npy", allow_pickle=False), cache.features)
    assert FeatureCache.exists(tmp_path / "train", "abc") and not FeatureCache.exists(tmp_path / "train", "xyz")


def test_explicit_labels_float16_and_tensor_outputs(tmp_path):
    import tensorflow as tf

    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    cache = write_feature_cache(tmp_path / "c", lambda b: tf.constant(b) + 1, [x[:4], x[4:]], 6,
                                labels=np.array([0, 1, 0, 1, 0, 1]), dtype="float16", verbose=0)
    assert cache.features.dtype == np.float16
    np.testing.assert_array_equal(cache.features, (x + 1).astype(np.float16))
    np.testing.assert_array_equal(cache.labels, [0, 1, 0, 1, 0, 1])
    unlabelled = write_feature_cache(tmp_path / "u", lambda b: b, [x], 6, verbose=0)
    assert unlabelled.labels is None


def test_interrupted_write_leaves_no_cache(tmp_path):
    x = np.ones((30, 4), np.float32)
    y = np.zeros(30, np.int64)
    # A complete cache from an earlier run stops opening as soon as a rewrite starts.
    write_feature_cache(tmp_path / "f.npy", lambda b: b, _batches(x, y, 10), 30, fingerprint="old", verbose=0)

    def failing():
        for i, batch in enumerate(_batches(x, y, 10)):
            if i == 2:
                raise KeyboardInterrupt
            yield batch

    with pytest.raises(KeyboardInterrupt):
        write_feature_cache(tmp_path / "f.npy", lambda b: b, failing(), 30, fingerprint="new", verbose=0)
    with pytest.raises(FeatureCacheError, match="f.json"):
        FeatureCache.open(tmp_path / "f.npy")
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir()), "partial files left behind"


def test_wrong_row_count_is_an_error_and_cleans_up(tmp_path):
    x = np.ones((10, 3), np.float32)
    with pytest.raises(FeatureCacheError, match="gave 10 rows, num_samples=12"):
        write_feature_cache(tmp_path / "a", lambda b: b, [x], 12, verbose=0)
    with pytest.raises(FeatureCacheError, match="more than num_samples=8"):
        write_feature_cache(tmp_path / "a", lambda b: b, [x], 8, verbose=0)
    with pytest.raises(FeatureCacheError, match="labels must be 10 integers"):
        write_feature_cache(tmp_path / "a", lambda b: b, [x], 10, labels=np.zeros(3, np.int64), verbose=0)
    with pytest.raises(FeatureCacheError, match="cache-dtype"):
        write_feature_cache(tmp_path / "a", lambda b: b, [x], 10, dtype="int8", verbose=0)
    assert list(tmp_path.iterdir()) == []


def test_open_rejects_stale_or_inconsistent_caches(tmp_path):
    x = np.ones((5, 3), np.float32)
    write_feature_cache(tmp_path / "f", lambda b: b, [x], 5, fingerprint="v1", verbose=0)
    with pytest.raises(FeatureCacheError, match="stale"):
        FeatureCache.open(tmp_path / "f", fingerprint="v2")
    meta = json.loads((tmp_path / "f.json").read_text())
    meta["shape"] = [6, 3]
    (tmp_path / "f.json").write_text(json.dumps(meta))
    with pytest.raises(FeatureCacheError, match=r"f\.npy: holds \(5, 3\)"):
        FeatureCache.open(tmp_path / "f")
    (tmp_path / "f.json").write_text("{not json")
    with pytest.raises(FeatureCacheError, match="unreadable"):
        FeatureCache.open(tmp_path / "f")
    with pytest.raises(FeatureCacheError, match="missing"):
        FeatureCache.open(tmp_path / "nothing")


def test_extracts_from_an_image_pipeline_with_a_keras_model(tmp_path):
    import keras

    from dam_cnn_tf.data.pipeline import image_dataset

    images = np.random.default_rng(0).integers(0, 256, (9, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(9) % 3
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3), keras.layers.MaxPooling2D(2)])
    ds = image_dataset(images, labels, batch_size=4, image_size=8)
    cache = write_feature_cache(tmp_path / "feat", model.predict_on_batch, ds, 9, fingerprint="m", verbose=0)
    expected = model.predict(next(iter(image_dataset(images, None, batch_size=9, image_size=8))), verbose=0)
    np.testing.assert_allclose(cache.features, expected.reshape(9, -1), rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(cache.labels, labels)
    assert cache.feature_shape == (3, 3, 2)
