"""Distillation recipes (``kind = "distilled"``): a small student trained on a shipped preset's
answers, built by ``scripts/build_preset.py NAME`` (``dam_cnn_tf.training.distillation_recipe``
reads them). They are not ``damcnn-tf train`` recipes, so they live apart from ``--recipe``'s."""

from __future__ import annotations

from pathlib import Path

DISTILLED_DIR = Path(__file__).resolve().parent


def distilled_recipe_names() -> list:
    return sorted(path.stem for path in DISTILLED_DIR.glob("*.toml"))


def distilled_recipe_path(name: str) -> Path:
    """The shipped distillation recipe called ``name``; ``KeyError`` naming the ones there are."""
    path = DISTILLED_DIR / f"{name}.toml"
    if not path.is_file():
        raise KeyError(f"no distillation recipe {name!r}; recipes: {', '.join(distilled_recipe_names()) or 'none'}")
    return path
