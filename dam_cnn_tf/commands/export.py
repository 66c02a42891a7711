"""``damcnn-tf export``: a versioned SavedModel for TensorFlow Serving, or one LiteRT/ONNX file."""

from __future__ import annotations

from pathlib import Path

import click

from dam_cnn_tf.commands.common import handle_user_errors, load_inference_model


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("export_dir", type=click.Path(path_type=Path))
@click.option("--format", "format_", type=click.Choice(["saved_model", "litert", "onnx"]), default="saved_model",
              show_default=True, help="litert: one .tflite file; onnx: one .onnx file (the onnx extra)")
@click.option("--quantize", type=click.Choice(["float16", "dynamic"]), default=None,
              help="litert only: float16 weights, or int8 weights with dynamic-range activations")
@click.option("--version", type=int, default=None, help="version directory [default: one above the highest]")
@click.option("--overwrite", is_flag=True, help="replace an existing version or file")
@handle_user_errors
def export(model, export_dir, format_, quantize, version, overwrite):
    """Write MODEL (a run directory, .keras file or preset name) as EXPORT_DIR/<version>/ with the
    serving_default (float images) and serving_bytes (encoded JPEG/PNG) signatures; with
    --format litert|onnx, EXPORT_DIR is the file to write (*.tflite, *.onnx)."""
    if format_ != "saved_model":
        from dam_cnn_tf.export_formats import export_model_file

        if version is not None:
            raise click.UsageError("--version is for --format saved_model")
        loaded, class_names = load_inference_model(model)
        path = export_model_file(loaded, export_dir, class_names, format_, quantize=quantize, overwrite=overwrite)
        click.echo(f"Exported to {path}")
        return
    if quantize is not None:
        raise click.UsageError("--quantize is for --format litert")
    from dam_cnn_tf.export import export_saved_model

    loaded, class_names = load_inference_model(model)
    path = export_saved_model(loaded, export_dir, class_names, version=version, overwrite=overwrite)
    click.echo(f"Exported to {path}")
