"""One Keras hygiene check for every custom layer: build, symbolic and eager calls,
compute_output_shape, a short fit, a config round trip and the mixed-precision policy."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def _flat(outputs):
    return keras.tree.flatten(outputs)


def _shapes(outputs):
    return [tuple(o.shape) for o in _flat(outputs)]


def _shape_tree(shape):
    # compute_output_shape gives a tuple of ints, or a tuple of such tuples for several outputs.
    return [tuple(shape)] if not shape or not isinstance(shape[0], (tuple, list)) else [tuple(s) for s in shape]


def check_layer(make, input_shape, low: float = 0.0, high: float = 1.0, fit: bool = True, float32_layers=()):
    """``make(**kwargs)`` builds the layer; ``input_shape`` excludes the batch. Under a mixed
    policy its outputs are float16 and so is every sublayer's computation, except the sublayers
    named in ``float32_layers`` (kept in float32 on purpose, such as a softmax; then the
    outputs may be float32)."""
    x = np.random.default_rng(0).uniform(low, high, size=(3, *input_shape)).astype("float32")

    # build, then the eager call and compute_output_shape agree on the shapes.
    layer = make()
    layer.build((None, *input_shape))
    assert layer.built
    eager = layer(x)
    expected = [(3, *s[1:]) for s in _shape_tree(layer.compute_output_shape((3, *input_shape)))]
    assert _shapes(eager) == expected, (_shapes(eager), expected)

    # The symbolic call (a functional model) gives the same shapes, with the batch unknown.
    symbolic = make()(keras.Input(input_shape))
    assert _shapes(symbolic) == [(None, *s[1:]) for s in expected]

    # Config round trip: an equal config, and with the same weights the same outputs.
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone.build((None, *input_shape))
    clone.set_weights(layer.get_weights())
    for a, b in zip(_flat(eager), _flat(clone(x))):
        np.testing.assert_allclose(ops.convert_to_numpy(a), ops.convert_to_numpy(b), rtol=1e-6, atol=1e-6)

    if fit:
        _short_fit(make, x)
    _mixed_precision(make, x, float32_layers)


def _short_fit(make, x):
    inputs = keras.Input(x.shape[1:])
    layer = make()
    hidden = _flat(layer(inputs))[0]
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(hidden)))
    model.compile(keras.optimizers.SGD(0.1), "mse")
    before = [w.numpy().copy() for w in layer.trainable_weights]
    history = model.fit(x, np.ones((len(x), 1), "float32"), batch_size=len(x), epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    if before:  # the layer's own trainable weights learn
        assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, layer.trainable_weights))


def _mixed_precision(make, x, float32_layers=()):
    # Keras' mixed policy: float32 variables, float16 computation and outputs, in every sublayer
    # too, whatever the global policy (float32 here).
    layer = make(dtype="mixed_float16")
    assert layer.dtype_policy.name == "mixed_float16"
    policies = {sub.name: sub.dtype_policy.name for sub in layer._flatten_layers(include_self=False)}
    expected = {name: "float32" if name in float32_layers else "mixed_float16" for name in policies}
    assert policies == expected
    outputs = _flat(layer(x))
    allowed = {"float16", "float32"} if float32_layers else {"float16"}
    assert {keras.backend.standardize_dtype(o.dtype) for o in outputs} <= allowed, [o.dtype for o in outputs]
    assert all(keras.backend.standardize_dtype(w.dtype) == "float32" for w in layer.weights), \
        [(w.path, w.dtype) for w in layer.weights]
