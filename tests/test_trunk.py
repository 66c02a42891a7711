"""The stage-1 model cut at --fine-tune-from (models/trunk.py) and the trunk-map cache."""

import numpy as np
import pytest

from dam_cnn_tf.data.pipeline import PipelineError, trunk_dataset
from dam_cnn_tf.data.trunk_cache import SHARD_FACES, TrunkCache, mirrored
from dam_cnn_tf.backbones.face_resnet.model import build_face_resnet
from dam_cnn_tf.models.trunk import TrunkSplitError, split_at
from dam_cnn_tf.models.vgg_serd import build_vgg_serd, compile_vgg_serd, salient_feature_model


def tiny_vgg_serd(classes=3, size=32):
    return build_vgg_serd(classes, input_shape=(size, size, 3), backbone_widths=(4, 8, 8, 16, 16), fc_units=8)


def images(n=5, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3)).astype(np.uint8)


def test_trunk_then_top_is_the_whole_model():
    model = tiny_vgg_serd()
    split = split_at(model, "conv4_1")
    x = images().astype("float32")
    maps = split.trunk(x)
    assert split.trunk_shape == tuple(maps.shape[1:]) == (4, 4, 8)
    np.testing.assert_allclose(split.top(maps).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
    front = salient_feature_model(model)(x)
    got = split.front(maps)
    np.testing.assert_allclose(got["features"].numpy(), front["features"].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["attention"].numpy(), front["attention"].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(split.head(split.upper(maps)).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)


def test_training_the_top_trains_the_model_with_eq4s_loss():
    model = tiny_vgg_serd()
    split = split_at(model, "conv4_1")
    x, y = images(8).astype("float32"), np.arange(8) % 3
    maps = split.trunk(x).numpy()
    compile_vgg_serd(split.top, learning_rate=1e-2)
    compile_vgg_serd(model, learning_rate=1e-2)
    # The same loss, SERD's L_reg (add_loss) included, whichever way the batch enters.
    assert split.top.evaluate(maps, y, verbose=0)[0] == pytest.approx(model.evaluate(x, y, verbose=0)[0], rel=1e-5)
    trunk_before = [w.copy() for w in split.trunk.get_weights()]
    fc8_before = model.get_layer("fc8").get_weights()[0].copy()
    split.top.fit(maps, y, epochs=2, batch_size=8, verbose=0)
    assert not np.allclose(model.get_layer("fc8").get_weights()[0], fc8_before)
    for before, after in zip(trunk_before, split.trunk.get_weights()):
        np.testing.assert_array_equal(before, after)  # the trunk is not part of top
    np.testing.assert_allclose(split.top(maps).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)


def test_a_cut_inside_a_residual_block_is_refused():
    model = build_vgg_serd(3, input_shape=(104, 104, 3), fc_units=8,
                           backbone=build_face_resnet(include_top=False, input_shape=(104, 104, 3), name="backbone"))
    assert split_at(model, "conv256_down_conv1_conv").trunk_shape[-1] == 128
    with pytest.raises(TrunkSplitError, match="conv256_1_conv2_conv: the layers after it also read"):
        split_at(model, "conv256_1_conv2_conv")
    with pytest.raises(TrunkSplitError, match="no layer 'conv9'"):
        split_at(model, "conv9")


class CountingTrunk:
    """A stand-in trunk: each face's mean colour per channel, counting the faces it sees."""

    def __init__(self):
        self.seen = 0

    def __call__(self, faces):
        self.seen += len(faces)
        f = faces.astype(np.float32)
        return np.stack([f.mean(axis=(1, 2)), f[:, :, :4].mean(axis=(1, 2))], axis=1)[:, :, None, :]


def test_cache_computes_each_face_once_and_finds_any_subset(tmp_path):
    faces = images(12, 8)
    trunk = CountingTrunk()
    cache = TrunkCache(tmp_path, "fp")
    first = cache.maps(faces[:8], trunk)
    assert trunk.seen == 16 and first.shape == (8, 2, 2, 1, 3)  # 8 faces and their 8 mirror images
    np.testing.assert_allclose(first[:, 0], trunk(faces[:8]))
    np.testing.assert_allclose(first[:, 1], trunk(mirrored(faces[:8])))
    trunk.seen = 0
    again = cache.maps(faces[[11, 3, 3, 9, 0]], trunk)  # a fold: old and new faces, shuffled, repeated
    assert trunk.seen == 2 * 2  # only faces 9 and 11 are new
    np.testing.assert_allclose(again[:, 0], trunk(faces[[11, 3, 3, 9, 0]]))
    assert TrunkCache(tmp_path, "fp").missing(faces) == 2
    assert TrunkCache(tmp_path, "other-weights").missing(faces) == 12


def test_an_interrupted_computation_resumes_after_its_last_whole_shard(tmp_path, monkeypatch):
    import dam_cnn_tf.data.trunk_cache as trunk_cache

    monkeypatch.setattr(trunk_cache, "SHARD_FACES", 4)
    faces = images(10, 8)
    calls = {"n": 0}

    def dies_in_second_shard(batch):
        calls["n"] += 1
        if calls["n"] == 3:  # shard 1 took two calls (faces, mirrors): die in shard 2
            raise KeyboardInterrupt
        return CountingTrunk()(batch)

    cache = TrunkCache(tmp_path, "fp")
    with pytest.raises(KeyboardInterrupt):
        cache.maps(faces, dies_in_second_shard)
    assert not list(tmp_path.rglob(".*.tmp")) and cache.missing(faces) == 6
    trunk = CountingTrunk()
    maps = cache.maps(faces, trunk)
    assert trunk.seen == 2 * 6
    np.testing.assert_allclose(maps[:, 0], trunk(faces))
    assert SHARD_FACES == 1024  # the module's own value is untouched outside this test


@pytest.mark.parametrize("limit", [1 << 30, 0])  # in the graph, and through NumPy
def test_trunk_dataset_mirrors_at_random_and_keeps_labels(limit):
    n = 40
    maps = np.zeros((n, 2, 1, 1, 1), np.float32)
    maps[:, 0, 0, 0, 0] = np.arange(n)
    maps[:, 1, 0, 0, 0] = -np.arange(n) - 1000
    labels = np.arange(n) % 7
    flipped, seen = 0, []
    for x, y in trunk_dataset(maps, labels, 8, shuffle=True, seed=3, mirror=True, in_graph_limit_bytes=limit):
        x = x.numpy().reshape(-1)
        index = np.where(x >= 0, x, -x - 1000).astype(int)
        np.testing.assert_array_equal(y.numpy(), labels[index])
        flipped += int((x < 0).sum())
        seen += index.tolist()
    assert sorted(seen) == list(range(n)) and 8 <= flipped <= 32
    plain = np.concatenate([x.numpy().reshape(-1) for x, _ in trunk_dataset(maps, labels, 8)])
    np.testing.assert_array_equal(plain, np.arange(n))


@pytest.mark.parametrize("limit", [1 << 30, 0])  # in-graph table, then read from NumPy
def test_trunk_dataset_shifts_each_map_by_whole_cells_within_the_bound(limit):
    rng = np.random.default_rng(5)
    maps = rng.normal(size=(12, 2, 5, 6, 3)).astype(np.float32)
    labels = np.arange(12) % 3

    def moved(m, dy, dx):  # an independent NumPy translation with edge cells repeated
        rows = np.clip(np.arange(5) - dy, 0, 4)
        cols = np.clip(np.arange(6) - dx, 0, 5)
        return m[rows][:, cols]

    seen = set()
    for _ in range(3):
        for x, y in trunk_dataset(maps, labels, 4, shuffle=True, seed=2, mirror=True, shift=1, in_graph_limit_bytes=limit):
            for out, label in zip(x.numpy(), y.numpy()):
                matches = [(i, f, dy, dx) for i in np.flatnonzero(labels == label) for f in (0, 1)
                           for dy in (-1, 0, 1) for dx in (-1, 0, 1) if np.array_equal(out, moved(maps[i, f], dy, dx))]
                assert matches, "a map that is no shift of at most one cell of a face or its mirror"
                seen.add(matches[0][2:])
    assert len(seen) >= 5  # shifts vary from face to face
    first = [x.numpy() for x, _ in trunk_dataset(maps, labels, 4, shuffle=True, seed=2, mirror=True, shift=1)]
    again = [x.numpy() for x, _ in trunk_dataset(maps, labels, 4, shuffle=True, seed=2, mirror=True, shift=1)]
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(again))  # seeded


def test_trunk_dataset_refuses_a_negative_shift():
    with pytest.raises(PipelineError, match="shift"):
        trunk_dataset(np.zeros((2, 2, 3, 3, 1), np.float32), np.zeros(2), 2, shift=-1)
