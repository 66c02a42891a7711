"""MPVS-Net: gradient routing of Eq. 10-11, Algorithm 1's per-path option, fit and saving.

Backend-neutral: run under every Keras backend (``KERAS_BACKEND=jax python -m pytest -m backends``).
"""

import numpy as np
import keras
import pytest

from dam_cnn_tf import MPVSNet
from mpvs_reference import gradient, losses, variable_names, weights_of

pytestmark = pytest.mark.backends  # run under every Keras backend (README, Set up)

N_FEATURES, N_CLASSES, N_PATHS = 10, 3, 2


def make_batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    s = rng.gamma(2.0, 1.0, size=(n, N_FEATURES)).astype("float32")
    targets = rng.gamma(2.0, 1.0, size=(n, N_PATHS, N_FEATURES)).astype("float32")
    labels = rng.integers(0, N_CLASSES, size=n)
    return s, labels, targets


def make_net(lam=20.0, per_path=False):
    keras.utils.set_random_seed(7)
    net = MPVSNet(
        N_FEATURES, N_CLASSES, encoder_units=6, num_paths=N_PATHS, fc_units=5, dropout=0.0, lam=lam,
        per_path_updates=per_path,
    )
    return net


def separate_gradients(net, s, labels, targets):
    """∇L_ce and ∇ΣJ_j for every variable, by central differences of the NumPy forward pass."""
    w, names = weights_of(net), variable_names(net)
    every = sorted(set(names.values()))
    g_ce = gradient(w, lambda w: losses(w, s, labels, targets)[0], every)
    g_j = gradient(w, lambda w: sum(losses(w, s, labels, targets)[1]), every)
    return {v.path: (g_ce[names[id(v)]], g_j[names[id(v)]]) for v in net.trainable_variables}


def test_gradient_routing_follows_eq_10_and_11():
    s, labels, targets = make_batch()
    net = make_net(lam=20.0)
    net.mpae.adapt(s)
    net.compile(optimizer=keras.optimizers.SGD(1.0), mpae_optimizer=keras.optimizers.SGD(1.0))
    grads = separate_gradients(net, s, labels, targets)
    before = {v.path: v.numpy() for v in net.trainable_variables}
    net.train_on_batch(s, {"label": labels, "targets": targets})
    head = {v.path for v in net.head_variables()}
    encoder = {v.path for v in net.mpae.encoder.trainable_variables}
    decoders = {v.path for v in net.mpae.decoders.trainable_variables}
    for v in net.trainable_variables:
        delta = before[v.path] - v.numpy()  # SGD at lr 1: the gradient each part was given
        g_ce, g_j = grads[v.path]
        if v.path in head:
            # Eq. 10: the head sees the cross-entropy alone, not λ·L_ce.
            np.testing.assert_allclose(delta, g_ce, rtol=1e-3, atol=1e-5)
            assert not np.allclose(delta, 20.0 * g_ce, atol=1e-5)
        elif v.path in encoder:
            # Eq. 11: the encoder sees both the reconstructions and λ·L_ce.
            assert np.abs(g_j).max() > 1e-3 and np.abs(g_ce).max() > 1e-3
            np.testing.assert_allclose(delta, g_j + 20.0 * g_ce, rtol=1e-3, atol=1e-5)
        else:
            assert v.path in decoders
            np.testing.assert_allclose(delta, g_j, rtol=1e-3, atol=1e-5)


def test_per_path_step_follows_algorithm_1_lines_7_to_9():
    s, labels, targets = make_batch()
    net = make_net(lam=20.0, per_path=True)
    net.mpae.adapt(s)
    net.compile(optimizer=keras.optimizers.SGD(1.0), mpae_optimizer=keras.optimizers.SGD(1.0))
    names = variable_names(net)
    start = weights_of(net)
    path = 1
    # Lines 7-8: the encoder and decoder j descend J_j + λ·L_ce, at the weights the step starts from.
    g_mpae = gradient(start, lambda w: losses(w, s, labels, targets)[1][path] + 20.0 * losses(w, s, labels, targets)[0],
                      ["W_E", "B_E", f"V_{path}", f"B_D{path}"])
    net._apply_routed_gradients(s, labels, targets, path=path)
    after = weights_of(net)
    for name, g in g_mpae.items():
        np.testing.assert_allclose(start[name] - after[name], g, rtol=1e-3, atol=1e-5)
    for name in ("V_0", "B_D0"):  # the other path is left alone
        np.testing.assert_array_equal(start[name], after[name])
    # Line 9: the head descends L_ce through the encoder lines 7-8 have just updated.
    mixed = {**start, "W_E": after["W_E"], "B_E": after["B_E"], f"V_{path}": after[f"V_{path}"]}
    g_head = gradient(mixed, lambda w: losses(w, s, labels, targets)[0], ["W_1", "B_1", "W_2", "B_2"])
    old = gradient(start, lambda w: losses(w, s, labels, targets)[0], ["W_1", "B_1", "W_2", "B_2"])
    for v in net.head_variables():
        name = names[id(v)]
        np.testing.assert_allclose(start[name] - after[name], g_head[name], rtol=1e-3, atol=1e-5)
    # The gradient at the old encoder differs, so the check above tells the two orders apart.
    assert any(not np.allclose(g_head[n], old[n], atol=1e-4) for n in g_head)


def test_head_update_does_not_depend_on_lambda():
    s, labels, targets = make_batch()
    deltas = []
    for lam in (1.0, 50.0):
        net = make_net(lam=lam)
        net.mpae.adapt(s)
        net.compile(optimizer=keras.optimizers.SGD(0.5), mpae_optimizer=keras.optimizers.SGD(0.5))
        before = [v.numpy() for v in net.head_variables()]
        encoder_before = net.mpae.encoder.kernel.numpy()
        net.train_on_batch(s, {"label": labels, "targets": targets})
        deltas.append(
            ([b - v.numpy() for b, v in zip(before, net.head_variables())], encoder_before - net.mpae.encoder.kernel.numpy())
        )
    for a, b in zip(deltas[0][0], deltas[1][0]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert not np.allclose(deltas[0][1], deltas[1][1])


def test_each_optimizer_holds_only_its_own_variables():
    net = make_net()
    net.compile()
    head_size = sum(int(np.prod(v.shape)) for v in net.head_variables())
    mpae_size = sum(int(np.prod(v.shape)) for v in net.mpae_variables())
    slots = lambda opt: sum(  # noqa: E731
        int(np.prod(v.shape)) for v in opt.variables if "momentum" in v.path or "velocity" in v.path
    )
    head_optimizer, mpae_optimizer = net.optimizers()
    assert mpae_optimizer is net.mpae_optimizer
    assert slots(head_optimizer) == 2 * head_size  # Adam: two moments per weight
    assert slots(mpae_optimizer) == 2 * mpae_size


def test_per_path_option_makes_n_updates_per_batch():
    s, labels, targets = make_batch(n=16)
    net = make_net(per_path=True)
    net.compile()
    net.fit(s, {"label": labels, "targets": targets}, batch_size=8, epochs=1, verbose=0)
    assert int(net.optimizer.iterations.numpy()) == 2 * N_PATHS
    assert int(net.mpae_optimizer.iterations.numpy()) == 2 * N_PATHS
    fused = make_net()
    fused.compile()
    fused.fit(s, {"label": labels, "targets": targets}, batch_size=8, epochs=1, verbose=0)
    assert int(fused.mpae_optimizer.iterations.numpy()) == 2


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_per_path_step_updates_only_that_decoder(optimizer):
    s, labels, targets = make_batch()
    net = make_net(per_path=True)
    make = {"sgd": lambda: keras.optimizers.SGD(0.1, momentum=0.9), "adam": lambda: keras.optimizers.Adam(0.01)}
    net.compile(optimizer=make[optimizer](), mpae_optimizer=make[optimizer]())
    # A fused step first, so that every decoder carries momentum that could leak into later steps.
    net._apply_routed_gradients(s, labels, targets)
    decoders = net.mpae.decoders
    before = [v.numpy() for v in decoders.trainable_variables]
    encoder_before = net.mpae.encoder.kernel.numpy()
    cross_entropy, per_path, _ = net._apply_routed_gradients(s, labels, targets, path=1)
    after = [v.numpy() for v in decoders.trainable_variables]
    for path in (p for p in range(N_PATHS) if p != 1):
        for variable in decoders.path_variables(path):
            index = [id(v) for v in decoders.trainable_variables].index(id(variable))
            np.testing.assert_array_equal(before[index], after[index])
    assert not np.allclose(before[2], after[2])  # V^2 moved
    assert not np.allclose(encoder_before, net.mpae.encoder.kernel.numpy())
    assert per_path.shape == (1,)


def test_fit_lowers_loss_and_learns_classes():
    rng = np.random.default_rng(4)
    prototypes = rng.gamma(2.0, 1.0, size=(N_CLASSES, N_FEATURES))
    labels = rng.integers(0, N_CLASSES, size=96)
    s = (prototypes[labels] + 0.1 * rng.normal(size=(96, N_FEATURES))).astype("float32")
    targets = np.stack([prototypes[labels] for _ in range(N_PATHS)], axis=1).astype("float32")
    net = make_net(lam=1.0)
    net.mpae.adapt(s)
    net.compile(optimizer=keras.optimizers.Adam(0.02), mpae_optimizer=keras.optimizers.Adam(0.02))
    history = net.fit(s, {"label": labels, "targets": targets}, epochs=20, batch_size=16, verbose=0).history
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["accuracy"][-1] > 0.8
    metrics = net.evaluate(s, labels, verbose=0, return_dict=True)  # labels alone: classification only
    assert metrics["accuracy"] > 0.8


def test_save_load_round_trip_keeps_both_optimizers(tmp_path):
    s, labels, targets = make_batch()
    net = make_net()
    net.mpae.adapt(s)
    net.compile()
    net.fit(s, {"label": labels, "targets": targets}, batch_size=4, epochs=1, verbose=0)
    net.save(tmp_path / "mpvs.keras")
    loaded = keras.models.load_model(tmp_path / "mpvs.keras")
    np.testing.assert_array_equal(np.asarray(loaded(s)), np.asarray(net(s)))
    assert loaded.lam == net.lam and loaded.num_paths == N_PATHS
    assert int(loaded.mpae_optimizer.iterations.numpy()) == 2
    for a, b in zip(loaded.mpae_optimizer.variables, net.mpae_optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_labels_and_targets_as_tuple():
    s, labels, targets = make_batch()
    net = make_net()
    net.compile()
    logs = net.train_on_batch(s, (labels, targets), return_dict=True)
    assert {"cross_entropy", "reconstruction", "path_1_loss", "path_2_loss", "accuracy"} <= set(logs)


@pytest.mark.parametrize("bad", [0])
def test_needs_at_least_one_path(bad):
    with pytest.raises(ValueError, match="num_paths"):
        MPVSNet(N_FEATURES, N_CLASSES, num_paths=bad, encoder_units=4, fc_units=4)
