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
run Keras' update unchanged; on JAX, XLA compiles Keras' element-wise update into the step.
``count_steps_per_variable`` works on every backend (in ``keras.ops`` where the kernel is absent).

``OptimizerPair`` is how MPVS-Net's two optimizers (Eq. 10 and 11) travel through JAX's
stateless ``fit``.
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
    """``keras.optimizers.Adam`` with the update computed by TensorFlow's ``ResourceApplyAdam``.

    ``count_steps_per_variable=True``: the bias correction of each variable uses the number of
    times *that variable* was updated, not the optimizer's iteration count. The two differ when a
    step updates only some variables: in Algorithm 1's per-path loop the shared encoder is updated
    N times per batch but decoder j once, so with one shared count decoder j's first step would
    be scaled by √(1 − β₂ᵗ)/(1 − β₁ᵗ) at t = j + 1 instead of t = 1 (0.74x for j = 2). Each
    variable then follows Adam exactly as if it had an optimizer of its own.
    """

    def __init__(self, *args, count_steps_per_variable: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.count_steps_per_variable = bool(count_steps_per_variable)
        if self.count_steps_per_variable and self.amsgrad:
            raise ValueError("count_steps_per_variable is not available with amsgrad")

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        if self.count_steps_per_variable:
            # Counted like ``iterations``: once per update, by the first replica only.
            self._variable_steps = [
                self.add_variable((), initializer="zeros", dtype="int", aggregation="only_first_replica",
                                  name=f"{variable.name}_steps")
                for variable in var_list
            ]

    def variable_steps(self, variable) -> int:
        """How many updates ``variable`` has had (``count_steps_per_variable`` only)."""
        return int(self._variable_steps[self._get_variable_index(variable)].numpy())

    def apply(self, grads, trainable_variables=None):
        grads = list(grads)
        super().apply(grads, trainable_variables)
        if self.count_steps_per_variable:
            variables = self._trainable_variables if trainable_variables is None else trainable_variables
            for gradient, variable in zip(grads, variables):
                if gradient is not None:
                    self._variable_steps[self._get_variable_index(variable)].assign_add(1)

    def update_step(self, gradient, variable, learning_rate):
        if not _fused_kernels_available():
            if self.count_steps_per_variable:
                return self._update_counting_own_steps(gradient, variable, learning_rate)
            return super().update_step(gradient, variable, learning_rate)
        import tensorflow as tf

        if self.count_steps_per_variable and not _is_dense(gradient):
            gradient = tf.convert_to_tensor(gradient)  # the fused kernel, which counts per variable
        if self.amsgrad or not _is_dense(gradient):
            return super().update_step(gradient, variable, learning_rate)

        dtype = variable.dtype
        index = self._get_variable_index(variable)
        steps = self._variable_steps[index] if self.count_steps_per_variable else self.iterations
        local_step = ops.cast(steps + 1, dtype)
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

    def _update_counting_own_steps(self, gradient, variable, learning_rate):
        """The update of the module docstring in ``keras.ops``, t being this variable's own count."""
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        step = ops.cast(self._variable_steps[index] + 1, dtype)
        beta_1, beta_2 = ops.cast(self.beta_1, dtype), ops.cast(self.beta_2, dtype)
        gradient = ops.cast(gradient, dtype)
        m, v = self._momentums[index], self._velocities[index]
        alpha = ops.cast(learning_rate, dtype) * ops.sqrt(1 - ops.power(beta_2, step)) / (1 - ops.power(beta_1, step))
        self.assign_add(m, (gradient - m) * (1 - beta_1))
        self.assign_add(v, (ops.square(gradient) - v) * (1 - beta_2))
        self.assign_sub(variable, m * alpha / (ops.sqrt(v) + self.epsilon))

    def get_config(self):
        return {**super().get_config(), "count_steps_per_variable": self.count_steps_per_variable}


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


class _Parts:
    """Holds the pair's two optimizers out of Keras' saving walk (each is saved where it was)."""

    def __init__(self, head, mpae):
        self.head = head
        self.mpae = mpae


class OptimizerPair(keras.optimizers.Optimizer):
    """MPVS-Net's two optimizers as the one ``model.optimizer`` JAX's ``fit`` carries.

    JAX's trainer threads ``model.optimizer.variables`` through its compiled step and writes
    them back afterwards; here they are the head's (Eq. 10) and then the MPAE's (Eq. 11). The
    model applies each optimizer itself (``parts.head``, ``parts.mpae``); the pair applies
    nothing. It saves and loads as the head's optimizer alone (the MPAE's is saved as the model's
    ``mpae_optimizer``), so files keep one layout on every backend.
    """

    def __init__(self, head, mpae, name="optimizer_pair"):
        super().__init__(learning_rate=0.0, name=name)
        self.parts = _Parts(head, mpae)
        self.built = True

    @property
    def variables(self):
        return self.parts.head.variables + self.parts.mpae.variables

    @property
    def iterations(self):
        return self.parts.head.iterations

    @property
    def learning_rate(self):
        return self.parts.head.learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        if hasattr(self, "parts"):  # the base class sets its own at construction
            self.parts.head.learning_rate = value

    def build(self, variables):
        pass

    def apply(self, grads, trainable_variables=None):
        raise NotImplementedError("OptimizerPair applies nothing: use parts.head and parts.mpae")

    def scale_loss(self, loss):
        return self.parts.head.scale_loss(loss)

    def finalize_variable_values(self, var_list):
        self.parts.head.finalize_variable_values(var_list)
        self.parts.mpae.finalize_variable_values(var_list)

    def save_own_variables(self, store):
        self.parts.head.save_own_variables(store)

    def load_own_variables(self, store):
        self.parts.head.load_own_variables(store)

    def get_config(self):
        return self.parts.head.get_config()
