"""End-to-end training of every part of DAM-CNN (beyond the paper, which names it as future
work in §5): backbone, SERD, MPAE and the FC head learn together.

Each part keeps its own objective and optimizer:

* FC head: ``L_ce`` (Eq. 10), at ``alpha_fc``;
* MPAE encoder and decoders: ``Σ_j J_j + λ·L_ce`` (Eq. 11), at ``alpha_m``;
* backbone and SERD: ``L_ce + L_reg`` (Eq. 4 with DAM-CNN's classifier), at ``alpha_s``.

The reconstruction losses do not reach the backbone: its features are also the targets, and
shrinking every feature towards zero would lower ``J_j`` without learning anything. Targets
are the salient features of N same-class images, computed by the same front without
gradient (inference mode) in the same step.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from dam_cnn_tf import hparams
from dam_cnn_tf.models.mpae import reconstruction_losses, replica_share
from dam_cnn_tf.models.mpvs_net import MPVSNet
from dam_cnn_tf.optimizers import FusedAdam


class EndToEndDAMCNN(keras.Model):
    """Trains ``front`` (images → ``{"features", "attention"}``, e.g. ``salient_feature_model``)
    and ``net`` (an ``MPVSNet``) jointly. ``fit`` takes ``x = images (B, H, W, 3)`` and
    ``y = {"label": (B,), "target_images": (B, N, H, W, 3)}``. Saved through its parts."""

    def __init__(self, front: keras.Model, net: MPVSNet, **kwargs):
        super().__init__(**kwargs)
        self.front = front
        self.net = net
        self.front_optimizer = None
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.ce_tracker = keras.metrics.Mean(name="cross_entropy")
        self.reg_tracker = keras.metrics.Mean(name="serd_regularizer")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.accuracy_metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.built = True  # both parts arrive built

    def call(self, images, training=False):
        return self.net(self.front(images, training=training)["features"], training=training)

    def front_variables(self):
        return self.front.trainable_variables

    def compile(self, optimizer=None, mpae_optimizer=None, front_optimizer=None, **kwargs):
        self.net.compile(optimizer=optimizer, mpae_optimizer=mpae_optimizer)
        super().compile(optimizer=self.net.optimizer, **kwargs)
        self.front_optimizer = keras.optimizers.get(front_optimizer or FusedAdam(hparams.ALPHA_S))
        self.front_optimizer.build(self.front_variables())

    @property
    def metrics(self):
        return [self.loss_tracker, self.ce_tracker, self.reg_tracker, self.reconstruction_tracker, self.accuracy_metric]

    def _targets(self, target_images, num_images):
        shape = ops.shape(target_images)
        flat = ops.reshape(target_images, (-1, shape[2], shape[3], shape[4]))
        features = self.front(flat, training=False)["features"]
        return ops.stop_gradient(ops.reshape(features, (num_images, self.net.num_paths, -1)))

    def _step_losses(self, images, labels, target_images, training):
        targets = self._targets(target_images, ops.shape(images)[0])
        features = self.front(images, training=training)["features"]
        regularizer = ops.sum(self.front.losses) if self.front.losses else ops.zeros(())
        mpae = self.net.mpae
        code = mpae.encode(features, training=training)
        probabilities = self.net.classify(code, training=training)
        cross_entropy = ops.mean(keras.losses.sparse_categorical_crossentropy(labels, probabilities))
        per_path = reconstruction_losses(mpae.decoders(code), mpae.scale_targets(targets))
        return cross_entropy, regularizer, per_path, probabilities

    def train_step(self, data):
        images, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        labels, target_images = y["label"], y["target_images"]
        with tf.GradientTape(persistent=True) as tape:
            cross_entropy, regularizer, per_path, probabilities = self._step_losses(images, labels, target_images, True)
            head_loss = replica_share(cross_entropy)  # Eq. 10
            mpae_loss = replica_share(ops.sum(per_path) + self.net.lam * cross_entropy)  # Eq. 11
            front_loss = replica_share(cross_entropy + regularizer)  # Eq. 4, through the MPAE code
        for loss, optimizer, variables in (
            (head_loss, self.net.optimizer, self.net.head_variables()),
            (mpae_loss, self.net.mpae_optimizer, self.net.mpae_variables()),
            (front_loss, self.front_optimizer, self.front_variables()),
        ):
            optimizer.apply(tape.gradient(loss, variables), variables)
        del tape
        return self._report(labels, cross_entropy, regularizer, per_path, probabilities)

    def test_step(self, data):
        images, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self._report(y["label"], *self._step_losses(images, y["label"], y["target_images"], False))

    def _report(self, labels, cross_entropy, regularizer, per_path, probabilities):
        reconstruction = ops.sum(per_path)
        self.loss_tracker.update_state(reconstruction + self.net.lam * cross_entropy + regularizer)
        self.ce_tracker.update_state(cross_entropy)
        self.reg_tracker.update_state(regularizer)
        self.reconstruction_tracker.update_state(reconstruction)
        self.accuracy_metric.update_state(labels, probabilities)
        return {m.name: m.result() for m in self.metrics}
