"""``damcnn-tf predict``: expressions of the faces in images, folders and videos, one row per face."""

from __future__ import annotations

import contextlib
import csv
import json
import os
from pathlib import Path

import click
from click.core import ParameterSource

from dam_cnn_tf.data.images import ImageReadError
from dam_cnn_tf.detection import DEFAULT_DETECTOR, DETECTOR_NAMES, DetectorError, detector
from dam_cnn_tf.face_analysis import face_record
from dam_cnn_tf.predict import PredictError, PredictionReport, Predictor, draw_predictions, expand_inputs
from dam_cnn_tf.predict_models import RUNTIMES
from dam_cnn_tf.presets import DEFAULT_PRESET
from dam_cnn_tf.viz.attention import SCALES, AttentionVizError, write_png

FORMATS = ("json", "csv")
# Exit status when nothing was predicted: 1 (an error, as click's) when no input could be read,
# NO_FACE_EXIT when the inputs were read but none held a face; 2 stays click's usage error.
NO_FACE_EXIT = 3
BASE_COLUMNS = ("file", "frame", "time", "face", "x", "y", "w", "h", "detected", "label", "class_id")


def _face_rows(source, class_names):
    """``(json_object, csv_row)`` for each face of one image or frame."""
    for index, face in enumerate(source.faces):
        # The keys of dam_cnn_tf.analyze's dictionaries, after the file, frame, time and face index.
        record = {"file": source.path, "frame": source.frame, "time": source.timestamp, "face": index,
                  **face_record(face)}
        row = [source.path, "" if source.frame is None else source.frame,
               "" if source.timestamp is None else f"{source.timestamp:.6f}", index, *face.box,
               int(face.detected), face.label, face.class_id, *(repr(face.probabilities[n]) for n in class_names)]
        yield record, row


class RowWriter:
    """JSON lines or CSV with a header, to an open text stream."""

    def __init__(self, stream, fmt: str, class_names):
        self.stream, self.fmt, self.class_names = stream, fmt, list(class_names)
        if fmt == "csv":
            self.csv = csv.writer(stream, lineterminator="\n")
            self.csv.writerow([*BASE_COLUMNS, *(f"prob_{n}" for n in self.class_names)])

    def write(self, source) -> None:
        for record, row in _face_rows(source, self.class_names):
            if self.fmt == "csv":
                self.csv.writerow(row)
            else:
                self.stream.write(json.dumps(record) + "\n")
        self.stream.flush()


@contextlib.contextmanager
def _output_stream(output):
    """stdout, or a temporary file beside ``output`` renamed onto it only when all went well."""
    if output is None:
        yield click.get_text_stream("stdout")
        return
    path = Path(output)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as stream:
            yield stream
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class HeatmapNamer:
    """``DIR/<relative path>.png`` per image, ``DIR/<relative path minus suffix>/frame000123.png``
    per video frame; a name already used in this run gets ``-2``, ``-3``, …"""

    def __init__(self, folder):
        self.folder, self.used = Path(folder), set()

    def __call__(self, source) -> Path:
        relative = Path(source.relative or Path(source.path).name)
        base = relative.with_suffix("")
        if source.frame is not None:
            base = base / f"frame{source.frame:06d}"
        stem = base.name
        candidate, count = base.with_name(stem + ".png"), 1
        while candidate in self.used:
            count += 1
            candidate = base.with_name(f"{stem}-{count}.png")
        self.used.add(candidate)
        return self.folder / candidate


def no_face_line(path, min_side, action: str) -> str:
    """What stderr says of an image or frame without a face; with the detector's minimum face
    size there, so that whoever has small faces in a large photo knows why none was found."""
    limit = f"faces smaller than {min_side}x{min_side} pixels are not looked for; " if min_side else ""
    return f"no face found in {path} ({limit}{action})"


class NothingPredicted(click.ClickException):
    """No input gave a prediction: raised inside the output's context so that no file is written."""

    def __init__(self, report: PredictionReport, num_inputs: int):
        if report.num_sources == 0:
            super().__init__(f"no prediction: none of the {num_inputs} inputs could be read "
                             f"({len(report.bad)} unreadable, listed above)")
        else:
            super().__init__(f"no prediction: no face found in any of the {report.num_sources} images or frames "
                             "(--no-face whole uses the whole image)")
            self.exit_code = NO_FACE_EXIT


def _report(report: PredictionReport, files, no_face: str, output) -> None:
    for path, reason in report.bad:
        click.echo(f"skipped unreadable {path}: {reason}", err=True)
    action = "skipped" if no_face == "skip" else "whole image used"
    for path in report.no_face:
        click.echo(no_face_line(path, report.min_face_side.get(path), action), err=True)
    written = f"; rows in {output}" if output and report.num_faces else ""
    click.echo(f"{len(files)} inputs: {report.summary()}" + written, err=True)


def _check_options(ctx, no_detect, output, heatmaps):
    if no_detect:
        for name in ("margin", "no_face", "detector_name", "min_face", "align"):
            if ctx.get_parameter_source(name) != ParameterSource.DEFAULT:
                option = {"detector_name": "detector"}.get(name, name).replace("_", "-")
                raise click.ClickException(f"--{option} applies to detected faces; "
                                           "it cannot be combined with --no-detect")
    if output is not None:
        path = Path(output)
        if path.is_dir():
            raise click.ClickException(f"--output {output} is a directory; give a file name")
        if not path.parent.is_dir():
            raise click.ClickException(f"--output {output}: folder {path.parent} does not exist")
    if heatmaps is not None and Path(heatmaps).exists() and not Path(heatmaps).is_dir():
        raise click.ClickException(f"--heatmaps {heatmaps} is a file; give a folder")


def is_model_argument(text: str) -> bool:
    """Whether predict's first argument names a model rather than an input: a preset's name, a
    ``.keras`` file, or a folder that is a run directory (``model.keras``, ``classes.json`` or
    ``config.json`` in it) or holds no image at all (a run directory before its model is saved)."""
    from dam_cnn_tf.data.images import has_image_extension
    from dam_cnn_tf.presets import model_folder

    path = Path(text)
    if model_folder(text) is not None or path.suffix == ".keras":
        return True
    if path.is_dir():
        if any((path / name).is_file() for name in ("model.keras", "classes.json", "config.json")):
            return True
        return not any(p.is_file() and has_image_extension(p) for p in path.rglob("*"))
    return False


def split_model_argument(arguments) -> tuple:
    """``(MODEL, INPUTS)`` from predict's arguments: the first is MODEL when ``is_model_argument``
    says so and inputs follow it, else MODEL is the default preset."""
    from dam_cnn_tf.presets import DEFAULT_PRESET, model_folder

    arguments = list(arguments)
    first = arguments[0]
    if len(arguments) > 1 and is_model_argument(first):
        return first, arguments[1:]
    if model_folder(first) is not None or Path(first).suffix == ".keras":
        raise click.UsageError(f"{first} is a model: give the images, folders or videos to predict after it")
    return DEFAULT_PRESET, arguments


@click.command("predict")
@click.argument("arguments", nargs=-1, required=True, type=click.Path(), metavar="[MODEL] INPUTS...")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="json", show_default=True,
              help="JSON lines (one object per face) or CSV with a header.")
@click.option("--output", "-o", type=click.Path(), default=None, metavar="FILE",
              help="Write the rows to this file (replaced only once all inputs are done) instead of stdout.")
@click.option("--heatmaps", type=click.Path(), default=None, metavar="DIR",
              help="Save each image with the attention of its faces overlaid (Fig. 8) in this folder.")
@click.option("--heatmap-scale", type=click.Choice(SCALES), default="fixed", show_default=True,
              help="Colours over tanh's fixed range (-1, 1), comparable across images, or each mask's own range.")
@click.option("--no-detect", is_flag=True, help="The inputs are face crops: use each whole image as one face.")
@click.option("--detector", "detector_name", type=click.Choice(DETECTOR_NAMES), default=DEFAULT_DETECTOR,
              show_default=True, help="Face detector: BlazeFace (faces from 40 px up, turned and tilted ones too) "
                                      "or haar, the paper's Viola-Jones (§4.1.1; frontal faces; docs/detection.md).")
@click.option("--min-face", type=float, default=None, metavar="PIXELS",
              help="Smallest face side looked for, in pixels (default: 40 for blazeface, "
                   "10% of the image's shorter side for haar).")
@click.option("--margin", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="Grow each detected box by this fraction of its size per side (use training's value).")
@click.option("--no-face", type=click.Choice(("skip", "whole")), default="skip", show_default=True,
              help="For images without a detected face: skip them, or use the whole image.")
@click.option("--every-n-frames", type=click.IntRange(min=1), default=1, show_default=True,
              help="Predict on frames 0, N, 2N, … of video inputs.")
@click.option("--on-bad", type=click.Choice(("skip", "error")), default="skip", show_default=True,
              help="Unreadable image or video: report it and go on, or stop.")
@click.option("--align/--no-align", default=None,
              help="Turn and scale each detected face so that its eyes sit where they sat in the model's training "
                   "faces (the eye template on its card) before the model reads it; --no-align crops the upright "
                   "box. Default: as the card says (on for a preset whose card turns it on, measured on its "
                   "validation faces; docs/detection.md). Needs eyes from the detector (blazeface).")
@click.option("--runtime", type=click.Choice(RUNTIMES), default="auto", show_default=True,
              help="auto: a preset's light file (LiteRT, no TensorFlow to start) where its card lists one, "
                   "else the Keras model; light or keras to insist on one.")
@click.pass_context
def predict(ctx, arguments, fmt, output, heatmaps, heatmap_scale, no_detect, detector_name, min_face, margin,
            no_face, every_n_frames, on_bad, align, runtime):
    """Predict the expression of each face in INPUTS with the DAM-CNN MODEL.

    MODEL is a preset's name (damcnn-tf presets), a training run directory or a model.keras
    file with classes.json beside it; without it, the default preset is used
    ({default_preset}).
    INPUTS are image files, folders (searched recursively for images) and video files.
    Faces are found by --detector and cropped as in training (§4.1.1); one row per face,
    numbered left to right, with its box (x, y, w, h), label and the probability of every class.

    Exit status: 0 when at least one face was predicted (unreadable inputs and inputs without
    a face are listed on stderr); 1 on an error, including when no input could be read; 3 when
    the inputs were read but no face was found in any of them. Rows (and --output) are written
    only with status 0.
    """
    _check_options(ctx, no_detect, output, heatmaps)
    if min_face is not None and not (min_face >= 1 and min_face < float("inf")):
        raise click.ClickException(f"--min-face must be a number of pixels >= 1, got {min_face:g}")
    model, inputs = split_model_argument(arguments)
    try:
        files = expand_inputs(inputs)
        face_detector = None if no_detect else detector(detector_name, min_face=min_face)
        predictor = Predictor(model, detect=not no_detect, margin=margin, no_face=no_face, detector=face_detector,
                              runtime=runtime, log=lambda line: click.echo(line, err=True),
                              align="auto" if align is None else align)
    except (PredictError, DetectorError) as err:
        raise click.ClickException(str(err)) from None
    report = PredictionReport()
    name_heatmap = HeatmapNamer(heatmaps) if heatmaps is not None else None
    stderr = click.get_text_stream("stderr")
    try:
        with _output_stream(output) as stream:
            writer = RowWriter(stream, fmt, predictor.class_names)
            bar = (click.progressbar(length=len(files), label="Predicting", file=stderr) if len(files) > 1
                   else contextlib.nullcontext(None))
            with bar:
                # The faces of several images and frames go to the model together (batch_size).
                sources = predictor.iter_inputs(files, report, on_bad, every_n_frames, keep_images=heatmaps is not None,
                                                on_file_done=(lambda item: bar.update(1)) if len(files) > 1 else None)
                for source in sources:
                    writer.write(source)
                    if name_heatmap is not None and source.faces:
                        drawn = draw_predictions(source.image, source.faces, scale=heatmap_scale)
                        write_png(name_heatmap(source), drawn)
            if report.num_faces == 0:
                raise NothingPredicted(report, len(files))  # inside, so that --output is not written
    except NothingPredicted:
        _report(report, files, no_face, output)
        raise
    except (PredictError, ImageReadError, AttentionVizError) as err:
        raise click.ClickException(str(err)) from None
    except OSError as err:
        raise click.ClickException(f"cannot write {err.filename or output}: {err.strerror or err}") from None
    _report(report, files, no_face, output)


predict.help = predict.help.replace("{default_preset}", DEFAULT_PRESET)

if __name__ == "__main__":
    predict()
