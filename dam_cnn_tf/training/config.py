"""Moved: settings to ``dam_cnn_tf.recipes.options``, their layers to ``dam_cnn_tf.recipes``;
these names keep working until release 0.3."""

from dam_cnn_tf.recipes import resolve_config  # noqa: F401
from dam_cnn_tf.recipes.options import (  # noqa: F401
    FIELDS,
    STAGE2_MONITORS,
    ConfigError,
    TrainConfig,
    read_config_file,
)
