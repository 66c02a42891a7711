"""Devices and precision: ``tf.distribute`` strategies and Keras mixed precision."""

from __future__ import annotations

from typing import Optional

import keras
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
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"--strategy: unknown strategy {name!r}")


def set_precision(mixed: Optional[str]) -> None:
    """``None`` (float32), ``float16`` (loss-scaled) or ``bfloat16`` mixed precision."""
    keras.config.set_dtype_policy(f"mixed_{mixed}" if mixed else "float32")


def make_optimizer(kind: str, learning_rate: float) -> keras.optimizers.Optimizer:
    if kind == "adam":
        return FusedAdam(learning_rate)
    if kind == "sgd":
        return FusedSGD(learning_rate, momentum=0.9)
    raise ValueError(f"--optimizer: unknown optimizer {kind!r}")
