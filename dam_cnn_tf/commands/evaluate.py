"""``damcnn-tf evaluate``: a trained model on a dataset or one of its splits."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from dam_cnn_tf.commands.common import (data_options, data_spec, handle_user_errors, load_inference_model, load_prepared,
                                        progress_level)


SPLIT_NAMES = "train, val, test, public_test, private_test (or FER2013's Training, PublicTest, PrivateTest)"


def canonical_split_option(split: Optional[str]) -> Optional[str]:
    """``--split`` in the package's split names (``PublicTest`` -> ``public_test``); a name that is
    no split at all is refused before any data is read."""
    from dam_cnn_tf.data.loading import canonical_split

    if split is None:
        return None
    name = canonical_split(split)
    if name is None:
        raise click.BadParameter(f"{split!r} is not a split name; use {SPLIT_NAMES}", param_hint="--split")
    return name


def check_split_present(split: Optional[str], samples, data) -> None:
    """Refuse a ``--split`` the data does not have, naming the splits it has."""
    if split is None:
        return
    present = sorted({s.split for s in samples if s.split})
    if split not in present:
        has = f"it has {', '.join(present)}" if present else "it has no predefined splits"
        raise click.ClickException(f"--split {split}: no such split in --data {data}; {has}")


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(exists=True, path_type=Path), required=True, help="dataset folder or file")
@data_options
@click.option("--split", default=None,
              help="evaluate only the samples of this predefined split (e.g. test, val, PublicTest, PrivateTest)")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="write evaluation.json, evaluation_confusion.csv/.png here")
@click.option("--runtime", type=click.Choice(("keras", "light")), default="keras", show_default=True,
              help="light: a preset's light file (LiteRT); faster to start, slower per face than Keras on "
                   "large batches (docs/performance.md), and the data preparation starts TensorFlow anyway")
@click.option("--quiet", is_flag=True)
@handle_user_errors
def evaluate(model, data, split, out, quiet, runtime, **kwargs):
    """Accuracy, per-class recall and the confusion matrix of MODEL (a run directory, .keras file or preset name)."""
    import numpy as np

    from dam_cnn_tf.recipes.options import TrainConfig
    from dam_cnn_tf.evaluation.metrics import classification_report, predict_probabilities
    from dam_cnn_tf.evaluation.reports import write_evaluation

    split = canonical_split_option(split)
    spec = data_spec(kwargs, data)
    if runtime == "light":
        from dam_cnn_tf.predict import Predictor

        loaded = Predictor(model, detect=False, runtime="light", batch_size=64)
        class_names, input_size = loaded.class_names, int(loaded.input_size[0])
    else:
        loaded, class_names = load_inference_model(model)
        input_size = int(loaded.input_shape[1])
    config = TrainConfig(input_size=input_size, classes=8)
    prepared = load_prepared(spec, config, progress=progress_level(quiet))
    check_split_present(split, prepared.dataset.samples, data)
    index = {name: i for i, name in enumerate(class_names)}
    keep = [i for i, s in enumerate(prepared.dataset.samples)
            if s.label in index and (split is None or s.split == split)]
    if not keep:
        raise click.ClickException(f"--data {data}: no sample of the model's classes{' in split ' + split if split else ''}")
    labels = np.array([index[prepared.dataset.samples[i].label] for i in keep])
    if runtime == "light":
        probabilities = loaded.predict_faces(prepared.faces[keep])[0]  # prepared at the model's input size
    else:
        probabilities = predict_probabilities(loaded, prepared.faces[keep], input_size)
    result = classification_report(labels, probabilities, class_names)
    click.echo(f"Accuracy: {100 * result['accuracy']:.2f}% on {result['num_samples']} faces")
    for name, recall in result["per_class_recall"].items():
        click.echo(f"  {name:<10} recall {100 * recall:6.2f}%")
    if out is not None:
        write_evaluation(result, out, title=f"{Path(model).name} on {Path(data).name}")
        click.echo(f"Written to {out}")
