"""The assembled inference model (Fig. 2) and the full-size parameter counts of Table 1."""

import re
from pathlib import Path

import numpy as np
import keras
import pytest

from dam_cnn_tf import MPVSNet, build_dam_cnn, build_vgg_serd, salient_feature_model
from dam_cnn_tf.models.parameters import parameter_table

MODEL_DOC = Path(__file__).resolve().parents[1] / "docs" / "model.md"


@pytest.fixture
def parts():
    vgg_serd = build_vgg_serd(3, input_shape=(32, 32, 3), fc_units=8, backbone_widths=(4, 4, 8, 8, 8))
    net = MPVSNet(8, 3, encoder_units=6, num_paths=4, fc_units=5)
    rng = np.random.default_rng(0)
    net.mpae.adapt(rng.gamma(2.0, 1.0, size=(20, 8)).astype("float32"))
    images = rng.uniform(0, 255, size=(5, 32, 32, 3)).astype("float32")
    return vgg_serd, net, images


def test_inference_is_backbone_serd_encoder_head(parts):
    vgg_serd, net, images = parts
    model = build_dam_cnn(vgg_serd, net)
    out = model.predict(images, verbose=0)
    front = salient_feature_model(vgg_serd).predict(images, verbose=0)
    np.testing.assert_allclose(out["probabilities"], np.asarray(net(front["features"])), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["attention"], front["attention"][..., 0], rtol=1e-6)
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, rtol=1e-5)


def test_decoders_absent_from_inference_model(parts):
    vgg_serd, net, _ = parts
    model = build_dam_cnn(vgg_serd, net)
    decoder_weights = {id(v) for v in net.mpae.decoders.weights}
    assert decoder_weights and not decoder_weights & {id(v) for v in model.weights}
    decoder_params = net.mpae.decoders.count_params()
    assert model.count_params() == vgg_serd.count_params() - sum(
        vgg_serd.get_layer(n).count_params() for n in ("fc6", "fc7", "fc8")
    ) + net.count_params() - decoder_params


def test_round_trip_gives_identical_outputs(parts, tmp_path):
    vgg_serd, net, images = parts
    model = build_dam_cnn(vgg_serd, net)
    model.save(tmp_path / "dam_cnn.keras")
    loaded = keras.models.load_model(tmp_path / "dam_cnn.keras")
    a, b = model.predict(images, verbose=0), loaded.predict(images, verbose=0)
    for key in ("probabilities", "attention"):
        np.testing.assert_array_equal(a[key], b[key])


def test_needs_serd(parts):
    _, net, _ = parts
    baseline = build_vgg_serd(3, input_shape=(32, 32, 3), fc_units=8, backbone_widths=(4, 4, 8, 8, 8), use_serd=False)
    with pytest.raises(ValueError, match="SERD"):
        build_dam_cnn(baseline, net)


def test_decoder_parameters_grow_linearly_with_paths():
    counts = [MPVSNet(12, 3, encoder_units=6, num_paths=n, fc_units=4).mpae.decoders.count_params() for n in (1, 2, 5)]
    assert counts[1] == 2 * counts[0] and counts[2] == 5 * counts[0]


@pytest.mark.slow  # builds paper-size tensors: hundreds of MB
def test_readme_parameter_counts_match_full_size_model():
    rows = parameter_table(num_classes=7, num_paths=5)
    counts = {part: count for part, _, count in rows}
    assert counts["MPAE encoder (Eq. 6)"] == 25088 * 4096 + 4096  # Table 1: Encoder(25088x4096)
    assert counts["MPAE decoder, each path (Eq. 7)"] == 4096 * 25088 + 25088
    assert counts["SERD attention (Eq. 1)"] == 512 + 1
    readme = MODEL_DOC.read_text()
    for part, shape, count in rows:
        line = f"| {part} | {shape} | {count:,} |"
        assert line in readme, f"docs/model.md lacks the row: {line}"
    assert re.search(r"134,314,824", readme)
