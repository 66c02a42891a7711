"""A preset's light file: its Keras model converted to LiteRT, run without TensorFlow.

Starting TensorFlow and loading a Keras model takes seconds; LiteRT's interpreter
(``ai-edge-litert``) starts in a tenth of that, so ``predict``, ``evaluate`` and ``analyze``
answer in about a second. The Keras model stays the source of truth: the light file is made
from it (``export_formats.export_model_file``) and checked against it on the synthetic faces of
the card's ``check_faces`` (the Keras model's own probabilities, recorded when it was built).

The card's ``light`` entry describes it::

    {"name": "model.tflite", "format": "litert", "quantize": null,
     "made_from": <SHA-256 of model.keras>, "shipped": true, "bytes": ..., "sha256": ...,
     "tolerance": 0.001, "parity": {"max_abs_probability_difference": ..., "same_prediction": ...}}

A shipped light file sits beside ``model.keras`` and is checked against the card's SHA-256
like every preset file. A preset too large to ship it (the package's budget is 20 MB a preset)
has ``"shipped": false``: the file is made on first use into the user's cache
(``$DAMCNN_CACHE/presets/<name>-<model SHA-256>/``), written atomically, checked against
``check_faces`` within the card's tolerance, and its own SHA-256 kept beside it.

This module imports neither TensorFlow nor Keras; making a light file does (``make_light_file``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from dam_cnn_tf.models.outputs import ATTENTION, PROBABILITIES
from dam_cnn_tf.presets import (MODEL_FILE, PresetError, PresetIntegrityError, REINSTALL, cached_sha256, check_file,
                                preset_card, preset_dir, sha256_of)

LITERT = "litert"
LIGHT_NAMES = {LITERT: "model.tflite"}
IMAGE = "image"  # the light file's input, as the SavedModel's
# Largest probability difference from the Keras model accepted for a light file made without
# quantization (LiteRT's float32 differs by about 1e-6: only another computation differs more).
FLOAT_TOLERANCE = 1e-3
# What one preset may weigh in the package (45 MB for all of them): a light file that does not
# fit beside its Keras model is made on first use instead.
PRESET_BUDGET_BYTES = 20_000_000
CARD_ALLOWANCE_BYTES = 200_000  # the card, config and training log written beside it


class LightFileError(PresetError):
    """A light file that cannot be made or run; one line."""


def runtime_available() -> bool:
    """Whether LiteRT's interpreter (``ai-edge-litert``) is installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # noqa: F401
    except ImportError:
        return False
    return True


class LightModel:
    """A LiteRT file as a function: float32 images ``(B, H, W, 3)`` in 0-255 ->
    ``{"probabilities": (B, K), "attention": (B, h, w)}``, any batch size."""

    def __init__(self, path, num_threads: Optional[int] = None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise LightFileError('running a light file needs LiteRT: pip install ai-edge-litert') from None
        self.path = Path(path)
        try:
            interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads or os.cpu_count())
            self._runner = interpreter.get_signature_runner()
            details = self._runner.get_input_details()[IMAGE]
        except (ValueError, RuntimeError, KeyError) as error:
            raise LightFileError(f"{self.path}: not a DAM-CNN LiteRT file ({str(error).strip()[:200]})") from None
        shape = tuple(int(s) for s in details["shape_signature"])
        if len(shape) != 4 or shape[-1] != 3 or min(shape[1:3]) < 1:
            raise LightFileError(f"{self.path}: the light file must take (None, H, W, 3) images, it takes {shape}")
        self.input_shape = (None, *shape[1:])
        self.input_size = shape[1:3]
        # The first call sets the interpreter up and LiteRT says so on stderr: done here, quietly.
        with _quiet_stderr():
            self(np.zeros((1, *shape[1:]), np.float32))

    def __call__(self, images) -> Dict[str, np.ndarray]:
        out = self._runner(**{IMAGE: np.ascontiguousarray(images, dtype=np.float32)})
        return {PROBABILITIES: np.asarray(out[PROBABILITIES], np.float32),
                ATTENTION: np.asarray(out[ATTENTION], np.float32)}


def _quiet_stderr():
    import contextlib

    from dam_cnn_tf import USER_TF_LOG_LEVEL
    from dam_cnn_tf.tf_log import startup_noise_filtered

    return contextlib.nullcontext() if USER_TF_LOG_LEVEL else startup_noise_filtered()


def cache_folder(card: dict) -> Path:
    """Where a preset's light file made on first use goes: keyed by the Keras model's SHA-256."""
    from dam_cnn_tf.data.trunk_cache import default_cache_root

    return default_cache_root() / "presets" / f"{card['name']}-{card['file']['sha256'][:16]}"


def light_path(name: str, make: bool = True, log=None) -> Optional[Path]:
    """The checked light file of preset ``name``; None when the preset has none (or, with
    ``make=False``, when it is not made yet). A shipped file that is not the one its card
    describes, or a card whose light file was made from another model, is refused
    (``PresetIntegrityError``)."""
    card = preset_card(name)
    entry = card.get("light")
    if not entry:
        return None
    what = f"preset {name!r}"
    if entry.get("format") not in LIGHT_NAMES or entry.get("name") != LIGHT_NAMES.get(entry.get("format")):
        raise PresetIntegrityError(f"{what}: its card's light file {entry.get('name')!r} ({entry.get('format')!r}) "
                                   f"is not one this version runs; reinstall: {REINSTALL}")
    if entry.get("made_from") != card.get("file", {}).get("sha256"):
        raise PresetIntegrityError(f"{what}: its light file {entry['name']} was made from another model than its "
                                   f"{MODEL_FILE} (the card's SHA-256s differ); reinstall: {REINSTALL}")
    folder = preset_dir(name)
    if entry.get("shipped"):
        return check_file(folder / entry["name"], entry, what)
    return cached_light_file(name, card, entry, make, log)


def _cache_record(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def cached_light_file(name: str, card: dict, entry: dict, make: bool = True, log=None) -> Optional[Path]:
    """The light file made on first use: from the cache when it is there and intact, else made
    now from the checked ``model.keras`` (TensorFlow starts, once) and written atomically."""
    path = cache_folder(card) / entry["name"]
    record = _cache_record(path)
    if path.is_file() and record.is_file():
        try:
            kept = json.loads(record.read_text(encoding="utf-8"))
            # The same model converted another way (a card now asking for int8 where float32 was
            # made) is made again: the file's name does not say how it was converted.
            if (kept.get("sha256") == cached_sha256(path) and kept.get("made_from") == entry["made_from"]
                    and kept.get("format") == entry["format"] and kept.get("quantize") == entry.get("quantize")):
                return path
        except (OSError, ValueError):
            pass  # a damaged cache entry is made again below
    if not make:
        return None
    if entry.get("quantize") == "int8":  # its calibration faces are the build's, not the user's
        raise LightFileError(f"preset {name!r}: its int8 light file is made only when the preset is built, and it "
                             f"is missing; reinstall: {REINSTALL}, or predict with --runtime keras")
    from dam_cnn_tf.presets import checked_model_path

    source = checked_model_path(name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(prefix=f".{path.name}.partial-", suffix=".tflite", dir=path.parent)
    except OSError as error:
        raise LightFileError(f"cannot write preset {name!r}'s light file into {path.parent}: "
                             f"{error.strerror or error}") from None
    os.close(handle)
    if log is not None:
        log(f"Making preset {name}'s light file once, into {path.parent} (TensorFlow starts this time only)")
    try:
        os.remove(staging)  # the export refuses to replace a file it did not write
        make_light_file(source, staging, entry["format"], entry.get("quantize"))
        parity = check_against_card(staging, card)
        tolerance = float(entry.get("tolerance", FLOAT_TOLERANCE))
        if parity["max_abs_probability_difference"] > tolerance:
            raise LightFileError(f"preset {name!r}: the light file made here differs from the Keras model by "
                                 f"{parity['max_abs_probability_difference']:.2g} on the check faces (the card "
                                 f"allows {tolerance:.2g}); predict with --runtime keras")
        digest = sha256_of(staging)
        os.replace(staging, path)
        _atomic_json(record, {"sha256": digest, "made_from": entry["made_from"], "format": entry["format"],
                              "quantize": entry.get("quantize"), "parity": parity})
    finally:
        if os.path.exists(staging):
            os.remove(staging)
    return path


def _atomic_json(path: Path, data: dict) -> None:
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}.partial-", dir=path.parent)
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        json.dump(data, stream, indent=1)
    umask = os.umask(0)  # mkstemp's file is private; give it a plain write's permissions
    os.umask(umask)
    os.chmod(staging, 0o666 & ~umask)
    os.replace(staging, path)


def make_light_file(keras_path, out, fmt: str = LITERT, quantize: Optional[str] = None,
                    overwrite: bool = False, calibration: Optional[np.ndarray] = None) -> Path:
    """The light file of a DAM-CNN ``.keras`` model (TensorFlow's converter); ``calibration``:
    the faces an ``int8`` file's activation ranges are measured on."""
    from dam_cnn_tf.export import ExportError
    from dam_cnn_tf.export_formats import export_model_file
    from dam_cnn_tf.layers.class_names import class_names_of
    from dam_cnn_tf.models.model_file import load_model_file

    model = load_model_file(keras_path)
    try:
        return export_model_file(model, out, class_names_of(model), fmt, quantize=quantize, overwrite=overwrite,
                                 calibration=calibration)
    except ExportError as error:
        raise LightFileError(str(error)) from None


def check_faces_images(card: dict) -> np.ndarray:
    """The synthetic faces of the card's ``check_faces`` (``scripts/build_preset.py``), float32."""
    from dam_cnn_tf.data.faces import resize_face
    from dam_cnn_tf.data.synthetic import make_synthetic_faces

    size = int(card["input_shape"][0])
    dataset = make_synthetic_faces(num_subjects=2, images_per_class=1, image_size=size, seed=0)
    return np.stack([resize_face(s.image, (size, size)) for s in dataset.samples]).astype(np.float32)


def parity(light: np.ndarray, reference: np.ndarray) -> dict:
    """Largest probability difference and same-prediction rate of two ``(n, K)`` arrays."""
    light, reference = np.asarray(light, np.float64), np.asarray(reference, np.float64)
    return {"max_abs_probability_difference": float(np.abs(light - reference).max()),
            "same_prediction": float(np.mean(light.argmax(1) == reference.argmax(1))),
            "faces": int(len(reference))}


def check_against_card(path, card: dict) -> dict:
    """``parity`` of the light file at ``path`` with the Keras model's ``check_faces`` probabilities."""
    probabilities = LightModel(path)(check_faces_images(card))[PROBABILITIES]
    return parity(probabilities, card["check_faces"]["probabilities"])


def describe_light_file(folder, card: dict, ship="auto", fmt: str = LITERT, quantize: Optional[str] = None,
                        calibration: Optional[np.ndarray] = None) -> dict:
    """Make the light file of the preset in ``folder`` from its ``model.keras`` and return the
    card's ``light`` entry: shipped beside the model (``ship``; its SHA-256 recorded), or
    described only, to be made on first use (the file made here is removed). ``ship="auto"``
    ships it when the preset's folder stays within ``PRESET_BUDGET_BYTES`` with it. An ``int8``
    file (``calibration``: the training faces its ranges are measured on) is always shipped: a
    user's machine has no calibration faces to make it again."""
    folder = Path(folder)
    if quantize == "int8":
        if ship is False:
            raise LightFileError(f"{folder}: an int8 light file is made at build time only; ship it")
        ship = True
    path = make_light_file(folder / MODEL_FILE, folder / LIGHT_NAMES[fmt], fmt, quantize, overwrite=True,
                           calibration=calibration)
    if ship == "auto":
        others = sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p != path)
        ship = others + path.stat().st_size + CARD_ALLOWANCE_BYTES <= PRESET_BUDGET_BYTES
    try:
        measured = check_against_card(path, card)
        # Quantized weights (and int8 activations) move probabilities by a few hundredths: allow
        # twice what was measured.
        tolerance = FLOAT_TOLERANCE if quantize is None else max(FLOAT_TOLERANCE,
                                                                 2 * measured["max_abs_probability_difference"])
        if measured["max_abs_probability_difference"] > tolerance:
            raise LightFileError(f"{path}: differs from the Keras model by "
                                 f"{measured['max_abs_probability_difference']:.2g} on the check faces")
        entry = {"name": path.name, "format": fmt, "quantize": quantize, "made_from": card["file"]["sha256"],
                 "shipped": bool(ship), "tolerance": tolerance, "parity": measured}
        if ship:
            entry.update(bytes=path.stat().st_size, sha256=sha256_of(path))
    finally:
        if not ship and path.exists():
            path.unlink()
    return entry
