"""The faces a distilled student learns from: one or more data sets, each with its own
validation part, and the teacher's probabilities for every face.

Each data set is read as the teacher's own run read it (``training.prepare``: the class folders,
the 7-class selection, faces resized without detection) but at the student's input size, and
split as the teacher's run split it (``training_split``: the same fraction and seed). The
teacher's validation faces are therefore never among the student's training faces, and the
student's validation figures stand beside the teacher's on the very same faces.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from dam_cnn_tf.training.teacher_labels import cached_teacher_labels


@dataclasses.dataclass
class DistillationSet:
    """One data set's faces (uint8 ``(n, s, s, 3)``), class indices, split and teacher labels."""

    name: str
    faces: np.ndarray
    labels: np.ndarray
    train: np.ndarray
    val: np.ndarray
    class_names: tuple
    soft: Optional[np.ndarray] = None  # the teacher's probabilities, ``(n, K)``


def load_distillation_set(name: str, path, input_size: int, val_fraction: float = 0.1, seed: int = 0,
                          classes: int = 7, progress: bool = False) -> DistillationSet:
    """The data set at ``path`` (any layout ``load_dataset`` detects), faces at ``input_size``."""
    from dam_cnn_tf.training.prepare import carved_split

    data, split = carved_split(path, input_size, val_fraction, seed, classes, progress)
    if len(split.val) == 0:
        raise ValueError(f"{path}: no validation part (val_fraction {val_fraction})")
    return DistillationSet(name, data.faces, np.asarray(data.labels, np.int64), np.asarray(split.train, np.int64),
                           np.asarray(split.val, np.int64), tuple(data.class_names))


def attach_teacher_labels(sets: Sequence[DistillationSet], cache_dir, teachers: Mapping[str, str],
                          class_names: Sequence[str], predict: Callable[[DistillationSet], np.ndarray],
                          log: Callable[[str], None] = print) -> None:
    """Give every set its teacher's labels (``soft``). ``teachers`` maps each set's name to its
    teacher's fingerprint (``teacher_fingerprint``): each data set may have its own teacher, the
    shipped preset trained on it. The labels come from ``cache_dir/<name>-<size>-<teacher>.npz``
    when that file holds them for these faces and this teacher, else from ``predict(set)``, stored."""
    for data in sets:
        if tuple(data.class_names) != tuple(class_names):
            raise ValueError(f"{data.name}: classes {data.class_names} differ from the teacher's {tuple(class_names)}")
        teacher = teachers[data.name]
        path = Path(cache_dir) / f"{data.name}-{data.faces.shape[1]}-{teacher[:12]}.npz"

        def compute(data=data, path=path):
            log(f"Teacher labels for {len(data.faces)} {data.name} faces (once; kept in {path.name})")
            return predict(data)

        data.soft = cached_teacher_labels(path, data.faces, teacher, class_names, compute)
