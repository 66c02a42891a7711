"""What the commands share: options built from ``TrainConfig``, data options, error handling."""

from __future__ import annotations

import dataclasses
import functools
import sys
import typing
from pathlib import Path

import click

from dam_cnn_tf.errors import one_line
from dam_cnn_tf.training.config import TrainConfig

# Exceptions a user's input can cause; they become a one-line message, not a traceback.
def user_error_types() -> tuple:
    from dam_cnn_tf.data.feature_cache import FeatureCacheError
    from dam_cnn_tf.data.datasets import UnknownLayoutError
    from dam_cnn_tf.data.images import ImageReadError
    from dam_cnn_tf.data.labels import UnknownLabelError
    from dam_cnn_tf.data.loading import DatasetFormatError
    from dam_cnn_tf.data.pairs import PairSamplingError
    from dam_cnn_tf.data.pipeline import PipelineError
    from dam_cnn_tf.export import ExportError
    from dam_cnn_tf.predict import PredictError
    from dam_cnn_tf.presets import PresetError
    from dam_cnn_tf.training.callbacks import TrainingDiverged
    from dam_cnn_tf.training.config import ConfigError
    from dam_cnn_tf.training.prepare import DataError
    from dam_cnn_tf.training.run_dir import RunDirError
    from dam_cnn_tf.weights.errors import WeightsError

    return (
        ConfigError, DataError, DatasetFormatError, UnknownLayoutError, ImageReadError, UnknownLabelError, RunDirError,
        TrainingDiverged, WeightsError, ExportError, FeatureCacheError, PairSamplingError, PipelineError,
        PredictError, PresetError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
    )


def progress_level(quiet: bool) -> int:
    """How training reports progress: 0 with ``--quiet``; 1 (live progress bars) on a terminal;
    2 (one line per epoch, no bar frames) when output goes to a file, a pipe, CI or ``nohup``."""
    if quiet:
        return 0
    return 1 if sys.stdout.isatty() else 2


def error_line(error: BaseException) -> str:
    """The error's message on one line, or its type's name when it has none."""
    return one_line(str(error).strip() or type(error).__name__)


def handle_user_errors(command):
    """Turn the errors a user can cause into ``click.ClickException`` (exit 1, one line)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except click.ClickException:
            raise
        except user_error_types() as error:
            raise click.ClickException(error_line(error)) from None
        except KeyboardInterrupt:
            raise click.ClickException("interrupted; resume with the same command or `train --resume RUN_DIR`") from None

    return wrapper


def _click_type(field: dataclasses.Field):
    hint = typing.get_type_hints(TrainConfig)[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    return {int: int, float: float, bool: bool}.get(base, str)


_HELP = {
    "ema_momentum": "stage 1 validates, checkpoints and ends with a moving average of its weights (Polyak "
                    "averaging) at this momentum; 0: the last step's weights",
    "trunk_shift": "with --augment over the trunk cache, move each training map by up to this many cells "
                   "each way (a cached random translation)",
    "classes": "6, 7 or 8 classes (the paper's six prototypical, plus neutral, plus contempt)",
    "backbone": "vgg-face (the paper's), face-resnet (dlib's face-pretrained ResNet), vgg-face-small, "
                "compact (trains from scratch on a CPU)",
    "backbone_weights": "vgg-face: converted VGG-Face weights (damcnn-tf weights convert); "
                        "face-resnet: face-api's face_recognition_model-weights_manifest.json or its converted file",
    "fine_tune_from": "stage 1 trains the backbone from this layer on and keeps the earlier ones frozen "
                      "(e.g. conv256_down_conv1_conv for face-resnet); unset: the whole backbone, as the paper",
    "num_paths": "N, the MPAE's decoding paths",
    "stage1_passes": "on a large data set, fine-tune for at least this many passes over the training faces "
                     "instead of --stage1-steps (the floor grows in proportion); 0: the steps alone",
    "stage2_passes": "on a large data set, train stage 2 for at least this many passes instead of "
                     "--stage2-steps (the floor grows in proportion); 0: the steps alone",
    "probe_passes": "on a large data set, probe for at least this many passes instead of --probe-steps; "
                    "0: the steps alone",
    "fc6_activation": "relu (VGG-Face's) or sigmoid (the MPAE encoder's, Eq. 6, so that --init-from-vgg-serd "
                      "starts MPVS-Net as exactly stage 1's classifier)",
    "pair_attribute": "decoder j reconstructs a same-class sample whose attribute has value j (DAM-CNN-g)",
    "resample_pairs": "draw fresh same-class targets every epoch of stage 2 (seeded) instead of the paper's "
                      "one stored set of pairs",
    "per_path_updates": "Algorithm 1's per-path inner loop instead of one fused update per batch",
    "lam": "λ of Eq. 11",
    "alpha_s": "learning rate of stage 1 (VGG-SERD)",
    "alpha_m": "learning rate of the MPAE",
    "alpha_fc": "learning rate of the MPVS-Net FC layers",
    "mixed_precision": "float16 or bfloat16 mixed precision (GPUs)",
    "strategy": "default, mirrored (all local GPUs) or multiworker (TF_CONFIG)",
    "end_to_end": "stage 2 trains backbone, SERD, MPAE and head together (beyond the paper)",
    "stage2_monitor": "validation metric that picks stage 2's best epoch and stops it early: val_cross_entropy "
                      "(Eq. 10's loss, the classifier's objective), val_accuracy, or val_loss (Eq. 11's "
                      "ΣJ_j + λ·L_ce, the paper's convergence criterion, dominated by reconstruction)",
    "init_from_vgg_serd": "start MPVS-Net from VGG-SERD's classifier: the MPAE encoder from fc6 (as "
                          "--init-encoder-from-fc6), its FC layer from fc7, its output layer from fc8 (needs equal widths)",
    "init_encoder_from_fc6": "start the MPAE encoder from stage 1's fc6, rescaled so its pre-activation on the unscaled training features is fc6's (sigmoid instead of ReLU after it; needs equal widths)",
}


def config_options(command):
    """One option per ``TrainConfig`` field, all defaulting to None (= keep the config's value)."""
    for field in reversed(dataclasses.fields(TrainConfig)):
        flag = field.name.replace("_", "-")
        kind = _click_type(field)
        default = field.default
        help_text = _HELP.get(field.name, "")
        help_text = f"{help_text} [default: {default}]".strip()
        if kind is bool:
            option = click.option(f"--{flag}/--no-{flag}", field.name, default=None, help=help_text)
        else:
            option = click.option(f"--{flag}", field.name, type=kind, default=None, help=help_text)
        command = option(command)
    return command


def config_overrides(kwargs: dict) -> dict:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return {k: kwargs.pop(k) for k in list(kwargs) if k in names}


DATA_OPTIONS = (
    click.option("--layout", default="auto", show_default=True,
                 help="dataset layout: auto, folders, manifest, fer2013, ferplus, ckplus, jaffe, tfeid, sfew, baum2i"),
    click.option("--detect/--no-detect", default=True, show_default=True,
                 help="find faces with the Viola-Jones detector (§4.1.1); --no-detect for face crops such as CK+48"),
    click.option("--margin", type=float, default=0.0, show_default=True, help="extra border around a detected face"),
    click.option("--no-face", type=click.Choice(["skip", "whole"]), default="skip", show_default=True,
                 help="an image without a detected face is skipped (and counted) or kept whole"),
    click.option("--on-bad", type=click.Choice(["skip", "error"]), default="skip", show_default=True,
                 help="an unreadable image is skipped (and counted) or stops the run"),
    click.option("--unknown-labels", type=click.Choice(["error", "drop"]), default="error", show_default=True,
                 help="a label outside the canonical set stops the run or is dropped"),
    click.option("--face-cache", type=click.Path(file_okay=False, path_type=Path), default=None,
                 help="folder of prepared faces [default: $DAMCNN_CACHE or ~/.cache/dam_cnn_tf]"),
)


def data_options(command):
    for option in reversed(DATA_OPTIONS):
        command = option(command)
    return command


DATA_OPTION_NAMES = ("layout", "detect", "margin", "no_face", "on_bad", "unknown_labels", "face_cache")


def data_spec(kwargs: dict, path) -> dict:
    spec = {name: kwargs.pop(name) for name in DATA_OPTION_NAMES}
    spec["face_cache"] = str(spec["face_cache"]) if spec["face_cache"] else None
    spec["path"] = str(path) if path is not None else None
    return spec


def check_backbone_weights(config: TrainConfig) -> None:
    """Refuse an unreadable ``--backbone-weights`` file before any data is prepared."""
    if config.backbone_weights:
        from dam_cnn_tf.models.backbones import check_weights_file

        check_weights_file(config.backbone, config.backbone_weights)


def load_prepared(spec: dict, config: TrainConfig, progress: bool = True):
    """Load the dataset a ``data_spec`` names, select classes and prepare its faces."""
    from dam_cnn_tf.data.datasets import load_dataset
    from dam_cnn_tf.training.prepare import prepare_faces, select_classes

    options = {"on_bad": spec["on_bad"]}
    if spec["unknown_labels"] != "error":
        options["unknown_labels"] = spec["unknown_labels"]
    dataset = load_dataset(spec["path"], spec["layout"], **options)
    if len(dataset) == 0:
        raise click.ClickException(f"--data {spec['path']}: no images found")
    dataset = select_classes(dataset, config.classes)
    return prepare_faces(dataset, config.input_size, detect=spec["detect"], margin=spec["margin"],
                         no_face=spec["no_face"], on_bad=spec["on_bad"], cache_dir=spec["face_cache"],
                         progress=progress)


def resolve_model_path(model) -> Path:
    """A run directory (its ``model.keras``), a ``.keras`` file, or a preset's name."""
    from dam_cnn_tf.predict import PredictError, resolve_model_path as resolve

    try:
        return resolve(model)
    except PredictError as error:
        raise click.ClickException(str(error)) from None


def load_inference_model(model):
    """The DAM-CNN inference model and its class names; nothing in the file is executed."""
    from dam_cnn_tf.models.model_file import ModelFileError, load_model_file
    from dam_cnn_tf.training.stages import load_class_names

    path = resolve_model_path(model)
    try:
        loaded = load_model_file(path)
    except ModelFileError as error:
        raise click.ClickException(error_line(error)) from None
    try:
        names = load_class_names(path.parent)
    except FileNotFoundError as error:
        raise click.ClickException(error_line(error)) from None
    return loaded, names
