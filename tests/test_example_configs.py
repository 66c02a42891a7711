"""The recipes in examples/configs are valid configurations that the commands take as they are."""

from pathlib import Path

import pytest

from dam_cnn_tf.training.config import TrainConfig, read_config_file

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "examples" / "configs").glob("*.toml"))


def test_there_are_recipes():
    assert any(path.name == "face-resnet-cpu.toml" for path in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_recipe_is_a_valid_configuration(path):
    options = read_config_file(path)
    config = TrainConfig(**options)
    for key, value in options.items():
        assert getattr(config, key) == value


def test_face_resnet_recipe_uses_the_backbone_at_its_size():
    config = TrainConfig(**read_config_file(next(p for p in CONFIGS if p.name == "face-resnet-cpu.toml")))
    assert config.backbone == "face-resnet" and config.input_size == 150 and config.classes == 6
