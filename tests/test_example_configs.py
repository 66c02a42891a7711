"""The recipes in examples/configs are valid configurations that the commands take as they are."""

from pathlib import Path

import pytest

from dam_cnn_tf.training.config import BACKBONE_RECIPES, TrainConfig, read_config_file, resolve_config
from dam_cnn_tf.training.distillation_recipe import is_distillation_recipe

# Distillation recipes (kind = "distilled") are scripts/build_preset.py's, checked in test_distillation_recipe.py.
CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[1] / "examples" / "configs").glob("*.toml")
                 if not is_distillation_recipe(p))


def test_there_are_recipes():
    assert any(path.name == "face-resnet-cpu.toml" for path in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_recipe_is_a_valid_configuration(path):
    options = read_config_file(path)
    config = TrainConfig(**options)
    for key, value in options.items():
        assert getattr(config, key) == value


def test_face_resnet_recipe_is_the_backbones_own_with_six_classes():
    path = next(p for p in CONFIGS if p.name == "face-resnet-cpu.toml")
    config = resolve_config(path)  # as the commands read a --config file
    assert config.backbone == "face-resnet" and config.input_size == 150 and config.classes == 6
    assert config == resolve_config(None, backbone="face-resnet", classes=6)
    for key, value in BACKBONE_RECIPES["face-resnet"].items():
        assert getattr(config, key) == value
