"""JAFFE (Lyons et al. 1998): 213 images of 10 Japanese female models (§4.1.1)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from dam_cnn_tf.data.images import has_image_extension
from dam_cnn_tf.data.loading import (
    CHECK_CHOICES, ON_BAD_CHOICES, DatasetFormatError, LoadReport, LoadedDataset, check_choice,
    file_is_good, finish,
)
from dam_cnn_tf.data.labels import canonical_label
from dam_cnn_tf.data.samples import Sample

# e.g. KA.AN1.39.tiff: subject KA, expression AN, pose index 1, picture number 39.
JAFFE_NAME = re.compile(
    r"^(?P<subject>[A-Za-z]{2})\.(?P<code>AN|DI|FE|HA|NE|SA|SU)(?P<take>\d+)\.(?P<number>\d+)\.tiff?$", re.IGNORECASE)


def is_jaffe_name(name: str) -> bool:
    """Whether a file name follows JAFFE's ``KA.AN1.39.tiff`` pattern."""
    return JAFFE_NAME.match(name) is not None


def load_jaffe(root, *, name: str = "jaffe", on_bad: str = "skip", check: str = "header",
               max_pixels: Optional[int] = None) -> LoadedDataset:
    """Load every ``XX.YYn.nnn.tiff`` below ``root``: subject ``XX``, expression ``YY`` in
    AN/DI/FE/HA/NE/SA/SU (7 classes with neutral). Any other file (README, stray images)
    is listed in ``report.skipped``.
    """
    check_choice("on_bad", on_bad, ON_BAD_CHOICES)
    check_choice("check", check, CHECK_CHOICES)
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(root, "not a directory")
    report, samples = LoadReport(), []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        match = JAFFE_NAME.match(path.name)
        if match is None:
            reason = "image name is not JAFFE's XX.YYn.nnn.tiff" if has_image_extension(path) else "not an image file"
            report.skipped.append((str(path), reason))
            continue
        if file_is_good(path, report, on_bad, check, max_pixels):
            samples.append(Sample(str(path), canonical_label(match["code"]), subject=match["subject"].upper()))
    return finish(name, samples, report, root)
