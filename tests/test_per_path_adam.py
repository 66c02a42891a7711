"""Algorithm 1's per-path loop under Adam: each path's own step count, on every backend
(line 9 after lines 7-8: tests/test_mpvs_net.py)."""

import keras
import numpy as np
import pytest

from dam_cnn_tf import MPVSNet
from dam_cnn_tf.optimizers import FusedAdam

pytestmark = pytest.mark.backends  # run under every Keras backend (README, Set up)

N_FEATURES, N_CLASSES, N_PATHS = 10, 3, 3
LR, B1, B2, EPS = 0.01, 0.9, 0.999, 1e-7


def numpy_adam(w, grads, steps):
    """Adam on one array, step t of ``grads[k]`` being ``steps[k]`` (Keras' epsilon placement)."""
    w, m, v = w.astype(np.float64), np.zeros(w.shape), np.zeros(w.shape)
    for g, t in zip(grads, steps):
        m = B1 * m + (1 - B1) * g
        v = B2 * v + (1 - B2) * g * g
        w = w - LR * np.sqrt(1 - B2**t) / (1 - B1**t) * m / (np.sqrt(v) + EPS)
    return w


def test_each_variable_counts_its_own_updates_against_numpy():
    rng = np.random.default_rng(0)
    every = keras.Variable(rng.normal(size=(4, 3)).astype("float32"), name="every")
    sometimes = keras.Variable(rng.normal(size=(5,)).astype("float32"), name="sometimes")
    optimizer = FusedAdam(LR, beta_1=B1, beta_2=B2, epsilon=EPS, count_steps_per_variable=True)
    optimizer.build([every, sometimes])
    start_every, start_sometimes = every.numpy(), sometimes.numpy()
    g_every, g_sometimes = [], []
    for step in range(5):
        g1 = rng.normal(size=(4, 3)).astype("float32")
        g_every.append(g1)
        if step % 2 == 0:  # ``sometimes`` is updated at steps 0, 2, 4 only: its own t = 1, 2, 3
            g2 = rng.normal(size=(5,)).astype("float32")
            g_sometimes.append(g2)
            optimizer.apply([g1, g2], [every, sometimes])
        else:
            optimizer.apply([g1], [every])
    np.testing.assert_allclose(every.numpy(), numpy_adam(start_every, g_every, [1, 2, 3, 4, 5]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sometimes.numpy(), numpy_adam(start_sometimes, g_sometimes, [1, 2, 3]),
                               rtol=1e-5, atol=1e-6)
    assert optimizer.variable_steps(every) == 5 and optimizer.variable_steps(sometimes) == 3
    assert int(optimizer.iterations.numpy()) == 5
    # The shared count would have given ``sometimes`` the steps 1, 3, 5: a different result.
    assert not np.allclose(sometimes.numpy(), numpy_adam(start_sometimes, g_sometimes, [1, 3, 5]), atol=1e-6)


def test_the_setting_survives_a_config_round_trip():
    optimizer = FusedAdam(LR, count_steps_per_variable=True)
    assert FusedAdam.from_config(optimizer.get_config()).count_steps_per_variable
    with pytest.raises(ValueError, match="amsgrad"):
        FusedAdam(LR, amsgrad=True, count_steps_per_variable=True)


def make_batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    s = rng.gamma(2.0, 1.0, size=(n, N_FEATURES)).astype("float32")
    targets = rng.gamma(2.0, 1.0, size=(n, N_PATHS, N_FEATURES)).astype("float32")
    return s, rng.integers(0, N_CLASSES, size=n), targets


def make_net(per_path=True):
    keras.utils.set_random_seed(11)
    return MPVSNet(N_FEATURES, N_CLASSES, encoder_units=6, num_paths=N_PATHS, fc_units=5, dropout=0.0, lam=20.0,
                   per_path_updates=per_path)


@pytest.mark.parametrize("adam", [keras.optimizers.Adam, FusedAdam])
def test_every_decoder_takes_a_first_adam_step_on_the_first_batch(adam):
    s, labels, targets = make_batch()
    net = make_net()
    net.mpae.adapt(s)
    net.compile(mpae_optimizer=adam(LR))
    kernels = [net.mpae.decoders.path_variables(j)[0] for j in range(N_PATHS)]
    before = [k.numpy() for k in kernels]
    net.train_on_batch(s, {"label": labels, "targets": targets})
    # Adam's first step moves each weight by lr·g/(|g| + ε'), i.e. by lr where |g| is not tiny;
    # with one shared count decoder j would take 1.000, 0.744, 0.639, ... of it.
    for j, (kernel, start) in enumerate(zip(kernels, before)):
        ratio = np.abs(kernel.numpy() - start).max() / LR
        assert ratio == pytest.approx(1.0, abs=2e-3), f"decoder {j + 1}: first step / lr = {ratio:.3f}"
    optimizer = net.mpae_optimizer
    assert optimizer.variable_steps(net.mpae.encoder.kernel) == N_PATHS  # lines 7-8 run N times
    assert all(optimizer.variable_steps(k) == 1 for k in kernels)
