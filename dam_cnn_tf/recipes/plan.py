"""The plan of a run: its settings and the data set's size, resolved once into phases.

Every rule that decides what a run does lives here, and only here:

* stage 1 (Algorithm 1, lines 1-3; Eq. 4) starts with a **probe** when the backbone has
  pretrained weights and ``probe_steps`` > 0: SERD and fc6-fc8 learn on the frozen backbone
  (LP-FT), with early stopping floored at half the probe's budget; then **fine-tuning** trains
  the backbone from ``fine_tune_from`` on (the whole backbone without it) with SERD and the head;
  where a probe precedes it (and ``probe_competes``), fine-tuning's start, the probe's state,
  **competes** with its rounds on validation, so a data set on which fine-tuning only loses
  keeps what the frozen features give;
* the frozen part below ``fine_tune_from`` runs once per face, **cached** (``trunk_cache``),
  unless stage 2 trains end to end; over the cache, augmentation mirrors cached maps and moves
  them by ``trunk_shift`` cells; over images it mirrors them and varies their brightness;
* **stage 2** (lines 5-11; Eq. 10-11) trains MPVS-Net on the salient features of the frozen
  stage 1, or the whole network on image pairs with ``end_to_end``; started as VGG-SERD's
  classifier (``init_from_vgg_serd``) its start competes with its rounds on validation;
* each phase's **budget** (``recipes.budget``): steps, or whole passes on a data set so large
  that the steps would not cover them, or epochs where a recipe counts in epochs; validation
  rounds of at least ``validate_every_steps``; a floor before early stopping.

``make_plan(settings, num_train)`` returns the ``Plan``; the training engine executes it.
A run keeps it as ``plan.json``: a resumed run, a cross-validation into a used folder and a
preset rebuild compare the plan they would make with the saved one and refuse a difference,
naming the fields.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Optional

from dam_cnn_tf.recipes.budget import stage_budget
from dam_cnn_tf.recipes.options import ADDED_SINCE, ConfigError, TrainConfig

# Raised when what a plan holds, or how it is written, changes meaning.
PLAN_VERSION = 1

PROBE, FINE_TUNE, STAGE2, END_TO_END = "probe", "fine-tune", "MPVS-Net", "end to end"
# Where a phase's batches come from.
IMAGES, TRUNK_MAPS, BACKBONE_OUTPUT, SALIENT_FEATURES, IMAGE_PAIRS = (
    "images", "trunk maps", "backbone output", "salient features", "image pairs")


class PlanError(ConfigError):
    """A saved plan that differs from the one the same run would make now, or cannot be read."""


@dataclasses.dataclass(frozen=True)
class Phase:
    """One phase of training: what learns, from which start, on what, how fast and how long."""

    name: str
    trains: str                     # what learns, in words
    trainable_from: Optional[str]   # the first backbone layer that learns; None: none or all (see trains)
    rate: float                     # peak learning rate (stage 2: of the FC layers, Eq. 10)
    schedule: str
    warmup_fraction: float
    batch_size: int
    rounds: int                     # validation rounds (Keras epochs)
    steps_per_round: int
    floor_rounds: int               # early stopping may not end the phase before these
    by_epochs: bool                 # rounds are whole passes (a recipe in epochs)
    patience: int
    monitor: str
    data: str
    augmentation: tuple
    start: str
    start_competes: bool = False    # the weights before the first step are kept if no round beats them
    mpae_rate: Optional[float] = None  # stage 2: of the MPAE encoder and decoders (Eq. 11)
    shift: int = 0                  # cells a cached trunk map may move

    @property
    def total_steps(self) -> int:
        return self.rounds * self.steps_per_round

    def describe(self) -> str:
        rate = f"rate {self.rate:g}" + (f" (MPAE {self.mpae_rate:g})" if self.mpae_rate is not None else "")
        budget = (f"{self.rounds} epochs of {self.steps_per_round} steps" if self.by_epochs else
                  f"up to {self.total_steps} steps in {self.rounds} rounds of {self.steps_per_round}")
        floor = f", at least {self.floor_rounds * self.steps_per_round} steps" if self.floor_rounds else ""
        augment = ", ".join(self.augmentation) or "none"
        competes = "; its start competes with its rounds" if self.start_competes else ""
        return (f"{self.name}: {self.trains}; {budget}{floor}, batch {self.batch_size}, {rate}, {self.schedule} "
                f"schedule; data: {self.data}, augmentation: {augment}; starts from {self.start}{competes}; "
                f"best round by {self.monitor}, patience {self.patience}")


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a run does. ``settings``: every resolved value (the model's shape among them);
    ``stage1``: its phases in order; ``stage2``: MPVS-Net's phase (or the end-to-end one);
    ``trunk_cache``: ``{"cut", "dtype"}`` of the cached frozen trunk, or None; ``sources``: the
    recipes the settings came from, with their files' SHA-256."""

    settings: TrainConfig
    num_train: int
    stage1: tuple
    stage2: Phase
    trunk_cache: Optional[dict]
    sources: dict = dataclasses.field(default_factory=dict)
    version: int = PLAN_VERSION

    def phase(self, name: str) -> Optional[Phase]:
        return next((p for p in (*self.stage1, self.stage2) if p.name == name), None)

    def to_dict(self) -> dict:
        return {"version": self.version, "num_train": self.num_train, "sources": self.sources,
                "trunk_cache": self.trunk_cache, "settings": self.settings.to_dict(),
                "stage1": [dataclasses.asdict(p) for p in self.stage1], "stage2": dataclasses.asdict(self.stage2)}

    @classmethod
    def from_dict(cls, data: dict, source="plan.json") -> "Plan":
        if not isinstance(data, dict) or data.get("version") != PLAN_VERSION:
            found = data.get("version") if isinstance(data, dict) else None
            raise PlanError(f"{source}: a plan of version {found}, this release reads version {PLAN_VERSION}; "
                            "use the release that made it, or start the run over")
        try:
            phase = lambda p: Phase(**{**p, "augmentation": tuple(p["augmentation"])})  # noqa: E731
            # A setting added since the plan was written takes the value that keeps what it did.
            settings = {**{k: v for k, v in ADDED_SINCE.items() if k not in data["settings"]}, **data["settings"]}
            return cls(settings=TrainConfig(**settings), num_train=int(data["num_train"]),
                       stage1=tuple(phase(p) for p in data["stage1"]), stage2=phase(data["stage2"]),
                       trunk_cache=data["trunk_cache"], sources=dict(data.get("sources", {})))
        except (KeyError, TypeError, ValueError) as error:
            raise PlanError(f"{source}: not a plan ({error})") from None

    def differences(self, other: "Plan") -> list:
        """The dotted names of the values in which ``other`` differs from this plan. The recipe
        files' hashes are not compared: a file whose comments changed sets the same values."""
        return [name for name in _differences(json.loads(json.dumps(self.to_dict())),
                                              json.loads(json.dumps(other.to_dict())))
                if not (name.startswith("sources.") and name.endswith(".sha256"))]

    def describe(self) -> str:
        """The plan as lines of text (``train --dry-run``)."""
        s = self.settings
        weights = s.backbone_weights or "none (random start)"
        recipes = ", ".join(f"{kind} = {source['name']}" for kind, source in self.sources.items())
        lines = [f"Plan (version {self.version}) for {self.num_train} training faces",
                 f"  recipes: {recipes or 'the paper'}",
                 f"  model: {s.backbone} at {s.input_size}x{s.input_size}, weights {weights}; "
                 f"{'SERD' if s.use_serd else 'no SERD'}, fc6-fc7 {s.fc_units} units ({s.fc6_activation} fc6), "
                 f"{s.classes} classes; MPAE code {s.encoder_units} units, N = {s.num_paths}, "
                 f"λ = {s.lam:g}, {s.decoder} decoders",
                 "  trunk cache: " + (f"the frozen layers below {self.trunk_cache['cut']}, "
                                      f"{self.trunk_cache['dtype']}" if self.trunk_cache else "none")]
        for number, phases in ((1, self.stage1), (2, (self.stage2,))):
            for phase in phases:
                lines.append(f"  stage {number}, {phase.describe()}")
        return "\n".join(lines)


def _differences(a, b, prefix: str = "") -> list:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _differences(a.get(key), b.get(key), f"{prefix}{key}.") if key in a and key in b else \
                [f"{prefix}{key}"]
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{prefix}{i}.")]
    return [] if a == b else [prefix.rstrip(".")]


def uses_trunk_cache(settings: TrainConfig) -> bool:
    """The frozen trunk below ``fine_tune_from`` is run once per face and cached."""
    return bool(settings.trunk_cache and settings.fine_tune_from and not settings.end_to_end)


def _budget(num_train, batch, steps, min_steps, epochs, validate_every, passes) -> dict:
    budget = stage_budget(num_train, batch, steps, min_steps, epochs, validate_every, passes)
    return {"rounds": budget.epochs, "steps_per_round": budget.steps_per_epoch, "floor_rounds": budget.min_epochs,
            "by_epochs": epochs is not None}


def _stage1_phases(s: TrainConfig, num_train: int, cached: bool) -> tuple:
    common = {"schedule": s.lr_schedule, "warmup_fraction": s.warmup_fraction, "batch_size": s.stage1_batch_size,
              "patience": s.patience, "monitor": "val_loss"}
    phases = []
    probe = bool(s.backbone_weights and s.probe_steps > 0)
    if probe:
        phases.append(Phase(
            PROBE, trains="SERD and fc6-fc8, the backbone frozen", trainable_from=None, rate=s.alpha_probe,
            data=BACKBONE_OUTPUT if cached else IMAGES, augmentation=_augmentation(s, cached=cached, probe=True),
            start="random", **common,
            **_budget(num_train, s.stage1_batch_size, s.probe_steps, s.probe_steps // 2, None,
                      s.validate_every_steps, s.probe_passes)))
    if s.fine_tune_from:
        trains = f"the backbone from {s.fine_tune_from} on, SERD and fc6-fc8"
    else:
        trains = "the whole backbone, SERD and fc6-fc8"
    start = "the probe's SERD and fc6-fc8" if probe else (
        "the pretrained backbone, a random head" if s.backbone_weights else "random")
    phases.append(Phase(
        FINE_TUNE, trains=trains, trainable_from=s.fine_tune_from, rate=s.alpha_s,
        data=TRUNK_MAPS if cached else IMAGES, augmentation=_augmentation(s, cached=cached),
        start=start, start_competes=probe and s.probe_competes,
        shift=s.trunk_shift if cached and s.augment else 0, **common,
        **_budget(num_train, s.stage1_batch_size, s.stage1_steps, s.stage1_min_steps, s.stage1_epochs,
                  s.validate_every_steps, s.stage1_passes)))
    return tuple(phases)


def _augmentation(s: TrainConfig, cached: bool, probe: bool = False) -> tuple:
    """What varies a training face: over cached maps a mirror and a shift of ``trunk_shift``
    cells; over images a mirror and a brightness change; the probe's cached backbone output
    holds each face and its mirror image."""
    if not s.augment:
        return ()
    if cached:
        return ("mirror",) if probe else (("mirror",) + ((f"shift up to {s.trunk_shift} cells",) if s.trunk_shift else ()))
    return ("mirror", "brightness")


def end_to_end_passes(s: TrainConfig, num_train: int) -> int:
    """End to end trains on image pairs drawn once, one pass an epoch: stage 2's epochs, or its
    step budget in whole passes, at least ``stage2_passes`` of them as over cached features."""
    if s.stage2_epochs is not None:
        return s.stage2_epochs
    one_pass = -(-num_train // s.stage2_batch_size)
    return max(1, -(-s.stage2_steps // one_pass), s.stage2_passes)


def _stage2_phase(s: TrainConfig, num_train: int) -> Phase:
    common = {"schedule": s.lr_schedule, "warmup_fraction": s.warmup_fraction, "batch_size": s.stage2_batch_size,
              "patience": s.patience, "monitor": s.stage2_monitor, "mpae_rate": s.alpha_m}
    start = "VGG-SERD's classifier (fc6-fc8)" if s.init_from_vgg_serd else "random"
    if s.end_to_end:
        return Phase(END_TO_END, trains="the backbone, SERD, the MPAE and the head together",
                     trainable_from=s.fine_tune_from, rate=s.alpha_fc, data=IMAGE_PAIRS,
                     augmentation=("mirror", "brightness") if s.augment else (), start=start,
                     rounds=end_to_end_passes(s, num_train), steps_per_round=math.ceil(num_train / s.stage2_batch_size),
                     floor_rounds=0, by_epochs=True, **common)
    pairs = "same-class targets drawn anew each pass" if s.resample_pairs else "one stored set of same-class targets"
    return Phase(STAGE2, trains=f"MPVS-Net on the frozen VGG-SERD ({pairs})", trainable_from=None, rate=s.alpha_fc,
                 data=SALIENT_FEATURES, augmentation=(), start=start, start_competes=bool(s.init_from_vgg_serd),
                 **common, **_budget(num_train, s.stage2_batch_size, s.stage2_steps, s.stage2_min_steps,
                                     s.stage2_epochs, s.validate_every_steps, s.stage2_passes))


def make_plan(settings: TrainConfig, num_train: int, sources: Optional[dict] = None) -> Plan:
    """The plan of a run of ``settings`` on ``num_train`` training faces."""
    cached = uses_trunk_cache(settings)
    return Plan(settings=settings, num_train=int(num_train), stage1=_stage1_phases(settings, num_train, cached),
                stage2=_stage2_phase(settings, num_train), sources=dict(sources or {}),
                trunk_cache={"cut": settings.fine_tune_from, "dtype": settings.cache_dtype} if cached else None)


def check_same_plan(saved: Plan, current: Plan, where, remedy: str) -> None:
    """Refuse, in one line naming the fields, a plan that differs from the one ``where`` holds."""
    differing = saved.differences(current)
    if differing:
        shown = ", ".join(differing[:8]) + (f" and {len(differing) - 8} more" if len(differing) > 8 else "")
        raise PlanError(f"{where}: holds a run of another plan (differs in {shown}); {remedy}")


def as_plan(plan_or_settings, num_train: int) -> Plan:
    """A ``Plan`` as it is, or the plan of ``TrainConfig`` settings on ``num_train`` faces (for
    programs that hand the engine settings, as earlier releases did)."""
    if isinstance(plan_or_settings, Plan):
        return plan_or_settings
    if isinstance(plan_or_settings, TrainConfig):
        return make_plan(plan_or_settings, num_train)
    raise TypeError(f"expected a Plan or TrainConfig, got {type(plan_or_settings).__name__}")
