"""The MPAE (Eq. 6-9), its decoders and the feature scaling, against NumPy."""

import numpy as np
import keras
import pytest

from dam_cnn_tf import MultiPathAutoencoder
from dam_cnn_tf.layers.decoders import ConvMultiPathDecoder, MultiPathDecoder
from dam_cnn_tf.layers.feature_scaling import FeatureScaler

pytestmark = pytest.mark.backends  # run under every Keras backend (README, Set up)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_mpae_losses(model, s, targets):
    """Eq. 6-8 written out with the model's weights, in float64."""
    feature_max = model.scaler.feature_max.numpy().astype("float64")
    scale = lambda x: np.clip(x / feature_max, 0.0, 1.0)  # noqa: E731
    w_e, b_e = (w.astype("float64") for w in model.encoder.get_weights())
    h = sigmoid(scale(s) @ w_e + b_e)  # Eq. 6
    weights = [w.astype("float64") for w in model.decoders.get_weights()]  # V^1, B_D^1, V^2, B_D^2, ...
    losses = []
    for j in range(model.num_paths):
        recon = sigmoid(h @ weights[2 * j] + weights[2 * j + 1])  # Eq. 7
        losses.append(np.mean(np.sum((recon - scale(targets[:, j])) ** 2, axis=1)))  # Eq. 8
    return np.array(losses)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    s = rng.gamma(2.0, 1.5, size=(10, 12)).astype("float32")
    targets = rng.gamma(2.0, 1.5, size=(10, 3, 12)).astype("float32")
    return s, targets


def test_per_path_losses_match_numpy(data):
    s, targets = data
    model = MultiPathAutoencoder(12, encoder_units=5, num_paths=3, dropout=0.0)
    model.adapt(s)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    got = model.evaluate(s, targets, batch_size=10, verbose=0, return_dict=True)
    want = numpy_mpae_losses(model, s.astype("float64"), targets.astype("float64"))
    for j in range(3):
        np.testing.assert_allclose(got[f"path_{j + 1}_loss"], want[j], rtol=1e-4)
    np.testing.assert_allclose(got["loss"], want.sum(), rtol=1e-4)  # Eq. 9


def test_scaler_fits_training_maxima_and_clips():
    rng = np.random.default_rng(1)
    train = rng.gamma(2.0, 2.0, size=(50, 6)).astype("float32")
    train[:, 2] = 0.0  # a feature that never fires keeps a unit scale
    scaler = FeatureScaler()
    scaler.adapt(train, batch_size=7)  # chunked reading gives the same maxima
    want_max = train.max(axis=0)
    want_max[2] = 1.0
    np.testing.assert_allclose(scaler.feature_max.numpy(), want_max, rtol=1e-6)
    test = np.concatenate([train[:2], 10 * want_max[None]], axis=0)
    scaled = np.asarray(scaler(test))
    assert scaled.min() >= 0.0 and scaled.max() <= 1.0
    np.testing.assert_allclose(scaled[:2], np.clip(train[:2] / want_max, 0, 1), rtol=1e-6)
    np.testing.assert_array_equal(scaled[2], 1.0)


def test_targets_carry_no_gradient(data):
    from keras import ops

    from dam_cnn_tf.models.steps import gradients

    s, targets = data
    model = MultiPathAutoencoder(12, encoder_units=5, num_paths=3)
    t = keras.Variable(targets)
    (grad,), _ = gradients(lambda: (ops.sum(model.scale_targets(t)), None), [t])
    # None where the backend says "no path" (TensorFlow, PyTorch), zeros where it differentiates anyway (JAX).
    assert grad is None or not np.any(ops.convert_to_numpy(grad))


def test_batched_decoders_equal_each_path():
    h = np.random.default_rng(2).uniform(size=(4, 6)).astype("float32")
    decoder = MultiPathDecoder(3, 10)
    together = np.asarray(decoder(h))
    assert together.shape == (4, 3, 10)
    for j in range(3):
        np.testing.assert_allclose(together[:, j], np.asarray(decoder.call_path(h, j)), rtol=1e-6)
    conv = ConvMultiPathDecoder(3, (2, 2, 5), bottleneck_channels=4)
    together = np.asarray(conv(h))
    assert together.shape == (4, 3, 20)
    for j in range(3):
        np.testing.assert_allclose(together[:, j], np.asarray(conv.call_path(h, j)), rtol=1e-5, atol=1e-6)


def test_conv_decoders_have_far_fewer_parameters_at_paper_scale():
    # 7x7x512 salient features, 4096 units, 5 paths: count the parameters without building.
    h, w, c, units, paths = 7, 7, 512, 4096, 5
    dense = paths * (units * h * w * c + h * w * c)
    conv = ConvMultiPathDecoder(paths, (h, w, c))
    conv.build((None, 16))  # a narrow code gives the same lift, so scale the projection analytically
    lift = conv.lift.count_params()
    projection = paths * (units * h * w * conv.bottleneck_channels + h * w * conv.bottleneck_channels)
    assert (projection + lift) * 10 < dense


def test_fit_lowers_reconstruction_loss_and_reports_paths():
    rng = np.random.default_rng(3)
    prototypes = rng.uniform(size=(2, 16)).astype("float32")
    labels = rng.integers(0, 2, size=64)
    s = prototypes[labels] + 0.05 * rng.normal(size=(64, 16)).astype("float32")
    targets = np.stack([prototypes[labels] + 0.05 * rng.normal(size=(64, 16)) for _ in range(2)], 1)
    model = MultiPathAutoencoder(16, encoder_units=8, num_paths=2, dropout=0.0)
    model.adapt(s)
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    history = model.fit(s, targets.astype("float32"), epochs=15, batch_size=16, verbose=0).history
    assert set(history) == {"loss", "path_1_loss", "path_2_loss"}
    assert history["loss"][-1] < 0.5 * history["loss"][0]


@pytest.mark.parametrize("decoder", ["dense", "conv"])
def test_save_load_round_trip(tmp_path, data, decoder):
    s, targets = data
    model = MultiPathAutoencoder(12, encoder_units=5, num_paths=3, decoder=decoder, feature_shape=(2, 2, 3))
    model.adapt(s)
    model.compile(optimizer="adam")
    model.fit(s, targets, epochs=1, verbose=0)
    model.save(tmp_path / "mpae.keras")
    loaded = keras.models.load_model(tmp_path / "mpae.keras")
    np.testing.assert_array_equal(np.asarray(loaded(s)), np.asarray(model(s)))
    np.testing.assert_array_equal(np.asarray(loaded.reconstruct(s)), np.asarray(model.reconstruct(s)))
    np.testing.assert_array_equal(loaded.scaler.feature_max.numpy(), model.scaler.feature_max.numpy())


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="decoder must be one of"):
        MultiPathAutoencoder(12, decoder="deconv")
    with pytest.raises(ValueError, match="feature_shape"):
        MultiPathAutoencoder(12, decoder="conv")
