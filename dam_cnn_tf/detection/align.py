"""Faces aligned by their eyes, as aligned training sets frame them (RAF-DB's faces, for one).

A preset's ``EyeTemplate`` says where the two eyes sit in its training faces, as fractions of
the square crop's side. ``eye_transform`` is the similarity (rotation, uniform scale,
translation) that carries two detected eye centres onto the template's, in closed form from
the two point pairs; ``align_face`` warps the image with it into a square crop, replicating
the border where the crop reaches past the image. NumPy and OpenCV only.
"""

from __future__ import annotations

import dataclasses
import cv2
import numpy as np


class AlignError(ValueError):
    """An eye template or pair of eyes that cannot define an alignment; one line."""


@dataclasses.dataclass(frozen=True)
class EyeTemplate:
    """Eye centres ``(x, y)`` in a square face crop, as fractions of its side; ``right_eye`` is
    the subject's right eye (BlazeFace's first keypoint, on the image's left in a frontal face)."""

    right_eye: tuple
    left_eye: tuple

    def __post_init__(self):
        points = np.asarray([self.right_eye, self.left_eye], np.float64)
        if points.shape != (2, 2) or not np.isfinite(points).all():
            raise AlignError(f"an eye template holds two (x, y) points, got {self.right_eye!r}, {self.left_eye!r}")
        if np.hypot(*(points[1] - points[0])) < 1e-3:
            raise AlignError("an eye template's two eyes must lie apart")

    @classmethod
    def from_dict(cls, entry: dict) -> "EyeTemplate":
        """From a card's ``eye_template`` entry (``{"right_eye": [x, y], "left_eye": [x, y], ...}``)."""
        try:
            return cls(tuple(float(v) for v in entry["right_eye"]), tuple(float(v) for v in entry["left_eye"]))
        except (KeyError, TypeError, ValueError) as error:
            if isinstance(error, AlignError):
                raise
            raise AlignError(f"not an eye template: {entry!r}") from None

    def points(self, side: float, margin: float = 0.0) -> np.ndarray:
        """The eyes in pixels of a ``side`` crop, ``(2, 2)``; ``margin`` widens the crop by that
        fraction of its side on each side (the face then fills less of it), as for boxes."""
        fractions = (np.asarray([self.right_eye, self.left_eye], np.float64) + margin) / (1.0 + 2.0 * margin)
        return fractions * float(side)

    def eye_distance(self) -> float:
        """The distance between the eyes, as a fraction of the side."""
        return float(np.hypot(*(np.subtract(self.left_eye, self.right_eye))))


def eye_transform(eyes, template: EyeTemplate, side: float, margin: float = 0.0) -> np.ndarray:
    """The ``(2, 3)`` similarity matrix taking image points to a ``side`` x ``side`` crop in which
    ``eyes`` (``(2, 2)``: right eye, left eye, image pixels) land on ``template``'s eyes.

    With complex numbers, ``q = z p + t`` through both pairs gives ``z = (q2 - q1) / (p2 - p1)``
    (rotation and scale) and ``t = q1 - z p1``.
    """
    eyes = np.asarray(eyes, np.float64).reshape(2, 2)
    if not np.isfinite(eyes).all():
        raise AlignError(f"eye positions must be finite, got {eyes.tolist()}")
    source = eyes[:, 0] + 1j * eyes[:, 1]
    target_points = template.points(side, margin)
    target = target_points[:, 0] + 1j * target_points[:, 1]
    if abs(source[1] - source[0]) < 1e-6:
        raise AlignError("the two eyes are at the same place")
    z = (target[1] - target[0]) / (source[1] - source[0])
    t = target[0] - z * source[0]
    return np.array([[z.real, -z.imag, t.real], [z.imag, z.real, t.imag]], np.float64)


def crop_side(eyes, template: EyeTemplate, margin: float = 0.0) -> float:
    """The side, in image pixels, of the square the template frames around ``eyes``."""
    eyes = np.asarray(eyes, np.float64).reshape(2, 2)
    return float(np.hypot(*(eyes[1] - eyes[0]))) * (1.0 + 2.0 * margin) / template.eye_distance()


def align_face(image: np.ndarray, eyes, template: EyeTemplate, side: int, margin: float = 0.0) -> np.ndarray:
    """The ``side`` x ``side`` crop of ``image`` with ``eyes`` on the template's eyes."""
    return warp_square(image, eye_transform(eyes, template, side, margin), side)


def warp_square(image: np.ndarray, matrix: np.ndarray, side: int) -> np.ndarray:
    """The ``side`` x ``side`` square that ``matrix`` (image pixels to the square's) takes out of
    ``image``: bilinear, the border replicated beyond the image."""
    return cv2.warpAffine(np.asarray(image), np.asarray(matrix, np.float64), (int(side), int(side)),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crop_bounds(matrix: np.ndarray, side: float, width: int, height: int) -> tuple:
    """``(x0, y0, x1, y1)``: the part of a ``width`` x ``height`` image that a ``side`` crop made
    with ``matrix`` covers (the bounding box of its corners), clipped to the image."""
    inverse = cv2.invertAffineTransform(np.asarray(matrix, np.float64))
    corners = np.array([[0, 0, 1], [side, 0, 1], [0, side, 1], [side, side, 1]], np.float64) @ inverse.T
    lo, hi = np.floor(corners.min(axis=0)), np.ceil(corners.max(axis=0))
    x0, y0 = int(np.clip(lo[0], 0, width)), int(np.clip(lo[1], 0, height))
    return x0, y0, max(x0, int(np.clip(hi[0], 0, width))), max(y0, int(np.clip(hi[1], 0, height)))

