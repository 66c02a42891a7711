"""The model behind ``Predictor``: a Keras DAM-CNN, or a preset's light file run by LiteRT.

``open_model`` picks: with ``runtime="auto"`` a preset whose card lists a light file runs it
(``presets.light``: no TensorFlow, so a call answers in about a second), anything else runs
its Keras model; ``"light"`` insists on the light file, ``"keras"`` on the Keras model. Both
take float32 RGB 0-255 faces and give the same ``probabilities`` and ``attention``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from dam_cnn_tf.errors import one_line
from dam_cnn_tf.models.outputs import ATTENTION, PROBABILITIES

RUNTIMES = ("auto", "light", "keras")

MODEL_FILE = "model.keras"
CLASSES_FILE = "classes.json"


class PredictError(ValueError):
    """A model, class list, input path or option that prediction cannot use; one line naming it."""


def _one_line(text, limit: int = 300) -> str:
    text = one_line(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def resolve_model_path(model: Union[str, os.PathLike]) -> Path:
    """``RUN_DIR/model.keras`` for a run directory or a preset's name (checked against its card's
    SHA-256), the path itself for a model file."""
    from dam_cnn_tf.presets import PresetError, checked_model_path, model_folder

    if model_folder(model) is not None:
        try:
            return checked_model_path(str(model))
        except PresetError as error:
            raise PredictError(str(error)) from None
    path = Path(model)
    if path.is_dir():
        path = path / MODEL_FILE
        if not path.is_file():
            raise PredictError(f"{model}: no {MODEL_FILE} in this run directory (has training finished?)")
    elif not path.is_file():
        raise PredictError(f"model {model} does not exist (nor is it a preset: damcnn-tf presets lists them)")
    return path


def load_dam_cnn(path: Union[str, os.PathLike]):
    """Load a saved DAM-CNN inference model safely (no arbitrary code) and check its outputs."""
    from dam_cnn_tf.models.model_file import ModelFileError, load_model_file

    path = Path(path)
    try:
        model = load_model_file(path)
    except ModelFileError as err:
        raise PredictError(str(err)) from None
    outputs = model.output if isinstance(model.output, dict) else None
    if outputs is None or not {PROBABILITIES, ATTENTION} <= set(outputs):
        raise PredictError(f"{path}: not a DAM-CNN inference model (it must output "
                           f"'{PROBABILITIES}' and '{ATTENTION}', as build_dam_cnn's model does)")
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[-1] != 3 or None in shape[1:3]:
        raise PredictError(f"{path}: the model must take RGB images of a fixed size (None, H, W, 3), "
                           f"its input shape is {shape}")
    return model


def load_class_names(model_path: Union[str, os.PathLike], num_classes: int) -> list:
    """The class names from ``classes.json`` beside the model (training writes it to the run directory)."""
    path = Path(model_path).parent / CLASSES_FILE
    if not path.is_file():
        raise PredictError(f"{path} not found: the model's class names are written there by training")
    try:
        names = json.loads(path.read_text(encoding="utf-8"))["class_names"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise PredictError(f"{path}: not a class list of the form {{\"class_names\": [...]}} "
                           f"({_one_line(err, 120)})") from None
    return check_class_names(names, num_classes, path)


def check_class_names(names, num_classes: int, where) -> list:
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and n.strip() for n in names):
        raise PredictError(f"{where}: class names must be a list of non-empty strings")
    if len(names) != num_classes:
        raise PredictError(f"{where}: {len(names)} class names for a model with {num_classes} classes")
    if len(set(names)) != len(names):
        raise PredictError(f"{where}: class names must be unique, got {list(names)}")
    return list(names)


class OpenedModel:
    """``__call__(faces float32 (n, H, W, 3)) -> (probabilities (n, K), attention (n, h, w))``;
    ``runtime`` is ``"keras"`` or ``"litert"``; ``model_path`` is the Keras file (classes.json is
    beside it); ``file`` is the file that runs; ``keras_model`` is the loaded Keras model, None
    for a light file."""

    def __init__(self, run: Callable, num_classes: int, input_size: tuple, model_path: Path, runtime: str,
                 file: Path, keras_model=None):
        self._run, self.num_classes, self.input_size = run, int(num_classes), tuple(int(s) for s in input_size)
        self.model_path, self.runtime, self.keras_model = Path(model_path), runtime, keras_model
        self.file = Path(file)

    def __call__(self, faces: np.ndarray) -> tuple:
        out = self._run(np.asarray(faces, dtype=np.float32))
        return np.asarray(out[PROBABILITIES], np.float32), np.asarray(out[ATTENTION], np.float32)


def open_model(model: Union[str, os.PathLike], runtime: str = "auto", log: Optional[Callable[[str], None]] = None):
    """The ``OpenedModel`` for a preset's name, a run directory or a ``.keras`` file."""
    from dam_cnn_tf.presets import MODEL_FILE, PresetError, checked_model_path, model_folder, preset_card

    if runtime not in RUNTIMES:
        raise PredictError(f"runtime must be one of {', '.join(map(repr, RUNTIMES))}, got {runtime!r}")
    folder = model_folder(model)
    if folder is not None and runtime != "keras":
        name = str(model)
        try:
            checked_model_path(name)  # every preset file is checked, the one not run too
            opened = _open_light(name, runtime, log)
            if opened is not None:
                card = preset_card(name)
                size = tuple(card["input_shape"][:2])
                if tuple(opened.input_size) != size:
                    raise PresetError(f"preset {name!r}: its light file takes {opened.input_size} images, "
                                      f"its card says {size}")
                return OpenedModel(opened, len(card["class_names"]), size, folder / MODEL_FILE, "litert", opened.path)
        except PresetError as error:
            raise PredictError(str(error)) from None
    elif runtime == "light":
        raise PredictError(f"{model}: --runtime light is for presets with a light file (damcnn-tf presets)")
    return _open_keras(model)


def _open_light(name: str, runtime: str, log):
    """The preset's ``LightModel``; None (Keras then) when it has none, or, with ``"auto"``,
    when LiteRT is not installed or the file cannot be made here (said through ``log``, or in
    a ``RuntimeWarning`` without one)."""
    from dam_cnn_tf.presets import PresetIntegrityError
    from dam_cnn_tf.presets.light import LightFileError, LightModel, light_path, runtime_available

    if not runtime_available():
        if runtime == "light":
            raise LightFileError("--runtime light needs LiteRT: pip install ai-edge-litert")
        return None
    try:
        path = light_path(name, make=True, log=log)
        if path is None:
            if runtime == "light":
                raise LightFileError(f"preset {name!r} has no light file; use --runtime keras or auto")
            return None
        return LightModel(path)
    except PresetIntegrityError:
        raise  # a changed file is refused, never worked around
    except LightFileError as error:
        if runtime == "light":
            raise
        if log is not None:  # the command line: one line on stderr
            log(f"{error}; using the Keras model")
        else:
            warnings.warn(f"{error}; using the Keras model", RuntimeWarning, stacklevel=3)
        return None


def _open_keras(model) -> OpenedModel:
    path = resolve_model_path(model)
    keras_model = load_dam_cnn(path)

    def run(faces):
        return keras_model.predict_on_batch(faces)

    return OpenedModel(run, keras_model.output[PROBABILITIES].shape[-1], keras_model.input_shape[1:3], path, "keras",
                       path, keras_model)
