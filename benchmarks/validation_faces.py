"""Validation faces for the benchmarks that measure accuracy: carved from training folders as
``damcnn-tf train`` carves them (``training.prepare.training_split``), never a test set.

``validation_part(root, input_size)`` loads a class-folder data set (FER2013's or RAF-DB's
``train`` folder), keeps the 7 canonical classes, prepares the faces as training does with
``--no-detect`` (the whole image resized to ``input_size``) and returns the part a run with
``val_fraction`` and ``seed`` validates on, with the paths of the original files.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class ValidationPart:
    """``faces`` uint8 ``(n, S, S, 3)`` as training prepared them, ``labels`` ``(n,)`` indices
    into ``class_names``, ``paths`` of the original images, ``train_faces`` and
    ``train_labels`` the training part (for the baselines)."""

    faces: np.ndarray
    labels: np.ndarray
    class_names: tuple
    paths: list
    train_faces: np.ndarray
    train_labels: np.ndarray


def validation_part(root, input_size: int, val_fraction: float = 0.1, seed: int = 0,
                    with_train: bool = False) -> ValidationPart:
    """The validation part of ``root`` (see the module's note); ``with_train`` keeps the
    training part's faces too (they take memory: 25,838 FER2013 faces at 150 px are 1.7 GB)."""
    from dam_cnn_tf.training.prepare import carved_split

    data, split = carved_split(root, input_size, val_fraction, seed)
    val = np.asarray(split.val, np.int64)
    train = np.asarray(split.train, np.int64)
    return ValidationPart(
        faces=data.faces[val], labels=np.asarray(data.labels)[val], class_names=tuple(data.class_names),
        paths=[data.dataset.samples[i].path for i in val],
        train_faces=data.faces[train] if with_train else np.zeros((0,), np.uint8),
        train_labels=np.asarray(data.labels)[train] if with_train else np.zeros((0,), np.int64))


def accuracy_interval(correct, level: float = 0.95) -> list:
    """Wilson's interval for an accuracy (a proportion of ``correct``)."""
    from scipy.stats import binomtest

    correct = np.asarray(correct, bool)
    interval = binomtest(int(correct.sum()), len(correct)).proportion_ci(level, method="wilson")
    return [round(float(interval.low), 4), round(float(interval.high), 4)]
