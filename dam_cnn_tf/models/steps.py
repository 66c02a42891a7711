"""Custom training steps on every Keras backend: TensorFlow, JAX and PyTorch.

The models write their step once, in ``keras.ops`` and stateful Keras calls (forward pass,
objective, ``optimizer.apply``, metric updates), as Keras' guides to customising ``fit()`` with
TensorFlow and with PyTorch do. Two things differ by backend, and live here:

* ``gradients(objective, variables)``: ``tf.GradientTape`` on TensorFlow, ``torch.autograd.grad``
  on PyTorch, ``jax.value_and_grad`` of the objective as a function of the variables' values
  on JAX.
* JAX's ``fit`` is stateless: it calls ``train_step(state, data)`` with every variable's value in
  ``state`` and takes the new values back (Keras' guide to customising ``fit()`` with JAX).
  ``train_step``/``test_step`` here run the stateful step inside a ``keras.StatelessScope``
  holding that state and read the new values back from it, as Keras' own JAX trainer does for
  its metrics.
"""

from __future__ import annotations

import warnings

import keras

# JAX only: the variables whose values the running step's StatelessScope holds.
_scoped_variables: list = []


def backend() -> str:
    return keras.backend.backend()


def gradients(objective, variables):
    """``objective()`` returns ``(loss, aux)``; returns ``(∂loss/∂v for v in variables, aux)``.

    A variable the loss does not depend on gets ``None`` on TensorFlow and PyTorch and zeros on
    JAX (which optimizers do apply), so the steps ask only for the variables each rule updates.
    """
    variables = list(variables)
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss, aux = objective()
        return tape.gradient(loss, variables), aux
    if name == "torch":
        import torch

        loss, aux = objective()
        grads = torch.autograd.grad(loss, [v.value for v in variables], allow_unused=True)
        return list(grads), aux
    if name == "jax":
        return _jax_gradients(objective, variables)
    raise NotImplementedError(f"dam_cnn_tf trains on the tensorflow, jax and torch backends, not {name!r}")


def _jax_gradients(objective, variables):
    import jax

    # Every other variable keeps the value the enclosing step holds for it (inside fit the
    # variables themselves are emptied to save memory; only the step's scope has them). Called
    # outside a step, the variables hold their own values and only the differentiated ones move.
    wanted = {id(v) for v in variables}
    others = [v for v in _scoped_variables if id(v) not in wanted]
    other_values = [v.value for v in others]

    def loss_of(values):
        with keras.StatelessScope(state_mapping=list(zip(variables, values)) + list(zip(others, other_values))) as scope:
            start = [scope.get_current_value(v) for v in others]
            loss, aux = objective()
            # State the objective moved (dropout's seed, say) goes back to the enclosing step.
            moved = {i: scope.get_current_value(v) for i, v in enumerate(others)
                     if scope.get_current_value(v) is not start[i]}
        return loss, (aux, moved)

    (_, (aux, moved)), grads = jax.value_and_grad(loss_of, has_aux=True)([v.value for v in variables])
    for i, value in moved.items():
        others[i].assign(value)
    return grads, aux


def apply(optimizer, grads, variables, built_with):
    """``optimizer.apply(grads, variables)``; ``built_with`` is the list ``optimizer`` was built on.

    On JAX through ``optimizer.stateless_apply`` over ``built_with`` (``None`` for the variables
    not in ``variables``, which it leaves alone), as JAX's guide does: ``LossScaleOptimizer``'s
    stateful ``apply`` assigns inside ``ops.cond``, which JAX cannot trace.
    """
    if backend() != "jax":
        optimizer.apply(grads, variables)
        return
    given = {id(v): g for v, g in zip(variables, grads)}
    every = list(built_with)
    with warnings.catch_warnings():  # the variables left out have no gradient on purpose
        warnings.filterwarnings("ignore", message="Gradients do not exist", category=UserWarning)
        new_values, new_state = optimizer.stateless_apply(
            [v.value for v in optimizer.variables], [given.get(id(v)) for v in every], [v.value for v in every])
    for v, value in zip(every, new_values):
        if id(v) in given:
            v.assign(value)
    for v, value in zip(optimizer.variables, new_state):
        v.assign(value)


def _run_stateless(state, variable_lists, step):
    """JAX: ``step()`` with ``variable_lists[k]`` holding the values ``state[k]``; returns
    ``(step's result, the new state)``."""
    global _scoped_variables

    every = [v for variables in variable_lists for v in variables]
    mapping = [(v, value) for variables, values in zip(variable_lists, state) for v, value in zip(variables, values)]
    outer, _scoped_variables = _scoped_variables, every
    try:
        with keras.StatelessScope(state_mapping=mapping) as scope:
            result = step()
    finally:
        _scoped_variables = outer
    return result, tuple([scope.get_current_value(v) for v in variables] for variables in variable_lists)


def train_step(model, step, args):
    """``model.train_step(*args)`` through the stateful ``step(data)``, on any backend."""
    if backend() != "jax":
        return step(*args)
    state, data = args
    lists = (model.trainable_variables, model.non_trainable_variables, model.optimizer.variables,
             model.metrics_variables)
    return _run_stateless(state, lists, lambda: step(data))


def test_step(model, step, args):
    """``model.test_step(*args)`` through the stateful ``step(data)``, on any backend."""
    if backend() != "jax":
        return step(*args)
    state, data = args
    lists = (model.trainable_variables, model.non_trainable_variables, model.metrics_variables)
    return _run_stateless(state, lists, lambda: step(data))


def replica_share(loss):
    """``loss / replicas``: under ``tf.distribute`` each replica's gradients are summed.

    Only TensorFlow distributes this way; on the other backends the loss is the batch's.
    """
    if backend() != "tensorflow":
        return loss
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss / replicas if replicas > 1 else loss


def scale_gradient(x, factor):
    """``x`` unchanged, its gradient multiplied by ``factor`` on the way back."""
    from keras import ops

    still = ops.stop_gradient(x)
    return still + ops.cast(factor, x.dtype) * (x - still)
