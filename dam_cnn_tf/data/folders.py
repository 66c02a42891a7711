"""Class-per-folder layouts: generic, split folders (Kaggle FER2013, SFEW) and TFEID."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from dam_cnn_tf.data.images import has_image_extension
from dam_cnn_tf.data.loading import (
    CHECK_CHOICES, ON_BAD_CHOICES, UNKNOWN_LABEL_CHOICES, DatasetFormatError, LoadReport,
    LoadedDataset, canonical_split, check_choice, file_is_good, finish, map_label, usage_prefix_split,
)
from dam_cnn_tf.data.samples import Sample


def _subdirs(folder: Path) -> list:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def has_split_folders(root) -> bool:
    """Whether every sub-folder of ``root`` is named like a split (train/val/test, Training, ...)."""
    dirs = _subdirs(Path(root))
    return bool(dirs) and all(canonical_split(d.name) is not None for d in dirs)


def _subject_of(path: Path, pattern: Optional[re.Pattern]) -> Optional[str]:
    if pattern is None:
        return None
    match = pattern.search(path.name)
    if not match:
        return None
    return match.group("subject") if "subject" in pattern.groupindex else match.group(1)


def _load_label_folders(folder, split, report, samples, *, on_bad, unknown_labels, check,
                        subject_pattern, max_pixels, require_subject) -> None:
    for label_dir in _subdirs(folder):
        files = sorted(p for p in label_dir.rglob("*") if p.is_file())
        label = map_label(label_dir.name, report, unknown_labels, label_dir, count=len(files))
        if label is None:
            continue
        for path in files:
            if not has_image_extension(path):
                report.skipped.append((str(path), "not an image file (extension)"))
                continue
            subject = _subject_of(path, subject_pattern)
            if subject is None and require_subject:
                raise DatasetFormatError(path, f"file name does not match subject pattern {subject_pattern.pattern!r}")
            if file_is_good(path, report, on_bad, check, max_pixels):
                # Kaggle's FER2013 test/ folder mixes PublicTest_ and PrivateTest_ files.
                file_split = usage_prefix_split(path.name) or split
                samples.append(Sample(str(path), label, subject=subject, split=file_split))


def load_folders(root, *, name: Optional[str] = None, on_bad: str = "skip", unknown_labels: str = "error",
                 check: str = "header", subject_pattern: Optional[str] = None,
                 max_pixels: Optional[int] = None, require_subject: bool = False) -> LoadedDataset:
    """Load ``root/<label>/**/<image>``, or ``root/<split>/<label>/**/<image>`` when every
    sub-folder of ``root`` is a split name (Kaggle FER2013 ``train``/``test``, SFEW ``Train``/``Val``).
    A file named with FER2013's Usage prefix (``Training_``, ``PublicTest_``, ``PrivateTest_``)
    takes that split (``train``, ``public_test``, ``private_test``) over its folder's, so Kaggle's
    FER2013 folders split as the CSV does.

    Folder names map through ``labels.canonical_label``; an unknown one raises
    ``DatasetFormatError`` unless ``unknown_labels="drop"`` (then counted in the report).
    ``subject_pattern`` is a regex searched in each file name whose group ``subject`` (or
    group 1) is the subject id. Files without an image extension are reported as skipped.
    """
    check_choice("on_bad", on_bad, ON_BAD_CHOICES)
    check_choice("check", check, CHECK_CHOICES)
    check_choice("unknown_labels", unknown_labels, UNKNOWN_LABEL_CHOICES)
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(root, "not a directory")
    pattern = re.compile(subject_pattern) if subject_pattern else None
    report, samples = LoadReport(), []
    options = dict(on_bad=on_bad, unknown_labels=unknown_labels, check=check, subject_pattern=pattern,
                   max_pixels=max_pixels, require_subject=require_subject)
    if has_split_folders(root):
        for split_dir in _subdirs(root):
            _load_label_folders(split_dir, canonical_split(split_dir.name), report, samples, **options)
    else:
        _load_label_folders(root, None, report, samples, **options)
    return finish(name or root.name, samples, report, root)


def load_sfew(root, **options) -> LoadedDataset:
    """SFEW 2.0 as distributed: ``root/Train/<Label>/*.png``, ``root/Val/<Label>/*.png``
    (labels Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise); split = ``train``/``val``.
    """
    if not has_split_folders(root):
        raise DatasetFormatError(root, "SFEW expects Train/ and Val/ folders")
    options.setdefault("name", "sfew")
    return load_folders(root, **options)


# TFEID file names start with the model's id: a sex letter and a number (e.g. ``f01_...``, ``m12...``).
TFEID_SUBJECT_PATTERN = r"^(?P<subject>[A-Za-z]+\d+)"


def load_tfeid(root, *, subject_pattern: str = TFEID_SUBJECT_PATTERN, **options) -> LoadedDataset:
    """TFEID, folder per expression as distributed: ``root/<expression>/<image>`` (both
    intensities, high and slight, may sit in nested folders below an expression folder).

    Assumption: each file name begins with the model's id, letters then digits (``f01``,
    ``m12``), taken as the subject; pass another ``subject_pattern`` for other naming.
    Files whose name does not match raise ``DatasetFormatError``: subject-grouped folds
    (§4.1.2, 5-fold) need every id.
    """
    options.setdefault("name", "tfeid")
    return load_folders(root, subject_pattern=subject_pattern, require_subject=True, **options)
