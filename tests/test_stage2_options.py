"""Stage-2 options that used to be silently ignored or mislabelled."""

import numpy as np

from dam_cnn_tf.models.mpae import MultiPathAutoencoder

from cli_helpers import TINY_OPTIONS, invoke, synthetic_folder


def test_encoder_from_fc6_reproduces_fc6_pre_activation_on_training_features():
    rng = np.random.default_rng(0)
    s = rng.gamma(1.0, 3.0, size=(20, 8)).astype("float32") * (rng.random((20, 8)) > 0.3)
    kernel, bias = rng.normal(size=(8, 5)), rng.normal(size=5)
    mpae = MultiPathAutoencoder(8, encoder_units=5, num_paths=1)
    mpae.adapt(s)
    mpae.init_encoder_from_dense(kernel, bias)
    h = np.asarray(mpae.encode(s))
    fc6_pre_activation = s.astype(np.float64) @ kernel + bias
    np.testing.assert_allclose(h, 1 / (1 + np.exp(-fc6_pre_activation)), rtol=1e-5, atol=1e-6)


def test_num_paths_beside_pair_attribute_is_refused_in_one_line(tmp_path):
    data = synthetic_folder(tmp_path / "faces")
    result = invoke("train", "--data", data, "--no-detect", "--run-dir", tmp_path / "run", *TINY_OPTIONS,
                    "--pair-attribute", "gender", expect_ok=False)
    assert result.exit_code != 0
    message = result.output.strip().splitlines()
    assert len(message) == 1 and "--num-paths" in message[0] and "--pair-attribute" in message[0], result.output
    assert not (tmp_path / "run").exists()
