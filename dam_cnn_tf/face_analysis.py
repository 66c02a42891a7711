"""``dam_cnn_tf.analyze``: from a photo to its faces' expressions in one call.

As ``fer``'s ``detect_emotions`` and deepface's ``analyze``, it returns one plain dictionary per
face; the keys are those of ``damcnn-tf predict``'s JSON rows, so code written against either
reads both::

    >>> import dam_cnn_tf
    >>> dam_cnn_tf.analyze("group.jpg")
    [{"box": [412, 80, 96, 96], "detected": True, "label": "happiness", "class_id": 4,
      "probability": 0.81, "probabilities": {"neutral": 0.05, ...}}, ...]

Faces come largest first. The model is loaded once per process and kept for the next call with
the same model and options; a preset runs through its light file where it has one
(``presets.light``), so no TensorFlow starts.
"""

from __future__ import annotations

import os
from typing import List, Union

import numpy as np

from dam_cnn_tf.predict import FacePrediction, PredictError, Predictor

_KEPT = {}  # (model, options) -> Predictor, for the next call
_KEEP_AT_MOST = 4


def face_record(face: FacePrediction) -> dict:
    """A face as a plain, JSON-ready dictionary (predict's row without file, frame and time)."""
    return {"box": [int(v) for v in face.box], "detected": bool(face.detected), "label": face.label,
            "class_id": int(face.class_id), "probability": float(face.probabilities[face.label]),
            "probabilities": {name: float(p) for name, p in face.probabilities.items()}}


def _predictor(model, options: dict) -> Predictor:
    from dam_cnn_tf.presets import DEFAULT_PRESET

    model = DEFAULT_PRESET if model is None else model
    try:
        key = (os.fspath(model), tuple(sorted(options.items())))
        hash(key)
    except TypeError:  # an option that cannot be a key (a detector, a list): not kept
        return Predictor(model, **options)
    if key not in _KEPT:
        if len(_KEPT) >= _KEEP_AT_MOST:
            _KEPT.pop(next(iter(_KEPT)))
        _KEPT[key] = Predictor(model, **options)
    return _KEPT[key]


def analyze(image_or_path: Union[str, os.PathLike, np.ndarray], model=None, **options) -> List[dict]:
    """The expression of each face in a photo: a list of ``face_record`` dictionaries, largest face first.

    ``image_or_path``: an image file's path, or an RGB (or grey) array, ``uint8`` or float in
    0-255 (a float image in 0-1 is refused: multiply it by 255). ``model``: a preset's name, a
    run directory, a ``.keras`` file or a ``Predictor``; the default is
    ``presets.DEFAULT_PRESET``. ``options`` go to ``Predictor`` (``detect``, ``margin``,
    ``no_face``, ``runtime``, ``align``, ...): ``align=False`` crops each detected face's upright
    box instead of turning it so that its eyes sit where the preset's training faces had them
    (``"auto"``, the default, aligns where the preset's card says it helps). No face found: an
    empty list.
    """
    from dam_cnn_tf.data.images import read_image

    if isinstance(model, Predictor):
        if options:
            raise PredictError(f"options {sorted(options)} are a Predictor's: give them when making it")
        predictor = model
    else:
        predictor = _predictor(model, options)
    if isinstance(image_or_path, (str, os.PathLike)):
        image = read_image(image_or_path, predictor.max_pixels)
    else:
        image = image_or_path
    return [face_record(face) for face in predictor.predict_image(image)]
