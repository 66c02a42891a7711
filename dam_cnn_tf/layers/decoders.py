"""The N decoding paths of the MPAE (paper §3.3.1, Eq. 7).

``MultiPathDecoder`` is the paper's: path j is ``ŝʲ = sig(Vʲ h + B_Dʲ)``, a fully connected
layer per path, each with its own ``(H, D)`` kernel ``Vʲ`` and bias ``B_Dʲ``. Each path is one
``(B, H) x (H, D)`` product, 6.6 GFLOP at the paper's size and a batch of 32: large enough to
run at the machine's matrix-multiply speed alone, and bounded on any device by reading the
kernels, the same ``N·H·D`` weights whether read by one product or N (docs/performance.md
measures the paths stacked into one ``(H, N·D)`` product 1.5-2.9x slower forward + backward
on a CPU). Separate variables also give each path its own optimizer state, so Algorithm 1's
per-path update touches only that path's decoder under any optimizer.

``ConvMultiPathDecoder`` is the lighter alternative the paper's §4.5 proposes: each path
projects ``h`` to a small ``(h, w, c)`` map and a convolution shared by all paths lifts it to
the feature map's channels, so the parameters per path drop by two orders of magnitude.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="dam_cnn_tf")
class MultiPathDecoder(keras.layers.Layer):
    """N sigmoid decoders ``(B, H) -> (B, N, D)`` (Eq. 7)."""

    def __init__(self, num_paths: int, output_dim: int, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if num_paths < 1:
            raise ValueError(f"num_paths must be at least 1, got {num_paths}")
        self.num_paths = int(num_paths)
        self.output_dim = int(output_dim)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        hidden = input_shape[-1]
        # V^j and B_D^j of Eq. 7, one pair of variables per path j.
        self.kernels, self.biases = [], []
        for j in range(1, self.num_paths + 1):
            self.kernels.append(
                self.add_weight(name=f"kernel_{j}", shape=(hidden, self.output_dim), initializer=self.kernel_initializer)
            )
            self.biases.append(self.add_weight(name=f"bias_{j}", shape=(self.output_dim,), initializer="zeros"))

    def call(self, h):
        return ops.stack([self.call_path(h, j) for j in range(self.num_paths)], axis=1)

    def call_path(self, h, path: int):
        """Decoder ``path`` alone, ``(B, H) -> (B, D)``, for Algorithm 1's per-path updates."""
        kernel, bias = self.path_variables(path)
        return ops.sigmoid(ops.matmul(h, ops.cast(kernel, h.dtype)) + ops.cast(bias, h.dtype))

    def path_variables(self, path: int):
        """The variables decoder ``path`` alone uses: ``[Vʲ, B_Dʲ]``."""
        return [self.kernels[path], self.biases[path]]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_paths, self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_paths=self.num_paths,
            output_dim=self.output_dim,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package="dam_cnn_tf")
class ConvMultiPathDecoder(keras.layers.Layer):
    """N decoders with a shared convolution: ``(B, H) -> (B, N, h·w·C)`` (beyond the paper, §4.5)."""

    def __init__(self, num_paths: int, feature_shape, bottleneck_channels: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.num_paths = int(num_paths)
        self.feature_shape = tuple(int(v) for v in feature_shape)
        self.bottleneck_channels = int(bottleneck_channels)
        height, width, _ = self.feature_shape
        self.projection = MultiPathDecoder(
            self.num_paths, height * width * self.bottleneck_channels, name="projection", dtype=self.dtype_policy
        )
        self.lift = keras.layers.Conv2D(self.feature_shape[-1], 3, padding="same", name="lift", dtype=self.dtype_policy)

    @property
    def output_dim(self) -> int:
        height, width, channels = self.feature_shape
        return height * width * channels

    def build(self, input_shape):
        height, width, _ = self.feature_shape
        self.projection.build(input_shape)
        self.lift.build((None, height, width, self.bottleneck_channels))

    def _lift(self, projected, paths: int):
        height, width, _ = self.feature_shape
        maps = ops.reshape(projected, (-1, height, width, self.bottleneck_channels))
        # The projection's sigmoid keeps the bottleneck in (0, 1); the lift ends in a sigmoid too (Eq. 7).
        return ops.reshape(ops.sigmoid(self.lift(maps)), (-1, paths, self.output_dim))

    def call(self, h):
        return self._lift(self.projection(h), self.num_paths)

    def call_path(self, h, path: int):
        return self._lift(self.projection.call_path(h, path), 1)[:, 0]

    def path_variables(self, path: int):
        """Path ``path``'s projection and the lift every path shares."""
        return self.projection.path_variables(path) + self.lift.trainable_variables

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_paths, self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_paths=self.num_paths,
            feature_shape=list(self.feature_shape),
            bottleneck_channels=self.bottleneck_channels,
        )
        return config
