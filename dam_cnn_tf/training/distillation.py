"""Knowledge distillation (Hinton, Vinyals & Dean 2015): a small student learns a large model's
answers as well as the labels.

The loss of one face, with the student's logits ``z``, its one-hot label ``y`` and the teacher's
probabilities ``p``, at temperature ``T`` and weight ``α``::

    L = α · T² · KL(p_T ‖ softmax(z / T)) + (1 − α) · CE(y, softmax(z))
    p_T = softmax(log p / T) = p^(1/T) / Σ_k p_k^(1/T)

The teacher gives probabilities, not logits (a preset's are even the mean of a face's and its
mirror image's), so it is softened as one would soften its logits: ``log p`` is its logits up
to a constant, which the softmax ignores. ``T²`` keeps the soft term's gradients at the scale
of the hard term's as ``T`` grows (Hinton et al. §2). SERD's regularizer (Eq. 3) is added by
the layer itself during training.

Training is Keras ``fit`` on the student's logits (``models.student.logits_model``) with a
tf.data input that draws a random mirror image, rotation, scale and shift per face
(``augment_faces``); every face keeps its own teacher answer, given for the unmoved face.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf
from keras import ops

EPSILON = 1e-7  # teacher probabilities are clipped here before their logarithm


def soften(probabilities, temperature: float) -> np.ndarray:
    """``p^(1/T)`` normalised: the teacher's probabilities at temperature ``T`` (NumPy)."""
    logp = np.log(np.clip(np.asarray(probabilities, np.float64), EPSILON, 1.0)) / float(temperature)
    logp -= logp.max(axis=-1, keepdims=True)
    p = np.exp(logp)
    return p / p.sum(axis=-1, keepdims=True)


def distillation_targets(labels, probabilities, num_classes: int) -> np.ndarray:
    """``(n, 2K)`` float32: the one-hot labels, then the teacher's probabilities (the loss's ``y_true``)."""
    labels = np.asarray(labels, np.int64)
    probabilities = np.asarray(probabilities, np.float32)
    if probabilities.shape != (len(labels), num_classes):
        raise ValueError(f"teacher probabilities of shape {probabilities.shape} for {len(labels)} faces "
                         f"and {num_classes} classes")
    return np.concatenate([np.eye(num_classes, dtype=np.float32)[labels], probabilities], axis=1)


@keras.saving.register_keras_serializable(package="dam_cnn_tf")
class DistillationLoss(keras.losses.Loss):
    """``y_true`` = one-hot labels and teacher probabilities side by side (``distillation_targets``),
    ``y_pred`` = the student's logits; the loss above, per face (reduced by Keras)."""

    def __init__(self, temperature: float = 4.0, alpha: float = 0.9, name: str = "distillation", **kwargs):
        super().__init__(name=name, **kwargs)
        if temperature <= 0 or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"temperature must be > 0 and alpha in [0, 1], got {temperature} and {alpha}")
        self.temperature = float(temperature)
        self.alpha = float(alpha)

    def call(self, y_true, y_pred):
        logits = ops.cast(y_pred, "float32")
        k = logits.shape[-1]
        hard, teacher = y_true[:, :k], y_true[:, k:]
        t = self.temperature
        teacher_t = ops.softmax(ops.log(ops.clip(teacher, EPSILON, 1.0)) / t, axis=-1)
        kl = ops.sum(teacher_t * (ops.log(ops.clip(teacher_t, EPSILON, 1.0)) - ops.log_softmax(logits / t, axis=-1)),
                     axis=-1)
        ce = -ops.sum(hard * ops.log_softmax(logits, axis=-1), axis=-1)
        return self.alpha * t * t * kl + (1.0 - self.alpha) * ce

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature, "alpha": self.alpha}


# --- input ----------------------------------------------------------------------------------


def _affine_transforms(batch, size: float, seed, max_degrees: float, max_scale: float, max_shift: float):
    """``(B, 8)`` projective transforms (output → input coordinates) of a random rotation about
    the centre, a scale and a shift per face; a mirror image for half of them."""
    seeds = tf.random.experimental.stateless_split(seed, 5)
    angle = tf.random.stateless_uniform([batch], seeds[0], -1.0, 1.0) * (max_degrees * math.pi / 180.0)
    scale = tf.exp(tf.random.stateless_uniform([batch], seeds[1], -1.0, 1.0) * math.log1p(max_scale))
    shift = tf.random.stateless_uniform([batch, 2], seeds[2], -1.0, 1.0) * max_shift * size
    flip = tf.where(tf.random.stateless_uniform([batch], seeds[3]) < 0.5, -1.0, 1.0)
    centre = (size - 1.0) / 2.0
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    # input = A (output - centre) + centre - shift, A = R(angle) diag(flip, 1) / scale
    a0, a1 = cos * flip, -sin
    b0, b1 = sin * flip, cos
    x0 = centre - a0 * centre - a1 * centre - shift[:, 0]
    y0 = centre - b0 * centre - b1 * centre - shift[:, 1]
    zeros = tf.zeros_like(a0)
    return tf.stack([a0, a1, x0, b0, b1, y0, zeros, zeros], axis=1)


def augment_faces(images, seed, max_degrees: float = 10.0, max_scale: float = 0.1, max_shift: float = 0.08):
    """Float images ``(B, S, S, C)``, each mirrored (half of them), rotated by up to
    ``max_degrees``, scaled by up to ``1 ± max_scale`` and shifted by up to ``max_shift`` of its
    side, bilinear, the border's pixels repeated outwards (stateless: the same ``seed``, the same faces)."""
    shape = tf.shape(images)
    transforms = _affine_transforms(shape[0], tf.cast(shape[2], tf.float32), seed, max_degrees, max_scale, max_shift)
    return tf.raw_ops.ImageProjectiveTransformV3(images=images, transforms=transforms, output_shape=shape[1:3],
                                                 fill_value=0.0, interpolation="BILINEAR", fill_mode="NEAREST")


def training_dataset(faces: np.ndarray, targets: np.ndarray, batch_size: int, seed: int = 0,
                     augment: bool = True, **augment_options) -> tf.data.Dataset:
    """Endless shuffled batches of (augmented) float faces and their targets: each pass over the
    faces in a new order, each batch drawn with its own augmentation (from its position in the stream)."""
    ds = tf.data.Dataset.from_tensor_slices((faces, targets)).shuffle(len(faces), seed=seed,
                                                                      reshuffle_each_iteration=True)
    ds = ds.repeat().batch(batch_size, drop_remainder=True)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y))
    if augment:
        counter = tf.data.Dataset.counter(seed * 1_000_003)
        ds = tf.data.Dataset.zip((ds, counter)).map(
            lambda batch, step: (augment_faces(batch[0], tf.stack([step, tf.cast(seed, tf.int64)]),
                                               **augment_options), batch[1]),
            num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


# --- training -------------------------------------------------------------------------------


class ValidationAccuracy(keras.callbacks.Callback):
    """Accuracy on each named validation part after every epoch, logged as ``val_<name>``; each
    epoch's figures (and its wall time) are also appended to ``record`` (JSON lines), so the
    history of a run that was interrupted and resumed is whole."""

    def __init__(self, parts: Dict[str, Tuple[np.ndarray, np.ndarray]], batch_size: int = 256,
                 log: Optional[Callable[[str], None]] = print, record=None):
        super().__init__()
        self.parts = parts
        self.batch_size = batch_size
        self.log_fn = log
        self.record = record
        self.start = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.start is None and epoch > 0 and self.log_fn is not None:
            # BackupAndRestore started fit after the epochs a backup holds: say so in the log
            self.log_fn(f"resumed from the run's backup after epoch {epoch}")
        self.start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        for name, (faces, labels) in self.parts.items():
            logits = self.model.predict(faces.astype(np.float32), batch_size=self.batch_size, verbose=0)
            logs[f"val_{name}"] = float(np.mean(np.argmax(logits, axis=1) == labels))
        seconds = time.monotonic() - self.start
        if self.record is not None:
            with open(self.record, "a", encoding="utf-8") as out:
                figures = {k: float(v) for k, v in logs.items() if np.ndim(v) == 0}
                out.write(json.dumps({"epoch": epoch + 1, **figures, "seconds": round(seconds, 1)}) + "\n")
        if self.log_fn is not None:
            figures = " ".join(f"{k} {float(v):.4f}" for k, v in logs.items() if not k.startswith("learning"))
            self.log_fn(f"epoch {epoch + 1}: {figures} ({seconds:.0f} s)")


class CycleEnds(keras.callbacks.Callback):
    """Saves ``student``'s weights at the end of each cosine cycle as
    ``folder/cycle-N.weights.h5`` (written whole, then renamed), for ``average_cycle_weights``; the
    files outlive an interrupted run."""

    def __init__(self, student: keras.Model, folder, epochs_per_cycle: int):
        super().__init__()
        self.student, self.folder, self.epochs_per_cycle = student, Path(folder), int(epochs_per_cycle)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.epochs_per_cycle == 0:
            self.folder.mkdir(parents=True, exist_ok=True)
            cycle = (epoch + 1) // self.epochs_per_cycle
            staging = self.folder / f".partial-cycle-{cycle}.weights.h5"  # Keras wants the .weights.h5 ending
            self.student.save_weights(staging)
            os.replace(staging, cycle_end_path(self.folder, cycle))


def cycle_end_path(folder, cycle: int) -> Path:
    return Path(folder) / f"cycle-{cycle}.weights.h5"


def average_cycle_weights(student: keras.Model, paths, faces: np.ndarray, batch_size: int = 256, seed: int = 0) -> None:
    """Set ``student`` to the mean of the weights saved at the ends of its cosine cycles (weight
    averaging over the cycles' minima: Izmailov et al. 2018, "Averaging weights leads to wider
    optima"), then recompute its batch-norm statistics on ``faces`` (the training faces, as
    stored): averaged weights have no statistics of their own."""
    saved = []
    for path in paths:
        student.load_weights(path)
        saved.append(student.get_weights())
    student.set_weights([np.mean(np.stack(values), axis=0).astype(values[0].dtype) for values in zip(*saved)])
    recompute_batch_norm(student, faces, batch_size, seed)


def recompute_batch_norm(model: keras.Model, faces: np.ndarray, batch_size: int = 256, seed: int = 0) -> None:
    """Each batch-norm layer's moving mean and variance set to the mean of its batch statistics
    over ``faces`` in batches of ``batch_size`` (shuffled with ``seed``): a running mean, with
    momentum k / (k + 1) at the k-th batch, restored afterwards."""
    layers = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, "float32"))
        layer.moving_variance.assign(np.ones(layer.moving_variance.shape, "float32"))
    order = np.random.default_rng(seed).permutation(len(faces))
    try:
        for k, start in enumerate(range(0, len(faces), batch_size)):
            for layer in layers:
                layer.momentum = k / (k + 1)
            model(np.asarray(faces[order[start:start + batch_size]], np.float32), training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum


def read_epochs(record) -> list:
    """The epochs ``ValidationAccuracy`` recorded, in order, the last record of an epoch kept
    (a resumed run may repeat the epoch it was interrupted in)."""
    epochs = {}
    with open(record, encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                entry = json.loads(line)
                epochs[entry["epoch"]] = entry
    return [epochs[k] for k in sorted(epochs)]


@keras.saving.register_keras_serializable(package="dam_cnn_tf")
class CosineCycles(keras.optimizers.schedules.LearningRateSchedule):
    """A linear warm-up to ``learning_rate`` over ``warmup_steps``, a cosine decay to zero at
    ``cycle_steps``; each further cycle restarts at ``peak_decay`` times the previous cycle's peak
    and decays to zero again over ``cycle_steps`` (warm restarts, Loshchilov & Hutter 2017)."""

    def __init__(self, learning_rate: float, cycle_steps: int, warmup_steps: int = 0, peak_decay: float = 1.0):
        if cycle_steps <= warmup_steps:
            raise ValueError(f"cycle_steps ({cycle_steps}) must exceed warmup_steps ({warmup_steps})")
        self.learning_rate = float(learning_rate)
        self.cycle_steps = int(cycle_steps)
        self.warmup_steps = int(warmup_steps)
        self.peak_decay = float(peak_decay)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        cycle = ops.floor(step / self.cycle_steps)
        within = step - cycle * self.cycle_steps
        peak = self.learning_rate * ops.power(self.peak_decay, cycle)
        first = ops.equal(cycle, 0.0)
        start = ops.where(first, float(self.warmup_steps), 0.0)
        progress = ops.clip((within - start) / (self.cycle_steps - start), 0.0, 1.0)
        cosine = peak * 0.5 * (1.0 + ops.cos(math.pi * progress))
        warming = ops.logical_and(first, within < self.warmup_steps)
        return ops.where(warming, self.learning_rate * within / max(1, self.warmup_steps), cosine)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "cycle_steps": self.cycle_steps,
                "warmup_steps": self.warmup_steps, "peak_decay": self.peak_decay}


def train_student(model: keras.Model, faces: np.ndarray, targets: np.ndarray, validation: dict, epochs: int,
                  batch_size: int = 128, learning_rate: float = 2e-3, weight_decay: float = 1e-4,
                  temperature: float = 4.0, alpha: float = 0.9, seed: int = 0, cycles: int = 1,
                  cycle_peak: float = 0.5, average_cycle_ends: bool = False, backup_dir=None, cycle_dir=None,
                  record=None, log: Callable[[str], None] = print, **augment_options) -> dict:
    """Distil into ``model`` (a ``build_student`` model, trained in place) from ``faces`` (uint8)
    and ``targets`` (``distillation_targets``): AdamW with a one-epoch warm-up and a cosine decay
    over ``epochs``, repeated ``cycles`` times (each later cycle from ``cycle_peak`` times the
    previous peak); the last epoch's weights are kept, unless ``average_cycle_ends``. ``validation`` maps names to
    ``(faces, labels)``, scored after every epoch (nothing is chosen on them here) and appended
    to ``record``. With ``backup_dir`` an interrupted run resumes from its last whole epoch
    (``keras.callbacks.BackupAndRestore``). With ``average_cycle_ends`` the weights at the end of
    each cycle are kept in ``cycle_dir`` and ``model`` ends as their average
    (``average_cycle_weights``). Returns this call's per-epoch history."""
    from dam_cnn_tf.models.student import logits_model

    keras.utils.set_random_seed(seed)
    steps_per_epoch = len(faces) // batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"{len(faces)} training faces for batches of {batch_size}")
    trainable = logits_model(model)
    schedule = CosineCycles(learning_rate, steps_per_epoch * epochs, warmup_steps=steps_per_epoch if epochs > 1 else 0,
                            peak_decay=cycle_peak)
    trainable.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=weight_decay),
                      loss=DistillationLoss(temperature, alpha))
    if average_cycle_ends and cycle_dir is None:
        raise ValueError("average_cycle_ends needs a cycle_dir to keep each cycle's weights in")
    callbacks = [ValidationAccuracy(validation, log=log, record=record)]
    if backup_dir is not None:
        callbacks.insert(0, keras.callbacks.BackupAndRestore(str(backup_dir), delete_checkpoint=False))
    if average_cycle_ends:  # before the backup: an epoch backed up has its cycle's weights saved
        callbacks.insert(0, CycleEnds(model, cycle_dir, epochs))
    data = training_dataset(faces, targets, batch_size, seed=seed, **augment_options)
    history = trainable.fit(data, epochs=epochs * cycles, steps_per_epoch=steps_per_epoch, callbacks=callbacks,
                            verbose=0, shuffle=False)  # the dataset shuffles
    if average_cycle_ends:
        paths = [cycle_end_path(cycle_dir, c) for c in range(1, cycles + 1)]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{cycle_dir}: no {', '.join(missing)} to average")
        average_cycle_weights(model, paths, faces, seed=seed)
        if log is not None:
            log(f"the weights at the ends of the {cycles} cycles averaged, batch-norm statistics recomputed on "
                f"{len(faces):,} training faces")
    return {k: [float(v) for v in values] for k, values in history.history.items()}
