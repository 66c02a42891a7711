"""From a dataset on disk to prepared faces, class indices and the split of a run."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Optional

import numpy as np

from dam_cnn_tf.data.faces import FacePreparer
from dam_cnn_tf.data.labels import class_set
from dam_cnn_tf.data.protocols import Fold, carve_validation
from dam_cnn_tf.data.samples import Dataset
from dam_cnn_tf.data.face_set import FaceSet


class DataError(ValueError):
    pass


def default_cache_dir() -> Path:
    """Where prepared faces are cached: ``$DAMCNN_CACHE`` or ``~/.cache/dam_cnn_tf``."""
    return Path(os.environ.get("DAMCNN_CACHE", Path.home() / ".cache" / "dam_cnn_tf")) / "faces"


def select_classes(dataset: Dataset, num_classes: int) -> Dataset:
    """The 6-, 7- or 8-class selection (DESIGN §3), keeping only the classes the data has.

    CK+48, for example, has no neutral faces: its 7-class selection keeps six classes.
    """
    present = {s.label for s in dataset.samples}
    classes = tuple(c for c in class_set(num_classes) if c in present)
    if len(classes) < 2:
        raise DataError(f"{dataset.name}: fewer than two of the {num_classes}-class labels present ({sorted(present)})")
    return dataset.select_classes(classes)


@dataclasses.dataclass
class PreparedData:
    """The dataset's kept samples, their face crops and integer labels."""

    dataset: Dataset
    faces: np.ndarray
    labels: np.ndarray
    report: object = None

    @property
    def class_names(self) -> tuple:
        return self.dataset.classes

    def face_set(self, indices, attribute: Optional[str] = None) -> FaceSet:
        indices = np.asarray(indices, dtype=np.int64)
        attributes = None
        if attribute:
            values = self.dataset.attribute(attribute)[indices]
            if any(v is None for v in values):
                raise DataError(f"--pair-attribute {attribute}: some samples of {self.dataset.name} lack it")
            attributes = values
        return FaceSet(self.faces[indices], self.labels[indices], attributes)


def prepare_faces(dataset: Dataset, input_size: int, detect: bool = True, margin: float = 0.0,
                  no_face: str = "skip", on_bad: str = "skip", cache_dir=None, progress: bool = True) -> PreparedData:
    """Detect, crop and resize every face (§4.1.1); samples without one follow ``no_face``."""
    preparer = FacePreparer(input_size, margin=margin, detect=detect, no_face=no_face, on_bad=on_bad,
                            cache_dir=cache_dir if cache_dir is not None else default_cache_dir(), progress=progress)
    prepared = preparer.prepare(dataset)
    if prepared.report.no_face or prepared.report.bad:
        print(f"Faces: {prepared.report.summary()}")
    if len(prepared.indices) == 0:
        raise DataError(f"{dataset.name}: no usable face in {len(dataset)} images ({prepared.report.summary()})")
    kept = dataset.subset(prepared.indices)
    return PreparedData(kept, prepared.faces, kept.labels(), prepared.report)


def training_split(data: PreparedData, val_fraction: float, seed: int) -> Fold:
    """Train and validation parts of a ``train`` run: the predefined ones when the dataset
    has them, else a validation part carved from the data, grouped by subject if possible."""
    splits = [s.split for s in data.dataset.samples]
    if any(splits):
        train = [i for i, s in enumerate(splits) if s == "train"]
        val = [i for i, s in enumerate(splits) if s in ("val", "public_test", "validation")]
        if train and val:
            return Fold("predefined", train, [], val)
    everything = Fold("train", np.arange(len(data.labels)), [])
    subjects = data.dataset.subjects() if data.dataset.has_subjects() else None
    return carve_validation(everything, data.labels, subjects, val_fraction, seed)


def carved_split(root, input_size: int, val_fraction: float = 0.1, seed: int = 0,
                 num_classes: int = 7, progress: bool = False) -> tuple:
    """``(data, split)``: a data set (any layout ``load_dataset`` detects) read as a ``train`` run
    reads it (faces already cropped, ``num_classes`` classes) and the training and validation
    parts that run carves."""
    from dam_cnn_tf.data.datasets import load_dataset

    dataset = select_classes(load_dataset(Path(root)), num_classes)
    data = prepare_faces(dataset, input_size, detect=False, progress=progress)
    return data, training_split(data, val_fraction, seed)
