"""get_config / from_config of the custom models keep what Keras' own config carries."""

import pytest

from dam_cnn_tf import MPVSNet
from dam_cnn_tf.models.mpae import MultiPathAutoencoder


@pytest.mark.parametrize("make", [
    lambda **kw: MultiPathAutoencoder(12, encoder_units=4, num_paths=2, **kw),
    lambda **kw: MPVSNet(12, 3, encoder_units=4, num_paths=2, fc_units=5, **kw),
])
def test_round_trip_keeps_name_trainable_and_dtype(make):
    model = make(name="custom_name", trainable=False, dtype="float64")
    config = model.get_config()
    clone = type(model).from_config(config)
    assert clone.name == "custom_name"
    assert clone.trainable is False
    assert clone.dtype_policy.name == "float64"
    assert clone.get_config() == config
