"""Scaling of salient features into the MPAE's [0, 1] range (DESIGN §1, "Reconstruction range").

The MPAE decoders end in a sigmoid (Eq. 7) but their targets, the salient features ``h_s``,
are ReLU outputs without an upper bound. Each feature is divided by its maximum over the
training split and clipped to [0, 1]. The maxima are a non-trainable weight of the layer,
so a saved or exported model applies the same transform.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="dam_cnn_tf")
class FeatureScaler(keras.layers.Layer):
    """``x -> clip(x / max_train(x), 0, 1)`` per feature, fitted with ``adapt``."""

    def __init__(self, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        self.feature_max = self.add_weight(
            name="feature_max", shape=(input_shape[-1],), initializer="ones", trainable=False
        )

    def adapt(self, features, batch_size: int = 4096) -> None:
        """Fit the per-feature maxima on training features: an array (or memmap) ``(n, D)``.

        Reads ``batch_size`` rows at a time so a memory-mapped cache is never loaded whole.
        """
        n, dim = features.shape
        if not self.built:
            self.build((None, dim))
        maxima = np.zeros(dim, dtype=np.float64)
        for start in range(0, n, batch_size):
            batch = np.asarray(features[start : start + batch_size], dtype=np.float64)
            maxima = np.maximum(maxima, batch.max(axis=0))
        # Features that never fire in training keep a unit scale instead of exploding.
        maxima[maxima < self.epsilon] = 1.0
        self.feature_max.assign(maxima.astype("float32"))

    def call(self, x):
        # Divided in float32 (the maxima's dtype), handed on in the layer's compute dtype.
        x = ops.cast(x, "float32")
        return ops.cast(ops.clip(x / self.feature_max, 0.0, 1.0), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(epsilon=self.epsilon)
        return config
