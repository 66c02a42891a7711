"""``damcnn-tf experiment NAME``: the paper's comparisons, each a markdown table, JSON and figures."""

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

NAMES = ("dam-cnn", "table2", "table3", "table4", "paths-gender", "table11", "baselines", "select")
FOLD_PROTOCOLS = ("subject-kfold", "kfold", "loso", "default", "predefined")


@click.command(cls=RecipeCommand)
@click.argument("name", type=click.Choice(NAMES))
@set_group("data")
@click.option("--data", type=click.Path(exists=True, path_type=Path), default=None,
              help="dataset folder or file (or --synthetic)")
@click.option("--synthetic", "synthetic_subjects", type=int, default=None,
              help="use this many subjects of the built-in synthetic faces instead of --data "
                   "(they carry expression regions for the attention check, and a gender attribute)")
@click.option("--synthetic-images", type=int, default=2, show_default=True,
              help="synthetic images per subject and class")
@data_options
@set_group("data")
@click.option("--protocol", type=click.Choice(FOLD_PROTOCOLS), default="subject-kfold", show_default=True,
              help="how folds are made (table11 always trains on --data and tests on --test-data)")
@set_group("data")
@click.option("--folds", "k", type=int, default=5, show_default=True, help="k of the k-fold protocols")
@click.option("--max-folds", type=int, default=None, help="run only the first folds")
@click.option("--dataset-name", default=None, help="which paper dataset this is, for --protocol default")
@click.option("--test-data", type=click.Path(exists=True, path_type=Path), default=None,
              help="table11: the dataset to test on")
@click.option("--test-layout", default="auto", show_default=True, help="layout of --test-data")
@click.option("--test-detect/--test-no-detect", default=None,
              help="face detection on --test-data [default: as --detect]")
@set_group("output")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="output folder; experiments written to the same folder share the runs they have in common")
@click.option("--no-figures", is_flag=True, help="tables only")
@set_group("output")
@click.option("--baselines", is_flag=True,
              help="add logistic regressions on raw pixels and on frozen backbone features, on the same folds, and "
                   "compare every model with them fold by fold (the experiment baselines has them alone)")
@set_group("output")
@click.option("--candidates", default=None,
              help="select: the variants each fold chooses among on its validation part, a TOML file of one table "
                   "each (or the name of one the package ships, e.g. face-resnet-small)")
@set_group("output")
@click.option("--validation-only", is_flag=True,
              help="select: train and score every candidate on the validation parts, test nothing")
@set_group("model")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="your own JSON or TOML file of settings, over the recipe; options override it")
@set_group("output")
@click.option("--quiet", is_flag=True, help="no progress bars")
@config_options
@handle_user_errors
def experiment(name, data, synthetic_subjects, synthetic_images, protocol, k, max_folds, dataset_name, test_data,
               test_layout, test_detect, out, no_figures, baselines, candidates, validation_only, config_file, quiet,
               **kwargs):
    """Reproduce one of the paper's comparisons: dam-cnn (DAM-CNN at --num-paths against its own
    VGG-SERD), table2 (VGG-Face vs VGG-SERD), table3 (parts of
    L_reg, attention maps and check), table4 (N paths, t-SNE), paths-gender (§4.3.2), table11
    (cross-dataset), baselines (logistic regressions on pixels and on frozen features), select (the
    --candidates chosen among per fold on its validation part, only the choice tested; with
    --test-data, cross-dataset). Writes OUT/NAME.md and OUT/NAME.json with mean ± std over folds."""
    from dam_cnn_tf.paper.figures import write_experiment_figures
    from dam_cnn_tf.paper.experiments import ExperimentError, run_experiment
    from dam_cnn_tf.paper.shared_stage1 import SharedStage1Error

    if (data is None) == (synthetic_subjects is None):
        raise click.UsageError("give one of --data and --synthetic")
    if name == "table11" and test_data is None or test_data is not None and name not in ("table11", "select"):
        raise click.UsageError("table11 needs --test-data, and only table11 and select take it")
    if (name == "select") != (candidates is not None) or validation_only and name != "select":
        raise click.UsageError("select needs --candidates, and only select takes --candidates and --validation-only")
    chosen_among = None
    if candidates is not None:
        from dam_cnn_tf.recipes.candidates import candidates_path
        from dam_cnn_tf.evaluation.selection import read_candidates

        chosen_among = read_candidates(candidates_path(candidates))
    if k < 2:
        raise click.BadParameter("must be at least 2", param_hint="--folds")
    spec = data_spec(kwargs, data)
    config, _ = resolve_run_settings(kwargs, config_file)
    if config.strategy == "multiworker":
        raise click.UsageError("--strategy multiworker: experiment runs in one process; on several workers, "
                               "run crossval (one model per command)")
    verbose = progress_level(quiet)
    if synthetic_subjects is not None:
        from dam_cnn_tf.commands.demo import synthetic_prepared

        if synthetic_subjects < k + 2 or synthetic_images < 1:
            raise click.BadParameter(f"needs at least {k + 2} subjects for {k} folds", param_hint="--synthetic")
        prepared = synthetic_prepared(config, num_subjects=synthetic_subjects, images_per_class=synthetic_images,
                                      seed=config.seed)
    else:
        prepared = load_prepared(spec, config, progress=progress_level(quiet))
    if test_data is not None:
        protocol_name, prepared, folds = _cross_dataset(prepared, spec, config, test_data, test_layout, test_detect,
                                                       quiet)
    else:
        from dam_cnn_tf.commands.crossval import make_folds

        protocol_name, folds = make_folds(protocol, prepared, k, config.seed, config.val_fraction,
                                          dataset_name or (Path(data).name if data else "synthetic"))
    if max_folds:
        folds = folds[:max_folds]
    from dam_cnn_tf.evaluation.selection import SelectionError

    try:
        if name == "select":
            from dam_cnn_tf.paper.selection import run_selection

            table = run_selection(prepared, folds, config, chosen_among, out, protocol_name, verbose=verbose,
                                  baselines=baselines, validation_only=validation_only)
        else:
            table = run_experiment(name, prepared, folds, config, out, protocol_name, verbose=verbose,
                                   baselines=baselines)
        if not no_figures and name not in ("baselines", "select"):
            write_experiment_figures(name, prepared, folds, config, out)
    except (ExperimentError, SharedStage1Error, SelectionError) as error:
        raise click.ClickException(str(error)) from None
    click.echo((Path(out) / f"{name}.md").read_text())
    if name == "select":
        click.echo(f"select: {len(chosen_among)} candidates over {len(folds)} fold(s) ({protocol_name}); "
                   f"{'nothing tested' if validation_only else 'each fold tested its choice alone'}; results in {out}")
        return
    for key in ("table3_attention_check.md",):
        if name == "table3" and (Path(out) / key).exists():
            click.echo((Path(out) / key).read_text())
    click.echo(f"{name}: {len(table['rows'])} rows over {len(folds)} fold(s) ({protocol_name}); results in {out}")


def _cross_dataset(prepared, spec, config, test_data, test_layout, test_detect, quiet):
    """Table 11: train (and select) on --data, test on --test-data, their common classes only."""
    import numpy as np

    from dam_cnn_tf.commands.crossval import _count, _merge
    from dam_cnn_tf.data.protocols import Fold, carve_validation

    test_spec = {**spec, "path": str(test_data), "layout": test_layout}
    if test_detect is not None:
        test_spec["detect"] = test_detect
    tested = load_prepared(test_spec, config, progress=progress_level(quiet))
    common = tuple(c for c in prepared.class_names if c in set(tested.class_names))
    if len(common) < 2:
        raise click.ClickException(f"--test-data {test_data}: fewer than two classes in common with the training data")
    merged = _merge(prepared, tested, common)
    count = _count(prepared, common)
    train_idx, test_idx = np.arange(count), np.arange(count, len(merged.labels))
    subjects = merged.dataset.subjects() if merged.dataset.has_subjects() else None
    name = f"{prepared.dataset.name}->{tested.dataset.name}"
    fold = carve_validation(Fold(name, train_idx, test_idx), merged.labels, subjects, config.val_fraction, config.seed)
    return f"cross-dataset: train on {prepared.dataset.name}, test on {tested.dataset.name} ({', '.join(common)})", \
        merged, [fold]
