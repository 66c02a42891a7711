"""The VGG-Face backbone (Table 1) and its input convention."""

import numpy as np
import pytest

from dam_cnn_tf import build_vgg_face, preprocess_input
from dam_cnn_tf.backbones.vgg_face.model import CONV_LAYER_NAMES, VGG_FACE_MEAN_BGR, VGGFacePreprocess


def test_layer_names_follow_the_original_release():
    model = build_vgg_face(input_shape=(32, 32, 3), include_top=True, widths=(2, 2, 3, 3, 3), fc_units=4, classes=5)
    names = [layer.name for layer in model.layers]
    want = [
        "conv1_1", "conv1_2", "pool1", "conv2_1", "conv2_2", "pool2",
        "conv3_1", "conv3_2", "conv3_3", "pool3", "conv4_1", "conv4_2", "conv4_3", "pool4",
        "conv5_1", "conv5_2", "conv5_3", "pool5", "flatten", "fc6", "fc7", "fc8",
    ]
    assert names[1:] == want
    assert tuple(n for n in names if n.startswith("conv")) == CONV_LAYER_NAMES
    assert model.output.shape == (None, 5)


@pytest.mark.parametrize("size,spatial", [(224, 7), (64, 2), (48, 1)])
def test_pool5_is_h_c(size, spatial):
    model = build_vgg_face(input_shape=(size, size, 3), widths=(2, 2, 2, 2, 4))
    assert model.output.shape == (None, spatial, spatial, 4)


def test_preprocess_is_bgr_minus_mean():
    rgb = np.random.default_rng(0).uniform(0, 255, size=(2, 4, 4, 3)).astype("float32")
    out = preprocess_input(rgb)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_allclose(out[..., 0], rgb[..., 2] - VGG_FACE_MEAN_BGR[0], rtol=1e-6)
    np.testing.assert_allclose(out[..., 1], rgb[..., 1] - VGG_FACE_MEAN_BGR[1], rtol=1e-6)
    np.testing.assert_allclose(out[..., 2], rgb[..., 0] - VGG_FACE_MEAN_BGR[2], rtol=1e-6)


def test_grey_is_repeated_to_three_channels():
    grey = np.random.default_rng(1).uniform(0, 255, size=(1, 3, 3, 1)).astype("float32")
    out = preprocess_input(grey)
    np.testing.assert_allclose(out, preprocess_input(np.repeat(grey, 3, axis=-1)))
    layer_out = np.asarray(VGGFacePreprocess()(grey))
    np.testing.assert_allclose(layer_out, out)


def test_preprocess_refuses_other_channel_counts():
    with pytest.raises(ValueError, match="1 or 3 channels"):
        preprocess_input(np.zeros((1, 2, 2, 4), "float32"))


def test_widths_must_cover_five_blocks():
    with pytest.raises(ValueError, match="widths"):
        build_vgg_face(widths=(2, 2, 2))
