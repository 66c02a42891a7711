"""What the commands share: options built from ``TrainConfig``, data options, error handling."""

from __future__ import annotations

import dataclasses
import functools
import sys
import typing
from pathlib import Path

import click

from dam_cnn_tf.errors import one_line
from dam_cnn_tf.recipes.options import TrainConfig

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
    from dam_cnn_tf.recipes.options import ConfigError
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


# What each setting does, for --help; every one has a line.
SETTING_HELP = {
    "classes": "6, 7 or 8 classes (the paper's six prototypical, plus neutral, plus contempt)",
    "input_size": "side in pixels of the faces the model takes (face-resnet: 150, VGG-Face: 224)",
    "val_fraction": "share of the training faces carved out (by subject where known) to choose checkpoints on",
    "seed": "seed of the split, the pairs, the shuffling and the initial weights",
    "augment": "vary training faces: mirror and brightness on images; mirror (and --trunk-shift) on cached maps",
    "backbone": "the network under SERD: face-resnet (dlib's face-pretrained ResNet, downloadable), vgg-face (the "
                "paper's; weights not freely downloadable), compact (trains from scratch), or a registered one",
    "backbone_weights": "pretrained weights of the backbone (face-resnet: face-api's manifest, found in the download "
                        "cache by default; vgg-face: a converted release); 'none': random weights",
    "fine_tune_from": "stage 1 trains the backbone from this layer on and keeps the earlier ones frozen "
                      "(and cached); unset: the whole backbone, as the paper",
    "use_serd": "SERD's attention on the backbone's map (Eq. 1-3); off: VGG-Face alone (Table 2)",
    "gamma1": "γ1 of the SERD regulariser (Eq. 3)",
    "gamma2": "γ2 of the SERD regulariser (Eq. 3)",
    "fc_units": "units of fc6 and fc7 (and of MPVS-Net's FC layer)",
    "fc6_activation": "relu (VGG-Face's) or sigmoid (the MPAE encoder's, Eq. 6, so that --init-from-vgg-serd "
                      "starts MPVS-Net as exactly stage 1's classifier)",
    "dropout": "dropout rate on the FC layers and the MPAE (§3.3.2)",
    "alpha_s": "peak learning rate of stage 1's fine-tuning (α_S)",
    "stage1_steps": "stage 1's fine-tuning budget in optimizer steps",
    "stage1_min_steps": "steps before early stopping may end stage 1's fine-tuning",
    "stage1_epochs": "count stage 1's fine-tuning in whole passes instead of steps (the paper's recipes)",
    "stage1_passes": "on a large data set, fine-tune for at least this many passes instead of --stage1-steps "
                     "(the floor grows in proportion); 0: the steps alone",
    "stage1_batch_size": "faces per step in stage 1",
    "probe_steps": "with pretrained weights, steps of the probe (SERD and fc6-fc8 on the frozen backbone) "
                   "before fine-tuning; 0: no probe",
    "probe_passes": "on a large data set, probe for at least this many passes instead of --probe-steps",
    "alpha_probe": "peak learning rate of the probe",
    "probe_competes": "the probe's state competes with fine-tuning's rounds on the validation faces and is kept "
                      "if none beats it",
    "trunk_cache": "run the frozen layers below --fine-tune-from once per face and cache their maps",
    "trunk_shift": "with --augment over the trunk cache, move each training map by up to this many cells",
    "num_paths": "N, the MPAE's decoding paths (Eq. 8-9)",
    "encoder_units": "units of the MPAE's code (Eq. 6)",
    "alpha_m": "peak learning rate of the MPAE, encoder and decoders (α_M, Eq. 11)",
    "alpha_fc": "peak learning rate of MPVS-Net's FC layers (α_fc, Eq. 10)",
    "lam": "λ of Eq. 11, the weight of the cross-entropy in the MPAE's objective",
    "per_path_updates": "Algorithm 1's per-path inner loop instead of one fused update per batch",
    "decoder": "dense (the paper's) or conv decoders (far fewer parameters)",
    "pair_attribute": "decoder j reconstructs a same-class sample whose attribute has value j (DAM-CNN-g)",
    "resample_pairs": "draw fresh same-class targets every pass of stage 2 (seeded) instead of the paper's "
                      "one stored set of pairs",
    "init_from_vgg_serd": "start MPVS-Net from VGG-SERD's classifier: the MPAE encoder from fc6, its FC layer "
                          "from fc7, its output layer from fc8 (needs equal widths)",
    "stage2_monitor": "validation metric that picks stage 2's best round and stops it early: val_cross_entropy "
                      "(Eq. 10's loss), val_accuracy, or val_loss (Eq. 11's total, the paper's criterion)",
    "end_to_end": "stage 2 trains backbone, SERD, MPAE and head together (beyond the paper)",
    "stage2_steps": "stage 2's budget in optimizer steps",
    "stage2_min_steps": "steps before early stopping may end stage 2",
    "stage2_epochs": "count stage 2 in whole passes instead of steps",
    "stage2_passes": "on a large data set, train stage 2 for at least this many passes instead of --stage2-steps",
    "stage2_batch_size": "pairs per step in stage 2",
    "cache_dtype": "float32 or float16 storage of the trunk and feature caches",
    "optimizer": "adam or sgd (momentum 0.9)",
    "lr_schedule": "cosine (warm-up, then a cosine to zero) or constant (the paper's)",
    "warmup_fraction": "share of a budget over which the learning rate warms up",
    "validate_every_steps": "a validation round spans at least this many steps (one pass where that is more)",
    "patience": "validation rounds without improvement before early stopping",
    "strategy": "default, mirrored (all local GPUs) or multiworker (TF_CONFIG)",
    "mixed_precision": "float16 or bfloat16 mixed precision (GPUs)",
    "jit_compile": "compile the training steps with XLA",
}
assert set(SETTING_HELP) == {f.name for f in dataclasses.fields(TrainConfig)}, "every setting has a help line"

# The settings ``train --help`` shows (the rest: --help-all, a recipe or --config), by group.
SHOWN_SETTINGS = {
    "data": ("classes", "val_fraction", "seed"),
    "model": ("backbone", "backbone_weights", "num_paths"),
    "budget": ("stage1_steps", "stage2_steps", "alpha_s", "alpha_m", "alpha_fc", "augment"),
    "hardware": ("strategy",),
}
# Budgets that grow to whole passes on a large data set say so beside their default.
_PASSES = {"stage1_steps": "stage1_passes", "stage2_steps": "stage2_passes", "probe_steps": "probe_passes"}


def _peek(args, *names):
    """The value after the first of ``names`` in raw arguments (``--x v`` or ``--x=v``), else None."""
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


class RecipeCommand(click.Command):
    """A command whose ``--help`` shows the options that have a group (``set_group``), in their
    groups, each setting with the default the chosen backbone (and recipe) really uses;
    ``--help-all`` shows every option."""

    groups = ("data", "model", "budget", "output", "hardware", "other")

    def parse_args(self, ctx, args):
        ctx.meta["damcnn.backbone"] = _peek(args, "--backbone")
        ctx.meta["damcnn.recipe"] = _peek(args, "--recipe")
        ctx.meta["damcnn.all"] = "--help-all" in args
        return super().parse_args(ctx, args)

    def _defaults(self, ctx) -> dict:
        from dam_cnn_tf.recipes import DEFAULT_BACKBONE, resolve_settings

        backbone, recipe = ctx.meta.get("damcnn.backbone"), ctx.meta.get("damcnn.recipe")
        try:
            settings, _ = resolve_settings(recipe=recipe, options={"backbone": backbone},
                                           default_backbone=DEFAULT_BACKBONE)
        except Exception:  # an unknown name in the arguments: the paper's values, the error comes later
            settings = TrainConfig()
        return settings.to_dict()

    def format_options(self, ctx, formatter):
        show_all = ctx.meta.get("damcnn.all", False)
        defaults = self._defaults(ctx)
        sections = {group: [] for group in self.groups}
        for param in self.get_params(ctx):
            if param is self.get_help_option(ctx):
                param.group = "other"
            if (getattr(param, "hidden", False) or getattr(param, "group", None) is None) and not show_all:
                continue
            record = param.get_help_record(ctx)
            if record is None:
                continue
            name, text = record
            if param.name in defaults:
                value = defaults[param.name]
                shown = "unset" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
                if param.name in _PASSES and defaults[_PASSES[param.name]]:
                    shown += f", or {defaults[_PASSES[param.name]]} passes where those are more"
                text = f"{text} [default: {shown}]"
            sections[getattr(param, "group", None) or "other"].append((name, text))
        for group in self.groups:
            if sections[group]:
                with formatter.section(f"{group.capitalize()} options"):
                    formatter.write_dl(sections[group])
        if not show_all:
            formatter.write_paragraph()
            formatter.write_text("More options (every setting of a recipe): --help-all. Recipes: --list-recipes.")


def set_group(group: str):
    """Put the option of the decorator just below this one in ``group`` of ``RecipeCommand``'s help."""
    def decorate(command):
        command.__click_params__[-1].group = group
        return command
    return decorate


def _show_all_help(ctx, _param, value):
    if value and not ctx.resilient_parsing:
        click.echo(ctx.get_help())
        ctx.exit()


def _list_recipes(ctx, _param, value):
    if value and not ctx.resilient_parsing:
        from dam_cnn_tf.recipes import read_recipe, recipe_names, recipe_path

        for name in recipe_names():
            first = recipe_path(name).read_text(encoding="utf-8").splitlines()[0].lstrip("# ")
            click.echo(f"{name}: {first} ({', '.join(f'{k} = {v}' for k, v in read_recipe(name).items())[:120]}…)")
        ctx.exit()


def config_options(command, shown=SHOWN_SETTINGS):
    """One option per ``TrainConfig`` setting, all defaulting to None (= keep the recipe's value);
    the ``shown`` ones in their groups, the others only in ``--help-all``; plus ``--recipe``,
    ``--help-all`` and ``--list-recipes``."""
    group_of = {name: group for group, names in shown.items() for name in names}
    for field in reversed(dataclasses.fields(TrainConfig)):
        flag = field.name.replace("_", "-")
        kind = _click_type(field)
        hidden = field.name not in group_of
        if kind is bool:
            option = click.option(f"--{flag}/--no-{flag}", field.name, default=None, hidden=hidden,
                                  help=SETTING_HELP[field.name])
        else:
            option = click.option(f"--{flag}", field.name, type=kind, default=None, hidden=hidden,
                                  help=SETTING_HELP[field.name])
        command = option(command)
        if not hidden:
            command.__click_params__[-1].group = group_of[field.name]
    extra = [
        click.option("--recipe", default=None, help="a recipe shipped with the package (--list-recipes)"),
        click.option("--list-recipes", is_flag=True, expose_value=False, is_eager=True, callback=_list_recipes,
                     help="list the recipes and exit"),
        click.option("--help-all", is_flag=True, expose_value=False, is_eager=True, callback=_show_all_help,
                     help="every option, with the defaults of --backbone or --recipe if given before it"),
    ]
    for option, group in zip(extra, ("model", None, "other")):
        command = option(command)
        if group:
            command.__click_params__[-1].group = group
    return command


def config_overrides(kwargs: dict) -> dict:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return {k: kwargs.pop(k) for k in list(kwargs) if k in names}


def resolve_run_settings(kwargs: dict, config_file=None, base=None):
    """``(settings, sources)`` of a command's options: the recipe layers (``dam_cnn_tf.recipes``)
    with the command line's default backbone, then the backbone's pretrained weights found."""
    from dam_cnn_tf.recipes import DEFAULT_BACKBONE, resolve_settings

    options = config_overrides(kwargs)
    recipe = kwargs.pop("recipe", None)
    random_start = str(options.get("backbone_weights") or "").lower() == "none"
    if random_start:
        options["backbone_weights"] = None
    settings, sources = resolve_settings(recipe=recipe, config_file=config_file, options=options, base=base,
                                         default_backbone=None if base else DEFAULT_BACKBONE)
    if not random_start:
        settings = find_backbone_weights(settings)
    check_backbone_weights(settings)
    return settings, sources


def find_backbone_weights(settings: TrainConfig) -> TrainConfig:
    """The settings with the backbone's downloaded weights where none are given and the backbone
    has a download; refused in one line saying how to get them when they are not there."""
    from dam_cnn_tf.backbones import get
    from dam_cnn_tf.weights.download import default_cache_dir, downloaded

    backbone = get(settings.backbone)
    if settings.backbone_weights or not backbone.download:
        return settings
    found = downloaded(backbone.download)
    if found is None:
        raise click.UsageError(
            f"--backbone {settings.backbone} starts from pretrained weights: run `damcnn-tf weights download "
            f"{backbone.download}` (kept in {default_cache_dir()}), or give --backbone-weights FILE "
            "(--backbone-weights none: random weights)")
    return settings.replace(backbone_weights=str(found))


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


# The data options ``RecipeCommand`` shows in its short help; the others appear with --help-all.
SHOWN_DATA_OPTIONS = ("layout", "detect")


def data_options(command):
    for option in reversed(DATA_OPTIONS):
        command = option(command)
        param = command.__click_params__[-1]
        if param.name in SHOWN_DATA_OPTIONS:
            param.group = "data"
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
        from dam_cnn_tf.backbones import check_weights_file

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
