"""``damcnn-tf train``: the paper's two stages (Algorithm 1), or one of them, into a run directory."""

from __future__ import annotations

import time
from pathlib import Path

import click

from dam_cnn_tf.training.workers import is_chief, worker_role
from dam_cnn_tf.commands.common import (
    RecipeCommand,
    config_options,
    data_options,
    data_spec,
    handle_user_errors,
    load_prepared,
    progress_level,
    resolve_run_settings,
    set_group,
)


def _new_run_dir() -> Path:
    base = Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


@click.command(cls=RecipeCommand)
@set_group("data")
@click.option("--data", type=click.Path(exists=True, path_type=Path), default=None,
              help="dataset folder or file (a folder of class folders, or a layout below); without it, "
                   "the built-in synthetic faces (the demo's recipe)")
@data_options
@set_group("output")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="where the run is written [default: runs/<date-time>]")
@set_group("output")
@click.option("--resume", "resume", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="continue an interrupted run from its last completed round, with its own plan")
@set_group("output")
@click.option("--stage", type=click.Choice(["1", "2", "all"]), default="all", show_default=True,
              help="stage 1 (VGG-SERD), stage 2 (MPVS-Net, needs stage 1 in the run) or both")
@set_group("output")
@click.option("--dry-run", is_flag=True, help="print the plan (phases, rates, steps, data) and exit without training")
@set_group("model")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="your own JSON or TOML file of settings, over the recipe; options override it")
@set_group("output")
@click.option("--quiet", is_flag=True, help="no progress bars")
@config_options
@handle_user_errors
def train(data, run_dir, resume, stage, dry_run, config_file, quiet, **kwargs):
    """Train DAM-CNN as the paper stages it: stage 1 fine-tunes VGG-SERD (a probe on the frozen
    backbone first), stage 2 freezes it, extracts salient features once, pairs each face with N
    same-class targets and trains MPVS-Net. The settings come from the backbone's recipe, a
    --recipe, --config and options, and with the data set's size make the run's plan
    (--dry-run prints it). Checkpoints are chosen on a validation part of the training data."""
    from dam_cnn_tf.training.run_dir import RunDir
    from dam_cnn_tf.training.run_plan import saved_settings

    spec = data_spec(kwargs, data)
    if resume is not None:
        given = [name for name, value in kwargs.items() if value is not None]
        if data is not None or run_dir is not None or config_file is not None or given:
            raise click.UsageError("--resume takes the run's own data and plan; give no --data, --run-dir, --config, "
                                   "--recipe or setting with it")
        run = RunDir(resume)
        spec = run.read_json("data.json")
        if spec is None:
            raise click.ClickException(f"--resume {resume}: not a run directory (no data.json)")
        settings, sources = saved_settings(run), (run.read_json("plan.json") or {}).get("sources", {})
        stage = spec.pop("stage", stage)
    else:
        from dam_cnn_tf.recipes import DEFAULT_BACKBONE  # noqa: F401  (the command line's backbone)

        base_recipe = None if data is not None or kwargs.get("recipe") else "demo"
        if base_recipe:
            kwargs["recipe"] = base_recipe
        settings, sources = resolve_run_settings(kwargs, config_file)
        run = RunDir(run_dir or _new_run_dir())
        chief = settings.strategy != "multiworker" or is_chief()
        if not dry_run:
            if stage == "2" and "stage1" not in run.completed():
                raise click.UsageError(f"--stage 2 needs a run directory whose stage 1 is complete; {run.path} has none")
            if chief and stage != "2" and (run.config_path.exists() or (run / "plan.json").exists()):
                raise click.UsageError(f"--run-dir {run.path} already holds a run; use --resume {run.path} or another "
                                       "directory")
    if dry_run:
        data_set, split = prepared_split(run if resume is not None else None, settings, spec, progress_level(quiet))
        from dam_cnn_tf.recipes.plan import make_plan

        click.echo(make_plan(settings, len(split.train), sources).describe())
        return
    with worker_role(settings.strategy, run, resume=resume is not None or stage == "2") as private:
        if private is not None:  # a non-chief worker: the same training, written to its private copy
            run_training(private, settings, spec, stage, verbose=progress_level(quiet), sources=sources)
            click.echo(f"Worker done; the chief wrote the run to {run.path}")
            return
        with run.locked():
            run.write_json("data.json", {**spec, "stage": stage})
        result = run_training(run, settings, spec, stage, verbose=progress_level(quiet), sources=sources,
                              resumed=resume is not None)
    click.echo(f"Run written to {run.path}")
    if result is not None:
        stage1 = result.get("stage1_accuracy")
        click.echo(f"Validation accuracy: {100 * result['accuracy']:.2f}% on {result['num_samples']} faces"
                   + ("" if stage1 is None else f"; VGG-SERD, stage 1's own classifier: {100 * stage1:.2f}%"))


def prepared_split(run, settings, spec: dict, verbose: int = 1):
    """``(prepared data, split)`` of a run: the data ``spec`` names (the synthetic faces without
    a path), and the run's saved split or a validation part carved from the data."""
    from dam_cnn_tf.data.protocols import Fold
    from dam_cnn_tf.training.prepare import training_split

    if spec.get("path") is None:
        from dam_cnn_tf.commands.demo import synthetic_prepared

        data = synthetic_prepared(settings)
    else:
        data = load_prepared(spec, settings, progress=verbose)
    saved_split = run.read_json("split.json") if run is not None else None
    split = Fold.from_dict(saved_split) if saved_split is not None else training_split(
        data, settings.val_fraction, settings.seed)
    return data, split


def run_training(run, settings, spec: dict, stage: str, verbose: int = 1, sources=None, resumed: bool = False):
    """Prepare the data the run names, split it, train as its plan says, score the validation part."""
    from dam_cnn_tf.evaluation.protocol import train_and_evaluate
    from dam_cnn_tf.recipes.plan import make_plan

    data, split = prepared_split(run, settings, spec, verbose)
    if run.read_json("split.json") is None:
        run.write_json("split.json", split.to_dict())
    click.echo(f"{data.dataset.name}: {len(split.train)} training and {len(split.val)} validation faces, "
               f"classes {', '.join(data.class_names)}")
    plan = make_plan(settings, len(split.train), sources)
    remedy = ("the data or this release's rules changed since the run began; start it over in another --run-dir"
              if resumed else "use another --run-dir")
    return train_and_evaluate(data, split, plan, run, stage=stage, verbose=verbose, remedy=remedy)
