"""FER2013 (``emotion,pixels,Usage`` CSV) and the FER+ re-labelling of the same images."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

from dam_cnn_tf.data.images import ImageReadError
from dam_cnn_tf.data.loading import (
    ON_BAD_CHOICES, DatasetFormatError, LoadReport, LoadedDataset, canonical_split, check_choice,
    finish, handle_bad,
)
from dam_cnn_tf.data.manifest import read_csv_rows
from dam_cnn_tf.data.samples import Sample

FER2013_LABELS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
FER2013_SIDE = 48
FERPLUS_VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                        "contempt", "unknown", "NF")

def _parse_pixels(text: str, where) -> np.ndarray:
    try:
        values = np.array(text.split(), dtype=np.int64)
    except (ValueError, OverflowError):  # OverflowError: a value beyond int64
        raise ImageReadError(where, "pixels are not integers") from None
    if values.size != FER2013_SIDE * FER2013_SIDE:
        raise ImageReadError(where, f"expected {FER2013_SIDE * FER2013_SIDE} pixel values, got {values.size}")
    if values.min() < 0 or values.max() > 255:
        raise ImageReadError(where, "pixel values outside 0-255")
    grey = values.astype(np.uint8).reshape(FER2013_SIDE, FER2013_SIDE)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)

def _fer2013_rows(csv_path):
    header, rows = read_csv_rows(csv_path)
    missing = [c for c in ("emotion", "pixels") if c not in header]
    if missing:
        raise DatasetFormatError(
            csv_path, f"missing column(s) {', '.join(missing)}; FER2013 has emotion,pixels,Usage")
    return rows

def load_fer2013(csv_path, *, name: str = "fer2013", on_bad: str = "skip") -> LoadedDataset:
    """Load ``fer2013.csv``: emotion ids 0-6 (Angry, Disgust, Fear, Happy, Sad, Surprise,
    Neutral), 48x48 grey ``pixels`` kept in memory as RGB ``Sample.image``, ``Usage``
    (Training/PublicTest/PrivateTest) as split ``train``/``public_test``/``private_test``.

    A row whose pixels are not 2304 values in 0-255 is a bad sample under ``on_bad``;
    ``Sample.path`` is ``fer2013.csv:<line>``.
    """
    check_choice("on_bad", on_bad, ON_BAD_CHOICES)
    csv_path = Path(csv_path)
    report, samples = LoadReport(), []
    for number, row in enumerate(_fer2013_rows(csv_path), start=2):
        where = f"{csv_path}:{number}"
        try:
            emotion = int(row["emotion"])
            label = FER2013_LABELS[emotion]
            if emotion < 0:
                raise IndexError
        except (ValueError, IndexError):
            raise DatasetFormatError(where, f"emotion must be an id 0-6, got {row['emotion']!r}") from None
        try:
            image = _parse_pixels(row["pixels"], where)
        except ImageReadError as err:
            handle_bad(report, on_bad, err)
            continue
        usage = row.get("Usage") or None
        samples.append(Sample(where, label, split=canonical_split(usage) if usage else None, image=image))
    return finish(name, samples, report, csv_path)

def ferplus_label(votes, min_share: float = 0.0) -> tuple:
    """``(label, None)`` for the FER+ vote vector in ``FERPLUS_VOTE_COLUMNS`` order, or
    ``(None, reason)``: ``"tie"`` when emotions share the top count, ``"unknown"``/``"NF"``
    when those hold it, ``"no votes"``, ``"below min_share"`` when the winner has at most
    ``min_share`` of the votes (``min_share=0.5`` is FER+'s strict majority).
    """
    votes = np.asarray(votes, dtype=np.float64)
    total = votes.sum()
    if total <= 0:
        return None, "no votes"
    top = votes.max()
    winners = np.flatnonzero(votes == top)
    names = [FERPLUS_VOTE_COLUMNS[i] for i in winners]
    for special in ("NF", "unknown"):
        if special in names:
            return None, special
    if len(winners) > 1:
        return None, "tie"
    if top <= min_share * total:
        return None, "below min_share"
    return names[0], None

def load_ferplus(ferplus_csv, fer2013_csv, *, name: str = "ferplus", on_bad: str = "skip",
                 min_share: float = 0.0) -> LoadedDataset:
    """FER+ labels (``fer2013new.csv``: Usage, Image name, and 10 vote columns) on the
    FER2013 pixels of the same row. Each row's label is its most-voted emotion
    (``ferplus_label``); ties, unknown, NF and rows without an image name are dropped and
    counted in ``report.dropped_labels`` under ``ferplus:<reason>``.
    """
    check_choice("on_bad", on_bad, ON_BAD_CHOICES)
    ferplus_csv, fer2013_csv = Path(ferplus_csv), Path(fer2013_csv)
    header, votes_rows = read_csv_rows(ferplus_csv)
    missing = [c for c in ("Image name", *FERPLUS_VOTE_COLUMNS) if c not in header]
    if missing:
        raise DatasetFormatError(ferplus_csv, f"missing FER+ column(s) {', '.join(missing)}")
    pixel_rows = _fer2013_rows(fer2013_csv)
    if len(pixel_rows) != len(votes_rows):
        raise DatasetFormatError(
            ferplus_csv,
            f"has {len(votes_rows)} rows but {fer2013_csv} has {len(pixel_rows)}; they must pair row by row")
    report, samples = LoadReport(), []
    for number, (votes_row, pixel_row) in enumerate(zip(votes_rows, pixel_rows), start=2):
        where = f"{ferplus_csv}:{number}"
        if not votes_row["Image name"]:
            report.dropped_labels["ferplus:no image"] += 1
            continue
        try:
            votes = [float(votes_row[c] or 0) for c in FERPLUS_VOTE_COLUMNS]
        except ValueError:
            raise DatasetFormatError(where, "vote counts must be numbers") from None
        label, reason = ferplus_label(votes, min_share)
        if label is None:
            report.dropped_labels[f"ferplus:{reason}"] += 1
            continue
        try:
            image = _parse_pixels(pixel_row["pixels"], f"{fer2013_csv}:{number}")
        except ImageReadError as err:
            handle_bad(report, on_bad, err)
            continue
        usage = votes_row.get("Usage") or pixel_row.get("Usage") or None
        samples.append(Sample(where, label, split=canonical_split(usage) if usage else None, image=image,
                              attributes={"image_name": votes_row["Image name"]}))
    return finish(name, samples, report, ferplus_csv)

def sniff_csv_header(csv_path) -> list:
    """The header fields of a CSV file (empty list when unreadable), for layout detection."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            return [h.strip() for h in next(csv.reader(handle), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
