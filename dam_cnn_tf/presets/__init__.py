"""Trained DAM-CNN models shipped inside the package, loaded by name (as keras-hub's presets).

Each preset is a folder here, written by ``scripts/build_preset.py`` (the command that trained
it):

* ``model.keras``: the inference model (raw RGB 0-255 in; ``probabilities`` and ``attention``
  out), its class names inside, its weights stored as float16 (``packing.store_float16``);
* ``classes.json``: the same class names, so that a preset is also a model folder that every
  command reads like a run directory;
* ``card.md`` and ``card.json``: the model card (data and split, command and config,
  validation figures next to the baselines, training time and machine, limits, licences, the
  SHA-256 of ``model.keras``);
* ``config.toml`` and ``train.log``: the recipe and the log of the run that made it.

Predicting with a preset needs no download and no network.
"""

from __future__ import annotations

import json
from pathlib import Path

PRESETS_DIR = Path(__file__).resolve().parent
MODEL_FILE = "model.keras"
CARD_FILE = "card.json"


class PresetError(ValueError):
    """An unknown preset name, or a preset folder that is incomplete; one line."""


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
    path = preset_dir(name) / CARD_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise PresetError(f"{path}: unreadable model card ({error})") from None


def model_folder(model) -> Path | None:
    """The folder a command's MODEL argument names when it is a preset (and not a path), else None."""
    text = str(model)
    if Path(text).exists() or text not in available_presets():
        return None
    return PRESETS_DIR / text


def from_preset(name: str):
    """The trained Keras model of preset ``name`` (see ``damcnn-tf presets``).

    Raw RGB images ``(B, H, W, 3)`` in 0-255 at the preset's input size in; a dictionary of
    ``probabilities`` ``(B, K)`` and SERD's ``attention`` out. ``model.class_names`` lists
    the K classes in output order. Nothing in the file is executed (safe mode).
    """
    from dam_cnn_tf.layers.class_names import class_names_of
    from dam_cnn_tf.models.model_file import load_model_file

    model = load_model_file(preset_dir(name) / MODEL_FILE)
    names = class_names_of(model)
    if names is None:
        raise PresetError(f"preset {name!r}: its model carries no class names")
    model.class_names = tuple(names)
    return model
