"""Stage 1 of Algorithm 1 (lines 1-3): VGG-SERD learns ``L_ce + L_reg`` (Eq. 4), phase by
phase as its plan says (``recipes.plan``): a probe on the frozen backbone, then fine-tuning.

Each phase is resumable, and over the trunk cache it trains only the part of VGG-SERD above
the cached maps (``models.trunk``).
"""

from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np
import tensorflow as tf

from dam_cnn_tf.backbones import BACKBONE, build_backbone, load_weights
from dam_cnn_tf.data.face_set import FaceSet
from dam_cnn_tf.data.pipeline import image_dataset, trunk_dataset
from dam_cnn_tf.data.trunk_cache import TrunkCache, default_cache_root
from dam_cnn_tf.models.trunk import SplitModel, split_at
from dam_cnn_tf.models.vgg_serd import build_vgg_serd, compile_vgg_serd
from dam_cnn_tf.recipes.options import ConfigError, TrainConfig
from dam_cnn_tf.recipes.plan import BACKBONE_OUTPUT, PROBE, TRUNK_MAPS, Phase, Plan, as_plan
from dam_cnn_tf.training import fit
from dam_cnn_tf.training.callbacks import kept_epoch
from dam_cnn_tf.training.distribute import make_optimizer, make_strategy
from dam_cnn_tf.training.run_dir import RunDir, atomic_save_weights
from dam_cnn_tf.training.schedule import learning_rate

# Bumped when what a trunk-cache entry holds, or how it is addressed, changes.
TRUNK_CACHE_VERSION = 2
# Trunk maps run through the frozen blocks at a time to give the probe its inputs.
BACKBONE_OUTPUT_CHUNK = 4096


def build_stage1_model(settings: TrainConfig, num_classes: int) -> keras.Model:
    """VGG-SERD (Eq. 4) on the settings' backbone, with its pretrained weights, compiled."""
    backbone, preprocessing = build_backbone(settings.backbone, settings.input_size, settings.backbone_weights)
    vgg_serd = build_vgg_serd(
        num_classes,
        input_shape=(settings.input_size, settings.input_size, 3),
        use_serd=settings.use_serd,
        gamma1=settings.gamma1,
        gamma2=settings.gamma2,
        fc_units=settings.fc_units,
        fc6_activation=settings.fc6_activation,
        dropout=settings.dropout,
        backbone=backbone,
        preprocessing=preprocessing,
    )
    if settings.backbone_weights:
        report = load_weights(vgg_serd, settings.backbone, settings.backbone_weights) or "loaded"
        print(f"Backbone weights from {settings.backbone_weights}: {report}")
    if settings.fine_tune_from:
        freeze_backbone_below(backbone, settings.fine_tune_from)
    compile_vgg_serd(vgg_serd, optimizer=make_optimizer(settings.optimizer, settings.alpha_s),
                     jit_compile=settings.jit_compile)
    return vgg_serd


def freeze_backbone_below(backbone: keras.Model, first_trained: str) -> None:
    """The backbone learns from layer ``first_trained`` on; the layers before it keep their
    pretrained weights (beyond the paper, which fine-tunes all of VGG-Face: on a CPU the early
    layers' gradients cost most of the step and move least)."""
    names = [layer.name for layer in backbone.layers]
    if first_trained not in names:
        weighted = [layer.name for layer in backbone.layers if layer.weights]
        raise ConfigError(f"--fine-tune-from: the {backbone.name} has no layer {first_trained!r} "
                          f"(its weighted layers: {', '.join(weighted[:4])}, …, {weighted[-1]})")
    for layer in backbone.layers[:names.index(first_trained)]:
        layer.trainable = False


@dataclasses.dataclass
class Stage1Inputs:
    """What a phase trains on: faces through the whole model, or cached maps through the part
    of it above them."""

    model: keras.Model  # the model fit trains: VGG-SERD itself, its top over the trunk, or its head
    train: object       # FaceSet, or (n, 2, ...) maps of each face and of its mirror image
    val: object

    def datasets(self, phase: Phase, settings: TrainConfig, train_labels, val_labels):
        batch, repeat = phase.batch_size, not phase.by_epochs
        mirror = "mirror" in phase.augmentation
        if isinstance(self.train, FaceSet):
            size = settings.input_size
            return (image_dataset(self.train.images, train_labels, batch, size, shuffle=True, seed=settings.seed,
                                  augment=bool(phase.augmentation), preprocess=False, repeat=repeat),
                    image_dataset(self.val.images, val_labels, batch, size, preprocess=False))
        return (trunk_dataset(self.train, train_labels, batch, shuffle=True, seed=settings.seed, mirror=mirror,
                              repeat=repeat, shift=phase.shift),
                trunk_dataset(self.val, val_labels, batch))


def trunk_cache_key(plan: Plan, split: SplitModel) -> str:
    """Where the trunk maps of ``plan`` live: the trunk's network, input size, cut and weights,
    the dtype they are stored in, the precision they were computed in, and the cache's format."""
    s = plan.settings
    policy = keras.config.dtype_policy().name
    return (f"v{TRUNK_CACHE_VERSION}-{s.backbone}-{s.input_size}-{split.first_trained}-"
            f"{plan.trunk_cache['dtype']}-{policy}-{fit.weights_fingerprint(split.trunk)}")


def trunk_maps(split: SplitModel, faces: FaceSet, plan: Plan, verbose: int = 1) -> np.ndarray:
    """``(n, 2, h, w, c)``: the frozen trunk's map of each face and its mirror, from the cache."""
    cache = TrunkCache(default_cache_root() / "trunks", trunk_cache_key(plan, split), dtype=plan.trunk_cache["dtype"])

    @tf.function(reduce_retracing=True)
    def trunk_of(x):
        return split.trunk(x, training=False)

    def compute(images):
        batches = image_dataset(images, None, plan.settings.stage1_batch_size, plan.settings.input_size,
                                preprocess=False)
        return np.concatenate([trunk_of(x).numpy() for x in batches])

    return cache.maps(faces.images, compute, log=print if verbose else None)


def _phase_inputs(plan: Plan, vgg_serd, train: FaceSet, val: FaceSet, verbose: int) -> dict:
    """Each phase's ``Stage1Inputs``. Over the trunk cache, fine-tuning trains the top over the
    cached trunk maps, and the probe trains the head over the frozen blocks' output, computed
    once from those maps (nothing below the head changes while it is probed)."""
    if plan.trunk_cache is None:
        return {phase.name: Stage1Inputs(vgg_serd, train, val) for phase in plan.stage1}
    split = split_at(vgg_serd, plan.trunk_cache["cut"])
    train_maps, val_maps = trunk_maps(split, train, plan, verbose), trunk_maps(split, val, plan, verbose)

    def backbone_output(maps):
        # In chunks: predicting the whole array at once held a float32 copy of every map (a
        # 40,000-face set's probe went past 15 GB).
        flat, chunk = maps.reshape(-1, *maps.shape[2:]), BACKBONE_OUTPUT_CHUNK
        out = np.empty((len(flat), *split.upper.output.shape[1:]), np.float32)
        for start in range(0, len(flat), chunk):
            out[start:start + chunk] = split.upper.predict(flat[start:start + chunk], batch_size=256, verbose=0)
        return out.reshape(len(maps), 2, *out.shape[1:])

    inputs = {}
    for phase in plan.stage1:
        if phase.data == TRUNK_MAPS:
            inputs[phase.name] = Stage1Inputs(split.top, train_maps, val_maps)
        elif phase.data == BACKBONE_OUTPUT:
            inputs[phase.name] = Stage1Inputs(split.head, backbone_output(train_maps), backbone_output(val_maps))
    return inputs


def _set_trainable(vgg_serd, phase: Phase) -> None:
    backbone = vgg_serd.get_layer(BACKBONE)
    backbone.trainable = phase.name != PROBE
    if phase.name != PROBE and phase.trainable_from:
        freeze_backbone_below(backbone, phase.trainable_from)


def train_stage1(plan, train: FaceSet, val: FaceSet, run: RunDir, num_classes: int, verbose: int = 1):
    """Stage 1 as ``plan`` (or ``TrainConfig`` settings) says; returns VGG-SERD with its best
    weights. A completed run is loaded, not trained again."""
    plan = as_plan(plan, len(train))
    settings = plan.settings
    stage_dir = run.stage_dir("stage1")
    with make_strategy(settings.strategy).scope():
        vgg_serd = build_stage1_model(settings, num_classes)
    final = stage_dir / "vgg_serd.weights.h5"
    if "stage1" in run.completed():
        vgg_serd.optimizer.build(vgg_serd.trainable_variables)  # its saved state loads too
        vgg_serd.load_weights(final)
        return vgg_serd
    inputs_of = _phase_inputs(plan, vgg_serd, train, val, verbose)
    rounds = 0
    for phase in plan.stage1:
        inputs = inputs_of[phase.name]
        train_ds, val_ds = inputs.datasets(phase, settings, train.labels, val.labels)
        phase_dir = stage_dir if phase is plan.stage1[-1] else run.stage_dir(f"stage1/{phase.name}")
        _set_trainable(vgg_serd, phase)
        with make_strategy(settings.strategy).scope():
            rate = learning_rate(phase.rate, phase.total_steps, phase.schedule, phase.warmup_fraction)
            compile_vgg_serd(inputs.model, optimizer=make_optimizer(settings.optimizer, rate),
                             jit_compile=settings.jit_compile)
        done = phase_dir / "phase.weights.h5"
        if f"stage1_{phase.name}" in run.completed():
            inputs.model.optimizer.build(inputs.model.trainable_variables)
            inputs.model.load_weights(done)
            # a run stopped between its last phase and the stage's end still reports its rounds
            rounds = int(run.step_info(f"stage1_{phase.name}").get("epochs", 0))
            continue
        if verbose:
            print(f"Stage 1, {phase.name}: up to {phase.total_steps} steps ({phase.rounds} rounds of "
                  f"{phase.steps_per_round}), at least {phase.floor_rounds * phase.steps_per_round}, "
                  f"peak rate {phase.rate:g}")
        start = time.monotonic()
        # Where the probe precedes fine-tuning, the probe's state is scored on the validation
        # faces through the model fine-tuning trains (over the trunk cache where there is one),
        # by the phase's monitor, and kept bit for bit if no round beats it.
        _, rounds = fit.fit_phase(inputs.model, train_ds, val_ds, phase, phase_dir, "stage 1", verbose)
        atomic_save_weights(inputs.model, done)
        kept = kept_epoch(phase_dir / fit.BEST_WEIGHTS)
        run.mark_completed(f"stage1_{phase.name}", epochs=rounds, steps=rounds * phase.steps_per_round,
                           seconds=round(time.monotonic() - start, 1), kept_round=kept)
        if verbose and phase.start_competes:
            print(f"Stage 1, {phase.name}: {kept_description(phase, kept)}")
    _set_trainable(vgg_serd, plan.stage1[-1])
    compile_vgg_serd(vgg_serd, optimizer=make_optimizer(settings.optimizer, settings.alpha_s),
                     jit_compile=settings.jit_compile)
    vgg_serd.optimizer.build(vgg_serd.trainable_variables)
    atomic_save_weights(vgg_serd, final)
    names = [phase.name for phase in plan.stage1]
    last = plan.stage1[-1]
    kept = kept_epoch(run.stage_dir("stage1") / fit.BEST_WEIGHTS)
    run.mark_completed("stage1", epochs=rounds, trunk_cache=plan.trunk_cache is not None, phases=names,
                       kept=kept_model(last, kept), kept_round=kept, done_with=[f"stage1_{name}" for name in names])
    return vgg_serd


PROBE_KEPT, FINE_TUNED = "probe", "fine-tuned"


def kept_model(phase: Phase, kept) -> str:
    """Which state stage 1 ended with: ``"probe"`` when fine-tuning's start, the probe's
    state, competed and no round beat it on validation, else ``"fine-tuned"``."""
    return PROBE_KEPT if phase.start_competes and kept == 0 else FINE_TUNED


def kept_description(phase: Phase, kept) -> str:
    if kept_model(phase, kept) == PROBE_KEPT:
        return ("kept the probe's state (SERD and fc6-fc8 on the frozen backbone): no fine-tuning round beat its "
                f"{phase.monitor} on the validation faces")
    return f"kept fine-tuning round {kept}" + (", which beat the probe's state on the validation faces"
                                                if phase.start_competes else "")


def stage1_kept(run: RunDir):
    """``"probe"`` or ``"fine-tuned"``: which state a completed stage 1 of ``run`` kept (None
    for a run completed before this was recorded)."""
    return run.step_info("stage1").get("kept")
