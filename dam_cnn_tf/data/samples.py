"""What every loader returns: samples with label, subject, split and attributes."""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np


@dataclasses.dataclass
class Sample:
    """One labelled image.

    ``path`` names the source file (or ``file.csv:row`` for images stored inside a table);
    ``image`` holds the pixels when they live in memory (FER2013 CSV rows, synthetic faces).
    ``label`` is a canonical label name (see ``labels.CANONICAL_LABELS``); ``subject`` is the
    person's id where the dataset has one; ``split`` a predefined split name where it has one;
    ``attributes`` other per-image labels (e.g. ``{"gender": "female"}``); ``extras`` data
    that is not a label (e.g. the synthetic faces' expression-region mask).
    """

    path: Optional[str]
    label: str
    subject: Optional[str] = None
    split: Optional[str] = None
    attributes: dict = dataclasses.field(default_factory=dict)
    image: Optional[np.ndarray] = None
    extras: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Dataset:
    """A list of samples and the ordered class names their integer labels index."""

    name: str
    samples: list
    classes: tuple

    def __len__(self) -> int:
        return len(self.samples)

    def labels(self) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[s.label] for s in self.samples], dtype=np.int64)

    def subjects(self) -> np.ndarray:
        return np.array([s.subject if s.subject is not None else "" for s in self.samples], dtype=object)

    def has_subjects(self) -> bool:
        return bool(self.samples) and all(s.subject is not None for s in self.samples)

    def attribute(self, name: str) -> np.ndarray:
        return np.array([s.attributes.get(name) for s in self.samples], dtype=object)

    def subset(self, indices: Sequence[int], name: Optional[str] = None) -> "Dataset":
        return Dataset(name or self.name, [self.samples[i] for i in indices], self.classes)

    def select_classes(self, classes: Sequence[str]) -> "Dataset":
        """Keep the samples whose label is in ``classes``, re-indexed in that order."""
        keep = set(classes)
        return Dataset(self.name, [s for s in self.samples if s.label in keep], tuple(classes))
