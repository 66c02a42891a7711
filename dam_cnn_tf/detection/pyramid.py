"""Every face from ``min_face`` pixels up to the whole frame: BlazeFace over an image pyramid.

The short-range network finds faces of about 26 to 115 pixels in its input (measured in
docs/detection.md). Level ``k`` of the pyramid scales the photo by ``TARGET / (min_face *
LEVEL_FACTOR**k)``, so that its faces reach the network at 32 to 96 pixels; the last level
fits the whole photo into 96 of the network's 128 pixels, for faces as large as the frame.
A level larger than ``max_input`` pixels a side is cut into overlapping chunks (to bound
memory); the overlap exceeds the largest face a level is for, so a face cut by one chunk's
edge is whole in its neighbour, and boxes touching an inner edge are dropped. What all levels
found is merged by MediaPipe's weighted non-maximum suppression.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import cv2
import numpy as np

from dam_cnn_tf.detection.blazeface import (GRID, INPUT_SIZE, MIN_SUPPRESSION_IOU, NUM_KEYPOINTS, BlazeFaceNet,
                                            to_input, weighted_nms)

DEFAULT_MIN_FACE = 40
# MediaPipe keeps scores above 0.5 for one 128-pixel view; a pyramid over a large photo looks
# at hundreds of such views, and 0.6 cut false detections six-fold for 3 % of the faces on
# composed photos drawn apart from the reported benchmark (docs/detection.md).
DEFAULT_MIN_SCORE = 0.6
TARGET = 32.0  # smallest face side, in network pixels, that a level is for
LEVEL_FACTOR = 3.0  # a level is for faces of TARGET to TARGET * LEVEL_FACTOR network pixels
WHOLE_FRAME = 96.0  # the last level fits the photo's longer side into this many network pixels
CHUNK_OVERLAP = 160  # network pixels; more than the largest face the network finds (~115)
EDGE_MARGIN = 2.0  # a box this close to an inner chunk edge was cut by it


@dataclasses.dataclass
class Detections:
    """Faces of one image: ``boxes`` ``(n, 4)`` float ``xmin, ymin, xmax, ymax`` in pixels,
    ``scores`` ``(n,)``, ``keypoints`` ``(n, 6, 2)`` (``blazeface.KEYPOINT_NAMES``), best first."""

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray

    def xywh(self, width: int, height: int) -> np.ndarray:
        """Integer ``x, y, w, h`` boxes clipped to the image, as ``HaarFaceDetector`` gives."""
        if not len(self.boxes):
            return np.zeros((0, 4), np.int64)
        lo = np.floor(np.clip(self.boxes[:, :2], 0, [width, height]))
        hi = np.ceil(np.clip(self.boxes[:, 2:], 0, [width, height]))
        return np.concatenate([lo, hi - lo], axis=1).astype(np.int64)


def level_scales(height: int, width: int, min_face: float) -> list:
    """The scale of each pyramid level, finest first, ending with the whole-frame level."""
    whole = WHOLE_FRAME / max(height, width)
    scales, scale = [], TARGET / float(min_face)
    while scale * LEVEL_FACTOR ** -0.5 > whole:  # the whole-frame level does not already cover it
        scales.append(scale)
        scale /= LEVEL_FACTOR
    return scales + [whole]


def _chunk_starts(size: int, chunk: int) -> list:
    if size <= chunk:
        return [0]
    step = chunk - CHUNK_OVERLAP
    starts = list(range(0, size - chunk, step))
    return starts + [size - chunk]


def _round_up(value: int) -> int:
    return max(GRID, -(-value // GRID) * GRID)


class BlazeFaceDetector:
    """Faces of an RGB ``uint8`` image ``(H, W, 3)``, from ``min_face`` pixels to the whole frame.

    Called, it returns ``(n, 4)`` integer ``x, y, w, h`` boxes; ``detect`` returns the
    ``Detections`` with scores and keypoints, ``boxes_and_eyes`` the boxes with the eyes.
    ``min_score``: 0.6 by default (``DEFAULT_MIN_SCORE``). ``runtime``: see
    ``blazeface.BlazeFaceNet``. ``max_input``: the largest side, in network pixels, run in one
    pass (larger levels are chunked).
    """

    name = "blazeface"

    def __init__(self, min_face: Optional[float] = None, min_score: float = DEFAULT_MIN_SCORE, runtime: str = "auto",
                 max_input: int = 1024, net: Optional[BlazeFaceNet] = None):
        self.min_face = float(DEFAULT_MIN_FACE if min_face is None else min_face)
        if not np.isfinite(self.min_face) or self.min_face < 1:
            raise ValueError(f"min_face must be a number of pixels >= 1, got {min_face!r}")
        if not 0.0 < float(min_score) < 1.0:
            raise ValueError(f"min_score must lie strictly between 0 and 1, got {min_score!r}")
        if max_input < INPUT_SIZE or max_input % GRID or max_input <= CHUNK_OVERLAP:
            raise ValueError(f"max_input must be a multiple of {GRID} of at least {INPUT_SIZE}, got {max_input!r}")
        self.min_score, self.max_input = float(min_score), int(max_input)
        self.net = net or BlazeFaceNet(runtime)

    def config(self) -> dict:
        """The settings that change what is detected."""
        return {"detector": self.name, "min_face": self.min_face, "min_score": self.min_score}

    def min_face_side(self, height: int, width: int) -> int:
        """The side, in pixels, of the smallest face looked for (the same in every image)."""
        return int(round(self.min_face))

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        rgb = np.asarray(rgb)
        return self.detect(rgb).xywh(rgb.shape[1], rgb.shape[0])

    def boxes_and_eyes(self, rgb: np.ndarray) -> tuple:
        """``(boxes, eyes)``: the boxes the detector returns when called, and each face's eye
        centres ``(n, 2, 2)`` (right eye, left eye; ``x, y`` in pixels), for ``detection.align``."""
        rgb = np.asarray(rgb)
        found = self.detect(rgb)
        return found.xywh(rgb.shape[1], rgb.shape[0]), np.asarray(found.keypoints[:, :2], np.float64)

    def detect(self, rgb: np.ndarray) -> Detections:
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[-1] != 3 or min(rgb.shape[:2]) < 1:
            raise ValueError(f"the face detector takes RGB uint8 images (H, W, 3), got {rgb.dtype} {rgb.shape}")
        height, width = rgb.shape[:2]
        found_points, found_scores = [], []
        for scale in level_scales(height, width, self.min_face):
            points, scores = self._level(rgb, scale)
            found_points.append(points / scale)
            found_scores.append(scores)
        points, scores = weighted_nms(np.concatenate(found_points), np.concatenate(found_scores),
                                      self.min_score, MIN_SUPPRESSION_IOU)
        return Detections(points[:, :2].reshape(-1, 4), scores, points[:, 2:])

    def _level(self, rgb: np.ndarray, scale: float) -> tuple:
        """Candidates ``(points, scores)`` of one level, in that level's pixels."""
        height, width = rgb.shape[:2]
        size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        level = cv2.resize(rgb, size, interpolation=interpolation) if size != (width, height) else rgb
        level_h, level_w = level.shape[:2]
        chunk_h, chunk_w = min(_round_up(level_h), self.max_input), min(_round_up(level_w), self.max_input)
        points_out, scores_out = [], []
        for y0 in _chunk_starts(level_h, chunk_h):
            for x0 in _chunk_starts(level_w, chunk_w):
                # Black beyond the photo, as MediaPipe's letterboxing pads.
                chunk = np.zeros((chunk_h, chunk_w, 3), np.uint8)
                part = level[y0:y0 + chunk_h, x0:x0 + chunk_w]
                chunk[:part.shape[0], :part.shape[1]] = part
                (points, scores), = self.net.candidates(to_input(chunk[None]), self.min_score)
                boxes = points[:, :2].reshape(-1, 4)
                inner = np.ones(len(boxes), bool)
                if x0 > 0:
                    inner &= boxes[:, 0] > EDGE_MARGIN
                if y0 > 0:
                    inner &= boxes[:, 1] > EDGE_MARGIN
                if x0 + chunk_w < level_w:
                    inner &= boxes[:, 2] < chunk_w - EDGE_MARGIN
                if y0 + chunk_h < level_h:
                    inner &= boxes[:, 3] < chunk_h - EDGE_MARGIN
                points_out.append(points[inner] + np.float32([x0, y0]))
                scores_out.append(scores[inner])
        if not points_out:
            return np.zeros((0, 2 + NUM_KEYPOINTS, 2), np.float32), np.zeros((0,), np.float32)
        return np.concatenate(points_out), np.concatenate(scores_out)
