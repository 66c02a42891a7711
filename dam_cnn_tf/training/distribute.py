"""Devices and precision: ``tf.distribute`` strategies and Keras mixed precision."""

from __future__ import annotations

import functools
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from dam_cnn_tf.optimizers import FusedAdam, FusedSGD


def make_strategy(name: str = "default") -> tf.distribute.Strategy:
    """``default`` (one device), ``mirrored`` (all local GPUs, or CPUs configured as
    logical devices) or ``multiworker`` (several machines, described by ``TF_CONFIG``)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        # All GPUs; on a machine without one, every logical CPU device (one unless configured).
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    if name == "multiworker":
        return _multi_worker_strategy()
    raise ValueError(f"--strategy: unknown strategy {name!r}")


# How long a worker waits for all its peers to start, and how soon a dead peer is noticed.
PEER_START_TIMEOUT_S = 300
PEER_HEARTBEAT_TIMEOUT_S = 20


@functools.lru_cache(maxsize=None)
def _multi_worker_strategy() -> tf.distribute.Strategy:
    """One per process: TensorFlow sets up collectives once, at the first strategy."""
    _configure_coordination()
    return tf.distribute.MultiWorkerMirroredStrategy()


def _configure_coordination() -> None:
    """The coordination service MultiWorkerMirroredStrategy would start, with bounded waits:
    a peer that never starts, or dies, ends every worker with an error instead of a hang."""
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.distribute import multi_worker_util
    from tensorflow.python.eager import context

    cluster = tf.distribute.cluster_resolver.TFConfigClusterResolver().cluster_spec()
    jobs = [job for job in ("chief", "worker") if job in cluster.jobs]
    if not jobs or context.context().coordination_service is not None:
        return
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=multi_worker_util.coordination_leader(cluster),
        cluster_register_timeout_in_ms=PEER_START_TIMEOUT_S * 1000,
        heartbeat_timeout_in_ms=PEER_HEARTBEAT_TIMEOUT_S * 1000,
        shutdown_barrier_timeout_in_ms=PEER_START_TIMEOUT_S * 1000,
        coordinated_jobs=[coordination_config_pb2.CoordinatedJob(name=job, num_tasks=cluster.num_tasks(job))
                          for job in jobs],
    )


def set_precision(mixed: Optional[str]) -> None:
    """``None`` (float32), ``float16`` (loss-scaled) or ``bfloat16`` mixed precision."""
    keras.config.set_dtype_policy(f"mixed_{mixed}" if mixed else "float32")


def make_optimizer(kind: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """Adam, or SGD with momentum 0.9."""
    if kind == "adam":
        return FusedAdam(learning_rate)
    if kind == "sgd":
        return FusedSGD(learning_rate, momentum=0.9)
    raise ValueError(f"--optimizer: unknown optimizer {kind!r}")


def prebuild_for_workers(model: keras.Model, dataset) -> None:
    """Build a model's metrics and losses from one local batch before ``fit``.

    Keras 3's ``fit`` builds them from the first distributed batch, reduced with
    ``strategy.reduce`` over the whole nested batch, which MultiWorkerMirroredStrategy refuses
    (Keras 3.15); built here from a local batch, that step is skipped.
    """
    strategy = model.distribute_strategy
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    with strategy.scope():
        model._symbolic_build(data_batch=next(iter(dataset)))
    model._maybe_symbolic_build = lambda *args, **kwargs: None
    # Its steps reduce each metric with strategy.reduce("MEAN", value, axis=0), which refuses
    # scalars across workers; as 1-element vectors they come back averaged over the replicas.
    for name in ("train_step", "test_step"):
        setattr(model, name, _as_vectors(getattr(model, name)))


def _as_vectors(step):
    def vector_step(data):
        return {key: tf.reshape(value, [1]) for key, value in step(data).items()}
    return vector_step


def worker_callbacks(model: keras.Model) -> list:
    """Callbacks that go first in ``fit`` under MultiWorkerMirroredStrategy."""
    if isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return [AverageLogsAcrossWorkers()]
    return []


class AverageLogsAcrossWorkers(keras.callbacks.Callback):
    """At each epoch's end, the logs and the non-trained state (BatchNorm's moving statistics,
    updated from each worker's own shard) averaged over the workers, in place: early stopping
    and the best checkpoint then decide alike everywhere (a worker stopping alone would leave
    the others waiting in a collective), and the chief saves what every worker holds."""

    def on_epoch_end(self, epoch, logs=None):
        strategy = self.model.distribute_strategy
        for key, value in (logs or {}).items():
            logs[key] = float(strategy.reduce("MEAN", tf.constant(float(np.ravel(value)[0])), axis=None))
        for variable in self.model.non_trainable_weights:
            if variable.dtype.startswith("float"):
                local = tf.convert_to_tensor(variable.numpy())
                variable.assign(strategy.reduce("MEAN", local, axis=None))
