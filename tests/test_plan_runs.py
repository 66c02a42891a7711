"""What a run's plan guards: a resumed run keeps its own, a used folder refuses another, the
caches follow it, a setting that would do nothing is refused, and a new backbone is one entry."""

import json

import pytest

from cli_helpers import TINY_OPTIONS, invoke, read_json, synthetic_folder
from dam_cnn_tf.recipes.options import ConfigError, TrainConfig
from dam_cnn_tf.recipes.plan import PlanError, make_plan
from dam_cnn_tf.training.run_dir import RunDir
from dam_cnn_tf.training.run_plan import record_plan, saved_plan


def test_a_run_older_than_a_field_keeps_its_behaviour(tmp_path):
    # A config.json written before stage1_passes existed: today's default (10 passes) gives 3,000
    # faces a schedule of 940 steps; the run was made with its 600 steps alone (7 rounds of one
    # 94-step pass, 658 steps).
    settings = TrainConfig(stage1_steps=600, stage1_batch_size=32).to_dict()
    for added in ("stage1_passes", "stage2_passes", "probe_passes"):
        settings.pop(added)
    run = RunDir(tmp_path / "old")
    run.write_json("config.json", settings)
    plan = saved_plan(run, num_train=3000)
    assert plan.settings.stage1_passes == 0 and plan.stage1[-1].total_steps == 658
    assert make_plan(TrainConfig(stage1_steps=600, stage1_batch_size=32), 3000).stage1[-1].total_steps == 940


def test_a_run_older_than_a_field_with_no_neutral_value_is_refused(tmp_path):
    settings = TrainConfig().to_dict()
    settings.pop("stage1_steps")  # runs before budgets in steps counted epochs alone
    run = RunDir(tmp_path / "older")
    run.write_json("config.json", settings)
    with pytest.raises(ConfigError, match="written before stage1_steps existed"):
        saved_plan(run, num_train=100)


def test_a_removed_option_in_use_is_refused_and_unused_it_is_dropped(tmp_path):
    run = RunDir(tmp_path / "ema")
    run.write_json("config.json", {**TrainConfig().to_dict(), "ema_momentum": 0.0})
    assert saved_plan(run, 100).settings == TrainConfig()
    run.write_json("config.json", {**TrainConfig().to_dict(), "ema_momentum": 0.99})
    with pytest.raises(ConfigError, match="--ema-momentum, which this release removed"):
        saved_plan(run, 100)


def test_a_run_directory_refuses_another_plan_naming_the_fields(tmp_path):
    run = RunDir(tmp_path / "run")
    plan = make_plan(TrainConfig(), 300)
    record_plan(run, plan)
    record_plan(run, make_plan(TrainConfig(), 300))  # the same plan goes on
    with pytest.raises(PlanError, match=r"differs in num_train.*stage1\.0\.rounds"):
        record_plan(run, make_plan(TrainConfig(), 3000), "start over")
    assert json.loads((run.path / "plan.json").read_text()) == json.loads(json.dumps(plan.to_dict()))  # kept


def test_trunk_shift_without_what_it_moves_is_refused():
    with pytest.raises(ConfigError, match="^--trunk-shift: moves cached trunk maps, so it needs --augment"):
        TrainConfig(trunk_shift=2)
    with pytest.raises(ConfigError, match="^--trunk-shift"):
        TrainConfig(trunk_shift=2, augment=True)  # no cut, so no cache
    with pytest.raises(ConfigError, match="^--trunk-shift"):
        TrainConfig(trunk_shift=2, augment=True, fine_tune_from="conv5_1", trunk_cache=False)
    assert TrainConfig(trunk_shift=2, augment=True, fine_tune_from="conv5_1").trunk_shift == 2


def test_trunk_shift_without_augment_is_one_line_on_the_command_line(tmp_path):
    result = invoke("train", "--backbone", "compact-tiny", "--trunk-shift", "2", "--no-augment", "--dry-run",
                    expect_ok=False)
    assert result.exit_code != 0
    assert result.output.strip().splitlines()[-1].startswith("Error: --trunk-shift: moves cached trunk maps")


def test_the_trunk_cache_follows_the_storage_dtype_and_precision(monkeypatch):
    import keras

    from dam_cnn_tf.training.stage1 import trunk_cache_key

    class Split:  # what trunk_cache_key reads of a split model
        first_trained = "conv256_down_conv1_conv"
        trunk = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])

    settings = TrainConfig(backbone="face-resnet", input_size=150, fine_tune_from=Split.first_trained)
    float32 = trunk_cache_key(make_plan(settings, 10), Split)
    float16 = trunk_cache_key(make_plan(settings.replace(cache_dtype="float16"), 10), Split)
    assert float32 != float16 and "float16" in float16
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        assert trunk_cache_key(make_plan(settings, 10), Split) != float32
    finally:
        keras.config.set_dtype_policy("float32")
    assert trunk_cache_key(make_plan(settings, 10), Split) == float32


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return synthetic_folder(tmp_path_factory.mktemp("faces"), subjects=6, per_class=2)


def test_dry_run_prints_the_plan_and_trains_nothing(folder, tmp_path):
    run = tmp_path / "run"
    result = invoke("train", "--data", folder, "--no-detect", "--run-dir", run, "--dry-run", *TINY_OPTIONS)
    assert "Plan (version 1)" in result.output and "stage 1, fine-tune" in result.output
    assert "stage 2, MPVS-Net" in result.output
    assert not run.exists()


def test_crossval_into_a_folder_of_other_settings_is_refused_then_restarted(folder, tmp_path):
    out = tmp_path / "cv"
    common = ["crossval", "--data", folder, "--no-detect", "--protocol", "subject-kfold", "--folds", "2",
              "--max-folds", "1", "--out", out, "--stage", "1", *TINY_OPTIONS]
    invoke(*common)
    first = read_json(out / "fold-00" / "test_evaluation.json")
    refused = invoke(*common, "--alpha-s", "3e-3", expect_ok=False)
    assert refused.exit_code != 0
    assert "holds folds of other settings (differs in alpha_s)" in refused.output
    assert read_json(out / "fold-00" / "test_evaluation.json") == first  # untouched
    assert read_json(out / "config.json")["alpha_s"] == 1e-3
    invoke(*common, "--alpha-s", "3e-3", "--restart")
    assert read_json(out / "config.json")["alpha_s"] == 3e-3
    assert read_json(out / "fold-00" / "plan.json")["settings"]["alpha_s"] == 3e-3


def test_a_new_backbone_is_one_registry_entry_and_trains_through_the_command_line(folder, tmp_path):
    import keras

    from dam_cnn_tf import backbones

    def build(input_size, weights=None):
        images = keras.Input((input_size, input_size, 3), name="image")
        x = keras.layers.Rescaling(1 / 255.0)(images)
        x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="toy_conv")(x)
        return keras.Model(images, x, name=backbones.BACKBONE), None

    backbones.register(backbones.Backbone(name="toy", family="toy", build=build, description="a test's own"))
    try:
        run = tmp_path / "toy"
        options = [o for o in TINY_OPTIONS]
        options[options.index("compact-tiny")] = "toy"
        invoke("train", "--data", folder, "--no-detect", "--run-dir", run, *options)
        plan = read_json(run / "plan.json")
        assert plan["settings"]["backbone"] == "toy"
        assert (run / "model.keras").exists() and read_json(run / "val_evaluation.json")["num_samples"] > 0
    finally:
        backbones._REGISTRY.pop("toy")


def test_a_backbone_that_needs_weights_says_how_to_get_them(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("DAMCNN_WEIGHTS_CACHE", str(tmp_path / "empty-cache"))
    result = invoke("train", "--data", folder, "--no-detect", "--run-dir", tmp_path / "r", "--dry-run",
                    expect_ok=False)
    assert result.exit_code != 0
    assert "damcnn-tf weights download face-resnet" in result.output
    ok = invoke("train", "--data", folder, "--no-detect", "--run-dir", tmp_path / "r", "--dry-run",
                "--backbone-weights", "none", "--input-size", "104")
    assert "face-resnet at 104x104, weights none" in ok.output


def test_registered_names_reach_the_options():
    from dam_cnn_tf.backbones import names

    assert {"face-resnet", "vgg-face", "compact"} <= set(names())
    with pytest.raises(ConfigError, match="must be one of .*face-resnet.*got 'nope'"):
        TrainConfig(backbone="nope")
