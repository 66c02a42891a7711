"""Fused Adam and momentum SGD: the same arithmetic as Keras' optimizers, in one kernel."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from dam_cnn_tf.optimizers import FusedAdam, FusedSGD

SHAPES = [(7, 5), (5,), (2, 3, 4)]


def _problem(seed=0, steps=4):
    rng = np.random.default_rng(seed)
    start = [rng.normal(size=shape).astype("float32") for shape in SHAPES]
    grads = [[rng.normal(size=shape).astype("float32") for shape in SHAPES] for _ in range(steps)]
    return start, grads


def _run(optimizer, start, grads, jit=False):
    variables = [keras.Variable(w) for w in start]
    optimizer.build(variables)
    apply = tf.function(lambda g: optimizer.apply(g, variables), jit_compile=jit)
    for step in grads:
        apply([tf.constant(g) for g in step])
    return [v.numpy() for v in variables]


def _numpy_adam(start, grads, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """Kingma & Ba's Adam in float64, written out."""
    weights = [w.astype("float64") for w in start]
    m = [np.zeros_like(w) for w in weights]
    v = [np.zeros_like(w) for w in weights]
    for t, step in enumerate(grads, start=1):
        for i, g in enumerate(step):
            m[i] = beta_1 * m[i] + (1 - beta_1) * g
            v[i] = beta_2 * v[i] + (1 - beta_2) * g * g
            alpha = lr * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
            weights[i] = weights[i] - alpha * m[i] / (np.sqrt(v[i]) + epsilon)
    return weights


def _numpy_momentum(start, grads, lr, momentum, nesterov):
    weights = [w.astype("float64") for w in start]
    velocity = [np.zeros_like(w) for w in weights]
    for step in grads:
        for i, g in enumerate(step):
            velocity[i] = momentum * velocity[i] - lr * g
            weights[i] = weights[i] + (momentum * velocity[i] - lr * g if nesterov else velocity[i])
    return weights


@pytest.mark.parametrize("jit", [False, True])
def test_fused_adam_equals_numpy_and_keras_adam(jit):
    start, grads = _problem()
    fused = _run(FusedAdam(0.05), start, grads, jit=jit)
    keras_adam = _run(keras.optimizers.Adam(0.05), start, grads)
    reference = _numpy_adam(start, grads, lr=0.05)
    for f, k, r, w in zip(fused, keras_adam, reference, start):
        np.testing.assert_allclose(f, r, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(f, k, rtol=1e-5, atol=1e-6)
        assert not np.allclose(f, w)


@pytest.mark.parametrize("nesterov", [False, True])
def test_fused_sgd_equals_numpy_momentum(nesterov):
    start, grads = _problem(seed=1)
    fused = _run(FusedSGD(0.1, momentum=0.9, nesterov=nesterov), start, grads)
    keras_sgd = _run(keras.optimizers.SGD(0.1, momentum=0.9, nesterov=nesterov), start, grads)
    reference = _numpy_momentum(start, grads, lr=0.1, momentum=0.9, nesterov=nesterov)
    for f, k, r in zip(fused, keras_sgd, reference):
        np.testing.assert_allclose(f, r, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(f, k, rtol=1e-5, atol=1e-6)


def test_the_update_is_one_fused_kernel_per_variable():
    variables = [keras.Variable(np.ones(shape, "float32")) for shape in SHAPES]
    grads = [tf.ones(shape) for shape in SHAPES]
    for optimizer, kernel in ((FusedAdam(0.1), "ResourceApplyAdam"), (FusedSGD(0.1, momentum=0.9), "ResourceApplyKerasMomentum")):
        optimizer.build(variables)
        graph = tf.function(lambda: optimizer.apply(grads, variables)).get_concrete_function().graph
        op_types = [op.type for op in graph.get_operations()]
        assert op_types.count(kernel) == len(SHAPES)
        assert "Sqrt" not in op_types and "Square" not in op_types  # no element-wise Keras update


def test_uncovered_cases_fall_back_to_keras():
    start, grads = _problem(seed=2)
    for fused, plain in ((FusedAdam(0.05, amsgrad=True), keras.optimizers.Adam(0.05, amsgrad=True)),
                         (FusedSGD(0.1), keras.optimizers.SGD(0.1))):
        for f, k in zip(_run(fused, start, grads), _run(plain, start, grads)):
            np.testing.assert_allclose(f, k, rtol=1e-6, atol=1e-7)


def test_learning_rate_schedule_and_weight_decay_are_honoured():
    start, grads = _problem(seed=3)
    schedule = lambda: keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=1, decay_rate=0.5)  # noqa: E731
    fused = _run(FusedAdam(schedule(), weight_decay=0.1), start, grads)
    plain = _run(keras.optimizers.Adam(schedule(), weight_decay=0.1), start, grads)
    for f, k in zip(fused, plain):
        np.testing.assert_allclose(f, k, rtol=1e-5, atol=1e-6)


def test_model_round_trip_keeps_the_optimizer_and_its_state(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer=FusedAdam(0.01), loss="mse")
    x, y = np.ones((8, 4), "float32"), np.zeros((8, 3), "float32")
    model.fit(x, y, epochs=2, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer) is FusedAdam
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    model.fit(x, y, epochs=1, verbose=0)
    loaded.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_allclose(model.get_weights()[0], loaded.get_weights()[0], rtol=1e-6)
