"""``damcnn-tf crossval``: a protocol of §4.1.2 end to end, reported like Tables 2, 5 and 7."""

from __future__ import annotations

from pathlib import Path

import click

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

PROTOCOLS = ("default", "kfold", "subject-kfold", "loso", "predefined", "cross-dataset")
RESUME = "the same `damcnn-tf crossval` command"


def make_folds(protocol: str, data, k, seed: int, val_fraction: float, dataset_name: str):
    from dam_cnn_tf.data.protocols import Protocol, default_protocol

    if protocol == "default":
        chosen = default_protocol(dataset_name)
    elif protocol == "kfold":
        chosen = Protocol(f"{k}-fold", "kfold", k=k, grouped=False)
    elif protocol == "subject-kfold":
        chosen = Protocol(f"subject-independent {k}-fold", "kfold", k=k, grouped=True)
    elif protocol == "loso":
        chosen = Protocol("leave-one-subject-out", "loso")
    else:
        chosen = Protocol("predefined", "predefined", train_splits=("train",), val_splits=(), test_splits=("test", "val", "private_test"))
    try:
        return chosen.name, chosen.make_folds(data.dataset, seed=seed, val_fraction=val_fraction)
    except ValueError as error:
        raise click.ClickException(f"--protocol {protocol}: {error}") from None


@click.command(cls=RecipeCommand)
@set_group("data")
@click.option("--data", type=click.Path(exists=True, path_type=Path), required=True, help="dataset folder or file")
@data_options
@set_group("data")
@click.option("--protocol", type=click.Choice(PROTOCOLS), default="default", show_default=True,
              help="default: the paper's for the dataset (10-fold CK+/JAFFE, 5-fold TFEID, 7-fold BAUM-2i, predefined FER2013/SFEW)")
@set_group("data")
@click.option("--folds", "k", type=int, default=10, show_default=True, help="k of the k-fold protocols")
@click.option("--dataset-name", default=None, help="which paper dataset this is, for --protocol default [default: the folder name]")
@click.option("--test-data", type=click.Path(exists=True, path_type=Path), default=None,
              help="cross-dataset: train on --data, test on this (Table 11)")
@click.option("--test-layout", default="auto", show_default=True, help="layout of --test-data")
@click.option("--max-folds", type=int, default=None, help="run only the first folds (quick checks)")
@click.option("--stage", type=click.Choice(["1", "all"]), default="all", show_default=True,
              help="all: DAM-CNN; 1: VGG-SERD alone (Table 2)")
@set_group("output")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="output folder: one run per fold, results.md/json, confusion matrix CSV and PNG")
@set_group("output")
@click.option("--restart", is_flag=True,
              help="discard the folds --out holds (a folder of other settings is refused without it)")
@set_group("output")
@click.option("--baselines", is_flag=True,
              help="also fit logistic regressions on raw pixels and on frozen backbone features on the same folds, "
                   "and compare fold by fold")
@set_group("model")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="your own JSON or TOML file of settings, over the recipe; options override it")
@set_group("output")
@click.option("--quiet", is_flag=True, help="no progress bars")
@config_options
@handle_user_errors
def crossval(data, protocol, k, dataset_name, test_data, test_layout, max_folds, stage, out, restart, baselines,
             config_file, quiet, **kwargs):
    """Cross-validate DAM-CNN: per-fold and mean ± std accuracy, summed confusion matrix."""
    from dam_cnn_tf.evaluation.crossval import completed_folds, run_crossval
    from dam_cnn_tf.training.run_dir import RunDir
    from dam_cnn_tf.training.workers import worker_role

    if (protocol == "cross-dataset") != (test_data is not None):
        raise click.UsageError("--protocol cross-dataset and --test-data go together")
    if k < 2:
        raise click.BadParameter("must be at least 2", param_hint="--folds")
    spec = data_spec(kwargs, data)
    config, sources = resolve_run_settings(kwargs, config_file)
    # Read before the workers meet, so every worker skips the same folds.
    done = set() if restart else completed_folds(out)
    with worker_role(config.strategy, RunDir(out), resume=False, resume_hint=RESUME) as private:
        name, prepared, folds = _folds(spec, config, protocol, k, dataset_name, test_data, test_layout, quiet)
        if max_folds:
            folds = folds[:max_folds]
        summary = run_crossval(prepared, folds, config, out, name=name, stage=stage, verbose=progress_level(quiet),
                               done=done, private_dir=None if private is None else private.path, restart=restart,
                               sources=sources)
        if private is not None:
            click.echo(f"Worker done; the chief wrote the cross-validation to {out}")
            return
    warning = None
    if baselines:
        from dam_cnn_tf.evaluation.baselines import below_probe_warning, comparison_markdown, run_baselines
        from dam_cnn_tf.training.run_dir import atomic_write_text

        probes = run_baselines(prepared, folds, config, Path(out), log=(lambda *_: None) if quiet else print)
        report = Path(out) / "results.md"
        text = report.read_text()
        text = text.split("\n## Against the baselines")[0].rstrip("\n") + "\n"
        atomic_write_text(report, text + comparison_markdown(summary, probes))
        warning = below_probe_warning(summary, probes)
    click.echo((Path(out) / "results.md").read_text())
    click.echo(f"{name}: {100 * summary['mean_accuracy']:.2f} ± {100 * summary['std_accuracy']:.2f}% "
               f"over {summary['folds']} fold(s); results in {out}")
    if warning:
        click.echo(warning)
    from dam_cnn_tf.evaluation.reports import below_stage1_note

    note = below_stage1_note(summary)
    if note:
        click.echo(note)


def _folds(spec, config, protocol, k, dataset_name, test_data, test_layout, quiet):
    """``(protocol name, prepared data, folds)`` of ``--data`` (and ``--test-data``)."""
    import numpy as np

    from dam_cnn_tf.data.protocols import Fold, carve_validation

    data = Path(spec["path"])
    prepared = load_prepared(spec, config, progress=progress_level(quiet))
    if protocol != "cross-dataset":
        name, folds = make_folds(protocol, prepared, k, config.seed, config.val_fraction, dataset_name or data.name)
        return name, prepared, folds
    test_spec = {**spec, "path": str(test_data), "layout": test_layout}
    tested = load_prepared(test_spec, config, progress=progress_level(quiet))
    common = tuple(c for c in prepared.class_names if c in set(tested.class_names))
    if len(common) < 2:
        raise click.ClickException(f"--test-data {test_data}: fewer than two classes in common with --data")
    merged = _merge(prepared, tested, common)
    train_idx = np.arange(len(merged.labels))[: _count(prepared, common)]
    test_idx = np.arange(len(merged.labels))[len(train_idx):]
    subjects = merged.dataset.subjects() if merged.dataset.has_subjects() else None
    folds = [carve_validation(Fold(f"{data.name}->{Path(test_data).name}", train_idx, test_idx),
                              merged.labels, subjects, config.val_fraction, config.seed)]
    return "cross-dataset", merged, folds


def _count(data, classes) -> int:
    return sum(1 for s in data.dataset.samples if s.label in set(classes))


def _merge(a, b, classes):
    """A's then B's samples restricted to ``classes``, one index space (Table 11)."""
    import numpy as np

    from dam_cnn_tf.data.samples import Dataset
    from dam_cnn_tf.training.prepare import PreparedData

    keep_a = [i for i, s in enumerate(a.dataset.samples) if s.label in set(classes)]
    keep_b = [i for i, s in enumerate(b.dataset.samples) if s.label in set(classes)]
    samples = [a.dataset.samples[i] for i in keep_a] + [b.dataset.samples[i] for i in keep_b]
    dataset = Dataset(f"{a.dataset.name}+{b.dataset.name}", samples, tuple(classes))
    faces = np.concatenate([a.faces[keep_a], b.faces[keep_b]])
    return PreparedData(dataset, faces, dataset.labels())
