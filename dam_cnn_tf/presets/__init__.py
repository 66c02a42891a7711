"""Trained DAM-CNN models shipped inside the package, loaded by name (as keras-hub's presets).

Each preset is a folder here, written by ``scripts/build_preset.py`` (the command that trained
it):

* ``model.keras``: the inference model (raw RGB 0-255 in; ``probabilities`` and ``attention``
  out), its class names inside, its weights stored as float16 (``packing.store_float16``);
* ``classes.json``: the same class names, so that a preset is also a model folder that every
  command reads like a run directory;
* ``card.md`` and ``card.json``: the model card (data and split, command, recipe and plan,
  validation figures next to the baselines, training time and machine, limits, licences, the
  SHA-256 of ``model.keras``), and where it has one, the ``eye_template`` that ``predict``
  aligns detected faces with (``detection.align``);
* ``train.log``: the log of the run that made it (``card.json`` names its recipe in
  ``dam_cnn_tf/recipes/`` with the file's SHA-256, and holds the plan the run followed);
* optionally a light file, ``model.tflite`` or ``model.onnx``, made from ``model.keras`` and
  listed in the card's ``light`` entry (``presets.light``): what ``predict``, ``evaluate`` and
  ``analyze`` run without starting TensorFlow. A preset too large to ship it beside the Keras
  model has it made once, on first use, into the user's cache.

Every file the card lists is checked against its SHA-256 before it is used (once per process):
a changed or damaged file is refused, never served. Predicting with a preset needs no download
and no network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from dam_cnn_tf.checksums import cached_sha256, sha256_of  # noqa: F401  (the preset tools take them from here)

PRESETS_DIR = Path(__file__).resolve().parent
MODEL_FILE = "model.keras"
CARD_FILE = "card.json"
EYE_TEMPLATE = "eye_template"  # the card's entry that predict aligns faces with (detection.align)
# The preset that predict, evaluate and analyze use when no model is named: the best shipped one.
DEFAULT_PRESET = "fer2013-face-resnet"
REINSTALL = "pip install --force-reinstall dam-cnn-tf"


class PresetError(ValueError):
    """An unknown preset name, or a preset folder that is incomplete; one line."""


class PresetIntegrityError(PresetError):
    """A preset file that is not the one its card describes (changed or damaged); one line."""


def available_presets() -> list:
    """The names of the presets this installation holds."""
    return sorted(p.name for p in PRESETS_DIR.iterdir()
                  if p.is_dir() and (p / MODEL_FILE).is_file() and (p / CARD_FILE).is_file())


def preset_dir(name: str) -> Path:
    """The folder of preset ``name``; ``PresetError`` names the presets there are."""
    if name in available_presets():
        return PRESETS_DIR / name
    known = ", ".join(available_presets()) or "none in this installation"
    raise PresetError(f"unknown preset {name!r}; presets: {known}")


def preset_card(name: str) -> dict:
    """The model card of preset ``name`` as a dictionary (``card.json``)."""
    return read_card(preset_dir(name))


def teacher_fingerprint_of(name: str, class_names) -> str:
    """Preset ``name`` as a distillation teacher (``training.teacher_labels.teacher_fingerprint``:
    its model file's SHA-256, its input size, ``class_names``), as cached teacher labels record it."""
    from dam_cnn_tf.training.teacher_labels import teacher_fingerprint

    return teacher_fingerprint(cached_sha256(preset_dir(name) / MODEL_FILE), int(preset_card(name)["input_shape"][0]),
                               class_names)


def read_card(folder) -> dict:
    """The model card (``card.json``) in ``folder``; ``PresetError`` when it cannot be read."""
    path = Path(folder) / CARD_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise PresetError(f"{path}: unreadable model card ({error})") from None


def card_split(card: dict) -> tuple:
    """``(val_fraction, seed)`` of the split a preset's card says its validation part was carved
    with: a trained preset's run settings, or a distilled preset's recipe (its teachers' split)."""
    if "plan" in card:
        settings = card["plan"]["settings"]
        return settings["val_fraction"], settings["seed"]
    recipe = card["distillation"]
    return recipe["val_fraction"], recipe["training"].get("seed", 0)


def card_eye_template(card: dict):
    """The ``detection.align.EyeTemplate`` a card records (``eye_template``: where the eyes sit
    in the training faces, written by ``scripts/measure_eye_template.py``), or None."""
    entry = card.get(EYE_TEMPLATE)
    if not entry:
        return None
    from dam_cnn_tf.detection.align import AlignError, EyeTemplate

    try:
        return EyeTemplate.from_dict(entry)
    except AlignError as error:
        raise PresetError(f"{card.get('name', 'preset')}: {CARD_FILE}'s {EYE_TEMPLATE}: {error}") from None


def eye_template(name: str):
    """Where the eyes sit in preset ``name``'s training faces (``card_eye_template``), or None."""
    return card_eye_template(preset_card(name))


def model_folder(model) -> Path | None:
    """The folder a command's MODEL argument names when it is a preset (and not a path), else None."""
    text = str(model)
    if Path(text).exists() or text not in available_presets():
        return None
    return PRESETS_DIR / text


# -- integrity ----------------------------------------------------------------------------------

def check_file(path, expected: Optional[dict], what: str) -> Path:
    """``path`` when it is the file ``expected`` (a card entry with ``sha256`` and ``bytes``)
    describes; else ``PresetIntegrityError`` naming the file and how to reinstall."""
    path = Path(path)
    if not expected or not expected.get("sha256"):
        raise PresetIntegrityError(f"{what}: its card gives no SHA-256 for {path.name}; reinstall: {REINSTALL}")
    if not path.is_file():
        raise PresetIntegrityError(f"{path} is missing ({what}); reinstall: {REINSTALL}")
    size = expected.get("bytes")
    if (size is not None and path.stat().st_size != size) or cached_sha256(path) != expected["sha256"]:
        raise PresetIntegrityError(f"{path} is not the file {what}'s card describes (its SHA-256 differs: "
                                   f"changed or damaged); reinstall: {REINSTALL}")
    return path


def checked_model_path(name: str) -> Path:
    """``model.keras`` of preset ``name``, checked against the SHA-256 its card records."""
    card = preset_card(name)
    entry = card.get("file") or {}
    if entry.get("name", MODEL_FILE) != MODEL_FILE:
        raise PresetIntegrityError(f"preset {name!r}: its card describes {entry.get('name')!r}, not {MODEL_FILE}; "
                                   f"reinstall: {REINSTALL}")
    return check_file(preset_dir(name) / MODEL_FILE, entry, f"preset {name!r}")


def from_preset(name: str):
    """The trained Keras model of preset ``name`` (see ``damcnn-tf presets``).

    Raw RGB images ``(B, H, W, 3)`` in 0-255 at the preset's input size in; a dictionary of
    ``probabilities`` ``(B, K)`` and SERD's ``attention`` out. ``model.class_names`` lists
    the K classes in output order. Nothing in the file is executed (safe mode), and the file
    is refused unless it is the one the preset's card describes (SHA-256). ``predict`` and
    calling the model warn (``InputRangeWarning``) on a batch of float images whose largest
    value is 1 or less: 0-1 images, which the model would all read as nearly black.
    """
    from dam_cnn_tf.layers.class_names import class_names_of
    from dam_cnn_tf.models.model_file import load_model_file
    from dam_cnn_tf.models.preset_model import PresetModel

    model = load_model_file(checked_model_path(name))
    names = class_names_of(model)
    if names is None:
        raise PresetError(f"preset {name!r}: its model carries no class names")
    model = PresetModel.wrapping(model)
    model.class_names = tuple(names)
    return model
