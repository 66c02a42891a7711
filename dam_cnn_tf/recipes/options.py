"""A run's settings: every value a recipe can set, the paper's unless a layer above says otherwise.

``TrainConfig`` holds the settings and checks each one; ``dam_cnn_tf.recipes`` resolves them
from their layers (the paper, the backbone's recipe, a named recipe, ``--config``, options)
and ``dam_cnn_tf.recipes.plan`` turns them, with the data set's size, into what a run does.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path
from typing import Optional

from dam_cnn_tf import hparams
from dam_cnn_tf.recipes.budget import SCHEDULES


class ConfigError(ValueError):
    pass


# Stage 2's model-selection metrics and whether lower or higher is better.
STAGE2_MONITORS = {"val_cross_entropy": "min", "val_accuracy": "max", "val_loss": "min"}


def backbone_names() -> tuple:
    from dam_cnn_tf.backbones import names

    return names()


@dataclasses.dataclass
class TrainConfig:
    # Data
    classes: int = 7
    input_size: int = hparams.INPUT_SIZE
    val_fraction: float = 0.1
    seed: int = 0
    augment: bool = False
    # Backbone and stage 1 (VGG-SERD, Eq. 4)
    backbone: str = "vgg-face"
    backbone_weights: Optional[str] = None
    fine_tune_from: Optional[str] = None
    use_serd: bool = True
    gamma1: float = hparams.GAMMA1
    gamma2: float = hparams.GAMMA2
    fc_units: int = hparams.FC_UNITS
    # fc6's activation: VGG-Face's ReLU, or the MPAE encoder's sigmoid (Eq. 6), with which
    # --init-from-vgg-serd starts MPVS-Net as exactly stage 1's classifier, not a ReLU network
    # whose units have been swapped for sigmoids.
    fc6_activation: str = "relu"
    dropout: float = hparams.DROPOUT
    alpha_s: float = hparams.ALPHA_S
    # Stage 1's budget in optimizer steps, and the floor before early stopping may end it;
    # stage1_epochs, when given, counts whole passes instead (recipes/budget.py).
    stage1_steps: int = 600
    stage1_min_steps: int = 200
    stage1_epochs: Optional[int] = None
    # On a large data set a stage gets at least this many passes over its training faces
    # instead, its floor grown in proportion (recipes/budget.py): 600 steps at batch 32 are a
    # fifth of a pass over 100,000 faces. 0: the steps alone.
    stage1_passes: int = 10
    stage1_batch_size: int = 16
    # Linear probe, then fine-tune (LP-FT): with pretrained backbone weights, SERD and fc6-fc8
    # first learn on the frozen backbone for probe_steps at alpha_probe; 0 skips the probe.
    # Over the trunk cache the probe reads cached backbone output, so its steps are cheap, and it
    # is trained close to convergence: on CK+48, 300 steps at 1e-3 left the head at 80 %
    # validation accuracy where 1000 at 3e-4 reach 93 %, as a logistic regression does
    # (docs/results.md). The backbone's output is non-negative and thousands wide, so Adam moves
    # all of an fc6 unit's weights the same way; too high a rate kills units (at 1e-3 on FER2013
    # without SERD, every one of them).
    probe_steps: int = 1000
    probe_passes: int = 2
    alpha_probe: float = 3e-4
    # The probe's state (SERD and fc6-fc8 on the frozen backbone) competes with fine-tuning's
    # rounds on the validation faces, by the same monitor through the same model: a small data
    # set keeps what the frozen features give unless fine-tuning beats it there.
    probe_competes: bool = True
    # The frozen trunk (the backbone before --fine-tune-from) runs once per face, cached.
    trunk_cache: bool = True
    # With --augment over the trunk cache: each training map also moves by up to this many
    # cells each way (a random translation in cached form; a cell of face-resnet's 17x17 map
    # at conv128_down is about 9 pixels of its 150x150 input). 0: mirror images only.
    trunk_shift: int = 0
    # Stage 2 (MPVS-Net, Eq. 10-11)
    num_paths: int = hparams.NUM_PATHS
    encoder_units: int = hparams.ENCODER_UNITS
    alpha_m: float = hparams.ALPHA_M
    alpha_fc: float = hparams.ALPHA_FC
    lam: float = hparams.LAMBDA
    per_path_updates: bool = False
    decoder: str = "dense"
    pair_attribute: Optional[str] = None
    resample_pairs: bool = False
    # MPVS-Net starts from VGG-SERD's classifier, layer for layer: the MPAE encoder from fc6
    # (rescaled as above), its FC layer from fc7 and its output layer from fc8, so stage 2 begins
    # from what stage 1 learned instead of from random weights (the paper is silent on it).
    init_from_vgg_serd: bool = False
    # Which validation metric picks stage 2's best epoch and stops it early. The paper trains
    # "until MPVS-Net's loss function (Eq. 11) converges": val_loss, ΣJ_j + λ·L_ce, in which the
    # reconstruction error dwarfs λ·L_ce, so it picks the epoch that reconstructs best. The
    # default is the classifier's own objective, the validation cross-entropy of Eq. 10: it is
    # what inference is judged by, and unlike accuracy on a small validation part it is
    # continuous, so it rarely ties and keeps improving after accuracy saturates.
    stage2_monitor: str = "val_cross_entropy"
    end_to_end: bool = False
    stage2_steps: int = 600
    stage2_min_steps: int = 200
    stage2_epochs: Optional[int] = None
    stage2_passes: int = 5
    stage2_batch_size: int = 32
    cache_dtype: str = "float32"
    # Both stages
    optimizer: str = "adam"
    # Learning rates warm up over the first warmup_fraction of a budget, then follow a cosine
    # to zero ("cosine"), or stay at their value throughout as in the paper ("constant").
    lr_schedule: str = "cosine"
    warmup_fraction: float = 0.05
    # A validation round (Keras' epoch: checkpoint, early stopping, backup) spans one pass over
    # the training data, or several passes where one is shorter than this many steps.
    validate_every_steps: int = 50
    patience: int = 10
    strategy: str = "default"
    mixed_precision: Optional[str] = None
    jit_compile: bool = False

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        def need(ok, option, message):
            if not ok:
                raise ConfigError(f"--{option.replace('_', '-')}: {message}")

        known = backbone_names()
        need(self.classes in (6, 7, 8), "classes", f"must be 6, 7 or 8, got {self.classes}")
        need(self.input_size >= 32, "input_size", f"must be at least 32, got {self.input_size}")
        need(self.backbone in known, "backbone", f"must be one of {', '.join(known)}, got {self.backbone!r}")
        need(0.0 < self.val_fraction < 1.0, "val_fraction", f"must be between 0 and 1, got {self.val_fraction}")
        need(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        need(self.num_paths >= 1, "num_paths", f"must be at least 1, got {self.num_paths}")
        need(self.fc6_activation in hparams.FC6_ACTIVATIONS, "fc6_activation",
             f"must be one of {', '.join(hparams.FC6_ACTIVATIONS)}, got {self.fc6_activation!r}")
        need(self.decoder in ("dense", "conv"), "decoder", f"must be dense or conv, got {self.decoder!r}")
        need(self.optimizer in ("adam", "sgd"), "optimizer", f"must be adam or sgd, got {self.optimizer!r}")
        need(self.strategy in ("default", "mirrored", "multiworker"), "strategy", f"unknown strategy {self.strategy!r}")
        need(self.mixed_precision in (None, "float16", "bfloat16"), "mixed_precision",
             f"must be float16 or bfloat16, got {self.mixed_precision!r}")
        need(self.stage2_monitor in STAGE2_MONITORS, "stage2_monitor",
             f"must be one of {', '.join(STAGE2_MONITORS)}, got {self.stage2_monitor!r}")
        need(self.cache_dtype in ("float32", "float16"), "cache_dtype", f"must be float32 or float16, got {self.cache_dtype!r}")
        for name in ("stage1_epochs", "stage2_epochs"):
            need(getattr(self, name) is None or getattr(self, name) >= 0, name, "must not be negative")
        for name in ("stage1_steps", "stage1_min_steps", "stage2_steps", "stage2_min_steps", "probe_steps", "trunk_shift",
                     "stage1_passes", "stage2_passes", "probe_passes"):
            need(getattr(self, name) >= 0, name, "must not be negative")
        for name in ("stage1_batch_size", "stage2_batch_size", "fc_units", "encoder_units", "patience",
                     "validate_every_steps"):
            need(getattr(self, name) >= 1, name, "must be at least 1")
        need(self.lr_schedule in SCHEDULES, "lr_schedule", f"must be one of {', '.join(SCHEDULES)}, got {self.lr_schedule!r}")
        need(0.0 <= self.warmup_fraction < 1.0, "warmup_fraction", f"must be in [0, 1), got {self.warmup_fraction}")
        for name in ("alpha_s", "alpha_m", "alpha_fc", "alpha_probe"):
            need(getattr(self, name) > 0, name, "must be positive")
        need(not (self.init_from_vgg_serd and self.encoder_units != self.fc_units), "init_from_vgg_serd",
             f"needs --encoder-units equal to --fc-units ({self.encoder_units} != {self.fc_units}); "
             "set them equal or pass --no-init-from-vgg-serd")
        need(not (self.resample_pairs and self.end_to_end), "resample_pairs",
             "draws new pairs of cached features each epoch; --end-to-end trains on image pairs drawn once")
        # A shift moves cached trunk maps: without the cache (which needs --fine-tune-from) or
        # without augmentation nothing would move, and the recipe would not do what it says.
        need(not self.trunk_shift or bool(self.augment and self.trunk_cache and self.fine_tune_from
                                          and not self.end_to_end), "trunk_shift",
             "moves cached trunk maps, so it needs --augment, --trunk-cache and --fine-tune-from "
             "(and no --end-to-end); drop it or set those")
        if self.backbone_weights:
            from dam_cnn_tf.backbones import get

            takers = [name for name in known if get(name).takes_weights]
            need(get(self.backbone).takes_weights, "backbone_weights",
                 f"pretrained weights need --backbone {' or '.join(takers)}, not {self.backbone!r}")

    @property
    def backbone_family(self) -> str:
        from dam_cnn_tf.backbones import family

        return family(self.backbone)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}

# Fields added after runs had begun, and the value that reproduces what a run did before the
# field existed: a run resumed or rebuilt from a config.json without them keeps its own
# behaviour instead of taking today's default (stage1_passes = 10 would change its schedule).
ADDED_SINCE = {
    "fc6_activation": "relu",
    "init_from_vgg_serd": False,
    "trunk_shift": 0,
    "stage1_passes": 0,
    "stage2_passes": 0,
    "probe_passes": 0,
    "probe_competes": False,
}
# Fields taken out with the experiments they served, and the value a run may hold for them and
# still be the run it was without them.
REMOVED = {"ema_momentum": 0.0, "init_encoder_from_fc6": False}


def config_from_saved(saved: dict, source) -> TrainConfig:
    """The settings a run wrote (``config.json``), as it ran them: fields added since it began
    take the value that reproduces its behaviour (``ADDED_SINCE``); a field this release does
    not know, or one added since without such a value, is refused in one line naming ``source``."""
    values = dict(saved)
    for name, neutral in REMOVED.items():
        if name in values and values.pop(name) != neutral:
            raise ConfigError(f"{source}: the run uses --{name.replace('_', '-')}, which this release removed; "
                              "resume it with the release that started it")
    unknown = sorted(set(values) - FIELDS)
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)} (written by a newer release?)")
    missing = sorted(FIELDS - set(values))
    older = [name for name in missing if name not in ADDED_SINCE]
    if older:
        raise ConfigError(f"{source}: written before {', '.join(older)} existed; resume it with the release "
                          "that started it, or start the run over")
    values.update({name: ADDED_SINCE[name] for name in missing})
    try:
        return TrainConfig(**values)
    except TypeError as error:
        raise ConfigError(f"{source}: {error}") from None


def parse_options_file(path) -> dict:
    """Settings from a JSON or TOML file; unknown keys are refused, naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"--config {path}: cannot read ({error.strerror})") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"--config {path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'} ({error})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a table of options")
    data = {key.replace("-", "_"): value for key, value in data.items()}
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise ConfigError(f"--config {path}: unknown option(s) {', '.join(unknown)}")
    return data


# The name earlier releases used.
read_config_file = parse_options_file
