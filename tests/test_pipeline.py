"""tf.data pipelines: images for stage 1, salient-feature pairs for stage 2 (paper §3.3, Eq. 8)."""

import time

import numpy as np
import pytest
import tensorflow as tf

from dam_cnn_tf.data.faces import resize_face
from dam_cnn_tf.data.feature_cache import write_feature_cache
from dam_cnn_tf.data.pairs import pair_target_schedule, sample_pair_targets
from dam_cnn_tf.data.pipeline import PipelineError, autoencoder_pair_dataset, image_dataset, pair_dataset
from dam_cnn_tf.backbones.vgg_face.model import VGG_FACE_MEAN_BGR


def _images(n=10, size=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _collect_labels(ds):
    return np.concatenate([y.numpy() for _, y in ds])


# ---- image_dataset -----------------------------------------------------------------------------


def test_image_dataset_preprocesses_like_vgg_face():
    images = _images()
    ds = image_dataset(images, np.arange(10), batch_size=4, image_size=16)
    batches = list(ds)
    assert [x.shape[0] for x, _ in batches] == [4, 4, 2]
    x = np.concatenate([b[0].numpy() for b in batches])
    # Independent reference: RGB -> BGR, minus the VGG-Face mean (size unchanged, so no resampling).
    expected = images[..., ::-1].astype(np.float32) - np.array(VGG_FACE_MEAN_BGR, np.float32)
    np.testing.assert_allclose(x, expected, atol=1e-3)
    np.testing.assert_array_equal(_collect_labels(ds), np.arange(10))
    assert batches[0][1].dtype == tf.int32


def test_image_dataset_resizes_grey_and_skips_preprocessing():
    grey = _images(6, 12)[..., 0]
    ds = image_dataset(grey, None, batch_size=6, image_size=24, preprocess=False)
    (x,) = list(ds)
    assert x.shape == (6, 24, 24, 3)
    np.testing.assert_array_equal(x[..., 0], x[..., 2])
    # Resized as training faces are (resize_face), within OpenCV's one-grey-level rounding.
    reference = np.stack([resize_face(g, (24, 24)) for g in grey]).astype(np.float32)
    assert np.abs(x[..., 1] - reference).max() <= 1.0
    ds = image_dataset(np.full((2, 8, 8, 3), 200, np.uint8), None, batch_size=2, image_size=4, preprocess=False,
                       drop_remainder=True)
    assert list(ds)[0].shape == (2, 4, 4, 3)


def test_image_dataset_shuffle_is_seeded():
    images = _images(20)
    first = _collect_labels(image_dataset(images, np.arange(20), batch_size=8, image_size=8, shuffle=True, seed=3))
    again = _collect_labels(image_dataset(images, np.arange(20), batch_size=8, image_size=8, shuffle=True, seed=3))
    other = _collect_labels(image_dataset(images, np.arange(20), batch_size=8, image_size=8, shuffle=True, seed=4))
    np.testing.assert_array_equal(first, again)
    assert sorted(first) == list(range(20)) and not np.array_equal(first, np.arange(20))
    assert not np.array_equal(first, other)
    ds = image_dataset(images, np.arange(20), batch_size=8, image_size=8, shuffle=True, seed=3)
    assert not np.array_equal(_collect_labels(ds), _collect_labels(ds))  # a new order each epoch


def test_image_dataset_augmentation_flips_and_brightens_reproducibly():
    images = _images(32, 8)
    kwargs = dict(batch_size=8, image_size=8, preprocess=False)
    plain = np.concatenate(list(image_dataset(images, None, **kwargs)))
    aug = np.concatenate(list(image_dataset(images, None, augment=True, seed=1, max_brightness=10, **kwargs)))
    again = np.concatenate(list(image_dataset(images, None, augment=True, seed=1, max_brightness=10, **kwargs)))
    np.testing.assert_array_equal(aug, again)
    flipped, shifts = 0, []
    for a, p in zip(aug, plain):
        # Each image is the original or its mirror, shifted by one brightness offset (before clipping).
        candidates = [p, p[:, ::-1]]
        errors, offsets = [], []
        for c in candidates:
            inside = (c > 10) & (c < 245)
            offsets.append(np.median(a[inside] - c[inside]))
            errors.append(np.abs(a[inside] - c[inside] - offsets[-1]).max())
        best = int(np.argmin(errors))
        assert errors[best] < 1e-3 and abs(offsets[best]) <= 10.0 + 1e-4
        flipped += best
        shifts.append(offsets[best])
    assert 4 < flipped < 28
    assert np.std(shifts) > 2  # brightness differs from image to image


def test_image_dataset_reads_files(tmp_path):
    import cv2

    images = _images(5, 10)
    paths = []
    for i, img in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        cv2.imwrite(str(paths[-1]), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    from_files = list(image_dataset(paths, np.arange(5), batch_size=5, image_size=10))
    in_memory = list(image_dataset(images, np.arange(5), batch_size=5, image_size=10))
    np.testing.assert_allclose(from_files[0][0], in_memory[0][0], atol=1e-3)


def test_image_dataset_shrinks_jpeg_files_as_training_faces(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (150, 121, 3), dtype=np.uint8), (3, 3), 0)
    assert cv2.imwrite(str(tmp_path / "a.jpg"), image)
    (x,) = list(image_dataset([tmp_path / "a.jpg"], None, batch_size=1, image_size=32, preprocess=False))
    decoded = cv2.cvtColor(cv2.imread(str(tmp_path / "a.jpg")), cv2.COLOR_BGR2RGB)
    assert np.abs(x[0].numpy() - resize_face(decoded, (32, 32))).max() <= 1.0


def test_image_dataset_rejects_bad_input():
    with pytest.raises(PipelineError, match="labels for 10 images"):
        image_dataset(_images(), np.arange(9))
    with pytest.raises(PipelineError, match=r"\(N, H, W, 3\)"):
        image_dataset(np.zeros((2, 4, 4, 2), np.uint8))


# ---- pair_dataset ------------------------------------------------------------------------------


def _features(n=40, dim=6, seed=0):
    """Rows whose first column is the row index, so a batch tells which anchors it holds."""
    f = np.random.default_rng(seed).random((n, dim), dtype=np.float32)
    f[:, 0] = np.arange(n)
    return f


def _batches(ds):
    return [(s.numpy(), {k: v.numpy() for k, v in d.items()}) for s, d in ds]


def test_pair_batches_hold_exactly_the_anchor_targets():
    features = _features()
    labels = np.arange(40) % 3
    targets = sample_pair_targets(labels, 3, seed=0)
    ds = pair_dataset(features, labels, targets, batch_size=16, shuffle=True, seed=2)
    spec = ds.element_spec
    assert spec[0].shape.as_list() == [None, 6] and spec[1]["targets"].shape.as_list() == [None, 3, 6]
    seen = []
    for s, d in _batches(ds):
        idx = s[:, 0].astype(int)
        seen.extend(idx)
        np.testing.assert_array_equal(s, features[idx])
        np.testing.assert_array_equal(d["label"], labels[idx])
        np.testing.assert_array_equal(d["targets"], features[targets[idx]])
        assert s.dtype == np.float32 and d["targets"].dtype == np.float32
    assert sorted(seen) == list(range(40))
    # Eq. 8's pairs: every target shares its anchor's class.
    for s, d in _batches(ds):
        assert np.all(labels[d["targets"][..., 0].astype(int)] == d["label"][:, None])


def test_pair_shuffle_is_seeded_and_reproducible():
    features, labels = _features(), np.arange(40) % 2
    targets = sample_pair_targets(labels, 2, seed=0)

    def order(seed, shuffle=True):
        ds = pair_dataset(features, labels, targets, batch_size=8, shuffle=shuffle, seed=seed)
        return np.concatenate([s[:, 0] for s, _ in _batches(ds)])

    np.testing.assert_array_equal(order(1), order(1))
    assert not np.array_equal(order(1), order(2))
    np.testing.assert_array_equal(order(1, shuffle=False), np.arange(40))


def test_memmap_and_in_memory_give_the_same_batches(tmp_path):
    features, labels = _features(50, 5), np.arange(50) % 4
    targets = sample_pair_targets(labels, 2, seed=1)
    cache = write_feature_cache(tmp_path / "f.npy", lambda x: x, [(features[:20], labels[:20]),
                                                                  (features[20:], labels[20:])], 50, verbose=0)
    assert isinstance(cache.features, np.memmap)
    kwargs = dict(batch_size=16, shuffle=True, seed=5)
    in_memory = _batches(pair_dataset(features, labels, targets, **kwargs))
    mapped = _batches(pair_dataset(cache, None, targets, **kwargs))  # labels from the cache
    array_no_graph = _batches(pair_dataset(features, labels, targets, in_graph_limit_bytes=0, **kwargs))
    for other in (mapped, array_no_graph):
        assert len(other) == len(in_memory)
        for (s1, d1), (s2, d2) in zip(in_memory, other):
            np.testing.assert_array_equal(s1, s2)
            np.testing.assert_array_equal(d1["label"], d2["label"])
            np.testing.assert_array_equal(d1["targets"], d2["targets"])


def test_float16_cache_comes_out_float32(tmp_path):
    features, labels = _features(12, 4), np.zeros(12, np.int64)
    cache = write_feature_cache(tmp_path / "h", lambda x: x, [features], 12, labels=labels, dtype="float16",
                                verbose=0)
    assert cache.features.dtype == np.float16
    targets = sample_pair_targets(labels, 1, seed=0)
    s, d = next(iter(pair_dataset(cache, None, targets, batch_size=12, shuffle=False)))
    assert s.dtype == tf.float32
    np.testing.assert_array_equal(s.numpy(), features.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize("in_graph_limit", [1 << 30, 0])
def test_per_epoch_targets_are_redrawn(in_graph_limit):
    features, labels = _features(30, 3), np.arange(30) % 3
    schedule = pair_target_schedule(labels, 2, seed=4)
    ds = pair_dataset(features, labels, schedule, batch_size=8, seed=1, epochs=3, in_graph_limit_bytes=in_graph_limit)
    steps = 4  # ceil(30 / 8)
    batches = _batches(ds)
    assert len(batches) == 3 * steps
    orders = []
    for epoch in range(3):
        table = schedule(epoch)
        idx_all = []
        for s, d in batches[epoch * steps:(epoch + 1) * steps]:
            idx = s[:, 0].astype(int)
            idx_all.extend(idx)
            np.testing.assert_array_equal(d["targets"], features[table[idx]])
        assert sorted(idx_all) == list(range(30))
        orders.append(idx_all)
    assert orders[0] != orders[1]
    assert not np.array_equal(schedule(0), schedule(1))
    np.testing.assert_array_equal(batches[5][1]["targets"], _batches(ds)[5][1]["targets"])  # reproducible


def test_scale_and_autoencoder_variant():
    features, labels = _features(10, 4), np.zeros(10, np.int64)
    targets = sample_pair_targets(labels, 2, seed=0)
    scale = np.array([0.5, 2.0, 1.0, 0.25], np.float32)
    ds = autoencoder_pair_dataset(features, targets, batch_size=10, shuffle=False, scale=scale)
    s, t = next(iter(ds))
    np.testing.assert_allclose(s.numpy(), features * scale)
    np.testing.assert_allclose(t.numpy(), features[targets] * scale)
    s, _ = next(iter(pair_dataset(features, labels, targets, batch_size=10, shuffle=False, scale=0.5)))
    np.testing.assert_allclose(s.numpy(), features * 0.5)


def test_pair_dataset_rejects_bad_input():
    features, labels = _features(10, 4), np.zeros(10, np.int64)
    with pytest.raises(PipelineError, match="targets must be"):
        pair_dataset(features, labels, np.zeros((9, 2), np.int64))
    with pytest.raises(PipelineError, match="outside"):
        pair_dataset(features, labels, np.full((10, 2), 10))
    with pytest.raises(PipelineError, match="labels for 10"):
        pair_dataset(features, labels[:5], np.zeros((10, 2), np.int64))
    with pytest.raises(PipelineError, match="epochs"):
        pair_dataset(features, labels, pair_target_schedule(labels, 2))
    with pytest.raises(PipelineError, match="scale"):
        pair_dataset(features, labels, np.zeros((10, 2), np.int64), scale=np.ones(3))


@pytest.mark.slow  # builds paper-size tensors: hundreds of MB
def test_pair_throughput_at_paper_feature_size(tmp_path):
    """2000 salient features of 7x7x512 = 25088 (paper §3.3); prints batches per second."""
    n, dim = 2000, 25088
    features = np.random.default_rng(0).random((n, dim), dtype=np.float32)
    labels = np.arange(n) % 7
    targets = sample_pair_targets(labels, 3, seed=0)
    cache = write_feature_cache(tmp_path / "big", lambda x: x, (features[i:i + 500] for i in range(0, n, 500)), n,
                                labels=labels, verbose=0)
    for name, source in (("in-memory", features), ("memmap", cache)):
        ds = pair_dataset(source, labels if name == "in-memory" else None, targets, batch_size=64, seed=0)
        start = time.perf_counter()
        count = sum(int(s.shape[0]) for s, _ in ds)
        elapsed = time.perf_counter() - start
        print(f"\n{name}: {count / elapsed:.0f} anchors/s ({count * 4 * dim * 4 / elapsed / 1e9:.2f} GB/s "
              f"with 3 targets each)")
        assert count == n
