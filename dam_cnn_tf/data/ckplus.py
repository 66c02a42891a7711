"""CK+ in its original layout (Lucey et al. 2010), selected as §4.1.1 says."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from dam_cnn_tf.data.images import has_image_extension
from dam_cnn_tf.data.loading import (
    CHECK_CHOICES, ON_BAD_CHOICES, DatasetFormatError, LoadReport, LoadedDataset, check_choice,
    file_is_good, finish,
)
from dam_cnn_tf.data.samples import Sample

# The integer codes of CK+'s Emotion/*_emotion.txt files.
CKPLUS_CODES = ("neutral", "anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise")


def _read_code(path: Path) -> str:
    try:
        value = float(path.read_text().split()[0])
    except (OSError, IndexError, ValueError):  # ValueError also covers undecodable bytes
        raise DatasetFormatError(path, "expected one emotion code 0-7") from None
    # NaN and infinity parse as floats but are no code; test before int() would raise on them.
    if not math.isfinite(value) or value != int(value) or not 0 <= value < len(CKPLUS_CODES):
        raise DatasetFormatError(path, f"emotion code must be an integer 0-7, got {value}")
    return CKPLUS_CODES[int(value)]


def is_ckplus_root(root) -> bool:
    """Whether ``root`` holds CK+'s ``cohn-kanade-images`` and ``Emotion`` folders."""
    root = Path(root)
    return (root / "cohn-kanade-images").is_dir() and (root / "Emotion").is_dir()


def load_ckplus(root, *, name: str = "ckplus", peak_frames: int = 3, neutral: bool = True,
                on_bad: str = "skip", check: str = "header", max_pixels: Optional[int] = None) -> LoadedDataset:
    """Load CK+ from ``root/cohn-kanade-images/Sxxx/nnn/Sxxx_nnn_000000NN.png`` and
    ``root/Emotion/Sxxx/nnn/*_emotion.txt`` (codes 0 neutral, 1 anger, 2 contempt, 3 disgust,
    4 fear, 5 happy, 6 sadness, 7 surprise).

    As §4.1.1: only emotion-labelled sequences are used; their last ``peak_frames`` frames
    carry the sequence's label and, with ``neutral=True``, the first frame is a neutral face.
    Subject = ``Sxxx``; ``attributes`` hold ``sequence`` (``Sxxx_nnn``) and ``frame``
    (``peak``/``onset``). Sequences without an emotion file are counted in
    ``report.dropped_labels["ckplus:unlabelled sequence"]``. The paper's 6-class subset
    (309 sequences, contempt left out) is ``dataset.select_classes(...)``.
    """
    check_choice("on_bad", on_bad, ON_BAD_CHOICES)
    check_choice("check", check, CHECK_CHOICES)
    root = Path(root)
    if not is_ckplus_root(root):
        raise DatasetFormatError(root, "CK+ expects cohn-kanade-images/ and Emotion/ folders")
    images_root = root / "cohn-kanade-images"
    report, samples = LoadReport(), []
    sequences = sorted(p for p in images_root.glob("*/*") if p.is_dir() and not p.name.startswith("."))
    for sequence_dir in sequences:
        subject, number = sequence_dir.parent.name, sequence_dir.name
        codes = sorted((root / "Emotion" / subject / number).glob("*_emotion.txt"))
        if not codes:
            report.dropped_labels["ckplus:unlabelled sequence"] += 1
            continue
        label = _read_code(codes[-1])
        frames = sorted(p for p in sequence_dir.iterdir() if p.is_file() and has_image_extension(p))
        if not frames:
            raise DatasetFormatError(sequence_dir, "labelled sequence has no frames")
        chosen = [(p, label, "peak") for p in frames[-peak_frames:]]
        if neutral and len(frames) > peak_frames:
            chosen.insert(0, (frames[0], "neutral", "onset"))
        for path, frame_label, role in chosen:
            if file_is_good(path, report, on_bad, check, max_pixels):
                samples.append(Sample(str(path), frame_label, subject=subject,
                                      attributes={"sequence": f"{subject}_{number}", "frame": role}))
    return finish(name, samples, report, root)
