"""Adam and momentum SGD whose update is one fused TensorFlow kernel per variable.

Keras 3 writes each optimizer's update as backend-neutral element-wise ops. For Adam that is
about ten full-size temporaries per variable (``g - m``, ``g²``, ``√v``, ...), each one pass over
memory. At the paper's size stage 2 trains 617 M weights (the encoder and five 25088 x 4096
decoders), so the update, not the matrix products, dominated the step, and its temporaries
(each as large as the largest variable) pushed the peak memory past the weights and moments.

TensorFlow has had the whole update as one in-place kernel for years (``ResourceApplyAdam``,
``ResourceApplyKerasMomentum``; tf.keras 2 used them). These subclasses call those kernels and
otherwise are Keras' own optimizers: same arguments, same slot variables, same config, so a
checkpoint of one restores into the other. The arithmetic is the same as Keras'::

    m ← m + (g − m)(1 − β₁)          v ← v + (g² − v)(1 − β₂)
    w ← w − lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ) · m / (√v + ε)

Cases the kernels do not cover (amsgrad, sparse gradients, a backend other than TensorFlow)
run Keras' update unchanged.
"""

from __future__ import annotations

import keras
from keras import ops


def _fused_kernels_available() -> bool:
    return keras.backend.backend() == "tensorflow"


def _handle(variable):
    """The resource handle of a Keras or tf.Variable (inside a distributed update: this replica's)."""
    if isinstance(variable, keras.Variable):
        variable = variable.value
    return variable.handle


def _is_dense(gradient) -> bool:
    import tensorflow as tf

    return not isinstance(gradient, tf.IndexedSlices)


@keras.saving.register_keras_serializable(package="dam_cnn_tf")
class FusedAdam(keras.optimizers.Adam):
    """``keras.optimizers.Adam`` with the update computed by TensorFlow's ``ResourceApplyAdam``."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or not _fused_kernels_available() or not _is_dense(gradient):
            return super().update_step(gradient, variable, learning_rate)
        import tensorflow as tf

        dtype = variable.dtype
        local_step = ops.cast(self.iterations + 1, dtype)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable),
            m=_handle(self._momentums[index]),
            v=_handle(self._velocities[index]),
            beta1_power=ops.power(ops.cast(self.beta_1, dtype), local_step),
            beta2_power=ops.power(ops.cast(self.beta_2, dtype), local_step),
            lr=ops.cast(learning_rate, dtype),
            beta1=ops.cast(self.beta_1, dtype),
            beta2=ops.cast(self.beta_2, dtype),
            epsilon=ops.cast(self.epsilon, dtype),
            grad=ops.cast(gradient, dtype),
            use_locking=False,
        )


@keras.saving.register_keras_serializable(package="dam_cnn_tf")
class FusedSGD(keras.optimizers.SGD):
    """``keras.optimizers.SGD`` whose momentum update is TensorFlow's ``ResourceApplyKerasMomentum``."""

    def update_step(self, gradient, variable, learning_rate):
        if not self.momentum or not _fused_kernels_available() or not _is_dense(gradient):
            return super().update_step(gradient, variable, learning_rate)
        import tensorflow as tf

        dtype = variable.dtype
        # Keras' rule: m ← μ·m − lr·g;  w ← w + m  (Nesterov: w ← w + μ·m − lr·g).
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=_handle(variable),
            accum=_handle(self.momentums[self._get_variable_index(variable)]),
            lr=ops.cast(learning_rate, dtype),
            grad=ops.cast(gradient, dtype),
            momentum=ops.cast(self.momentum, dtype),
            use_locking=False,
            use_nesterov=self.nesterov,
        )
