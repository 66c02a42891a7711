"""Evaluation protocols of §4.1.2 as index folds, built on scikit-learn's splitters.

Folds are grouped by subject wherever subject ids exist (DESIGN §3): the frames of one CK+
sequence are near-duplicates, and one person in both train and test inflates accuracy.
Model selection uses a validation part carved from the training part only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import warnings
from typing import Optional, Sequence

import numpy as np
from sklearn.model_selection import (
    LeaveOneGroupOut, ShuffleSplit, StratifiedGroupKFold, StratifiedKFold, StratifiedShuffleSplit,
)

from dam_cnn_tf.data.samples import Dataset


def _indices(values) -> np.ndarray:
    return np.asarray(values if values is not None else [], dtype=np.int64).reshape(-1)


@dataclasses.dataclass
class Fold:
    """One split: ``train``, ``val`` and ``test`` index arrays into a dataset, and a ``name``.
    The three parts never share an index."""

    name: str
    train: np.ndarray
    test: np.ndarray
    val: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self):
        self.train, self.test, self.val = _indices(self.train), _indices(self.test), _indices(self.val)
        for a, b in (("train", "test"), ("train", "val"), ("val", "test")):
            if np.intersect1d(getattr(self, a), getattr(self, b)).size:
                raise ValueError(f"fold {self.name!r}: {a} and {b} share indices")

    def to_dict(self) -> dict:
        """A JSON-serializable dict of the fold."""
        return {"name": self.name, "train": self.train.tolist(), "val": self.val.tolist(),
                "test": self.test.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "Fold":
        """The fold ``to_dict`` wrote."""
        return cls(str(data["name"]), data["train"], data["test"], data.get("val", []))


def save_folds(path, folds: Sequence[Fold], **meta) -> None:
    """Write ``folds`` (and JSON-able ``meta``, e.g. dataset and protocol names) to ``path``
    as JSON, atomically (temporary file, then ``os.replace``)."""
    payload = json.dumps({"meta": meta, "folds": [f.to_dict() for f in folds]})
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(payload)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_folds(path) -> list:
    """The folds ``save_folds`` wrote to ``path``."""
    with open(path) as handle:
        return [Fold.from_dict(f) for f in json.load(handle)["folds"]]


def stratified_kfold(labels, k: int, seed: int = 0) -> list:
    """Seeded, shuffled ``StratifiedKFold`` over samples (no grouping)."""
    labels = np.asarray(labels)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    splits = splitter.split(np.zeros(len(labels)), labels)
    return [Fold(f"fold{i + 1}of{k}", tr, te) for i, (tr, te) in enumerate(splits)]


def _check_groups(subjects, k: int) -> np.ndarray:
    subjects = np.asarray(subjects, dtype=object)
    if any(s is None or s == "" for s in subjects):
        raise ValueError("subject-independent folds need a subject id for every sample")
    count = len(set(subjects.tolist()))
    if count < k:
        raise ValueError(f"{k} subject-independent folds need at least {k} subjects, found {count}")
    return subjects


def subject_kfold(labels, subjects, k: int, seed: int = 0) -> list:
    """Subject-independent k-fold: seeded ``StratifiedGroupKFold`` grouped by subject, so no
    subject has samples in two test folds or in both the train and test part of one fold."""
    labels, subjects = np.asarray(labels), _check_groups(subjects, k)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    splits = splitter.split(np.zeros(len(labels)), labels, groups=subjects)
    return [Fold(f"fold{i + 1}of{k}", tr, te) for i, (tr, te) in enumerate(splits)]


def leave_one_subject_out(subjects) -> list:
    """One fold per subject (``LeaveOneGroupOut``), named after the subject left out."""
    subjects = _check_groups(subjects, 2)
    splits = LeaveOneGroupOut().split(np.zeros(len(subjects)), groups=subjects)
    return [Fold(f"subject-{subjects[te[0]]}", tr, te) for tr, te in splits]


def predefined_split(splits, train=("train",), test=("test",), val=(), name: str = "predefined") -> Fold:
    """A fold from the samples' predefined split names (``Sample.split``), e.g. FER2013's
    ``train``/``public_test``/``private_test`` or SFEW's ``train``/``val``."""
    splits = np.asarray(splits, dtype=object)
    wanted = {"train": train, "test": test, "val": val}
    parts = {part: np.flatnonzero(np.isin(splits, list(names))) for part, names in wanted.items()}
    for part in ("train", "test"):
        if parts[part].size == 0:
            raise ValueError(f"predefined split: no sample in {part} split(s) {', '.join(wanted[part])}")
    return Fold(name, parts["train"], parts["test"], parts["val"])


def carve_validation(fold: Fold, labels, subjects=None, fraction: float = 0.1, seed: int = 0) -> Fold:
    """``fold`` with ``val`` taken from its training part only (about ``fraction`` of it),
    grouped by subject when every training sample has one (``StratifiedGroupKFold``), else
    stratified (falling back to a plain shuffle for classes too small to stratify)."""
    if fraction <= 0:
        return fold
    labels, train = np.asarray(labels), fold.train
    train_labels = labels[train]
    groups = None
    if subjects is not None:
        groups = np.asarray(subjects, dtype=object)[train]
        if any(g is None or g == "" for g in groups) or len(set(groups.tolist())) < 2:
            groups = None
    if groups is not None:
        n_splits = min(max(2, int(round(1.0 / fraction))), len(set(groups.tolist())))
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        keep, val = next(splitter.split(np.zeros(len(train)), train_labels, groups=groups))
    else:
        try:
            splitter = StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
            keep, val = next(splitter.split(np.zeros(len(train)), train_labels))
        except ValueError:  # a class with a single sample cannot be stratified
            keep, val = next(ShuffleSplit(n_splits=1, test_size=fraction, random_state=seed).split(train))
    return Fold(fold.name, train[np.sort(keep)], fold.test, train[np.sort(val)])


def cross_dataset(train: Dataset, test: Dataset, classes: Optional[Sequence[str]] = None) -> tuple:
    """Train on dataset A, test on B (Table 11): ``(combined, fold)`` where ``combined`` holds
    A's then B's samples restricted to the common class set (``classes``, default the classes
    both have, in A's order) and ``fold`` indexes A as train and B as test."""
    common = tuple(c for c in (classes or train.classes) if c in train.classes and c in test.classes)
    if not common:
        raise ValueError(f"{train.name} and {test.name} share no class")
    a, b = train.select_classes(common), test.select_classes(common)
    combined = Dataset(f"{train.name}->{test.name}", a.samples + b.samples, common)
    n = len(a.samples)
    return combined, Fold(f"{train.name}->{test.name}", np.arange(n), np.arange(n, n + len(b.samples)))


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How to split a dataset: ``kind`` ``"kfold"`` (``k`` folds, subject-grouped when
    ``grouped`` and ids exist), ``"loso"`` or ``"predefined"`` (split names per part)."""

    name: str
    kind: str
    k: int = 0
    grouped: bool = True
    train_splits: tuple = ("train",)
    val_splits: tuple = ()
    test_splits: tuple = ("test",)

    def make_folds(self, dataset: Dataset, seed: int = 0, val_fraction: float = 0.1) -> list:
        """The folds of ``dataset``; each gets a validation part carved from its training part
        (``carve_validation``) unless the protocol names predefined validation splits."""
        labels = dataset.labels()
        subjects = dataset.subjects() if dataset.has_subjects() else None
        if self.kind == "kfold":
            if self.grouped and subjects is not None:
                folds = subject_kfold(labels, subjects, self.k, seed)
            else:
                if self.grouped:
                    warnings.warn(f"{dataset.name}: no subject ids, {self.k}-fold split by sample, not by subject")
                folds = stratified_kfold(labels, self.k, seed)
        elif self.kind == "loso":
            if subjects is None:
                raise ValueError(f"{dataset.name}: leave-one-subject-out needs subject ids")
            folds = leave_one_subject_out(subjects)
        elif self.kind == "predefined":
            folds = [predefined_split([s.split for s in dataset.samples], self.train_splits, self.test_splits,
                                      self.val_splits, name=self.name)]
        else:
            raise ValueError(f"protocol {self.name!r}: unknown kind {self.kind!r}")
        if self.val_splits:
            return folds
        return [carve_validation(f, labels, subjects, val_fraction, seed) for f in folds]


# §4.1.2. FER2013's PublicTest is its predefined validation set; the paper reports both.
DEFAULT_PROTOCOLS = {
    "ckplus": Protocol("ckplus-10fold", "kfold", k=10),
    "jaffe": Protocol("jaffe-10fold", "kfold", k=10),
    "tfeid": Protocol("tfeid-5fold", "kfold", k=5),
    "baum2i": Protocol("baum2i-7fold-person-independent", "kfold", k=7),
    "fer2013": Protocol("fer2013-predefined", "predefined", train_splits=("train",),
                        val_splits=("public_test",), test_splits=("private_test",)),
    "sfew": Protocol("sfew-predefined", "predefined", train_splits=("train",), test_splits=("val",)),
}
_NAME_ALIASES = {"ck+": "ckplus", "ckplus48": "ckplus", "ck+48": "ckplus", "baum-2i": "baum2i",
                 "ferplus": "fer2013", "fer+": "fer2013", "sfew2": "sfew", "sfew2.0": "sfew"}


def default_protocol(dataset_name: str) -> Protocol:
    """The paper's protocol for a dataset (§4.1.2): 10-fold CK+ and JAFFE, 5-fold TFEID,
    7-fold person-independent BAUM-2i, predefined FER2013 and SFEW splits."""
    key = str(dataset_name).strip().lower().replace("_", "")
    key = _NAME_ALIASES.get(key, key)
    if key not in DEFAULT_PROTOCOLS:
        raise ValueError(f"no default protocol for dataset {dataset_name!r}; known: {', '.join(DEFAULT_PROTOCOLS)}")
    return DEFAULT_PROTOCOLS[key]
