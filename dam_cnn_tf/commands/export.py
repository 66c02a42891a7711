"""``damcnn-tf export``: a versioned SavedModel for TensorFlow Serving."""

from __future__ import annotations

from pathlib import Path

import click

from dam_cnn_tf.commands.common import handle_user_errors, load_inference_model


@click.command()
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.argument("export_dir", type=click.Path(path_type=Path))
@click.option("--version", type=int, default=None, help="version directory [default: one above the highest]")
@click.option("--overwrite", is_flag=True, help="replace an existing version")
@handle_user_errors
def export(model, export_dir, version, overwrite):
    """Write MODEL (a run directory or .keras file) as EXPORT_DIR/<version>/ with the
    serving_default (float images) and serving_bytes (encoded JPEG/PNG) signatures."""
    from dam_cnn_tf.export import export_saved_model

    loaded, class_names = load_inference_model(model)
    path = export_saved_model(loaded, export_dir, class_names, version=version, overwrite=overwrite)
    click.echo(f"Exported to {path}")
