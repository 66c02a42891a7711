"""Expression prediction with a trained DAM-CNN (paper Fig. 2) on images, folders and videos.

Faces are found by ``detection``'s BlazeFace (every face from 40 pixels up, several per
photo; ``detector("haar")`` is the paper's Viola-Jones, §4.1.1), and cut out as training
prepares them (``data.faces``): each box is grown by ``margin`` and resized to the model's
input with the same ``resize_face``. Where the model's card records where the eyes sit in its
training faces (``eye_template``) and the detector finds eyes (BlazeFace), each face is first
turned and scaled so that its eyes land there (``detection.align``), as in aligned training
sets; ``align`` chooses. Each face comes back with its class probabilities and SERD's
attention mask ``M`` (Eq. 1), which ``draw_predictions`` paints over the image as in Fig. 8.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Union

import cv2
import numpy as np

from dam_cnn_tf.data.faces import NO_FACE_CHOICES, expand_box, resize_face
from dam_cnn_tf.data.images import ImageReadError, has_image_extension, read_image
from dam_cnn_tf.data.loading import ON_BAD_CHOICES
from dam_cnn_tf.detection.align import AlignError, EyeTemplate, crop_bounds, crop_side, eye_transform, warp_square
from dam_cnn_tf.input_range import unit_range_max, unit_range_message
from dam_cnn_tf.predict_models import (  # noqa: F401  (also importable from here, as before)
    CLASSES_FILE,
    MODEL_FILE,
    PredictError,
    check_class_names,
    load_class_names,
    load_dam_cnn,
    open_model,
    resolve_model_path,
)
from dam_cnn_tf.viz.attention import SCALES, colorize_attention

# An aligned crop is cut at the face's own size (then resized as a box's crop), within these sides.
MIN_ALIGNED_SIDE, MAX_ALIGNED_SIDE = 8, 2048
VIDEO_EXTENSIONS = frozenset({".avi", ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv"})


class VideoReadError(ImageReadError):
    """A video file OpenCV cannot open or decode; one line naming the file."""

    MESSAGE = "cannot read video {path}: {reason}"


@dataclasses.dataclass
class FacePrediction:
    """One face: ``box`` ``(x, y, w, h)`` as detected (the whole image when ``detected`` is
    false), ``region`` ``(x0, y0, x1, y1)`` the part of the image the model saw (box grown by
    the margin), the predicted ``label`` and ``class_id``, ``probabilities`` per class name and
    SERD's ``attention`` mask ``(h, w)`` over ``region``. A face aligned by its eyes has
    ``alignment``, the ``(2, 3)`` matrix taking image pixels to the square the model saw, as
    fractions of its side; its ``region`` is the part of the image that the turned square
    covers, and ``attention`` lies over that square."""

    box: tuple
    region: tuple
    label: str
    class_id: int
    probabilities: dict
    attention: np.ndarray
    detected: bool
    alignment: Optional[np.ndarray] = None


class AlignedRegion(tuple):
    """``(x0, y0, x1, y1)``, the part of the image an aligned crop covers, with the crop's
    ``matrix`` (image pixels to crop pixels) and ``side`` (the crop's side, in pixels)."""

    def __new__(cls, bounds, matrix: np.ndarray, side: int):
        region = super().__new__(cls, (int(v) for v in bounds))
        region.matrix, region.side = np.asarray(matrix, np.float64), int(side)
        return region


@dataclasses.dataclass
class SourcePrediction:
    """The faces of one image, or one frame of a video (``frame`` index, ``timestamp`` in seconds).

    ``relative`` is the path relative to the folder it was found in (its name for a file given
    directly); ``image`` is kept (RGB uint8) only when asked for, e.g. to draw heat maps;
    ``size`` is the image's ``(height, width)``."""

    path: str
    faces: list
    frame: Optional[int] = None
    timestamp: Optional[float] = None
    relative: str = ""
    image: Optional[np.ndarray] = None
    size: Optional[tuple] = None


@dataclasses.dataclass
class PredictionReport:
    """Everything ``predict_paths`` did: ``results`` per image or frame, ``bad`` ``(path, reason)``
    for unreadable files, ``no_face`` for images and frames where no face was found, and
    ``min_face_side`` the side in pixels of the smallest face the detector looked for in each
    ``no_face`` entry (where the detector has a minimum, as ``HaarFaceDetector`` does)."""

    results: list = dataclasses.field(default_factory=list)
    bad: list = dataclasses.field(default_factory=list)
    no_face: list = dataclasses.field(default_factory=list)
    min_face_side: dict = dataclasses.field(default_factory=dict)
    # Counted as predictions are made, whether or not ``results`` keeps them (the command streams).
    num_sources: int = 0
    num_faces: int = 0

    def summary(self) -> str:
        """One line for logs."""
        return (f"{self.num_sources} images or frames, {self.num_faces} faces, "
                f"{len(self.no_face)} without a detected face, {len(self.bad)} unreadable")


@dataclasses.dataclass(frozen=True)
class InputFile:
    """A file to predict on: ``kind`` is ``"image"`` or ``"video"``; ``relative`` as in ``SourcePrediction``."""

    path: Path
    kind: str
    relative: str


def input_kind(path: Union[str, os.PathLike]) -> str:
    """``"video"`` for the video extensions OpenCV reads, ``"image"`` otherwise."""
    return "video" if Path(path).suffix.lower() in VIDEO_EXTENSIONS else "image"


def expand_inputs(paths: Iterable[Union[str, os.PathLike]]) -> List[InputFile]:
    """Files given directly, and the image files under folders given (recursively, sorted).

    A missing path, or a folder without any image, raises ``PredictError`` naming it. Folders
    contribute images only; name video files directly.
    """
    files = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and has_image_extension(p)
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                raise PredictError(f"folder {given} holds no image files")
            files.extend(InputFile(p, "image", p.relative_to(path).as_posix()) for p in found)
        elif path.is_file():
            files.append(InputFile(path, input_kind(path), path.name))
        else:
            raise PredictError(f"input {given} does not exist")
    return files


def _make_detector(detector):
    """A detector from its name (``detection.detector``) or the callable given; BlazeFace by default."""
    if detector is None or isinstance(detector, str):
        from dam_cnn_tf.detection import DEFAULT_DETECTOR, DetectorError
        from dam_cnn_tf.detection import detector as named_detector

        try:
            return named_detector(detector or DEFAULT_DETECTOR)
        except DetectorError as err:
            raise PredictError(str(err)) from None
    return detector


class Predictor:
    """Predicts expressions with a saved DAM-CNN inference model.

    ``model``: a run directory (holding ``model.keras`` and ``classes.json``) or a ``.keras``
    file with ``classes.json`` beside it. ``detect``: find faces (see ``detector``); without
    it, the whole image is one face (for images that are face crops already).
    ``margin``: fraction of the box added on each side, as in training's ``FacePreparer``.
    ``no_face``: ``"skip"`` an image without a detected face, or use the ``"whole"`` image.
    ``detector``: a ``detection.DETECTOR_NAMES`` name, or any callable RGB ``uint8`` image ->
    ``(n, 4)`` ``x, y, w, h`` boxes (default ``detection.detector()``, BlazeFace).
    ``class_names`` replaces ``classes.json``. ``model`` may also be a preset's name; ``runtime``
    ``"auto"`` runs a preset's light file where its card lists one (LiteRT, no TensorFlow; see
    ``presets.light``), ``"light"`` insists on it, ``"keras"`` runs the Keras model. ``batch_size``
    faces (of one or several images or frames) go to the model per call. ``log`` receives the
    one line said when a preset's light file is made, once, on first use.
    ``align``: ``"auto"`` turns each face so that its eyes sit where they sat in the model's
    training faces when the model's card records that (``eye_template``) and that it helps
    (``on_by_default``, measured on its validation faces), and the detector finds eyes
    (BlazeFace does, Haar does not); ``True`` aligns wherever there is a template and eyes,
    ``False`` crops the upright box. ``eye_template`` (a ``detection.align.EyeTemplate`` or
    its card entry) replaces the card's, and is used by ``"auto"``. The boxes reported stay
    the detector's.
    """

    def __init__(self, model: Union[str, os.PathLike], detect: bool = True, margin: float = 0.0,
                 no_face: str = "skip", *, detector: Optional[Callable] = None,
                 class_names: Optional[Sequence[str]] = None, max_pixels: Optional[int] = None,
                 batch_size: int = 32, runtime: str = "auto", log: Optional[Callable[[str], None]] = None,
                 align: Union[str, bool] = "auto", eye_template=None):
        if no_face not in NO_FACE_CHOICES:
            raise PredictError(f"no_face must be one of {', '.join(map(repr, NO_FACE_CHOICES))}, got {no_face!r}")
        if not np.isfinite(margin) or margin < 0:
            raise PredictError(f"margin must be a non-negative number, got {margin!r}")
        if batch_size < 1:
            raise PredictError(f"batch_size must be positive, got {batch_size!r}")
        if not (align is True or align is False or (isinstance(align, str) and align == "auto")):
            raise PredictError(f"align must be 'auto', True or False, got {align!r}")
        self.opened = open_model(model, runtime, log)
        self.model_path, self.model, self.runtime = self.opened.model_path, self.opened.keras_model, self.opened.runtime
        num_classes = self.opened.num_classes
        if class_names is None:
            self.class_names = load_class_names(self.model_path, num_classes)
        else:
            self.class_names = check_class_names(list(class_names), num_classes, "class_names")
        self.input_size = self.opened.input_size
        self.detect, self.margin, self.no_face = detect, float(margin), no_face
        self.detector = _make_detector(detector) if detect else None
        self.max_pixels, self.batch_size = max_pixels, batch_size
        self.eye_template = self._eye_template(align, eye_template)

    def _eye_template(self, align, given):
        """The template faces are aligned with, or None when they are cropped upright."""
        if align is False:
            return None
        from dam_cnn_tf.presets import EYE_TEMPLATE, PresetError, card_eye_template

        try:
            if given is not None:
                template = given if isinstance(given, EyeTemplate) else EyeTemplate.from_dict(given)
                on_by_default = True
            else:
                card = _card_beside(self.model_path)
                template = card_eye_template(card)
                # Measured on the preset's validation faces (benchmarks/alignment.py --record).
                on_by_default = bool((card.get(EYE_TEMPLATE) or {}).get("on_by_default"))
        except (AlignError, PresetError) as error:
            raise PredictError(f"eye_template: {error}") from None
        if align == "auto" and not on_by_default:
            return None
        finds_eyes = self.detector is not None and callable(getattr(self.detector, "boxes_and_eyes", None))
        if align is True:
            if not self.detect:
                raise PredictError("align=True aligns detected faces: it cannot be combined with detect=False")
            if template is None:
                raise PredictError(f"align=True: model {self.model_path} records no eye template "
                                   "(its card's eye_template); give eye_template")
            if not finds_eyes:
                raise PredictError(f"align=True: the detector {getattr(self.detector, 'name', self.detector)!r} "
                                   "does not locate eyes (BlazeFace does)")
        return template if finds_eyes else None

    @property
    def align(self) -> bool:
        """Whether detected faces are aligned by their eyes."""
        return self.eye_template is not None

    # -- one image ---------------------------------------------------------------------------

    def face_regions(self, rgb: np.ndarray) -> list:
        """``(box, region, detected)`` for each face of an RGB image, left to right (by the
        box's left edge, then its top); ``[]`` when none is found and ``no_face="skip"``."""
        height, width = rgb.shape[:2]
        whole = ((0, 0, width, height), (0, 0, width, height), False)
        if self.detector is None:
            return [whole]
        from dam_cnn_tf.detection import boxes_and_eyes

        if self.eye_template is not None:
            boxes, eyes = boxes_and_eyes(self.detector, rgb)
        else:
            boxes, eyes = np.asarray(self.detector(rgb)).reshape(-1, 4), None
        if not len(boxes):
            return [whole] if self.no_face == "whole" else []
        order = np.lexsort((boxes[:, 1], boxes[:, 0]))
        return [(tuple(int(v) for v in boxes[i]),
                 expand_box(boxes[i], self.margin, width, height) if eyes is None
                 else self.aligned_region(eyes[i], width, height), True)
                for i in order]

    def aligned_region(self, eyes, width: int, height: int) -> AlignedRegion:
        """The region of a face whose eye centres are ``eyes`` (``(2, 2)``, right eye first): the
        square the eye template frames around them, grown by the margin, at the face's own size."""
        side = int(np.clip(round(crop_side(eyes, self.eye_template, self.margin)), MIN_ALIGNED_SIDE, MAX_ALIGNED_SIDE))
        matrix = eye_transform(eyes, self.eye_template, side, self.margin)
        return AlignedRegion(crop_bounds(matrix, side, width, height), matrix, side)

    def min_face_side(self, height: int, width: int) -> Optional[int]:
        """The side of the smallest face the detector looks for in an image of this size;
        ``None`` without detection or for a detector that does not say."""
        side = getattr(self.detector, "min_face_side", None)
        return int(side(height, width)) if callable(side) else None

    def crop(self, rgb: np.ndarray, region: tuple) -> np.ndarray:
        """The model's input for one face: the region, resized as training's ``resize_face`` does
        (an ``AlignedRegion`` is warped upright at its own size first)."""
        if isinstance(region, AlignedRegion):
            return resize_face(warp_square(rgb, region.matrix, region.side), self.input_size)
        x0, y0, x1, y1 = region
        return resize_face(rgb[y0:y1, x0:x1], self.input_size)

    def predict_faces(self, faces: np.ndarray) -> tuple:
        """``(probabilities (n, K), attention (n, h, w))`` for face crops ``(n, H, W, 3)``, uint8
        or float in 0-255 (float crops in 0-1 are refused, see ``input_range``)."""
        faces = np.asarray(faces)
        _refuse_unit_range(faces, "faces")
        probabilities, attention = [], []
        for start in range(0, len(faces), self.batch_size):
            batch_probabilities, batch_attention = self.opened(faces[start:start + self.batch_size])
            probabilities.append(batch_probabilities)
            attention.append(batch_attention)
        return np.concatenate(probabilities), np.concatenate(attention)

    def predict_image(self, rgb: np.ndarray) -> List[FacePrediction]:
        """Every face of an RGB (or grey) image with its prediction; see ``face_regions``. The
        image is ``uint8``, or float in 0-255 (rounded to ``uint8``; a float image in 0-1 is refused)."""
        rgb = as_rgb_uint8(rgb)
        regions = self.face_regions(rgb)
        if not regions:
            return []
        probabilities, attention = self.predict_faces(np.stack([self.crop(rgb, r) for _, r, _ in regions]))
        return self.face_predictions(regions, probabilities, attention)

    def face_predictions(self, regions, probabilities, attention) -> List[FacePrediction]:
        """``FacePrediction``s of ``face_regions``' regions from the model's outputs for their crops."""
        faces = []
        for (box, region, detected), probs, mask in zip(regions, probabilities, attention):
            class_id = int(np.argmax(probs))
            faces.append(FacePrediction(
                box=box, region=tuple(int(v) for v in region), label=self.class_names[class_id], class_id=class_id,
                probabilities={n: float(p) for n, p in zip(self.class_names, probs)}, attention=mask,
                detected=detected, alignment=self._input_matrix(region)))
        return faces

    def _input_matrix(self, region) -> Optional[np.ndarray]:
        """An aligned region's matrix to fractions of its square's side; None for an upright crop."""
        if not isinstance(region, AlignedRegion):
            return None
        return region.matrix / region.side

    # -- files -------------------------------------------------------------------------------

    def iter_video(self, path: Union[str, os.PathLike], every_n_frames: int = 1, keep_images: bool = False,
                   relative: Optional[str] = None) -> Iterator[SourcePrediction]:
        """Predictions for frames 0, n, 2n, … of a video read with ``cv2.VideoCapture``, the faces
        of several frames per model call.

        Raises ``VideoReadError`` when the file cannot be opened or no frame decodes.
        """
        yield from self._batched(self._video_sources(path, every_n_frames, keep_images, relative))

    def _video_sources(self, path, every_n_frames: int = 1, keep_images: bool = False,
                       relative: Optional[str] = None) -> Iterator[tuple]:
        """``(SourcePrediction without faces, rgb)`` for frames 0, n, 2n, … of a video."""
        if int(every_n_frames) < 1:
            raise PredictError(f"every_n_frames must be a positive integer, got {every_n_frames!r}")
        if not Path(path).is_file():
            raise VideoReadError(path, "no such file")
        capture = cv2.VideoCapture(str(path))
        try:
            if not capture.isOpened():
                raise VideoReadError(path, "OpenCV cannot open it as a video")
            fps = capture.get(cv2.CAP_PROP_FPS)
            index = 0
            while True:
                if index % every_n_frames:
                    if not capture.grab():  # skipped frames are not decoded
                        break
                else:
                    ok, frame = capture.read()
                    if not ok:
                        break
                    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                    yield SourcePrediction(str(path), [], frame=index,
                                           timestamp=index / fps if fps and fps > 0 else None,
                                           relative=relative or Path(path).name, image=rgb if keep_images else None,
                                           size=rgb.shape[:2]), rgb
                index += 1
            if index == 0:
                raise VideoReadError(path, "no frame could be decoded")
        finally:
            capture.release()

    def predict_video(self, path: Union[str, os.PathLike], every_n_frames: int = 1) -> List[SourcePrediction]:
        """``iter_video`` as a list."""
        return list(self.iter_video(path, every_n_frames))

    def iter_inputs(self, files: Sequence[InputFile], report: PredictionReport, on_bad: str = "skip",
                    every_n_frames: int = 1, keep_images: bool = False,
                    on_file_done: Optional[Callable[[InputFile], None]] = None) -> Iterator[SourcePrediction]:
        """Predictions for ``expand_inputs``' files, one image or frame at a time, in order; the
        faces of several images and frames go to the model in one call (``batch_size``).

        Unreadable files are recorded in ``report.bad`` and skipped (``on_bad="skip"``) or raise
        their one-line ``ImageReadError`` (``"error"``, after the predictions of the files
        before it); sources without a face go to ``report.no_face`` (with the smallest face
        looked for in ``report.min_face_side``). Results are not stored in ``report``; the
        caller keeps what it needs. ``on_file_done`` is called as each file has been read.
        """
        if on_bad not in ON_BAD_CHOICES:
            raise PredictError(f"on_bad must be one of {', '.join(map(repr, ON_BAD_CHOICES))}, got {on_bad!r}")
        for source in self._batched(self._file_sources(files, report, on_bad, every_n_frames, keep_images,
                                                       on_file_done)):
            if not source.faces or not source.faces[0].detected and self.detect:
                self._record_no_face(report, source)
            report.num_sources += 1
            report.num_faces += len(source.faces)
            yield source

    def _file_sources(self, files, report, on_bad, every_n_frames, keep_images, on_file_done) -> Iterator[tuple]:
        """``(SourcePrediction without faces, rgb)`` for each image and video frame; an unreadable
        file is recorded, or (``on_bad="error"``) yielded as its error for ``_batched`` to raise."""
        for item in files:
            try:
                if item.kind == "video":
                    yield from self._video_sources(item.path, every_n_frames, keep_images, item.relative)
                else:
                    rgb = read_image(item.path, self.max_pixels)
                    yield SourcePrediction(str(item.path), [], relative=item.relative,
                                           image=rgb if keep_images else None, size=rgb.shape[:2]), rgb
            except ImageReadError as err:  # VideoReadError too
                if on_bad == "error":
                    yield err
                    return
                report.bad.append((err.path, err.reason))
            if on_file_done is not None:
                on_file_done(item)

    def _batched(self, sources: Iterable) -> Iterator[SourcePrediction]:
        """The sources with their faces, the faces of several sources per model call; an error
        among the sources is raised once the sources before it are out."""
        pending, num_faces = [], 0
        for entry in sources:
            if isinstance(entry, Exception):
                yield from self._predict_pending(pending)
                raise entry
            source, rgb = entry
            rgb = as_rgb_uint8(rgb)
            regions = self.face_regions(rgb)
            pending.append((source, rgb, regions))
            num_faces += len(regions)
            if num_faces >= self.batch_size or len(pending) >= self.batch_size:
                yield from self._predict_pending(pending)
                pending, num_faces = [], 0
        yield from self._predict_pending(pending)

    def _predict_pending(self, pending: list) -> Iterator[SourcePrediction]:
        crops = [self.crop(rgb, region) for _, rgb, regions in pending for _, region, _ in regions]
        if crops:
            probabilities, attention = self.predict_faces(np.stack(crops))
        start = 0
        for source, _, regions in pending:
            end = start + len(regions)
            if regions:
                source.faces = self.face_predictions(regions, probabilities[start:end], attention[start:end])
            start = end
            yield source

    def _record_no_face(self, report: PredictionReport, source: SourcePrediction) -> None:
        entry = source.path if source.frame is None else f"{source.path}#frame={source.frame}"
        report.no_face.append(entry)
        # Faces below the detector's minimum are never looked for: say how small that is here.
        side = self.min_face_side(*source.size) if source.size else None
        if side is not None:
            report.min_face_side[entry] = side

    def predict_paths(self, paths: Iterable[Union[str, os.PathLike]], on_bad: str = "skip",
                      every_n_frames: int = 1) -> PredictionReport:
        """Predictions for image files, folders of images (recursive) and video files."""
        report = PredictionReport()
        report.results.extend(self.iter_inputs(expand_inputs(paths), report, on_bad, every_n_frames))
        return report


def _card_beside(model_path) -> dict:
    """The model card (``card.json``) beside a model file, as a preset has; ``{}`` without one."""
    from dam_cnn_tf.presets import CARD_FILE, PresetError, read_card

    folder = Path(model_path).parent
    try:
        return read_card(folder) if (folder / CARD_FILE).is_file() else {}
    except PresetError as error:
        raise PredictError(str(error)) from None


def as_rgb_uint8(image) -> np.ndarray:
    """An RGB ``uint8`` image from an RGB or grey one, ``uint8`` or float in 0-255; ``PredictError``
    for other types and shapes, and for a float image in 0-1 (see ``input_range``)."""
    rgb = np.asarray(image)
    if rgb.dtype != np.uint8:
        if not np.issubdtype(rgb.dtype, np.floating):
            raise PredictError(f"images must be uint8, or float in 0-255, got {rgb.dtype}")
        _refuse_unit_range(rgb, "image")
        rgb = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    if rgb.ndim == 2 or (rgb.ndim == 3 and rgb.shape[-1] == 1):
        rgb = cv2.cvtColor(rgb.reshape(rgb.shape[:2]), cv2.COLOR_GRAY2RGB)
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or min(rgb.shape[:2]) < 1:
        raise PredictError(f"images must be (H, W, 3) RGB or (H, W) grey, got shape {rgb.shape}")
    return rgb


def _refuse_unit_range(array: np.ndarray, what: str) -> None:
    largest = unit_range_max(array)
    if largest is not None:
        raise PredictError(f"{what}: {unit_range_message(largest)}")


def _blend_aligned(out: np.ndarray, face: FacePrediction, alpha: float, colormap: int, scale: str) -> None:
    """Blend an aligned face's heat map over the turned square the model saw, turned back onto the image."""
    x0, y0, x1, y1 = face.region
    if x1 <= x0 or y1 <= y0:
        return
    side = max(x1 - x0, y1 - y0)
    heat = colorize_attention(face.attention, (side, side), colormap, scale)
    # Region pixels to the square's: ``alignment`` takes image pixels to fractions of its side.
    to_square = np.diag([side, side]) @ face.alignment
    to_square[:, 2] += to_square[:, :2] @ np.array([x0, y0], np.float64)
    size = (x1 - x0, y1 - y0)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    turned = cv2.warpAffine(heat, to_square, size, flags=flags)
    inside = cv2.warpAffine(np.ones((side, side), np.uint8), to_square, size, flags=flags).astype(bool)
    part = out[y0:y1, x0:x1]
    blended = cv2.addWeighted(part, 1.0 - alpha, turned, alpha, 0.0)
    part[inside] = blended[inside]


def draw_predictions(image: np.ndarray, faces: Sequence[FacePrediction], alpha: float = 0.5,
                     colormap: int = cv2.COLORMAP_JET, scale: str = "fixed") -> np.ndarray:
    """The image with each face's attention heat map blended over the region the model saw
    (Fig. 8; over the turned square for a face aligned by its eyes), the detected box outlined
    and the label written above it. uint8 RGB."""
    if scale not in SCALES:
        raise PredictError(f"scale must be one of {', '.join(map(repr, SCALES))}, got {scale!r}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise PredictError(f"alpha must lie in [0, 1], got {alpha!r}")
    out = np.array(image, dtype=np.uint8, copy=True)
    for face in faces:
        if face.alignment is not None:
            _blend_aligned(out, face, alpha, colormap, scale)
            continue
        x0, y0, x1, y1 = face.region
        if x1 <= x0 or y1 <= y0:
            continue
        heat = colorize_attention(face.attention, (y1 - y0, x1 - x0), colormap, scale)
        out[y0:y1, x0:x1] = cv2.addWeighted(out[y0:y1, x0:x1], 1.0 - alpha, heat, alpha, 0.0)
    for face in faces:
        x, y, w, h = face.box
        if face.detected:
            cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), (255, 255, 255), 1)
        text = f"{face.label} {face.probabilities[face.label]:.2f}"
        scale_text = max(0.3, min(1.0, w / 200.0))
        (_, text_height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale_text, 1)
        origin = (x + 2, max(text_height + 1, y - baseline - 1) if face.detected else text_height + 2)
        cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale_text, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale_text, (255, 255, 255), 1, cv2.LINE_AA)
    return out
