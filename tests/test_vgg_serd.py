"""VGG-SERD (stage 1, Eq. 4-5), its baseline, the salient-feature front and other backbones."""

import numpy as np
import keras

from dam_cnn_tf import build_vgg_serd, compile_vgg_serd, salient_feature_model, serd_regularizer
from dam_cnn_tf.models.vgg_serd import feature_map_shape, has_serd

TINY = dict(input_shape=(32, 32, 3), fc_units=16, backbone_widths=(4, 4, 8, 8, 8), dropout=0.0)


def striped_images(n=48, seed=0):
    """Two learnable classes: horizontal vs vertical stripes, in raw 0-255 RGB."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    base = (np.arange(32) // 4 % 2).astype("float32") * 200
    images = np.empty((n, 32, 32, 3), "float32")
    for i, label in enumerate(labels):
        pattern = np.tile(base[:, None], (1, 32)) if label == 0 else np.tile(base[None, :], (32, 1))
        images[i] = pattern[..., None] + rng.uniform(0, 40, size=(32, 32, 3))
    return images, labels


def test_loss_is_cross_entropy_plus_serd_regularizer():
    images, labels = striped_images(8)
    model = build_vgg_serd(2, gamma1=1e-2, gamma2=1e-3, **TINY)
    compile_vgg_serd(model, optimizer=keras.optimizers.SGD(0.0))
    probs = model.predict(images, verbose=0)
    ce = -np.mean(np.log(probs[np.arange(8), labels]))
    mask = salient_feature_model(model).predict(images, verbose=0)["attention"]
    reg = float(serd_regularizer(mask, 1e-2, 1e-3))
    loss = model.train_on_batch(images, labels)  # SGD(0): the loss of these weights
    loss = float(loss[0] if isinstance(loss, (list, tuple)) else loss)
    np.testing.assert_allclose(loss, ce + reg, rtol=1e-4)  # Eq. 4
    # Inference does not compute the regularizer: evaluate's loss is the cross-entropy alone.
    np.testing.assert_allclose(model.evaluate(images, labels, batch_size=8, verbose=0)[0], ce, rtol=1e-4)


def test_short_fit_lowers_loss():
    images, labels = striped_images()
    model = build_vgg_serd(2, **TINY)
    compile_vgg_serd(model, learning_rate=1e-3)
    history = model.fit(images, labels, epochs=8, batch_size=16, verbose=0).history
    assert history["loss"][-1] < 0.7 * history["loss"][0]


def test_baseline_without_serd_has_no_regularizer():
    model = build_vgg_serd(3, use_serd=False, **TINY)
    assert not has_serd(model)
    model(np.zeros((1, 32, 32, 3), "float32"))
    assert model.losses == []
    assert set(salient_feature_model(model).output) == {"features"}


def test_salient_features_are_flattened_h_s():
    images, _ = striped_images(4)
    model = build_vgg_serd(2, input_shape=(64, 64, 3), fc_units=8, backbone_widths=(4, 4, 8, 8, 8))
    out = salient_feature_model(model).predict(images.repeat(2, 1).repeat(2, 2), verbose=0)
    assert feature_map_shape(model) == (2, 2, 8)
    assert out["features"].shape == (4, 32) and out["attention"].shape == (4, 2, 2, 1)
    assert out["features"].min() >= 0  # ReLU(M ⊙ h_c)


def test_any_keras_backbone():
    backbone = keras.Sequential(
        [keras.Input((32, 32, 3)), keras.layers.Conv2D(6, 3, strides=4, activation="relu")], name="custom"
    )
    model = build_vgg_serd(4, input_shape=(32, 32, 3), fc_units=8, backbone=backbone, preprocessing=keras.layers.Rescaling(1 / 255))
    assert feature_map_shape(model) == (8, 8, 6)
    assert model.predict(np.zeros((2, 32, 32, 3), "float32"), verbose=0).shape == (2, 4)


def test_round_trip(tmp_path):
    images, _ = striped_images(4)
    model = build_vgg_serd(2, **TINY)
    model.save(tmp_path / "vgg_serd.keras")
    loaded = keras.models.load_model(tmp_path / "vgg_serd.keras")
    np.testing.assert_array_equal(model.predict(images, verbose=0), loaded.predict(images, verbose=0))
