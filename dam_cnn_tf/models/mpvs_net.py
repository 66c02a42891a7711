"""The Multi-Path Variation-Suppressing Network (MPVS-Net), paper §3.3.2, Eq. 10-11.

MPAE encoder → FC (ReLU) → FC (softmax). The two parts learn by different rules:

* the fully-connected head minimises the cross-entropy alone (Eq. 10), at ``alpha_fc``;
* the MPAE (encoder and decoders) minimises ``Σ_j J_j + λ·L_ce`` (Eq. 11), at ``alpha_m``.

So the head's update never sees λ or the reconstruction losses, while the encoder's sees
both; ``_routed_objective`` writes both rules as one scalar whose gradient gives each part its
own (one forward and one backward pass, on every Keras backend). One fused update per batch
over all paths is the default: both parts step at once. ``per_path_updates=True`` runs Algorithm 1's inner loop instead (lines 6-10):
for each path j, update the encoder and decoder j with ``J_j + λ·L_ce`` (lines 7-8), and then
the head with ``L_ce`` computed through the encoder just updated (line 9), N updates per batch.
Under Adam each variable's bias correction then counts its own updates (the encoder N per batch,
decoder j one), as if each path had an optimizer of its own.
"""

from __future__ import annotations

import keras
from keras import ops

from dam_cnn_tf import hparams
from dam_cnn_tf.models import steps
from dam_cnn_tf.models.mpae import MultiPathAutoencoder, reconstruction_losses
from dam_cnn_tf.models.steps import replica_share
from dam_cnn_tf.optimizers import FusedAdam, OptimizerPair


def _unpack_labels_and_targets(y):
    """``y`` is ``{"label": (B,), "targets": (B, N, D)}`` or the tuple ``(label, targets)``."""
    if isinstance(y, dict):
        return y["label"], y["targets"]
    label, targets = y
    return label, targets


@keras.saving.register_keras_serializable(package="dam_cnn_tf")
class MPVSNet(keras.Model):
    """MPVS-Net on flattened salient features ``(B, D)``; calling it returns class probabilities.

    ``fit`` takes ``x = s`` and ``y = {"label": labels, "targets": (B, N, D)}``. ``compile``
    takes two optimizers: ``optimizer`` for the head (default Adam at ``alpha_fc``) and
    ``mpae_optimizer`` for the MPAE (default Adam at ``alpha_m``).
    """

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        encoder_units: int = hparams.ENCODER_UNITS,
        num_paths: int = hparams.NUM_PATHS,
        fc_units: int = hparams.FC_UNITS,
        dropout: float = hparams.DROPOUT,
        lam: float = hparams.LAMBDA,
        per_path_updates: bool = False,
        decoder: str = "dense",
        feature_shape=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.input_dim = int(input_dim)
        self.num_classes = int(num_classes)
        self.fc_units = int(fc_units)
        self.dropout_rate = float(dropout)
        self.lam = float(lam)
        self.per_path_updates = bool(per_path_updates)
        self.mpae = MultiPathAutoencoder(
            input_dim,
            encoder_units=encoder_units,
            num_paths=num_paths,
            dropout=dropout,
            decoder=decoder,
            feature_shape=feature_shape,
            name="mpae",
            dtype=self.dtype_policy,
        )
        # W, B of Eq. 10: the two fully-connected layers (the softmax in float32 whatever the policy).
        self.fc1 = keras.layers.Dense(self.fc_units, activation="relu", name="mpvs_fc1", dtype=self.dtype_policy)
        self.fc_dropout = keras.layers.Dropout(self.dropout_rate, name="mpvs_fc1_dropout", dtype=self.dtype_policy)
        self.classifier = keras.layers.Dense(self.num_classes, activation="softmax", dtype="float32", name="mpvs_fc2")

        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.ce_tracker = keras.metrics.Mean(name="cross_entropy")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.path_trackers = [keras.metrics.Mean(name=f"path_{j + 1}_loss") for j in range(num_paths)]
        self.accuracy_metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.mpae_optimizer = None
        self.build((None, self.input_dim))

    @property
    def num_paths(self) -> int:
        return self.mpae.num_paths

    def build(self, input_shape):
        for layer, shape in (
            (self.mpae, input_shape),
            (self.fc1, (None, self.mpae.encoder_units)),
            (self.classifier, (None, self.fc_units)),
        ):
            if not layer.built:
                layer.build(shape)
        self.built = True

    def head_variables(self):
        return self.fc1.trainable_variables + self.classifier.trainable_variables

    def mpae_variables(self):
        return self.mpae.trainable_variables

    def init_head_from_dense(self, fc_weights, output_weights) -> None:
        """Start the two FC layers (W, B of Eq. 10) from ``[kernel, bias]`` pairs of the same
        shapes: stage 1's fc7 and fc8, when the encoder starts from its fc6."""
        self.fc1.set_weights(fc_weights)
        self.classifier.set_weights(output_weights)

    def classify(self, h, training=False):
        """The two FC layers on an encoding ``h``."""
        return self.classifier(self.fc_dropout(self.fc1(h), training=training))

    def call(self, s, training=False):
        return self.classify(self.mpae.encode(s, training=training), training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    # --- optimisers --------------------------------------------------------------------------
    def compile(self, optimizer=None, mpae_optimizer=None, **kwargs):
        """Compile with the head's optimizer (Eq. 10) and the MPAE's optimizer (Eq. 11)."""
        kwargs.pop("loss", None)  # the objective is fixed by Eq. 10-11
        head_optimizer = keras.optimizers.get(optimizer or FusedAdam(hparams.ALPHA_FC))
        mpae_optimizer = keras.optimizers.get(mpae_optimizer or FusedAdam(hparams.ALPHA_M))
        if self.dtype_policy.name == "mixed_float16":
            head_optimizer = _with_loss_scaling(head_optimizer)
            mpae_optimizer = _with_loss_scaling(mpae_optimizer)
        if self.per_path_updates:
            mpae_optimizer = _counting_steps_per_variable(mpae_optimizer)
        super().compile(optimizer=head_optimizer, **kwargs)
        # Each optimizer holds slots for its own variables only: Adam's moments for the
        # ~100M-weight decoders must not be duplicated in the head's optimizer.
        head_optimizer.build(self.head_variables())
        self.mpae_optimizer = mpae_optimizer
        self.mpae_optimizer.build(self.mpae_variables())
        if steps.backend() == "jax":
            # JAX's fit carries ``model.optimizer.variables`` through its compiled step: both
            # optimizers' state must be there. ``optimizer`` still saves as the head's alone.
            self.optimizer = OptimizerPair(head_optimizer, mpae_optimizer)

    def optimizers(self):
        """``(head optimizer, MPAE optimizer)``: Eq. 10's and Eq. 11's (``None`` before ``compile``)."""
        optimizer = getattr(self, "optimizer", None)
        if isinstance(optimizer, OptimizerPair):
            return optimizer.parts.head, optimizer.parts.mpae
        return optimizer, self.mpae_optimizer

    def get_compile_config(self):
        head_optimizer, mpae_optimizer = self.optimizers()
        if head_optimizer is None or mpae_optimizer is None:
            return None
        return {
            "optimizer": keras.optimizers.serialize(head_optimizer),
            "mpae_optimizer": keras.optimizers.serialize(mpae_optimizer),
        }

    def compile_from_config(self, config):
        self.compile(
            optimizer=keras.optimizers.deserialize(config["optimizer"]),
            mpae_optimizer=keras.optimizers.deserialize(config["mpae_optimizer"]),
        )

    # --- training ----------------------------------------------------------------------------
    @property
    def metrics(self):
        return [
            self.loss_tracker,
            self.ce_tracker,
            self.reconstruction_tracker,
            *self.path_trackers,
            self.accuracy_metric,
        ]

    def _forward(self, s, labels, targets, training, path=None, encoder_ce_weight=None):
        """Cross-entropy, per-path reconstruction losses and probabilities for one batch.

        ``encoder_ce_weight`` scales the cross-entropy's gradient on its way from the head into
        the encoder (see ``_routed_objective``); the values computed are the same.
        """
        h = self.mpae.encode(s, training=training)
        head_input = h if encoder_ce_weight is None else steps.scale_gradient(h, encoder_ce_weight)
        probabilities = self.classify(head_input, training=training)
        cross_entropy = ops.mean(keras.losses.sparse_categorical_crossentropy(labels, probabilities))
        scaled_targets = self.mpae.scale_targets(targets)
        if path is None:
            per_path = reconstruction_losses(self.mpae.decoders(h), scaled_targets)
        else:
            reconstruction = self.mpae.decoders.call_path(h, path)[:, None]
            per_path = reconstruction_losses(reconstruction, scaled_targets[:, path : path + 1])
        return cross_entropy, per_path, probabilities

    def _routed_objective(self, s, labels, targets, path=None):
        """Eq. 10 and Eq. 11 as one scalar, whose gradient is each part's own update rule.

        ``ΣJ_j + L_ce``, with the cross-entropy's gradient multiplied by λ where it leaves the
        head for the encoder: the head's gradient is ∇L_ce (Eq. 10), the decoders' ∇ΣJ_j and the
        encoder's ∇(ΣJ_j + λ·L_ce) (Eq. 11), from one forward and one backward pass on every
        backend. Each term carries its own optimizer's loss scale (mixed_float16), so λ's factor
        is corrected by their ratio. With ``path``, J_j of that path alone (Algorithm 1, line 8).
        """
        head_optimizer, mpae_optimizer = self.optimizers()
        head_scale = head_optimizer.scale_loss(ops.ones((), "float32"))
        mpae_scale = mpae_optimizer.scale_loss(ops.ones((), "float32"))
        cross_entropy, per_path, probabilities = self._forward(
            s, labels, targets, True, path, encoder_ce_weight=self.lam * mpae_scale / head_scale)
        objective = (mpae_scale * replica_share(ops.sum(per_path))
                     + head_scale * replica_share(cross_entropy))
        return objective, (cross_entropy, per_path, probabilities)

    def _head_objective(self, s, labels):
        """Eq. 10's cross-entropy for the head alone, the encoder held as it is (Algorithm 1, line 9)."""
        head_optimizer, _ = self.optimizers()
        h = ops.stop_gradient(self.mpae.encode(s, training=True))
        cross_entropy = ops.mean(keras.losses.sparse_categorical_crossentropy(labels, self.classify(h, training=True)))
        return head_optimizer.scale_loss(replica_share(cross_entropy)), None

    def _apply_routed_gradients(self, s, labels, targets, path=None):
        """One update of Eq. 10 (head) and Eq. 11 (MPAE); with ``path``, Algorithm 1's lines 7-9."""
        head_optimizer, mpae_optimizer = self.optimizers()
        head_vars = self.head_variables()
        # Algorithm 1, line 8 updates the encoder and decoder j only; the other paths are left
        # alone, optimizer state included.
        mpae_vars = self.mpae_variables() if path is None else self.mpae.path_variables(path)
        routed = head_vars + mpae_vars if path is None else mpae_vars
        grads, (cross_entropy, per_path, probabilities) = steps.gradients(
            lambda: self._routed_objective(s, labels, targets, path), routed)
        steps.apply(mpae_optimizer, grads[len(routed) - len(mpae_vars):], mpae_vars, self.mpae_variables())
        if path is None:
            head_grads = grads[: len(head_vars)]
        else:  # Algorithm 1, line 9 after lines 7-8: through the updated encoder
            head_grads, _ = steps.gradients(lambda: self._head_objective(s, labels), head_vars)
        steps.apply(head_optimizer, head_grads, head_vars, head_vars)
        return cross_entropy, per_path, probabilities

    # On JAX, Keras calls these with the state first: ``train_step(state, data)`` (see ``steps``).
    def train_step(self, *args):
        return steps.train_step(self, self._train_step, args)

    def test_step(self, *args):
        return steps.test_step(self, self._test_step, args)

    def _train_step(self, data):
        s, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        labels, targets = _unpack_labels_and_targets(y)
        if not self.per_path_updates:
            cross_entropy, per_path, probabilities = self._apply_routed_gradients(s, labels, targets)
        else:
            path_losses = []
            for j in range(self.num_paths):  # Algorithm 1, lines 6-10
                cross_entropy, path_loss, probabilities = self._apply_routed_gradients(s, labels, targets, path=j)
                path_losses.append(path_loss[0])
            per_path = ops.stack(path_losses)
        return self._report(labels, cross_entropy, per_path, probabilities)

    def _test_step(self, data):
        s, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        if isinstance(y, dict) or isinstance(y, (tuple, list)):
            labels, targets = _unpack_labels_and_targets(y)
            cross_entropy, per_path, probabilities = self._forward(s, labels, targets, training=False)
            return self._report(labels, cross_entropy, per_path, probabilities)
        # Labels alone: evaluate classification only.
        probabilities = self(s, training=False)
        cross_entropy = ops.mean(keras.losses.sparse_categorical_crossentropy(y, probabilities))
        self.ce_tracker.update_state(cross_entropy)
        self.loss_tracker.update_state(cross_entropy)
        self.accuracy_metric.update_state(y, probabilities)
        return {m.name: m.result() for m in (self.loss_tracker, self.ce_tracker, self.accuracy_metric)}

    def _report(self, labels, cross_entropy, per_path, probabilities):
        reconstruction = ops.sum(per_path)
        self.loss_tracker.update_state(reconstruction + self.lam * cross_entropy)
        self.ce_tracker.update_state(cross_entropy)
        self.reconstruction_tracker.update_state(reconstruction)
        for j, tracker in enumerate(self.path_trackers):
            tracker.update_state(per_path[j])
        self.accuracy_metric.update_state(labels, probabilities)
        return {m.name: m.result() for m in self.metrics}

    def get_config(self):
        return {
            **super().get_config(),  # name, trainable and dtype policy
            "input_dim": self.input_dim,
            "num_classes": self.num_classes,
            "encoder_units": self.mpae.encoder_units,
            "num_paths": self.num_paths,
            "fc_units": self.fc_units,
            "dropout": self.dropout_rate,
            "lam": self.lam,
            "per_path_updates": self.per_path_updates,
            "decoder": self.mpae.decoder_kind,
            "feature_shape": list(self.mpae.feature_shape) if self.mpae.feature_shape else None,
        }


def _counting_steps_per_variable(optimizer):
    """Adam whose bias correction counts each variable's own updates, for the per-path loop.

    Keras' Adam and ``FusedAdam`` are converted (same settings); SGD has no bias correction and
    stays as it is. Other adaptive optimizers keep one shared count, said in a warning.
    """
    if isinstance(optimizer, FusedAdam) and optimizer.count_steps_per_variable:
        return optimizer
    if type(optimizer) in (keras.optimizers.Adam, FusedAdam) and not optimizer.amsgrad and not optimizer.built:
        return FusedAdam.from_config({**optimizer.get_config(), "count_steps_per_variable": True})
    if not isinstance(optimizer, keras.optimizers.SGD):
        import logging

        logging.getLogger(__name__).warning(
            "per_path_updates with %s: its step count advances N times per batch for every path, so "
            "decoder j's bias correction is not its own (FusedAdam counts per variable)", type(optimizer).__name__)
    return optimizer


def _with_loss_scaling(optimizer):
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer
    return keras.optimizers.LossScaleOptimizer(optimizer)
