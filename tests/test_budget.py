"""Stage budgets in optimizer steps (training/budget.py): epochs, floors and the learning rate."""

import math

import numpy as np
import pytest

from dam_cnn_tf.recipes.budget import stage_budget
from dam_cnn_tf.training.schedule import learning_rate
from dam_cnn_tf.recipes import resolve_config
from dam_cnn_tf.recipes.options import ConfigError, TrainConfig


@pytest.mark.parametrize("faces, batch", [(150, 32), (900, 32), (30000, 64)])
def test_a_step_budget_gives_every_data_set_the_same_updates(faces, batch):
    budget = stage_budget(faces, batch, steps=600, min_steps=200, validate_every_steps=50)
    one_pass = math.ceil(faces / batch)
    assert budget.total_steps >= 600 and budget.total_steps - 600 < budget.steps_per_epoch
    # A validation round is one pass, or whole steps enough to reach 50 on a small set.
    assert budget.steps_per_epoch == min(max(one_pass, 50), 600)
    assert budget.min_epochs * budget.steps_per_epoch >= 200
    assert (budget.min_epochs - 1) * budget.steps_per_epoch < 200


def test_a_large_data_set_gets_its_passes_instead_of_the_steps():
    # 30,000 faces at batch 32: one pass is 938 steps, so 600 steps would not finish one.
    budget = stage_budget(30000, 32, steps=600, min_steps=200, validate_every_steps=50, passes=10)
    assert (budget.epochs, budget.steps_per_epoch) == (10, 938)  # a validation round a pass
    assert budget.total_steps == 9380
    # The floor keeps its share of the budget (a third): early stopping waits four passes.
    assert budget.min_epochs == 4
    without = stage_budget(30000, 32, steps=600, min_steps=200, validate_every_steps=50, passes=0)
    assert without.total_steps == 600 and without.min_epochs == 1  # two thirds of one pass


@pytest.mark.parametrize("faces", [100, 150, 900])
def test_passes_leave_a_small_data_sets_steps_alone(faces):
    assert (stage_budget(faces, 32, steps=600, min_steps=200, validate_every_steps=50, passes=10)
            == stage_budget(faces, 32, steps=600, min_steps=200, validate_every_steps=50))


def test_passes_never_start_a_stage_of_no_steps_and_epochs_win():
    assert stage_budget(30000, 32, steps=0, passes=10).epochs == 0
    assert stage_budget(30000, 32, steps=600, epochs=3, passes=10).total_steps == 3 * 938
    with pytest.raises(ConfigError, match="--stage1-passes: must not be negative"):
        TrainConfig(stage1_passes=-1)


def test_both_stages_pass_their_passes_to_the_budget():
    from dam_cnn_tf.recipes.plan import make_plan

    config = TrainConfig(backbone="face-resnet", backbone_weights="w.json", probe_passes=3, stage1_passes=7,
                         stage2_passes=4, stage2_steps=60, stage2_min_steps=20, stage1_batch_size=32,
                         probe_steps=10, stage1_steps=10, validate_every_steps=1)
    plan = make_plan(config, 3200)  # one pass: 100 steps at batch 32
    assert [(phase.name, phase.total_steps) for phase in plan.stage1] == [("probe", 300), ("fine-tune", 700)]
    assert (plan.stage2.total_steps, plan.stage2.floor_rounds * plan.stage2.steps_per_round) == (400, 200)
    assert make_plan(config.replace(stage2_passes=0), 3200).stage2.total_steps == 60


def test_end_to_end_counts_the_same_budget_in_passes():
    from dam_cnn_tf.recipes.plan import end_to_end_passes

    config = TrainConfig(stage2_steps=600, stage2_batch_size=32, stage2_passes=5)
    assert end_to_end_passes(config, 150) == 120        # 600 steps of a 5-step pass
    assert end_to_end_passes(config, 30000) == 5        # 600 steps are under one pass of 938
    assert end_to_end_passes(config.replace(stage2_passes=0), 30000) == 1
    assert end_to_end_passes(config.replace(stage2_epochs=3), 30000) == 3


def test_epochs_when_given_count_whole_passes():
    budget = stage_budget(150, 32, steps=600, min_steps=200, epochs=15)
    assert (budget.epochs, budget.steps_per_epoch) == (15, 5)
    assert budget.min_epochs == 15  # the floor (40 epochs of 5 steps) is capped at the budget
    assert stage_budget(150, 32, steps=600, epochs=0).epochs == 0
    assert stage_budget(150, 32, steps=0).epochs == 0


def test_floor_never_exceeds_the_budget():
    budget = stage_budget(100, 10, steps=30, min_steps=500, validate_every_steps=1)
    assert budget.min_epochs == budget.epochs == 3


def test_cosine_schedule_warms_up_then_decays_to_zero():
    peak, total = 1e-3, 200
    schedule = learning_rate(peak, total, "cosine", warmup_fraction=0.1)
    rates = np.array([float(schedule(step)) for step in range(total + 1)])
    warmup = 20
    # Linear from a tenth of the peak to the peak, then a half cosine over the rest.
    np.testing.assert_allclose(rates[:warmup + 1], np.linspace(peak / 10, peak, warmup + 1), rtol=1e-5)
    after = np.arange(warmup, total + 1) - warmup
    expected = 0.5 * peak * (1 + np.cos(np.pi * after / (total - warmup)))
    np.testing.assert_allclose(rates[warmup:], expected, rtol=1e-4, atol=1e-9)
    assert rates.argmax() == warmup and rates[-1] < 1e-9


def test_constant_schedule_is_the_papers_rate():
    assert learning_rate(1e-5, 1000, "constant") == 1e-5
    with pytest.raises(ConfigError, match="--lr-schedule: must be one of cosine, constant"):
        TrainConfig(lr_schedule="linear")


def test_face_resnet_brings_its_recipe_and_options_still_win(tmp_path):
    config = resolve_config(None, backbone="face-resnet")
    assert (config.input_size, config.fine_tune_from, config.num_paths) == (150, "conv256_down_conv1_conv", 3)
    assert config.trunk_cache and config.probe_steps > 0 and config.stage1_epochs is None
    assert resolve_config(None, backbone="face-resnet", num_paths=5, input_size=112).num_paths == 5
    file = tmp_path / "c.toml"
    file.write_text('backbone = "face-resnet"\nfine_tune_from = "conv256_1_conv1_conv"\n')
    assert resolve_config(file).fine_tune_from == "conv256_1_conv1_conv"
    assert resolve_config(None).fine_tune_from is None  # VGG-Face: the paper's whole-network fine-tuning
