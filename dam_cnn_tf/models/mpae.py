"""The Multi-Path AutoEncoder (MPAE), paper §3.3.1, Eq. 6-9.

One sigmoid encoder (Eq. 6) and N sigmoid decoders (Eq. 7); decoder j learns to reconstruct
``sᵢʲ``, a *different* sample of the *same class* as the input ``sᵢ`` (Eq. 8), so the
encoding keeps what the samples share, the expression, and the decoders absorb the rest.

Inputs and targets are scaled into [0, 1] by a ``FeatureScaler`` fitted on training
features (DESIGN §1); targets are data and carry no gradient.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from dam_cnn_tf import hparams
from dam_cnn_tf.layers.decoders import ConvMultiPathDecoder, MultiPathDecoder
from dam_cnn_tf.layers.feature_scaling import FeatureScaler
from dam_cnn_tf.models import steps
from dam_cnn_tf.models.steps import replica_share

DECODER_KINDS = ("dense", "conv")


def reconstruction_losses(reconstructions, targets):
    """Eq. 8 for every path: ``J_j = (1/n) Σᵢ ‖ŝᵢʲ − sᵢʲ‖₂²``.

    ``reconstructions`` and ``targets`` have shape ``(B, N, D)``; returns ``(N,)``.
    """
    diff = ops.cast(reconstructions, "float32") - ops.cast(targets, "float32")
    return ops.mean(ops.sum(ops.square(diff), axis=-1), axis=0)


@keras.saving.register_keras_serializable(package="dam_cnn_tf")
class MultiPathAutoencoder(keras.Model):
    """MPAE over flattened salient features of size ``input_dim``.

    Calling the model returns the encoding ``h`` (Eq. 6), so it drops into a Keras model as
    an encoder. ``reconstruct`` returns all N decodings ``(B, N, D)``. ``fit`` takes
    ``(s, targets)`` with ``s`` of shape ``(B, D)`` and ``targets`` ``(B, N, D)`` and
    minimises ``J_all = Σ_j J_j`` (Eq. 9), reporting ``loss`` and each path's ``path_j_loss``.

    ``decoder="conv"`` swaps in the convolutional decoders of §4.5 (needs ``feature_shape``,
    the ``(h, w, C)`` map the features were flattened from).
    """

    def __init__(
        self,
        input_dim: int,
        encoder_units: int = hparams.ENCODER_UNITS,
        num_paths: int = hparams.NUM_PATHS,
        dropout: float = hparams.DROPOUT,
        decoder: str = "dense",
        feature_shape=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if decoder not in DECODER_KINDS:
            raise ValueError(f"decoder must be one of {DECODER_KINDS}, got {decoder!r}")
        if decoder == "conv" and feature_shape is None:
            raise ValueError("decoder='conv' needs feature_shape, the (h, w, C) of the salient features")
        self.input_dim = int(input_dim)
        self.encoder_units = int(encoder_units)
        self.num_paths = int(num_paths)
        self.dropout_rate = float(dropout)
        self.decoder_kind = decoder
        self.feature_shape = tuple(feature_shape) if feature_shape is not None else None

        policy = self.dtype_policy  # the sublayers follow the model's policy, not only the global one
        self.scaler = FeatureScaler(name="feature_scaler", dtype=policy)
        # W_E, B_E of Eq. 6.
        self.encoder = keras.layers.Dense(self.encoder_units, activation="sigmoid", name="encoder", dtype=policy)
        self.code_dropout = keras.layers.Dropout(self.dropout_rate, name="code_dropout", dtype=policy)
        if decoder == "dense":
            self.decoders = MultiPathDecoder(self.num_paths, self.input_dim, name="decoders", dtype=policy)
        else:
            self.decoders = ConvMultiPathDecoder(self.num_paths, self.feature_shape, name="decoders", dtype=policy)

        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.path_trackers = [keras.metrics.Mean(name=f"path_{j + 1}_loss") for j in range(self.num_paths)]
        self.build((None, self.input_dim))

    def build(self, input_shape):
        for layer, shape in (
            (self.scaler, input_shape),
            (self.encoder, input_shape),
            (self.decoders, (None, self.encoder_units)),
        ):
            if not layer.built:
                layer.build(shape)
        self.built = True

    # --- forward -----------------------------------------------------------------------------
    def encode(self, s, training=False):
        """Eq. 6: ``h = sig(W_E s + B_E)`` on scaled features, with dropout while training."""
        return self.code_dropout(self.encoder(self.scaler(s)), training=training)

    def call(self, s, training=False):
        return self.encode(s, training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.encoder_units)

    def reconstruct(self, s, training=False):
        """All N decodings of ``s``, ``(B, N, D)`` in the scaled [0, 1] space."""
        return self.decoders(self.encode(s, training=training))

    def scale_targets(self, targets):
        """Targets ``(B, N, D)`` into the decoders' range, as data (no gradient)."""
        flat = ops.reshape(targets, (-1, self.input_dim))
        scaled = ops.reshape(self.scaler(flat), (-1, self.num_paths, self.input_dim))
        return ops.stop_gradient(scaled)

    def path_variables(self, path: int):
        """What path ``path``'s objective ``J_j`` trains: the encoder and decoder ``path``."""
        return self.encoder.trainable_variables + self.decoders.path_variables(path)

    def init_encoder_from_dense(self, kernel, bias) -> None:
        """Start W_E, B_E (Eq. 6) so that, on training features, the encoder's pre-activation
        equals that of a dense layer ``s @ kernel + bias`` on the unscaled features (stage 1's
        fc6). The encoder sees ``s / max`` (clipped), so row i of ``kernel`` is multiplied by
        ``max_i``; the activations still differ (sigmoid here, ReLU in fc6). Call after ``adapt``.
        """
        feature_max = np.asarray(keras.ops.convert_to_numpy(self.scaler.feature_max), dtype=np.float64)
        kernel = np.asarray(kernel, dtype=np.float64) * feature_max[:, None]
        self.encoder.set_weights([kernel.astype("float32"), np.asarray(bias, dtype="float32")])

    def adapt(self, features) -> None:
        """Fit the input/target scaling on training features ``(n, D)`` (DESIGN §1)."""
        self.scaler.adapt(features)

    # --- training ----------------------------------------------------------------------------
    @property
    def metrics(self):
        return [self.loss_tracker, *self.path_trackers]

    def _step_losses(self, data, training):
        s, targets, _ = keras.utils.unpack_x_y_sample_weight(data)
        per_path = reconstruction_losses(self.reconstruct(s, training=training), self.scale_targets(targets))
        return per_path, ops.sum(per_path)  # J_j (Eq. 8) and J_all (Eq. 9)

    def _report(self, per_path, total):
        self.loss_tracker.update_state(total)
        for j, tracker in enumerate(self.path_trackers):
            tracker.update_state(per_path[j])
        return {m.name: m.result() for m in self.metrics}

    # On JAX, Keras calls these with the state first: ``train_step(state, data)`` (see ``steps``).
    def train_step(self, *args):
        return steps.train_step(self, self._train_step, args)

    def test_step(self, *args):
        return steps.test_step(self, lambda data: self._report(*self._step_losses(data, training=False)), args)

    def _train_step(self, data):
        def objective():  # Eq. 9
            per_path, total = self._step_losses(data, training=True)
            return self.optimizer.scale_loss(replica_share(total)), (per_path, total)

        grads, (per_path, total) = steps.gradients(objective, self.trainable_variables)
        steps.apply(self.optimizer, grads, self.trainable_variables, self.trainable_variables)
        return self._report(per_path, total)

    def get_config(self):
        return {
            **super().get_config(),  # name, trainable and dtype policy
            "input_dim": self.input_dim,
            "encoder_units": self.encoder_units,
            "num_paths": self.num_paths,
            "dropout": self.dropout_rate,
            "decoder": self.decoder_kind,
            "feature_shape": list(self.feature_shape) if self.feature_shape else None,
        }
