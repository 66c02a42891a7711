"""Face preparation as §4.1.1: Viola-Jones detection, crop, resize to the model's input.

``FacePreparer`` turns a ``Dataset`` into an array of faces. Images where no face is found
are never dropped silently: ``no_face="skip"`` leaves them out and lists them in the report,
``no_face="whole"`` keeps the whole image, resized, and lists them too.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence, Union

import cv2
import numpy as np

from dam_cnn_tf.data.face_cache import FaceCache, array_digest, cache_key, content_digest
from dam_cnn_tf.data.images import ImageReadError, decode_image, read_file_bytes
from dam_cnn_tf.data.loading import ON_BAD_CHOICES, check_choice

NO_FACE_CHOICES = ("skip", "whole")
DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"


class HaarFaceDetector:
    """Viola-Jones face detector (§4.1.1) with OpenCV's bundled frontal-face Haar cascade.

    Called on a grey (or RGB, made grey first) ``uint8`` image, returns an ``(n, 4)`` int array
    of ``x, y, w, h`` boxes.
    """

    def __init__(self, cascade_path: Optional[str] = None, scale_factor: float = 1.1,
                 min_neighbors: int = 5, min_size_fraction: float = 0.1, equalize: bool = False):
        self.cascade_path = cascade_path or cv2.data.haarcascades + DEFAULT_CASCADE
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size_fraction = min_size_fraction
        self.equalize = equalize  # histogram equalisation first: helps dark photos, hurts flat backgrounds
        self._cascade = cv2.CascadeClassifier(self.cascade_path)
        if self._cascade.empty():
            raise ValueError(f"cannot load Haar cascade {self.cascade_path}")

    def config(self) -> dict:
        """The settings that change what is detected (part of the cache key)."""
        return {"cascade": self.cascade_path.rsplit("/", 1)[-1], "scale_factor": self.scale_factor,
                "min_neighbors": self.min_neighbors, "min_size_fraction": self.min_size_fraction,
                "equalize": self.equalize}

    def min_face_side(self, height: int, width: int) -> int:
        """The side, in pixels, of the smallest face looked for in a ``height`` x ``width`` image:
        ``min_size_fraction`` of its shorter side, and never under the cascade's 24 pixels."""
        return max(24, int(self.min_size_fraction * min(height, width)))

    def __call__(self, grey: np.ndarray) -> np.ndarray:
        if grey.ndim == 3 and grey.shape[-1] == 3:  # prediction's detectors take RGB
            grey = cv2.cvtColor(grey, cv2.COLOR_RGB2GRAY)
        side = self.min_face_side(*grey.shape[:2])
        image = cv2.equalizeHist(grey) if self.equalize else grey
        boxes = self._cascade.detectMultiScale(image, scaleFactor=self.scale_factor,
                                               minNeighbors=self.min_neighbors, minSize=(side, side))
        return np.asarray(boxes, dtype=np.int64).reshape(-1, 4)


def largest_box(boxes) -> Optional[np.ndarray]:
    """The ``x, y, w, h`` box of largest area, or ``None`` when there is none."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    if len(boxes) == 0:
        return None
    return boxes[int(np.argmax(boxes[:, 2] * boxes[:, 3]))]


def expand_box(box, margin: float, width: int, height: int) -> tuple:
    """``(x0, y0, x1, y1)`` of ``box`` grown by ``margin`` times its size on each side,
    clipped to the image."""
    x, y, w, h = (int(v) for v in box)
    dx, dy = int(round(margin * w)), int(round(margin * h))
    return max(0, x - dx), max(0, y - dy), min(width, x + w + dx), min(height, y + h + dy)


def resize_face(image: np.ndarray, size: tuple) -> np.ndarray:
    """Resize to ``size`` = ``(height, width)``: area averaging along an axis that shrinks,
    bilinear along one that grows (two passes when one shrinks and the other grows, as OpenCV's
    INTER_AREA averages only when both shrink). ``data.resize.resize_like_faces`` is the same
    resize in a TensorFlow graph, for the export and the file-path pipeline."""
    height, width = size
    shrunk = (min(image.shape[0], height), min(image.shape[1], width))
    if shrunk != image.shape[:2]:
        image = cv2.resize(image, shrunk[::-1], interpolation=cv2.INTER_AREA)
    if shrunk != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return image


def crop_face(image: np.ndarray, size: tuple, detector: Optional[Callable] = None,
              margin: float = 0.0) -> tuple:
    """``(face, found)``: the largest detected face of an RGB (or grey) ``uint8`` image,
    grown by ``margin``, cropped and resized to ``size``, as 3-channel RGB. With no face
    (or ``detector=None``) the whole image, resized, and ``found=False``.
    """
    if image.ndim == 2 or image.shape[-1] == 1:
        image = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)
    box = None
    if detector is not None:
        box = largest_box(detector(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)))
    if box is None:
        return resize_face(image, size), False
    x0, y0, x1, y1 = expand_box(box, margin, image.shape[1], image.shape[0])
    return resize_face(image[y0:y1, x0:x1], size), True


@dataclasses.dataclass
class FaceReport:
    """What face preparation did: ``no_face`` paths (skipped or kept whole, per policy),
    ``bad`` ``(path, reason)`` for unreadable images, ``detections`` run and ``cache_hits``."""

    no_face: list = dataclasses.field(default_factory=list)
    bad: list = dataclasses.field(default_factory=list)
    detections: int = 0
    cache_hits: int = 0

    def summary(self) -> str:
        """One line for logs."""
        return (f"{len(self.no_face)} without a detected face, {len(self.bad)} unreadable, "
                f"{self.detections} detected, {self.cache_hits} from cache")


@dataclasses.dataclass
class PreparedFaces:
    """``faces`` (uint8 ``N,H,W,3``), ``indices`` of the dataset samples they come from, ``report``."""

    faces: np.ndarray
    indices: np.ndarray
    report: FaceReport


class FacePreparer:
    """Detect, crop and resize the faces of a ``Dataset`` (§4.1.1), with an on-disk cache.

    ``size``: ``(height, width)`` or one int (default 224, the VGG-Face input). ``detect=False``
    skips detection for images that are already face crops (e.g. CK+48). ``no_face``:
    ``"skip"`` or ``"whole"``. ``on_bad``: ``"skip"`` or ``"error"`` for unreadable images.
    ``cache_dir``: where prepared faces are kept; a second run over the same files and
    settings runs no detection. ``detector``: any callable grey image -> ``(n, 4)`` boxes
    (default ``HaarFaceDetector()``); give it a ``config()`` method so the cache key covers it.
    """

    def __init__(self, size: Union[int, Sequence[int]] = 224, *, margin: float = 0.0, detect: bool = True,
                 no_face: str = "skip", on_bad: str = "skip", cache_dir=None,
                 detector: Optional[Callable] = None, max_pixels: Optional[int] = None, progress: bool = True):
        check_choice("no_face", no_face, NO_FACE_CHOICES)
        check_choice("on_bad", on_bad, ON_BAD_CHOICES)
        self.size = (int(size), int(size)) if np.isscalar(size) else tuple(int(s) for s in size)
        self.margin, self.detect, self.no_face, self.on_bad = margin, detect, no_face, on_bad
        self.detector = (detector or HaarFaceDetector()) if detect else None
        self.cache = FaceCache(cache_dir) if cache_dir is not None else None
        self.max_pixels, self.progress = max_pixels, progress

    def params(self) -> dict:
        """The settings that shape a prepared face (part of the cache key)."""
        detector = None
        if self.detector is not None:
            config = getattr(self.detector, "config", None)
            detector = config() if callable(config) else type(self.detector).__qualname__
        return {"size": list(self.size), "margin": self.margin, "detect": self.detect, "detector": detector}

    def prepare_sample(self, sample, report: FaceReport) -> tuple:
        """``(face, found)`` for one sample, from the cache or by detection; raises ``ImageReadError``."""
        if sample.image is not None:
            data, digest = None, array_digest(sample.image)
        else:
            data = read_file_bytes(sample.path, self.max_pixels)
            digest = content_digest(data)
        key = cache_key(digest, self.params())
        if self.cache is not None:
            cached = self.cache.get(key, shape=(*self.size, 3))
            if cached is not None:
                report.cache_hits += 1
                return cached
        image = sample.image if data is None else decode_image(data, sample.path, self.max_pixels)
        face, found = crop_face(np.asarray(image, dtype=np.uint8), self.size, self.detector, self.margin)
        report.detections += int(self.detector is not None)
        if self.cache is not None:
            self.cache.put(key, face, found)
        return face, found

    def prepare(self, dataset) -> PreparedFaces:
        """Prepare every sample of ``dataset``; see ``PreparedFaces``."""
        report, faces, indices = FaceReport(), [], []
        bar = None
        if self.progress and len(dataset):
            import keras

            bar = keras.utils.Progbar(len(dataset), unit_name="image", verbose=2 if self.progress == 2 else 1)
        for index, sample in enumerate(dataset.samples):
            try:
                face, found = self.prepare_sample(sample, report)
            except ImageReadError as err:
                if self.on_bad == "error":
                    raise
                report.bad.append((err.path, err.reason))
                face = None
            if face is not None:
                if not found and self.detect:
                    report.no_face.append(sample.path)
                if found or not self.detect or self.no_face == "whole":
                    faces.append(face)
                    indices.append(index)
            if bar is not None:
                bar.update(index + 1)
        stacked = np.stack(faces) if faces else np.zeros((0, *self.size, 3), np.uint8)
        return PreparedFaces(stacked, np.asarray(indices, dtype=np.int64), report)
