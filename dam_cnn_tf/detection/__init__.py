"""Face detectors for prediction, by name: ``detector("blazeface")`` (the default) or
``detector("haar")`` (the paper's Viola-Jones, §4.1.1, which training's face preparation keeps).

Every detector is a callable taking an RGB ``uint8`` image ``(H, W, 3)`` and returning an
integer ``(n, 4)`` array of ``x, y, w, h`` boxes, and says through ``min_face_side(height,
width)`` how small a face it looks for. A detector that also locates the eyes (BlazeFace) has
a ``boxes_and_eyes`` method; ``boxes_and_eyes`` here asks any detector, so that faces can be
aligned (``detection.align``) where the eyes are known. Importing this package, and running
either detector, needs neither TensorFlow nor Keras. See docs/detection.md for what each finds
and costs.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

DEFAULT_DETECTOR = "blazeface"
DETECTOR_NAMES = ("blazeface", "haar")


class DetectorError(ValueError):
    """A detector name or setting that cannot be used, or a detector that cannot load; one line."""


def detector(name: str = DEFAULT_DETECTOR, min_face: Optional[float] = None, **kwargs):
    """The detector called ``name`` (``DETECTOR_NAMES``); ``min_face``: the smallest face side
    looked for, in pixels (``None``: the detector's default, 40 pixels for BlazeFace, 10 % of
    the shorter side for Haar). Other keywords go to the detector's class."""
    if name not in DETECTOR_NAMES:
        raise DetectorError(f"unknown face detector {name!r}; one of {', '.join(DETECTOR_NAMES)}")
    try:
        if name == "haar":
            from dam_cnn_tf.detection.haar import HaarRGBDetector

            return HaarRGBDetector(min_face=min_face, **kwargs)
        from dam_cnn_tf.detection.blazeface import BlazeFaceError
        from dam_cnn_tf.detection.pyramid import BlazeFaceDetector

        try:
            return BlazeFaceDetector(min_face=min_face, **kwargs)
        except BlazeFaceError as err:
            raise DetectorError(str(err)) from None
    except ValueError as err:
        if isinstance(err, DetectorError):
            raise
        raise DetectorError(f"{name} detector: {err}") from None


def boxes_and_eyes(find_faces: Callable, rgb) -> tuple:
    """``(boxes (n, 4) x, y, w, h, eyes (n, 2, 2) or None)`` from any detector: its
    ``boxes_and_eyes`` method where it has one, else its boxes alone (Haar, a custom callable)."""
    method = getattr(find_faces, "boxes_and_eyes", None)
    if callable(method):
        boxes, eyes = method(rgb)
        boxes = np.asarray(boxes).reshape(-1, 4)
        if eyes is not None:
            eyes = np.asarray(eyes, np.float64).reshape(len(boxes), 2, 2)
        return boxes, eyes
    return np.asarray(find_faces(rgb)).reshape(-1, 4), None
