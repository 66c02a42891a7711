"""What all dataset loaders share: the load report, bad-file policy, label and split names.

Bad files. A loader checks each image file's header (``images.probe_file``: cheap, a few
hundred bytes) unless ``check="none"``; that finds missing, empty, non-image and oversized
files. ``check="decode"`` decodes every image at load time and so also finds corrupt and
truncated pixel data; by default that is found later, when faces are prepared
(``faces.FacePreparer``), under the same ``on_bad`` policy. ``on_bad="skip"`` leaves a bad
file out and records its name and reason in ``LoadReport.skipped``; ``on_bad="error"``
raises ``ImageReadError`` whose one-line message names it. Nothing is dropped silently.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
from pathlib import Path
from typing import Optional

from dam_cnn_tf.data.images import ImageReadError, probe_file, read_image
from dam_cnn_tf.data.labels import UnknownLabelError, canonical_label
from dam_cnn_tf.data.samples import Dataset
from dam_cnn_tf.errors import PathError

ON_BAD_CHOICES = ("skip", "error")
CHECK_CHOICES = ("header", "decode", "none")
UNKNOWN_LABEL_CHOICES = ("error", "drop")


class DatasetFormatError(PathError):
    """A dataset whose files or tables do not have the expected layout; one line naming the path."""


@dataclasses.dataclass
class LoadReport:
    """What a loader left out and why.

    ``skipped``: ``(path, reason)`` for every bad or non-image file left out;
    ``dropped_labels``: count of samples left out per label that is not canonical or not
    wanted (e.g. Yale's ``sleepy``, FER+ ties).
    """

    skipped: list = dataclasses.field(default_factory=list)
    dropped_labels: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def summary(self) -> str:
        """One line: how many files were skipped and how many samples dropped per label."""
        parts = [f"{len(self.skipped)} file(s) skipped"]
        if self.dropped_labels:
            counts = ", ".join(f"{k}: {v}" for k, v in sorted(self.dropped_labels.items()))
            parts.append(f"{sum(self.dropped_labels.values())} sample(s) dropped ({counts})")
        return "; ".join(parts)


@dataclasses.dataclass
class LoadedDataset(Dataset):
    """A ``Dataset`` that also carries its ``LoadReport``."""

    report: LoadReport = dataclasses.field(default_factory=LoadReport)


def check_choice(option: str, value, choices) -> None:
    """Raise a one-line ``ValueError`` naming ``option`` when ``value`` is not among ``choices``."""
    if value not in choices:
        raise ValueError(f"{option} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def handle_bad(report: LoadReport, on_bad: str, error: ImageReadError) -> None:
    """Apply the bad-file policy: record ``error`` in ``report`` or raise it."""
    if on_bad == "error":
        raise error
    report.skipped.append((error.path, error.reason))


def file_is_good(path, report: LoadReport, on_bad: str, check: str, max_pixels=None) -> bool:
    """Check one image file as ``check`` says; ``False`` (recorded) or raise when it is bad."""
    try:
        if check == "header":
            probe_file(path, max_pixels)
        elif check == "decode":
            read_image(path, max_pixels)
    except ImageReadError as err:
        handle_bad(report, on_bad, err)
        return False
    return True


def map_label(raw: str, report: LoadReport, unknown_labels: str, where, count: int = 1) -> Optional[str]:
    """The canonical label for ``raw``; ``None`` (``count`` samples counted as dropped) when
    unknown and ``unknown_labels="drop"``; otherwise unknown raises ``DatasetFormatError``."""
    try:
        return canonical_label(raw)
    except UnknownLabelError:
        if unknown_labels == "drop":
            report.dropped_labels[str(raw)] += count
            return None
        raise DatasetFormatError(
            where, f"unknown expression label {raw!r} (pass unknown_labels='drop' to leave such samples out)"
        ) from None


_SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "publictest": "public_test",
    "test": "test", "testing": "test", "privatetest": "private_test",
}


def canonical_split(name: str) -> Optional[str]:
    """The split name used across the package (train, val, test, public_test, private_test).

    FER2013's ``Training``/``PublicTest``/``PrivateTest``, SFEW's ``Train``/``Val`` and
    Kaggle's ``train``/``test`` map here; ``None`` for a name that is not a split.
    """
    key = str(name).strip().lower().replace("_", "").replace("-", "")
    return _SPLIT_ALIASES.get(key)


# Kaggle's FER2013 image folders name each file after its CSV row's Usage: Training_123.jpg.
_USAGE_PREFIX = re.compile(r"^(training|publictest|privatetest)_", re.IGNORECASE)


def usage_prefix_split(file_name: str) -> Optional[str]:
    """The split a file name's FER2013 Usage prefix gives (``Training_1.jpg`` -> ``train``,
    ``PublicTest_2.jpg`` -> ``public_test``, ``PrivateTest_3.jpg`` -> ``private_test``, any
    case); ``None`` for a name without one."""
    match = _USAGE_PREFIX.match(str(file_name))
    return canonical_split(match.group(1)) if match else None


def _inside(root: str, path: str) -> bool:
    return os.path.commonpath([root, path]) == root


def safe_join(root, relative: str, where, *, allow_external_links: bool = False) -> Path:
    """``root / relative``, refusing absolute paths, ``..`` that would leave ``root`` and,
    unless ``allow_external_links``, symbolic links (of the file or of a folder on the way)
    that lead outside ``root``. A file that does not exist yet is judged by its name alone.
    """
    rel = str(relative).strip().replace("\\", "/")
    if not rel:
        raise DatasetFormatError(where, "empty path")
    if "\0" in rel:
        raise DatasetFormatError(where, f"path {rel!r} holds a NUL character")
    joined = os.path.normpath(os.path.join(str(root), rel))
    root_norm = os.path.normpath(str(root))
    if os.path.isabs(rel) or not _inside(root_norm, joined):
        raise DatasetFormatError(where, f"path {rel!r} escapes the dataset root {root_norm}")
    if not allow_external_links:
        real_root, real = os.path.realpath(root_norm), os.path.realpath(joined)
        if not _inside(real_root, real):
            raise DatasetFormatError(
                where, f"path {rel!r} is a link to {real}, outside the dataset root {real_root} "
                       "(pass allow_external_links=True to follow such links)")
    return Path(joined)


def sorted_classes(samples) -> tuple:
    """The classes present in ``samples``, in canonical order (``labels.CANONICAL_LABELS``)."""
    from dam_cnn_tf.data.labels import CANONICAL_LABELS

    present = {s.label for s in samples}
    return tuple(c for c in CANONICAL_LABELS if c in present)


def finish(name: str, samples: list, report: LoadReport, where) -> LoadedDataset:
    """Wrap samples into a ``LoadedDataset``; an empty result is an error naming ``where``."""
    if not samples:
        raise DatasetFormatError(where, f"no usable samples found ({report.summary()})")
    return LoadedDataset(name, samples, sorted_classes(samples), report)
