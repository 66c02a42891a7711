"""The plan: one place resolves what a run does, and it still does what the documented runs did."""

import json
from pathlib import Path

import pytest

from dam_cnn_tf.recipes import resolve_settings
from dam_cnn_tf.recipes.options import REMOVED
from dam_cnn_tf.recipes.plan import Plan, PlanError, check_same_plan, make_plan

LEGACY = json.loads((Path(__file__).parent / "fixtures" / "plans" / "legacy_plans.json").read_text())
WEIGHTS = "face_recognition_model-weights_manifest.json"
FACE_RESNET = {"backbone": "face-resnet", "backbone_weights": WEIGHTS}
# How each documented run is asked for today: (recipe, options); tests/fixtures/plans/make_plans.py
# lists the same runs as the code before plans asked for them.
TODAY = {
    "demo": ("demo", {}),
    "paper-vgg-face": (None, {"classes": 6}),
    "face-resnet-ckplus48-fold": (None, {**FACE_RESNET, "classes": 6}),
    "face-resnet-12-people": (None, {**FACE_RESNET, "classes": 6}),
    "face-resnet-yale": (None, FACE_RESNET),
    "face-resnet-fer-2000": (None, {**FACE_RESNET, "classes": 7}),
    "face-resnet-fer2013-full": (None, {**FACE_RESNET, "classes": 7}),
    "face-resnet-no-weights": (None, {"backbone": "face-resnet", "classes": 6}),
    "fer2013-face-resnet-preset": ("fer2013-face-resnet", {"backbone_weights": WEIGHTS}),
    "compact-cpu": ("compact-cpu", {}),
    "face-resnet-cpu": ("face-resnet-cpu", {"backbone_weights": WEIGHTS}),
}


def plan_of(name):
    recipe, options = TODAY[name]
    settings, sources = resolve_settings(recipe=recipe, options=options)
    return make_plan(settings, LEGACY[name]["num_train"], sources)


# Settings added after the fixtures were written (their plans' other values must not move).
ADDED_AFTER_FIXTURES = {"probe_competes"}


@pytest.mark.parametrize("name", sorted(LEGACY))
def test_every_documented_run_keeps_its_plan(name):
    legacy, plan = LEGACY[name], plan_of(name)
    expected = {k: v for k, v in legacy["config"].items() if k not in REMOVED}
    # The passes are budgets: the phases below hold what they decide (the FER2013 preset's recipe
    # now names the step-only budgets it was built with, which resolve to the same steps).
    budgets = {"probe_passes", "stage1_passes", "stage2_passes"}
    settings = {k: v for k, v in plan.settings.to_dict().items() if k not in ADDED_AFTER_FIXTURES | budgets}
    assert settings == {k: v for k, v in expected.items() if k not in budgets}
    assert (plan.trunk_cache is not None) == legacy["trunk_cache"]
    got = [{"phase": p.name, "rate": p.rate, "by_epochs": p.by_epochs, "rounds": p.rounds,
            "steps_per_round": p.steps_per_round, "floor_rounds": p.floor_rounds} for p in plan.stage1]
    assert got == legacy["stage1"]
    stage2 = plan.stage2
    assert {"rate_fc": stage2.rate, "rate_mpae": stage2.mpae_rate, "by_epochs": stage2.by_epochs,
            "start_competes": stage2.start_competes, "rounds": stage2.rounds,
            "steps_per_round": stage2.steps_per_round, "floor_rounds": stage2.floor_rounds} == legacy["stage2"]


def test_a_plan_survives_its_file_and_names_its_differences():
    plan = plan_of("face-resnet-ckplus48-fold")
    again = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan and again.differences(plan) == []
    bigger = make_plan(plan.settings.replace(alpha_s=3e-4), 30000, plan.sources)
    differing = plan.differences(bigger)
    assert "settings.alpha_s" in differing and "num_train" in differing
    assert "stage1.1.rate" in differing and "stage1.1.rounds" in differing
    with pytest.raises(PlanError, match=r"differs in .*settings\.alpha_s.*; start over"):
        check_same_plan(plan, bigger, "runs/x", "start over")
    check_same_plan(plan, again, "runs/x", "start over")  # the same plan passes


def test_a_plan_of_another_version_is_refused():
    data = plan_of("demo").to_dict()
    data["version"] = 99
    with pytest.raises(PlanError, match="version 99"):
        Plan.from_dict(data, "runs/x/plan.json")


def test_the_recipe_sources_carry_the_files_hashes():
    plan = plan_of("fer2013-face-resnet-preset")
    assert plan.sources["recipe"]["name"] == "fer2013-face-resnet"
    assert plan.sources["backbone"]["name"] == "face-resnet"
    assert all(len(source["sha256"]) == 64 for source in plan.sources.values())


def test_describe_names_every_phase():
    text = plan_of("face-resnet-ckplus48-fold").describe()
    for words in ("probe:", "fine-tune:", "MPVS-Net:", "trunk cache", "competes"):
        assert words in text


def test_the_probes_state_competes_with_fine_tuning_where_a_probe_precedes_it():
    plan = plan_of("face-resnet-12-people")
    probe, fine_tune = plan.stage1
    assert probe.name == "probe" and not probe.start_competes
    assert fine_tune.name == "fine-tune" and fine_tune.start_competes and fine_tune.monitor == probe.monitor
    assert "its start competes" in fine_tune.describe()
    # No probe (none asked for, or no pretrained weights): nothing to compete with.
    no_probe = make_plan(plan.settings.replace(probe_steps=0), plan.num_train)
    assert [p.name for p in no_probe.stage1] == ["fine-tune"] and not no_probe.stage1[0].start_competes
    assert not plan_of("face-resnet-no-weights").stage1[-1].start_competes
    # Asked off, and off for the preset built before the rule.
    assert not make_plan(plan.settings.replace(probe_competes=False), plan.num_train).stage1[-1].start_competes
    assert not plan_of("fer2013-face-resnet-preset").stage1[-1].start_competes


def test_a_plan_written_before_the_probe_competed_keeps_what_it_did():
    plan = make_plan(plan_of("face-resnet-12-people").settings.replace(probe_competes=False), 90)
    older = plan.to_dict()
    del older["settings"]["probe_competes"]  # as a release before the setting wrote it
    again = Plan.from_dict(json.loads(json.dumps(older)))
    assert again.settings.probe_competes is False and again.differences(plan) == []
