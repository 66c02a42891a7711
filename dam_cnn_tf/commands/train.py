"""``damcnn-tf train``: the paper's two stages (Algorithm 1), or one of them, into a run directory."""

from __future__ import annotations

import time
from pathlib import Path

import click

from dam_cnn_tf.training.workers import is_chief, worker_role
from dam_cnn_tf.commands.common import (
    config_options,
    config_overrides,
    data_options,
    data_spec,
    check_backbone_weights,
    handle_user_errors,
    progress_level,
    load_prepared,
)


def _new_run_dir() -> Path:
    base = Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


@click.command()
@click.option("--data", type=click.Path(exists=True, path_type=Path), default=None,
              help="dataset folder or file; without it, the built-in synthetic faces (a demo)")
@data_options
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="where the run is written [default: runs/<date-time>]")
@click.option("--resume", "resume", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="continue an interrupted run from its last completed epoch")
@click.option("--stage", type=click.Choice(["1", "2", "all"]), default="all", show_default=True,
              help="stage 1 (VGG-SERD), stage 2 (MPVS-Net, needs stage 1 in the run) or both")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="JSON or TOML file of options; command-line options override it")
@click.option("--quiet", is_flag=True, help="no progress bars")
@config_options
@handle_user_errors
def train(data, run_dir, resume, stage, config_file, quiet, **kwargs):
    """Train DAM-CNN as the paper does: stage 1 fine-tunes VGG-SERD until the validation loss
    stops improving; stage 2 freezes it, extracts salient features once, pairs each sample
    with N same-class targets and trains MPVS-Net. Paper hyper-parameters by default."""
    from dam_cnn_tf.training.config import TrainConfig, resolve_config
    from dam_cnn_tf.training.run_dir import RunDir

    overrides = config_overrides(kwargs)
    spec = data_spec(kwargs, data)
    if resume is not None:
        if data is not None or run_dir is not None or config_file is not None or any(v is not None for v in overrides.values()):
            raise click.UsageError("--resume takes the run's own data and options; give no --data, --run-dir, --config or option with it")
        run = RunDir(resume)
        saved = run.read_json("config.json")
        spec = run.read_json("data.json")
        if saved is None or spec is None:
            raise click.ClickException(f"--resume {resume}: not a run directory (no config.json / data.json)")
        config = TrainConfig(**saved)
        stage = spec.pop("stage", stage)
    else:
        base = None
        if data is None:
            from dam_cnn_tf.commands.demo import DEMO_CONFIG

            base = DEMO_CONFIG
        config = resolve_config(config_file, base=base, **overrides)
        check_backbone_weights(config)
        run = RunDir(run_dir or _new_run_dir())
        chief = config.strategy != "multiworker" or is_chief()
        if stage == "2" and "stage1" not in run.completed():
            raise click.UsageError(f"--stage 2 needs a run directory whose stage 1 is complete; {run.path} has none")
        if chief and stage != "2" and run.config_path.exists():
            raise click.UsageError(f"--run-dir {run.path} already holds a run; use --resume {run.path} or another directory")
    with worker_role(config.strategy, run, resume=resume is not None or stage == "2") as private:
        if private is not None:  # a non-chief worker: the same training, written to its private copy
            run_training(private, config, spec, stage, verbose=progress_level(quiet))
            click.echo(f"Worker done; the chief wrote the run to {run.path}")
            return
        with run.locked():
            run.write_json("config.json", config.to_dict())
            run.write_json("data.json", {**spec, "stage": stage})
            result = run_training(run, config, spec, stage, verbose=progress_level(quiet))
    click.echo(f"Run written to {run.path}")
    if result is not None:
        stage1 = result.get("stage1_accuracy")
        click.echo(f"Validation accuracy: {100 * result['accuracy']:.2f}% on {result['num_samples']} faces"
                   + ("" if stage1 is None else f"; VGG-SERD, stage 1's own classifier: {100 * stage1:.2f}%"))


def run_training(run, config, spec: dict, stage: str, verbose: int = 1):
    """Prepare the data the run names, split it, train, evaluate on the validation part."""
    from dam_cnn_tf.data.protocols import Fold
    from dam_cnn_tf.training.evaluation import accuracy_on, classification_report, predict_probabilities
    from dam_cnn_tf.training.prepare import training_split
    from dam_cnn_tf.training.reports import write_evaluation
    from dam_cnn_tf.training.stages import train_both_stages

    if spec.get("path") is None:
        from dam_cnn_tf.commands.demo import synthetic_prepared

        data = synthetic_prepared(config)
    else:
        data = load_prepared(spec, config, progress=verbose)
    saved_split = run.read_json("split.json")
    if saved_split is not None:
        split = Fold.from_dict(saved_split)
    else:
        split = training_split(data, config.val_fraction, config.seed)
        run.write_json("split.json", split.to_dict())
    click.echo(f"{data.dataset.name}: {len(split.train)} training and {len(split.val)} validation faces, "
               f"classes {', '.join(data.class_names)}")
    train_set = data.face_set(split.train, config.pair_attribute)
    val_set = data.face_set(split.val, config.pair_attribute)
    vgg_serd, model = train_both_stages(config, train_set, val_set, run, data.class_names, stage=stage,
                                        verbose=verbose)
    probabilities = predict_probabilities(vgg_serd if model is None else model, val_set.images, config.input_size)
    result = classification_report(val_set.labels, probabilities, data.class_names)
    if model is not None:  # what stage 2 added on these faces: the paper's Table 4 question
        result["stage1_accuracy"] = accuracy_on(vgg_serd, val_set, config.input_size)
    write_evaluation(result, run.path, stem="val_evaluation", title="validation")
    return result
