"""SERD (Eq. 1-3) against an independent NumPy computation."""

import numpy as np
import keras
import pytest

from dam_cnn_tf import SERDLayer, serd_regularizer

pytestmark = pytest.mark.backends  # run under every Keras backend (README, Set up)


def numpy_serd(h_c, kernel, bias, gamma1, gamma2):
    """Eq. 1-3 written out: 1x1 conv to one channel, tanh, ReLU(M ⊙ h_c), L_reg per sample."""
    logits = np.einsum("bhwc,c->bhw", h_c, kernel[0, 0, :, 0]) + bias[0]
    mask = np.tanh(logits)[..., None]
    h_s = np.maximum(mask * h_c, 0.0)
    l1 = np.abs(mask).reshape(len(h_c), -1).sum(axis=1)
    frob = ((1.0 - mask**2) ** 2).reshape(len(h_c), -1).sum(axis=1)
    reg = gamma1 * np.mean(l1**2) + gamma2 * np.mean(frob)
    return h_s, mask, reg


def test_eq1_bias_against_numpy():
    # W_a and B_a set by hand, not read back: M = tanh(h_c · w + b), h_s = ReLU(M ⊙ h_c), Eq. 3.
    rng = np.random.default_rng(7)
    h_c = rng.normal(size=(2, 3, 4, 5)).astype("float32")
    w, b = rng.normal(0, 0.5, size=5).astype("float32"), np.float32(-0.8)
    layer = SERDLayer(gamma1=0.1, gamma2=0.05, return_attention=True)
    layer.build(h_c.shape)
    layer.attention_conv.kernel.assign(w.reshape(1, 1, 5, 1))
    layer.attention_conv.bias.assign([b])
    h_s, mask = layer(h_c, training=True)
    want_mask = np.tanh(h_c.astype("float64") @ w.astype("float64") + b)[..., None]
    want_hs = np.maximum(want_mask * h_c, 0.0)
    want_reg = (0.1 * np.mean(np.abs(want_mask).sum(axis=(1, 2, 3)) ** 2)
                + 0.05 * np.mean(((1 - want_mask**2) ** 2).sum(axis=(1, 2, 3))))
    np.testing.assert_allclose(np.asarray(mask), want_mask, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(h_s), want_hs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(layer.losses[0]), want_reg, rtol=1e-5)
    # The bias matters: without it the mask is another one.
    assert np.abs(np.tanh(h_c @ w)[..., None] - np.asarray(mask)).max() > 0.3


@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (2, 7, 7, 16), (1, 2, 9, 3)])
def test_serd_matches_numpy(shape):
    rng = np.random.default_rng(0)
    h_c = rng.normal(size=shape).astype("float32")
    layer = SERDLayer(gamma1=0.3, gamma2=0.2, return_attention=True, kernel_initializer="glorot_uniform",
                      bias_initializer=keras.initializers.RandomNormal(0.0, 0.5))
    h_s, mask = layer(h_c, training=True)
    kernel, bias = layer.attention_conv.get_weights()
    want_hs, want_mask, want_reg = numpy_serd(h_c.astype("float64"), kernel, bias, 0.3, 0.2)
    np.testing.assert_allclose(np.asarray(mask), want_mask, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(h_s), want_hs, rtol=1e-5, atol=1e-6)
    assert len(layer.losses) == 1
    np.testing.assert_allclose(float(layer.losses[0]), want_reg, rtol=1e-5)


def test_mask_in_open_interval_and_negative_weights_cut():
    rng = np.random.default_rng(1)
    h_c = rng.normal(size=(4, 5, 5, 8)).astype("float32")
    layer = SERDLayer(return_attention=True, kernel_initializer="glorot_uniform")
    h_s, mask = layer(h_c)
    mask = np.asarray(mask)
    assert mask.shape == (4, 5, 5, 1)
    assert np.all(mask > -1) and np.all(mask < 1)
    # Positive features under a negative weight are cut, under a positive one kept (Eq. 2).
    cut = np.broadcast_to(mask < 0, h_c.shape) & (h_c > 0)
    kept = np.broadcast_to(mask > 0, h_c.shape) & (h_c > 0)
    assert cut.any() and kept.any()
    assert np.all(np.asarray(h_s)[cut] == 0)
    assert np.all(np.asarray(h_s)[kept] > 0)


def test_attention_starts_uniform_and_keeps_every_position():
    # Non-negative features like a pretrained backbone's: a random W_a would cut some positions.
    h_c = np.abs(np.random.default_rng(3).normal(2.0, 1.0, size=(3, 4, 4, 64))).astype("float32")
    layer = SERDLayer(return_attention=True)
    h_s, mask = layer(h_c)
    np.testing.assert_allclose(np.asarray(mask), np.tanh(1.0), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(h_s), np.tanh(1.0) * h_c, rtol=1e-5)
    # ... and W_a gets a gradient from there, different at each position's features.
    from keras import ops

    from dam_cnn_tf.models.steps import gradients

    def objective():
        h_s, _ = layer(h_c)
        return ops.sum(h_s * np.linspace(-1, 1, 64, dtype="float32")), None

    (kernel_grad,), _ = gradients(objective, [layer.attention_conv.kernel])
    assert np.abs(np.asarray(kernel_grad)).min() > 0
    random_start = SERDLayer(return_attention=True, kernel_initializer="glorot_uniform")
    # What the uniform start avoids: tanh saturated (at +1 or -1), where W_a learns nothing.
    assert (np.abs(np.asarray(random_start(h_c)[1])) > 0.99).mean() > 0.5


def test_regularizer_parts_separately():
    mask = np.random.default_rng(2).uniform(-1, 1, size=(3, 4, 4, 1)).astype("float32")
    l1 = np.abs(mask).reshape(3, -1).sum(1)
    frob = ((1 - mask**2) ** 2).reshape(3, -1).sum(1)
    np.testing.assert_allclose(float(serd_regularizer(mask, 1.0, 0.0)), np.mean(l1**2), rtol=1e-5)
    np.testing.assert_allclose(float(serd_regularizer(mask, 0.0, 1.0)), np.mean(frob), rtol=1e-5)


def test_loss_added_once_per_call_and_absent_without_gammas():
    x = np.ones((2, 3, 3, 4), "float32")
    layer = SERDLayer()
    layer(x, training=True)
    layer(x, training=True)
    assert len(layer.losses) == 1  # reset on each call, never accumulated
    silent = SERDLayer(gamma1=0.0, gamma2=0.0)
    silent(x, training=True)
    assert silent.losses == []


def test_inference_calls_add_no_loss():
    x = np.ones((2, 3, 3, 4), "float32")
    layer = SERDLayer()
    for training in (None, False):
        layer(x, training=training)
        assert layer.losses == []


def _tiny_serd_classifier(gamma1, gamma2):
    inputs = keras.Input((4, 4, 6))
    h_s = SERDLayer(gamma1=gamma1, gamma2=gamma2, name="serd")(inputs)
    x = keras.layers.Flatten()(h_s)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    return model


def test_regularizer_reaches_fit_not_evaluate():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 4, 4, 6)).astype("float32")
    y = rng.integers(0, 3, size=8)
    model = _tiny_serd_classifier(1e-2, 1e-3)
    probs = model.predict(x, verbose=0)
    ce = -np.mean(np.log(probs[np.arange(8), y]))
    mask = np.tanh(model.get_layer("serd").attention_conv(x))
    reg = float(serd_regularizer(mask, 1e-2, 1e-3))
    assert reg > 0.01
    # Validation is inference: its loss is the cross-entropy alone.
    np.testing.assert_allclose(model.evaluate(x, y, batch_size=8, verbose=0), ce, rtol=1e-4)
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    np.testing.assert_allclose(history.history["loss"][0], ce + reg, rtol=1e-4)


def test_serialization_round_trip(tmp_path):
    x = np.random.default_rng(4).normal(size=(2, 3, 3, 5)).astype("float32")
    inputs = keras.Input((3, 3, 5))
    h_s, mask = SERDLayer(gamma1=0.5, gamma2=0.25, return_attention=True, name="serd")(inputs)
    model = keras.Model(inputs, [h_s, mask])
    path = tmp_path / "serd.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    layer = loaded.get_layer("serd")
    assert (layer.gamma1, layer.gamma2, layer.return_attention) == (0.5, 0.25, True)
    for a, b in zip(model.predict(x, verbose=0), loaded.predict(x, verbose=0)):
        np.testing.assert_array_equal(a, b)


def test_rejects_non_feature_maps():
    with pytest.raises(ValueError, match="height, width, channels"):
        SERDLayer()(np.ones((2, 8), "float32"))
