"""Salient Expressional Region Descriptor (SERD), paper §3.2, Eq. 1-3."""

from __future__ import annotations

import keras
from keras import ops

from dam_cnn_tf import hparams


# B_a's start: M = tanh(1) ≈ 0.76 at every position (see SERDLayer).
UNIFORM_START_BIAS = 1.0


def serd_regularizer(mask, gamma1: float, gamma2: float):
    """Eq. 3: ``L_reg = γ1·‖M‖₁² + γ2·‖1 − M⊙M‖_F²``.

    Both norms are taken over one image's H x W mask and averaged over the batch.
    ``mask`` has shape ``(B, H, W, 1)``; the result is a scalar.
    """
    mask = ops.cast(mask, "float32")
    l1 = ops.sum(ops.abs(mask), axis=(1, 2, 3))
    frobenius_sq = ops.sum(ops.square(1.0 - ops.square(mask)), axis=(1, 2, 3))
    return gamma1 * ops.mean(ops.square(l1)) + gamma2 * ops.mean(frobenius_sq)


@keras.saving.register_keras_serializable(package="dam_cnn_tf")
class SERDLayer(keras.layers.Layer):
    """Attention over feature-map positions (Eq. 1-2) with its regularizer (Eq. 3).

    ``M = tanh(W_a * h_c + B_a)`` with a 1x1xCx1 convolution, so each attentive weight sees
    only the features at its own position; ``h_s = ReLU(M ⊙ h_c)`` with ``M`` broadcast over
    channels, so features under negative weights are cut. ``L_reg`` is added with
    ``add_loss`` on training calls, so ``fit`` minimises Eq. 4 without further wiring while
    inference (``predict``, ``evaluate``, an exported graph) does not compute it.

    Input ``(B, H, W, C)``; output ``h_s`` of the same shape, plus ``M`` of shape
    ``(B, H, W, 1)`` when ``return_attention`` is true.

    The paper does not say how ``W_a`` and ``B_a`` start. They start at ``W_a = 0`` and
    ``B_a = 1``: a uniform mask ``M = tanh(1) ≈ 0.76`` that keeps every position, from which
    training learns where to look. A random ``W_a`` (Glorot) on pretrained, non-negative
    features saturates ``tanh`` at -1 on a random share of the positions (a quarter to three
    quarters on face-resnet's CK+ maps, by seed), where ``ReLU(M ⊙ h_c)`` is 0 and no
    gradient flows: a run could start with most of the face cut out and never recover.
    """

    def __init__(
        self,
        gamma1: float = hparams.GAMMA1,
        gamma2: float = hparams.GAMMA2,
        return_attention: bool = False,
        kernel_initializer="zeros",
        bias_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.gamma1 = float(gamma1)
        self.gamma2 = float(gamma2)
        self.return_attention = bool(return_attention)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(
            bias_initializer if bias_initializer is not None else keras.initializers.Constant(UNIFORM_START_BIAS)
        )
        # W_a and B_a of Eq. 1.
        self.attention_conv = keras.layers.Conv2D(
            1, 1, kernel_initializer=self.kernel_initializer, bias_initializer=self.bias_initializer,
            name="attention_conv", dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"SERDLayer expects (batch, height, width, channels), got {input_shape}")
        self.attention_conv.build(input_shape)

    def attention_mask(self, h_c):
        """Eq. 1: the attentive mask ``M`` in (-1, 1), shape ``(B, H, W, 1)``."""
        return ops.tanh(self.attention_conv(h_c))

    def call(self, h_c, training=None):
        mask = self.attention_mask(h_c)
        h_s = ops.relu(mask * h_c)  # Eq. 2
        if training and (self.gamma1 or self.gamma2):
            self.add_loss(serd_regularizer(mask, self.gamma1, self.gamma2))
        if self.return_attention:
            return h_s, mask
        return h_s

    def compute_output_shape(self, input_shape):
        mask_shape = tuple(input_shape[:3]) + (1,)
        if self.return_attention:
            return tuple(input_shape), mask_shape
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            gamma1=self.gamma1,
            gamma2=self.gamma2,
            return_attention=self.return_attention,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
        )
        return config
