"""CSV manifests (``path,label[,subject][,split][,attributes...]``) and BAUM-2i."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

from dam_cnn_tf.data.loading import (
    CHECK_CHOICES, ON_BAD_CHOICES, UNKNOWN_LABEL_CHOICES, DatasetFormatError, LoadReport,
    LoadedDataset, canonical_split, check_choice, file_is_good, finish, map_label, safe_join,
)
from dam_cnn_tf.data.samples import Sample

_RESERVED = ("path", "label", "subject", "split")


def read_csv_rows(csv_path) -> tuple:
    """``(header, rows)`` of a CSV file as dicts; a missing or empty file raises ``DatasetFormatError``."""
    rows = []
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            for row in reader:
                # DictReader files surplus fields under the key None: a row longer than the header.
                if None in row:
                    raise DatasetFormatError(
                        f"{csv_path}:{reader.line_num}",
                        f"row has {len(reader.fieldnames) + len(row[None])} fields, the header has "
                        f"{len(reader.fieldnames)}")
                rows.append({k.strip(): (v or "").strip() for k, v in row.items()})
            header = [h.strip() for h in (reader.fieldnames or [])]
    except (OSError, ValueError, csv.Error) as err:  # ValueError: undecodable text, NUL in the name
        if isinstance(err, DatasetFormatError):
            raise
        raise DatasetFormatError(csv_path, f"cannot read CSV ({err})") from None
    if not header:
        raise DatasetFormatError(csv_path, "empty CSV file")
    return header, rows


def load_manifest(csv_path, *, root=None, name: Optional[str] = None, on_bad: str = "skip",
                  unknown_labels: str = "error", check: str = "header",
                  max_pixels: Optional[int] = None, required_attributes=(),
                  allow_external_links: bool = False) -> LoadedDataset:
    """Load a CSV manifest with columns ``path,label`` and optionally ``subject``, ``split``
    and any attribute columns (kept as strings in ``Sample.attributes``, e.g. ``gender``).

    Paths are relative to ``root`` (default: the CSV's folder); absolute paths and ``..``
    that leave the root raise ``DatasetFormatError``, and so do symbolic links that lead
    outside it unless ``allow_external_links=True`` (e.g. a folder of links into a photo
    archive kept elsewhere). Labels map through
    ``labels.canonical_label``; unknown ones raise unless ``unknown_labels="drop"``, which
    counts them in ``report.dropped_labels`` (e.g. Yale's ``sleepy`` and ``wink``).
    """
    check_choice("on_bad", on_bad, ON_BAD_CHOICES)
    check_choice("check", check, CHECK_CHOICES)
    check_choice("unknown_labels", unknown_labels, UNKNOWN_LABEL_CHOICES)
    csv_path = Path(csv_path)
    root = Path(root) if root is not None else csv_path.parent
    header, rows = read_csv_rows(csv_path)
    missing = [c for c in ("path", "label", *required_attributes) if c not in header]
    if missing:
        raise DatasetFormatError(csv_path, f"missing column(s) {', '.join(missing)} (has {', '.join(header)})")
    attributes = [c for c in header if c not in _RESERVED]
    report, samples = LoadReport(), []
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{csv_path}:{number}"
        label = map_label(row["label"], report, unknown_labels, where)
        if label is None:
            continue
        path = safe_join(root, row["path"], where, allow_external_links=allow_external_links)
        if not file_is_good(path, report, on_bad, check, max_pixels):
            continue
        split = row.get("split") or None
        samples.append(Sample(
            str(path), label,
            subject=row.get("subject") or None,
            split=(canonical_split(split) or split.lower()) if split else None,
            attributes={a: row[a] for a in attributes if row.get(a)},
        ))
    return finish(name or root.name, samples, report, csv_path)


_GENDERS = {"m": "male", "male": "male", "man": "male", "f": "female", "female": "female", "woman": "female"}


def load_baum2i(path, **options) -> LoadedDataset:
    """BAUM-2i (§4.1.1: expression and gender labels per image).

    Assumed layout: a CSV manifest (``path`` = the CSV file, or a folder holding
    ``labels.csv``) with columns ``path,label,gender`` and, where known, ``subject``
    (needed for the person-independent 7-fold protocol of §4.1.2). Gender values
    ``m``/``male``/``f``/``female`` become ``attributes["gender"]`` = ``male``/``female``,
    the variation the paper's DAM-CNN-g decoders follow.
    """
    path = Path(path)
    csv_path = path / "labels.csv" if path.is_dir() else path
    options.setdefault("name", "baum2i")
    dataset = load_manifest(csv_path, required_attributes=("gender",), **options)
    for sample in dataset.samples:
        raw = sample.attributes.get("gender", "")
        if raw.lower() not in _GENDERS:
            raise DatasetFormatError(sample.path, f"gender must be male or female, got {raw!r}")
        sample.attributes["gender"] = _GENDERS[raw.lower()]
    return dataset
