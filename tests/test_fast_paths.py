"""The fast paths: one matmul for all decoders, graph-only input pipelines, a streaming feature
cache, XLA and mixed precision for the stage-2 step (paper §3.3, Eq. 7-11)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from dam_cnn_tf.data.feature_cache import FeatureCache, write_feature_cache
from dam_cnn_tf.data.pairs import sample_pair_targets
from dam_cnn_tf.data.pipeline import image_dataset, pair_dataset
from dam_cnn_tf.layers.decoders import MultiPathDecoder
from dam_cnn_tf.models.mpvs_net import MPVSNet
from dam_cnn_tf.training.distribute import set_precision
from dam_cnn_tf.training.end_to_end import image_pair_dataset

D, H, N, K = 12, 6, 3, 3


@pytest.fixture
def policy():
    """Set a global dtype policy for one test and always restore float32."""
    yield set_precision
    set_precision(None)


def _batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    s = rng.gamma(2.0, 1.0, (n, D)).astype("float32")
    targets = rng.gamma(2.0, 1.0, (n, N, D)).astype("float32")
    return s, {"label": np.arange(n) % K, "targets": targets}


def _net(dropout=0.5, seed=3):
    keras.utils.set_random_seed(seed)
    return MPVSNet(D, K, encoder_units=H, num_paths=N, fc_units=5, dropout=dropout)


def _op_types(fn, *args):
    return [op.type for op in fn.get_concrete_function(*args).graph.get_operations()]


# --- decoders ----------------------------------------------------------------------------------
def test_each_decoder_is_one_matmul_on_its_own_kernel():
    layer = MultiPathDecoder(N, D)
    layer.build((None, H))
    rng = np.random.default_rng(1)
    for bias in layer.biases:
        bias.assign(rng.normal(size=(D,)).astype("float32"))
    h = np.random.default_rng(0).random((4, H), dtype=np.float32)
    ops = _op_types(tf.function(layer.call), tf.TensorSpec((None, H), tf.float32))
    assert ops.count("MatMul") == N and "BatchMatMulV2" not in ops
    assert [tuple(k.shape) for k in layer.kernels] == [(H, D)] * N  # contiguous per path
    expected = np.stack([1 / (1 + np.exp(-(h @ k.numpy() + b.numpy()))) for k, b in zip(layer.kernels, layer.biases)],
                        axis=1)
    np.testing.assert_allclose(layer(h).numpy(), expected, rtol=1e-5, atol=1e-6)


# --- input pipelines ---------------------------------------------------------------------------
def _dataset_op_types(ds) -> set:
    graph = tf.raw_ops.DatasetToGraphV2(input_dataset=ds._variant_tensor, external_state_policy=1)
    graph_def = tf.compat.v1.GraphDef.FromString(graph.numpy())
    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
    return {n.op for n in nodes}


PY_OPS = {"PyFunc", "EagerPyFunc", "PyFuncStateless"}


def test_image_and_in_memory_pair_pipelines_run_in_the_graph(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (6, 20, 20, 3), dtype=np.uint8)
    labels = np.arange(6) % 2
    assert not _dataset_op_types(image_dataset(images, labels, batch_size=4, image_size=16, augment=True)) & PY_OPS
    paths = []
    for i, image in enumerate(images):
        path = tmp_path / f"{i}.png"
        path.write_bytes(tf.io.encode_png(image).numpy())
        paths.append(path)
    assert not _dataset_op_types(image_dataset(paths, labels, batch_size=4, image_size=16)) & PY_OPS
    features = np.random.default_rng(0).random((6, D), dtype=np.float32)
    targets = sample_pair_targets(labels, 2, seed=0)
    assert not _dataset_op_types(pair_dataset(features, labels, targets, batch_size=4)) & PY_OPS
    # The check is not vacuous: the memory-mapped path reads through NumPy, once per batch.
    cache = write_feature_cache(tmp_path / "f", lambda x: x, [features], 6, labels=labels, verbose=0)
    assert _dataset_op_types(pair_dataset(cache, None, targets, batch_size=4)) & PY_OPS


def test_images_at_the_input_size_are_not_resampled_and_the_autotuner_is_off():
    images = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    labels = np.arange(6) % 2
    same = image_dataset(images, labels, batch_size=4, image_size=16, preprocess=False)
    resized = image_dataset(images, labels, batch_size=4, image_size=12, preprocess=False)
    assert not {op for op in _dataset_op_types(same) if "Resize" in op or "ScaleAndTranslate" in op}
    assert {op for op in _dataset_op_types(resized) if "Resize" in op or "ScaleAndTranslate" in op}
    np.testing.assert_array_equal(np.concatenate([x for x, _ in same.as_numpy_iterator()]), images.astype("float32"))
    features = np.random.default_rng(0).random((6, D), dtype=np.float32)
    pairs = pair_dataset(features, labels, sample_pair_targets(labels, 2, seed=0), batch_size=4)
    image_pairs = image_pair_dataset(images, labels, sample_pair_targets(labels, 2, seed=0), 4, shuffle=False)
    for ds in (same, resized, pairs, image_pairs):
        assert ds.options().autotune.enabled is False


class _CountingMemmap(np.memmap):
    reads = 0

    def __getitem__(self, index):
        if not isinstance(index, (int, np.integer, slice)):
            type(self).reads += 1
        return super().__getitem__(index)


def test_memory_mapped_pairs_read_once_per_batch_not_per_sample(tmp_path):
    n, batch = 40, 8
    rng = np.random.default_rng(0)
    features = rng.random((n, D), dtype=np.float32)
    labels = np.arange(n) % K
    cache = write_feature_cache(tmp_path / "f", lambda x: x, [features], n, labels=labels, verbose=0)
    mapped = _CountingMemmap(cache.path, dtype=np.float32, mode="r", shape=(n, D),
                             offset=cache.features.offset)
    assert isinstance(cache.features, np.memmap) and cache.features.mode == "r"  # streamed, never loaded whole
    targets = sample_pair_targets(labels, N, seed=0)
    _CountingMemmap.reads = 0
    seen = 0
    for s, y in pair_dataset(mapped, labels, targets, batch_size=batch, shuffle=False):
        np.testing.assert_array_equal(s.numpy(), features[seen : seen + len(s)])
        seen += len(s)
    assert seen == n
    assert _CountingMemmap.reads == 2 * (n // batch)  # anchors and targets, one fancy index each per batch


def test_feature_cache_opens_as_a_read_only_memory_map(tmp_path):
    features = np.random.default_rng(0).random((5, D), dtype=np.float32)
    write_feature_cache(tmp_path / "f", lambda x: x, [features], 5, verbose=0)
    cache = FeatureCache.open(tmp_path / "f")
    assert isinstance(cache.features, np.memmap)
    with pytest.raises(ValueError):
        cache.features[0, 0] = 1.0


# --- XLA and mixed precision -------------------------------------------------------------------
def _train_steps(net, steps=3):
    s, y = _batch()
    return [float(net.train_on_batch(s, y, return_dict=True)["loss"]) for _ in range(steps)]


def test_jit_compiled_step_gives_the_same_update_as_the_plain_step():
    results = []
    for jit in (False, True):
        net = _net(dropout=0.0)
        net.mpae.adapt(_batch()[0])
        net.compile(optimizer=keras.optimizers.SGD(0.1), mpae_optimizer=keras.optimizers.SGD(0.1), jit_compile=jit)
        assert net.jit_compile is jit
        losses = _train_steps(net)
        results.append((losses, [v.numpy() for v in net.trainable_variables]))
    (plain_losses, plain_vars), (xla_losses, xla_vars) = results
    assert np.all(np.isfinite(xla_losses))
    np.testing.assert_allclose(xla_losses, plain_losses, rtol=1e-4)
    for a, b in zip(plain_vars, xla_vars):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("mixed", ["float16", "bfloat16"])
def test_mixed_precision_step_runs_with_finite_losses(policy, mixed):
    policy(mixed)
    net = _net()
    net.mpae.adapt(_batch()[0])
    net.compile()
    loss_scaled = mixed == "float16"
    assert isinstance(net.optimizer, keras.optimizers.LossScaleOptimizer) is loss_scaled
    assert isinstance(net.mpae_optimizer, keras.optimizers.LossScaleOptimizer) is loss_scaled
    assert net.mpae.decoders.compute_dtype == mixed and all(k.dtype == "float32" for k in net.mpae.decoders.kernels)
    before = [v.numpy() for v in net.trainable_variables]
    losses = _train_steps(net)
    assert np.all(np.isfinite(losses))
    assert all(np.all(np.isfinite(v.numpy())) for v in net.trainable_variables)
    changed = [not np.array_equal(b, v.numpy()) for b, v in zip(before, net.trainable_variables)]
    assert all(changed)  # every weight, head and MPAE, was updated
    assert net(_batch()[0]).dtype == "float32"  # softmax kept in float32


def test_mixed_float16_jit_step_runs(policy):
    policy("float16")
    net = _net()
    net.mpae.adapt(_batch()[0])
    net.compile(jit_compile=True)
    assert np.all(np.isfinite(_train_steps(net)))
