"""The package's recipes: valid settings, layered in the documented order, identified by hash."""

import pytest

from dam_cnn_tf.recipes import (
    RecipeError,
    backbone_recipe,
    read_recipe,
    recipe_names,
    recipe_sha256,
    resolve_config,
    resolve_settings,
)
from dam_cnn_tf.recipes.options import TrainConfig


def test_the_recipes_are_there():
    assert {"face-resnet", "face-resnet-cpu", "compact-cpu", "demo", "fer2013-face-resnet"} <= set(recipe_names())


@pytest.mark.parametrize("name", recipe_names())
def test_recipe_is_a_valid_configuration(name):
    settings, sources = resolve_settings(recipe=name)
    for key, value in read_recipe(name).items():
        assert getattr(settings, key) == value
    assert sources["recipe"] == {"name": name, "sha256": recipe_sha256(name)}


def test_layers_win_in_order_paper_backbone_recipe_config_options(tmp_path):
    paper = TrainConfig()
    assert paper.backbone == "vgg-face" and paper.alpha_s == 1e-5  # Python keeps the paper's
    _, backbone_values = backbone_recipe("face-resnet")
    settings, _ = resolve_settings(recipe="face-resnet-cpu")
    assert all(getattr(settings, k) == v for k, v in backbone_values.items())  # backbone over paper
    assert settings.classes == 6  # the named recipe over the backbone's and the paper's 7
    config = tmp_path / "mine.toml"
    config.write_text("classes = 7\nalpha_s = 2e-4\n")
    settings, _ = resolve_settings(recipe="face-resnet-cpu", config_file=config, options={"alpha_s": 5e-4, "seed": None})
    assert settings.classes == 7 and settings.alpha_s == 5e-4 and settings.seed == 0  # file, then options


def test_the_command_line_default_backbone_is_one_anyone_can_download():
    settings, sources = resolve_settings(default_backbone="face-resnet")
    assert settings.backbone == "face-resnet" and sources["backbone"]["name"] == "face-resnet"
    settings, _ = resolve_settings(options={"backbone": "compact"}, default_backbone="face-resnet")
    assert settings.backbone == "compact"


def test_an_unknown_recipe_is_refused_naming_the_known_ones():
    with pytest.raises(RecipeError, match="unknown recipe 'nope'.*face-resnet-cpu"):
        resolve_settings(recipe="nope")


def test_the_interface_of_earlier_releases_still_resolves():
    assert resolve_config(None, backbone="face-resnet", classes=6) == resolve_settings(recipe="face-resnet-cpu")[0]
