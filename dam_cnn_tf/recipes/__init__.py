"""Recipes: every setting of a run, from named layers, resolved once into a plan.

A run's settings come from five layers; a later layer wins over an earlier one, value by value:

1. **the paper**: ``TrainConfig``'s defaults, the values of §4.1.2 and Table 1
   (``dam_cnn_tf/hparams.py``);
2. **the backbone's recipe**: the file its registry entry names (``face-resnet.toml`` here),
   for the backbone the later layers choose. The command line chooses ``DEFAULT_BACKBONE``
   where none does; in Python the paper's VGG-Face stays the default;
3. **a named recipe**: ``--recipe NAME``, a ``NAME.toml`` file in this folder
   (``damcnn-tf train --list-recipes`` lists them; ``fer2013-face-resnet`` is a preset's);
4. **a user's file**: ``--config FILE``, JSON or TOML, keys as the option names;
5. **command-line options**.

``dam_cnn_tf.recipes.plan.make_plan`` then joins the settings with the data set's size into a
``Plan``: each phase's trainable part, rate and schedule, steps, floor and validation rounds,
data source, augmentation and start. The training engine executes the plan and decides
nothing itself; a run keeps it as ``plan.json``.
"""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path
from typing import Optional

from dam_cnn_tf.recipes.options import FIELDS, ConfigError, TrainConfig, parse_options_file

RECIPES_DIR = Path(__file__).resolve().parent
# The backbone the command line trains when no layer names one: one anyone can download
# (``damcnn-tf weights download face-resnet``). The paper's VGG-Face weights cannot be had freely.
DEFAULT_BACKBONE = "face-resnet"


class RecipeError(ConfigError):
    """An unknown recipe name or a recipe file that cannot be read; one line."""


def recipe_names() -> list:
    """The recipes this installation holds."""
    return sorted(path.stem for path in RECIPES_DIR.glob("*.toml"))


def recipe_path(name: str) -> Path:
    path = RECIPES_DIR / f"{name}.toml"
    if not path.is_file():
        raise RecipeError(f"--recipe: unknown recipe {name!r}; recipes: {', '.join(recipe_names())}")
    return path


def recipe_sha256(name: str) -> str:
    """The SHA-256 of recipe ``name``'s file, as a preset's card records it."""
    return hashlib.sha256(recipe_path(name).read_bytes()).hexdigest()


def read_recipe(name: str) -> dict:
    """The settings recipe ``name`` sets."""
    path = recipe_path(name)
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise RecipeError(f"recipe {name} ({path}): unreadable ({error})") from None
    unknown = sorted(set(values) - FIELDS)
    if unknown:
        raise RecipeError(f"recipe {name} ({path}): unknown setting(s) {', '.join(unknown)}")
    return values


def backbone_recipe(backbone: str) -> tuple[Optional[str], dict]:
    """``(name, settings)`` of the recipe the backbone's registry entry names, if any."""
    from dam_cnn_tf.backbones import get

    name = get(backbone).recipe
    return (name, read_recipe(name)) if name else (None, {})


def resolve_settings(recipe: Optional[str] = None, config_file=None, options: Optional[dict] = None,
                     default_backbone: Optional[str] = None, base: Optional[dict] = None) -> tuple[TrainConfig, dict]:
    """``(settings, sources)``: the five layers above, resolved.

    ``options``: command-line values, None meaning "not given". ``base``: settings of a program
    of its own, between the named recipe and ``--config``. ``sources`` names the recipes used,
    with the SHA-256 of each file: ``{"backbone": {...}, "recipe": {...}}``.
    """
    named = read_recipe(recipe) if recipe else {}
    from_file = parse_options_file(config_file) if config_file is not None else {}
    given = {key: value for key, value in (options or {}).items() if value is not None}
    layers = [named, dict(base or {}), from_file, given]
    backbone = next((layer["backbone"] for layer in reversed(layers) if "backbone" in layer),
                    default_backbone or TrainConfig.backbone)
    from dam_cnn_tf.backbones import UnknownBackboneError

    try:
        backbone_name, backbone_values = backbone_recipe(backbone)
    except UnknownBackboneError as error:
        raise ConfigError(str(error)) from None
    values = {"backbone": backbone, **backbone_values}
    for layer in layers:
        values.update(layer)
    # With attribute-specific decoders N is the attribute's number of values (DAM-CNN-g, §4.3.2),
    # so an N given beside it would be silently ignored.
    if values.get("pair_attribute") and "num_paths" in set(given) | set(from_file):
        raise ConfigError("--num-paths cannot be combined with --pair-attribute: N is then the number of "
                          f"values of {values['pair_attribute']!r}; drop --num-paths")
    try:
        settings = TrainConfig(**values)
    except TypeError as error:
        raise ConfigError(str(error)) from None
    sources = {}
    if backbone_name:
        sources["backbone"] = {"name": backbone_name, "sha256": recipe_sha256(backbone_name)}
    if recipe:
        sources["recipe"] = {"name": recipe, "sha256": recipe_sha256(recipe)}
    return settings, sources


def resolve_config(config_file=None, base: Optional[dict] = None, **overrides) -> TrainConfig:
    """The settings of the paper, the backbone's recipe, ``base``, the file, then ``overrides``
    that are not None (the interface of earlier releases)."""
    return resolve_settings(config_file=config_file, options=overrides, base=base)[0]
