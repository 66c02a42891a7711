"""A run directory's plan (``plan.json``): written when the run starts, compared when it goes on.

A run executes one plan from its first step to its last. Resuming, training into a folder
that holds runs (cross-validation folds) or rebuilding a preset from its run therefore
compares the plan it would make now with the saved one and refuses a difference, naming the
fields, instead of going on with a mixture of the two.
"""

from __future__ import annotations

from typing import Optional

from dam_cnn_tf.recipes.options import ConfigError, config_from_saved
from dam_cnn_tf.recipes.plan import Plan, PlanError, check_same_plan, make_plan
from dam_cnn_tf.training.run_dir import RunDir

PLAN_FILE = "plan.json"
SETTINGS_FILE = "config.json"


def saved_plan(run: RunDir, num_train: Optional[int] = None) -> Optional[Plan]:
    """The plan ``run`` holds; for a run begun before plans were written, the plan of its saved
    settings (fields added since take the values that keep its behaviour) on ``num_train``
    faces. None for a run directory that holds neither."""
    data = run.read_json(PLAN_FILE)
    if data is not None:
        return Plan.from_dict(data, run.path / PLAN_FILE)
    settings = run.read_json(SETTINGS_FILE)
    if settings is None or num_train is None:
        return None
    return make_plan(config_from_saved(settings, run.path / SETTINGS_FILE), num_train)


def saved_settings(run: RunDir):
    """The settings a run holds (its plan's, or ``config.json``'s for an older run)."""
    data = run.read_json(PLAN_FILE)
    if data is not None:
        return Plan.from_dict(data, run.path / PLAN_FILE).settings
    settings = run.read_json(SETTINGS_FILE)
    if settings is None:
        raise ConfigError(f"{run.path}: not a run directory (no {PLAN_FILE} or {SETTINGS_FILE})")
    return config_from_saved(settings, run.path / SETTINGS_FILE)


def record_plan(run: RunDir, plan: Plan, remedy: str = "use another run directory") -> None:
    """Write ``plan`` into ``run``, or check it against the plan ``run`` already holds."""
    saved = saved_plan(run, plan.num_train)
    if saved is not None:
        check_same_plan(saved, plan, run.path, remedy)
        if run.read_json(PLAN_FILE) is not None:
            return
    run.write_json(PLAN_FILE, plan.to_dict())
    run.write_json(SETTINGS_FILE, plan.settings.to_dict())


__all__ = ["PLAN_FILE", "PlanError", "record_plan", "saved_plan", "saved_settings"]
