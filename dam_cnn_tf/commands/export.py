"""``damcnn-tf export``: a versioned SavedModel for TensorFlow Serving, or one LiteRT/ONNX file."""

from __future__ import annotations

from pathlib import Path

import click

from dam_cnn_tf.commands.common import handle_user_errors, load_inference_model
from dam_cnn_tf.quantization import MIN_CALIBRATION_FACES, QUANTIZE


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("export_dir", type=click.Path(path_type=Path))
@click.option("--format", "format_", type=click.Choice(["saved_model", "litert", "onnx"]), default="saved_model",
              show_default=True, help="litert: one .tflite file; onnx: one .onnx file (the onnx extra)")
@click.option("--quantize", type=click.Choice(QUANTIZE), default=None,
              help="litert only: float16 weights; int8 weights with dynamic-range activations; or int8 weights "
                   "and activations (needs --calibration)")
@click.option("--calibration", type=click.Path(path_type=Path), default=None,
              help="--quantize int8: a folder of face crops as the model will see them; each activation's range "
                   "is measured on up to --calibration-faces of them")
@click.option("--calibration-faces", type=click.IntRange(MIN_CALIBRATION_FACES, None), default=500, show_default=True,
              help="how many faces of --calibration to use (spread evenly over the sorted file names)")
@click.option("--version", type=int, default=None, help="version directory [default: one above the highest]")
@click.option("--overwrite", is_flag=True, help="replace an existing version or file")
@handle_user_errors
def export(model, export_dir, format_, quantize, calibration, calibration_faces, version, overwrite):
    """Write MODEL (a run directory, .keras file or preset name) as EXPORT_DIR/<version>/ with the
    serving_default (float images) and serving_bytes (encoded JPEG/PNG) signatures; with
    --format litert|onnx, EXPORT_DIR is the file to write (*.tflite, *.onnx)."""
    if format_ != "saved_model":
        from dam_cnn_tf.export_formats import export_model_file

        if version is not None:
            raise click.UsageError("--version is for --format saved_model")
        if (quantize == "int8") != (calibration is not None):
            raise click.UsageError("--quantize int8 needs --calibration FOLDER, and --calibration is for int8 only")
        loaded, class_names = load_inference_model(model)
        faces = (calibration_images(calibration, tuple(loaded.input_shape[1:3]), calibration_faces)
                 if calibration is not None else None)
        path = export_model_file(loaded, export_dir, class_names, format_, quantize=quantize, overwrite=overwrite,
                                 calibration=faces)
        click.echo(f"Exported to {path}" + (f" (int8, scaled on {len(faces)} faces of {calibration})"
                                            if faces is not None else ""))
        return
    if quantize is not None:
        raise click.UsageError("--quantize is for --format litert")
    from dam_cnn_tf.export import export_saved_model

    loaded, class_names = load_inference_model(model)
    path = export_saved_model(loaded, export_dir, class_names, version=version, overwrite=overwrite)
    click.echo(f"Exported to {path}")


def calibration_images(folder: Path, size: tuple, count: int):
    """Up to ``count`` images of ``folder`` (searched recursively), spread evenly over their sorted
    names, read as RGB and resized to ``size``: the faces an int8 file is scaled on."""
    import numpy as np

    from dam_cnn_tf.data.faces import resize_face
    from dam_cnn_tf.data.images import read_image
    from dam_cnn_tf.predict import PredictError, expand_inputs

    if not folder.is_dir():
        raise click.BadParameter(f"{folder} is not a folder", param_hint="--calibration")
    try:  # the images predict would read from the folder
        paths = [found.path for found in expand_inputs([folder])]
    except PredictError:  # a folder without images
        paths = []
    if len(paths) < MIN_CALIBRATION_FACES:
        raise click.BadParameter(f"{folder} holds {len(paths)} images; int8 needs at least {MIN_CALIBRATION_FACES} faces",
                                 param_hint="--calibration")
    chosen = [paths[i] for i in np.linspace(0, len(paths) - 1, min(count, len(paths))).round().astype(int)]
    return np.stack([resize_face(read_image(p), size) for p in chosen]).astype(np.float32)
