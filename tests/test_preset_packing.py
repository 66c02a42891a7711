"""Packing a trained model as a preset: reading faces as the training faces were, class names
inside the model, float16 storage. Checked against OpenCV and the unpacked model."""

import cv2
import numpy as np
import pytest

from dam_cnn_tf import MPVSNet, build_dam_cnn, build_vgg_serd
from dam_cnn_tf.layers.class_names import NamedProbabilities, class_names_of
from dam_cnn_tf.layers.read_faces import ReadFacesAs
from dam_cnn_tf.models.model_file import load_model_file
from dam_cnn_tf.presets.packing import preset_model, sha256_of, store_float16

NAMES = ("anger", "happiness", "surprise")


@pytest.fixture(scope="module")
def dam_cnn():
    vgg_serd = build_vgg_serd(3, input_shape=(32, 32, 3), fc_units=8, backbone_widths=(4, 4, 8, 8, 8))
    net = MPVSNet(8, 3, encoder_units=6, num_paths=2, fc_units=5)
    net.mpae.adapt(np.random.default_rng(0).gamma(2.0, 1.0, size=(20, 8)).astype("float32"))
    return build_dam_cnn(vgg_serd, net)


def _faces(n=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3)).astype(np.uint8)


def test_grey_is_opencv_luma_in_every_channel():
    faces = _faces()
    out = np.asarray(ReadFacesAs(grey=True)(faces.astype("float32")))
    for face, read in zip(faces, out):
        expected = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY).astype(np.float32)
        for channel in range(3):  # OpenCV rounds to uint8; the layer keeps the fraction
            np.testing.assert_allclose(read[..., channel], expected, atol=0.51)


def test_source_size_keeps_a_face_that_has_that_detail_and_blurs_one_that_has_more():
    # A smooth 32x32 image (what an enlarged 8x8 face looks like) against pixel-level noise.
    y, x = np.mgrid[0:32, 0:32] / 31.0
    smooth = (128 + 60 * np.sin(2.5 * x + 1.0) * np.cos(2.0 * y)).astype(np.float32)
    smooth = np.repeat(smooth[None, ..., None], 3, -1)
    sharp = _faces(1).astype(np.float32)
    layer = ReadFacesAs(grey=False, source_size=8)
    kept = np.abs(np.asarray(layer(smooth)) - smooth).mean()
    blurred = np.abs(np.asarray(layer(sharp)) - sharp).mean()
    assert kept < 3.0 and blurred > 30.0


def test_named_probabilities_refuse_a_wrong_count_and_duplicates():
    with pytest.raises(ValueError, match="distinct"):
        NamedProbabilities(["a", "a"])
    with pytest.raises(ValueError, match="2 class names for 3"):
        NamedProbabilities(["a", "b"])(np.zeros((1, 3), np.float32))


def test_preset_model_reads_colour_as_grey_and_names_its_classes(dam_cnn):
    model = preset_model(dam_cnn, NAMES, grey=True)
    faces = _faces()
    grey = np.repeat(np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in faces])[..., None], 3, -1)
    np.testing.assert_allclose(model.predict(faces, verbose=0)["probabilities"],
                               dam_cnn.predict(grey.astype("float32"), verbose=0)["probabilities"], atol=2e-3)
    assert class_names_of(model) == list(NAMES)
    assert set(model.output) == {"probabilities", "attention"}


def test_float16_storage_halves_the_file_and_keeps_the_predictions(dam_cnn, tmp_path):
    model = preset_model(dam_cnn, NAMES, grey=True, source_size=16)
    full = tmp_path / "full.keras"
    model.save(full)
    half = store_float16(model, tmp_path / "model.keras")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.keras", "model.keras"]  # no temporary left
    assert half.stat().st_size < 0.75 * full.stat().st_size
    loaded = load_model_file(half)
    faces = _faces(6, seed=3)
    expected = model.predict(faces, verbose=0)["probabilities"]
    got = loaded.predict(faces, verbose=0)["probabilities"]
    np.testing.assert_allclose(got, expected, atol=5e-3)
    assert class_names_of(loaded) == list(NAMES)
    assert all(w.dtype == "float32" for w in loaded.weights)  # stored half, computed in float32
    assert len(sha256_of(half)) == 64 and sha256_of(half) != sha256_of(full)


def test_mirror_average_is_the_mean_of_the_face_and_its_mirror(dam_cnn, tmp_path):
    model = preset_model(dam_cnn, NAMES, mirror_average=True)
    faces = _faces(3, seed=4).astype("float32")
    expected = (dam_cnn.predict(faces, verbose=0)["probabilities"]
                + dam_cnn.predict(faces[:, :, ::-1], verbose=0)["probabilities"]) / 2
    out = model.predict(faces, verbose=0)
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-6)
    np.testing.assert_allclose(out["attention"], dam_cnn.predict(faces, verbose=0)["attention"], atol=1e-6)
    loaded = load_model_file(store_float16(model, tmp_path / "model.keras"))
    np.testing.assert_allclose(loaded.predict(faces, verbose=0)["probabilities"], expected, atol=5e-3)
