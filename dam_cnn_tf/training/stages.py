"""The two training stages of Algorithm 1, as resumable steps of a run directory.

1. ``train_stage1``: fine-tune VGG-SERD on faces until the validation loss stops improving
   (Algorithm 1, lines 1-3; Eq. 4).
2. ``extract_features``: one pass of the frozen backbone + SERD over the data, cached on disk
   (line 4; "we can obtain all sᵢ and sᵢʲ before starting the second step").
3. ``train_stage2``: pair every sample with N same-class targets and train MPVS-Net until
   the monitored validation metric stops improving (lines 5-11; Eq. 10-11): the
   cross-entropy by default, the paper's total loss with ``stage2_monitor="val_loss"``.

Model selection uses the validation split carved from the training data, never the test fold.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from dam_cnn_tf.data.feature_cache import FeatureCache, write_feature_cache
from dam_cnn_tf.data.pairs import sample_pair_targets
from dam_cnn_tf.data.pipeline import image_dataset, pair_dataset, trunk_dataset
from dam_cnn_tf.data.trunk_cache import TrunkCache, default_cache_root
from dam_cnn_tf.errors import one_line
from dam_cnn_tf.models.dam_cnn import build_dam_cnn
from dam_cnn_tf.models.mpvs_net import MPVSNet
from dam_cnn_tf.models.backbones import BACKBONE, build_backbone, load_weights
from dam_cnn_tf.models.trunk import SplitModel, split_at
from dam_cnn_tf.models.vgg_serd import build_vgg_serd, compile_vgg_serd, feature_map_shape, salient_feature_model
from dam_cnn_tf.training.budget import learning_rate, stage_budget
from dam_cnn_tf.training.callbacks import (
    AtomicBackupAndRestore,
    AtomicModelCheckpoint,
    ResumableCSVLogger,
    ResumableEarlyStopping,
    ResumableSwapEMAWeights,
    StopOnNaN,
    completed_epochs,
    keep_start_as_best,
    kept_epoch,
    restore_best_weights,
)
from dam_cnn_tf.training.config import STAGE2_MONITORS, ConfigError, TrainConfig
from dam_cnn_tf.training.distribute import make_optimizer, make_strategy, prebuild_for_workers, set_precision, worker_callbacks
from dam_cnn_tf.training.run_dir import RunDir, RunDirError, atomic_save_model, atomic_save_weights, atomic_write_json


# A stage's best checkpoint so far, in its directory (weights only; ``AtomicModelCheckpoint``).
BEST_WEIGHTS = "best.weights.npz"


@dataclasses.dataclass
class FaceSet:
    """Prepared faces of one split: uint8 RGB ``(n, H, W, 3)``, integer labels, attributes."""

    images: np.ndarray
    labels: np.ndarray
    attributes: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.labels)

    def fingerprint(self) -> str:
        digest = hashlib.sha256(np.ascontiguousarray(self.images).tobytes())
        digest.update(np.asarray(self.labels, np.int64).tobytes())
        return digest.hexdigest()[:16]


def _fit(model, train, val, epochs: int, stage_dir: Path, stage: str, patience: int, verbose: int,
         monitor: str = "val_loss", min_epochs: int = 0, start_competes: bool = False, **fit_kwargs):
    """``fit`` with resumable backup, atomic best checkpoint, early stopping and a NaN stop.

    ``monitor`` (a key of ``STAGE2_MONITORS``) picks the best epoch and drives early stopping,
    which cannot end the stage before ``min_epochs`` (the budget's floor). With
    ``start_competes`` the weights before the first step are scored too, and kept if no epoch
    beats them.
    """
    best = stage_dir / BEST_WEIGHTS
    if start_competes and not best.exists() and completed_epochs(stage_dir / "backup") == 0:
        scores = model.evaluate(val, verbose=0, return_dict=True)
        keep_start_as_best(model, best, monitor, float(scores[monitor.removeprefix("val_")]))
    nan_stop = StopOnNaN(stage)
    mode = STAGE2_MONITORS[monitor]
    # With weight averaging the average is swapped in before anything judges the epoch.
    averaging = [ResumableSwapEMAWeights(stage_dir / "backup")] if getattr(model.optimizer, "use_ema", False) else []
    callbacks = [  # the backup last: an epoch counts as done once everything else is written
        *worker_callbacks(model),
        nan_stop,
        *averaging,
        AtomicModelCheckpoint(best, monitor=monitor, mode=mode),
        ResumableEarlyStopping(stage_dir / "early_stopping.json", monitor=monitor, mode=mode, patience=patience,
                               start_from_epoch=min_epochs),
        ResumableCSVLogger(stage_dir / "metrics.csv", stage_dir / "backup"),
        AtomicBackupAndRestore(stage_dir / "backup"),
    ]
    prebuild_for_workers(model, train)
    # The tf.data pipelines shuffle themselves (seeded), so fit must not.
    history = model.fit(train, validation_data=val, epochs=epochs, callbacks=callbacks, verbose=verbose,
                        shuffle=False, **fit_kwargs)
    nan_stop.raise_if_failed()
    if best.exists():
        restore_best_weights(model, best)  # the epoch with the best monitored validation metric
    _metrics_as_json(stage_dir / "metrics.csv", stage_dir / "metrics.json")
    return history, completed_epochs(stage_dir / "backup")


def _metrics_as_json(csv_path: Path, json_path: Path) -> None:
    """The per-epoch metrics also as JSON: a list of ``{"epoch": …, "loss": …, …}``."""
    import csv

    if not csv_path.exists():
        return
    with open(csv_path, newline="") as f:
        rows = [{key: (int(value) if key == "epoch" else float(value)) for key, value in row.items()}
                for row in csv.DictReader(f)]
    atomic_write_json(json_path, rows)


def build_stage1_model(config: TrainConfig, num_classes: int) -> keras.Model:
    backbone, preprocessing = build_backbone(config.backbone, config.input_size, config.backbone_weights
                                             if config.backbone_family == "face-resnet" else None)
    vgg_serd = build_vgg_serd(
        num_classes,
        input_shape=(config.input_size, config.input_size, 3),
        use_serd=config.use_serd,
        gamma1=config.gamma1,
        gamma2=config.gamma2,
        fc_units=config.fc_units,
        fc6_activation=config.fc6_activation,
        dropout=config.dropout,
        backbone=backbone,
        preprocessing=preprocessing,
    )
    if config.backbone_weights:
        report = load_weights(vgg_serd, config.backbone, config.backbone_weights) or "loaded"
        print(f"Backbone weights from {config.backbone_weights}: {report}")
    if config.fine_tune_from:
        freeze_backbone_below(backbone, config.fine_tune_from)
    compile_vgg_serd(vgg_serd, optimizer=make_optimizer(config.optimizer, config.alpha_s), jit_compile=config.jit_compile)
    return vgg_serd


def freeze_backbone_below(backbone: keras.Model, first_trained: str) -> None:
    """Stage 1 trains the backbone from layer ``first_trained`` on; the layers before it keep
    their pretrained weights (beyond the paper, which fine-tunes all of VGG-Face: on a CPU the
    early layers' gradients cost most of the step and move least)."""
    names = [layer.name for layer in backbone.layers]
    if first_trained not in names:
        weighted = [layer.name for layer in backbone.layers if layer.weights]
        raise ConfigError(f"--fine-tune-from: the {backbone.name} has no layer {first_trained!r} "
                          f"(its weighted layers: {', '.join(weighted[:4])}, …, {weighted[-1]})")
    for layer in backbone.layers[:names.index(first_trained)]:
        layer.trainable = False


@dataclasses.dataclass
class Stage1Inputs:
    """What a phase of stage 1 trains on: faces through the whole model, or cached maps through
    the part of it above them."""

    model: keras.Model  # the model fit trains: VGG-SERD itself, its top over the trunk, or its head
    train: object       # FaceSet, or (n, 2, ...) maps of each face and of its mirror image
    val: object
    shift: int = 0      # cells a cached map may move (fine-tuning over the trunk cache only)

    def datasets(self, config: TrainConfig, train_labels, val_labels, repeat: bool):
        batch = config.stage1_batch_size
        if isinstance(self.train, FaceSet):
            size = config.input_size
            return (image_dataset(self.train.images, train_labels, batch, size, shuffle=True, seed=config.seed,
                                  augment=config.augment, preprocess=False, repeat=repeat),
                    image_dataset(self.val.images, val_labels, batch, size, preprocess=False))
        return (trunk_dataset(self.train, train_labels, batch, shuffle=True, seed=config.seed,
                              mirror=config.augment, repeat=repeat, shift=self.shift if config.augment else 0),
                trunk_dataset(self.val, val_labels, batch))


def uses_trunk_cache(config: TrainConfig) -> bool:
    return bool(config.trunk_cache and config.fine_tune_from and not config.end_to_end)


def trunk_maps(split: SplitModel, faces: FaceSet, config: TrainConfig, verbose: int = 1) -> np.ndarray:
    """``(n, 2, h, w, c)``: the frozen trunk's map of each face and its mirror, from the cache."""
    fingerprint = (f"{config.backbone}-{config.input_size}-{split.first_trained}-"
                   f"{_weights_fingerprint(split.trunk)}")
    cache = TrunkCache(default_cache_root() / "trunks", fingerprint, dtype=config.cache_dtype)

    @tf.function(reduce_retracing=True)
    def trunk_of(x):
        return split.trunk(x, training=False)

    def compute(images):
        batches = image_dataset(images, None, config.stage1_batch_size, config.input_size, preprocess=False)
        return np.concatenate([trunk_of(x).numpy() for x in batches])

    return cache.maps(faces.images, compute, log=print if verbose else None)


def _stage1_inputs(config: TrainConfig, vgg_serd, train: FaceSet, val: FaceSet, verbose: int) -> dict:
    """Each phase's ``Stage1Inputs``. With the trunk cache, fine-tuning trains the top over the
    cached trunk maps, and the probe trains the head over the frozen blocks' output, computed
    once from those maps (nothing below the head changes while it is probed)."""
    if not uses_trunk_cache(config):
        return {"probe": Stage1Inputs(vgg_serd, train, val), "fine-tune": Stage1Inputs(vgg_serd, train, val)}
    split = split_at(vgg_serd, config.fine_tune_from)
    train_maps, val_maps = trunk_maps(split, train, config, verbose), trunk_maps(split, val, config, verbose)

    def backbone_output(maps):
        flat = maps.reshape(-1, *maps.shape[2:])
        return split.upper.predict(flat, batch_size=256, verbose=0).reshape(len(maps), 2, *split.upper.output.shape[1:])

    inputs = {"fine-tune": Stage1Inputs(split.top, train_maps, val_maps, shift=config.trunk_shift)}
    if _stage1_phases(config)[0][0] == "probe":
        inputs["probe"] = Stage1Inputs(split.head, backbone_output(train_maps), backbone_output(val_maps))
    return inputs


def _stage1_phases(config: TrainConfig) -> list:
    """``(name, learning rate, steps, floor, epochs, passes)`` of stage 1's phases, in order.

    With pretrained backbone weights the new parts (SERD, fc6-fc8) first learn on the frozen
    backbone (the probe), then the chosen blocks are fine-tuned with them (LP-FT: Kumar et al.,
    ICLR 2022): a random head's large early gradients then never reach the pretrained blocks.
    """
    phases = []
    if config.backbone_weights and config.probe_steps > 0:
        phases.append(("probe", config.alpha_probe, config.probe_steps, config.probe_steps // 2, None,
                       config.probe_passes))
    phases.append(("fine-tune", config.alpha_s, config.stage1_steps, config.stage1_min_steps, config.stage1_epochs,
                   config.stage1_passes))
    return phases


def _set_phase_trainable(config: TrainConfig, vgg_serd, phase: str) -> None:
    backbone = vgg_serd.get_layer(BACKBONE)
    backbone.trainable = phase != "probe"
    if phase != "probe" and config.fine_tune_from:
        freeze_backbone_below(backbone, config.fine_tune_from)


def train_stage1(config: TrainConfig, train: FaceSet, val: FaceSet, run: RunDir, num_classes: int, verbose: int = 1):
    """Stage 1: VGG-SERD with ``L_ce + L_reg`` (Eq. 4) at ``alpha_s``; returns the model.

    A pretrained backbone is first probed (its new head trained on it frozen), then fine-tuned
    from ``--fine-tune-from`` on; each phase is resumable and its budget counted in steps.
    """
    stage_dir = run.stage_dir("stage1")
    with make_strategy(config.strategy).scope():
        vgg_serd = build_stage1_model(config, num_classes)
    final = stage_dir / "vgg_serd.weights.h5"
    if "stage1" in run.completed():
        vgg_serd.optimizer.build(vgg_serd.trainable_variables)  # its saved state loads too
        vgg_serd.load_weights(final)
        return vgg_serd
    phase_inputs = _stage1_inputs(config, vgg_serd, train, val, verbose)
    phases = _stage1_phases(config)
    epochs = 0
    for name, peak, steps, min_steps, phase_epochs, passes in phases:
        inputs = phase_inputs[name]
        train_ds, val_ds = inputs.datasets(config, train.labels, val.labels, repeat=phase_epochs is None)
        phase_dir = stage_dir if name == "fine-tune" else run.stage_dir(f"stage1/{name}")
        budget = stage_budget(len(train), config.stage1_batch_size, steps, min_steps, phase_epochs,
                              config.validate_every_steps, passes)
        _set_phase_trainable(config, vgg_serd, name)
        with make_strategy(config.strategy).scope():
            rate = learning_rate(peak, budget.total_steps, config.lr_schedule, config.warmup_fraction)
            compile_vgg_serd(inputs.model, optimizer=make_optimizer(config.optimizer, rate, config.ema_momentum),
                             jit_compile=config.jit_compile)
        done = phase_dir / "phase.weights.h5"
        if f"stage1_{name}" in run.completed():
            inputs.model.optimizer.build(inputs.model.trainable_variables)
            inputs.model.load_weights(done)
            continue
        if verbose:
            print(f"Stage 1, {name}: up to {budget.total_steps} steps ({budget.epochs} rounds of "
                  f"{budget.steps_per_epoch}), at least {budget.min_epochs * budget.steps_per_epoch}, peak rate {peak:g}")
        fit_kwargs = {} if phase_epochs is not None else {"steps_per_epoch": budget.steps_per_epoch}
        start = time.monotonic()
        _, epochs = _fit(inputs.model, train_ds, val_ds, budget.epochs, phase_dir, "stage 1", config.patience,
                         verbose, min_epochs=budget.min_epochs, **fit_kwargs)
        atomic_save_weights(inputs.model, done)
        run.mark_completed(f"stage1_{name}", epochs=epochs, steps=epochs * budget.steps_per_epoch,
                           seconds=round(time.monotonic() - start, 1))
    _set_phase_trainable(config, vgg_serd, "fine-tune")
    compile_vgg_serd(vgg_serd, optimizer=make_optimizer(config.optimizer, config.alpha_s), jit_compile=config.jit_compile)
    vgg_serd.optimizer.build(vgg_serd.trainable_variables)
    atomic_save_weights(vgg_serd, final)
    names = [phase[0] for phase in phases]
    run.mark_completed("stage1", epochs=epochs, trunk_cache=uses_trunk_cache(config), phases=names,
                       done_with=[f"stage1_{name}" for name in names])
    return vgg_serd


def extract_features(vgg_serd, faces: FaceSet, path: Path, config: TrainConfig, verbose: int = 1) -> FeatureCache:
    """The salient features ``s`` of every face (one pass of the frozen front), cached.

    With the trunk cache the front runs from each face's cached trunk map, not from its pixels.
    """
    front = salient_feature_model(vgg_serd)
    # The front's weights (backbone and SERD) decide the features; fc6-fc8 need no hashing.
    fingerprint = f"{faces.fingerprint()}-{_weights_fingerprint(front)}"
    if FeatureCache.exists(path, fingerprint):
        return FeatureCache.open(path, fingerprint)
    if uses_trunk_cache(config):
        split = split_at(vgg_serd, config.fine_tune_from)
        model, batches = split.front, trunk_dataset(trunk_maps(split, faces, config, verbose), faces.labels,
                                                    config.stage1_batch_size)
    else:
        model = front
        batches = image_dataset(faces.images, faces.labels, config.stage1_batch_size, config.input_size,
                                preprocess=False)

    # One traced function for every batch size, the last batch's included.
    @tf.function(reduce_retracing=True)
    def features_of(x):
        return model(x, training=False)["features"]

    return write_feature_cache(
        path,
        lambda x: features_of(x).numpy(),
        batches.as_numpy_iterator(),
        num_samples=len(faces),
        fingerprint=fingerprint,
        dtype=config.cache_dtype,
        verbose=verbose,
    )


def _weights_fingerprint(model) -> str:
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.asarray(weight.numpy()).tobytes())
    return digest.hexdigest()[:16]


def _pair_targets(config: TrainConfig, faces: FaceSet, seed: int, num_paths: int, epoch: int = 0):
    """N same-class targets per sample; decoder j's of attribute value j with ``--pair-attribute``.

    A part lacking one of the training part's attribute values (a small validation part)
    gets random same-class targets, so its N still matches the model's.
    """
    if config.pair_attribute and len(set(faces.attributes.tolist())) == num_paths:
        return sample_pair_targets(faces.labels, None, seed=seed, attributes=faces.attributes, epoch=epoch)
    return sample_pair_targets(faces.labels, num_paths, seed=seed, epoch=epoch)


def _stage2_budget(config: TrainConfig, faces: FaceSet):
    return stage_budget(len(faces), config.stage2_batch_size, config.stage2_steps, config.stage2_min_steps,
                        config.stage2_epochs, config.validate_every_steps, config.stage2_passes)


def _training_pairs(config: TrainConfig, cache: FeatureCache, faces: FaceSet, num_paths: int, stage_dir: Path):
    """Stage 2's training batches and ``fit``'s extra arguments.

    The paper stores one set of pairs before stage 2 (§3.3.2), the default. ``--resample-pairs``
    draws fresh same-class targets for each pass over the data instead, seeded by (seed, pass);
    a resumed run starts at the pass it stopped in, so it sees the targets an uninterrupted run would.
    """
    batch = config.stage2_batch_size
    budget = _stage2_budget(config, faces)
    by_steps = config.stage2_epochs is None
    steps = {"steps_per_epoch": budget.steps_per_epoch} if by_steps else {}
    if not config.resample_pairs or budget.epochs == 0:
        targets = _pair_targets(config, faces, config.seed, num_paths)
        return pair_dataset(cache, faces.labels, targets, batch, shuffle=True, seed=config.seed, repeat=by_steps), steps
    one_pass = -(-len(faces) // batch)
    passes = -(-budget.total_steps // one_pass)
    # (A kill after the last epoch's backup but before the stage was marked done resumes there.)
    done_steps = completed_epochs(stage_dir / "backup") * budget.steps_per_epoch
    first_pass = min(done_steps // one_pass, passes - 1)
    dataset = pair_dataset(cache, faces.labels, lambda epoch: _pair_targets(config, faces, config.seed, num_paths,
                                                                             epoch=epoch),
                           batch, shuffle=True, seed=config.seed, epochs=passes, first_epoch=first_pass)
    # One dataset over all passes, so fit must be told where each epoch ends.
    return dataset, {"steps_per_epoch": budget.steps_per_epoch}


def num_paths_for(config: TrainConfig, faces: FaceSet) -> int:
    """N: ``--num-paths``, or the number of attribute values for attribute-specific decoders."""
    if config.pair_attribute:
        return len(set(faces.attributes.tolist()))
    return config.num_paths


def train_stage2(config: TrainConfig, vgg_serd, train: FaceSet, val: FaceSet, run: RunDir, num_classes: int,
                 verbose: int = 1) -> MPVSNet:
    """Stage 2: freeze VGG-SERD, extract features once, train MPVS-Net (Eq. 10-11)."""
    feature_dir = run.stage_dir("features")
    caches = (extract_features(vgg_serd, train, feature_dir / "train", config, verbose),
              extract_features(vgg_serd, val, feature_dir / "val", config, verbose))
    return train_mpvs_net(config, caches, train, val, run, num_classes, vgg_serd, verbose)


def starts_from_vgg_serd(config: TrainConfig) -> bool:
    """Whether MPVS-Net's first weights come from stage 1's classifier (fc6, or fc6-fc8)."""
    return config.init_encoder_from_fc6 or config.init_from_vgg_serd


def needs_vgg_serd(config: TrainConfig) -> bool:
    """Whether stage 2 reaches back into stage 1's model: its weights as a start, the backbone
    for end-to-end training, or the feature map's shape for the convolutional decoders."""
    return starts_from_vgg_serd(config) or config.end_to_end or config.decoder != "dense"


def start_from_vgg_serd(net: MPVSNet, vgg_serd, config: TrainConfig) -> None:
    """MPVS-Net's starting weights from stage 1's classifier, as far as ``config`` asks: the
    encoder from fc6 (``init_encoder_from_fc6``), and with ``init_from_vgg_serd`` also its FC
    layer from fc7 and its output layer from fc8. Call after the encoder's scaling is fitted."""
    if starts_from_vgg_serd(config):
        net.mpae.init_encoder_from_dense(*vgg_serd.get_layer("fc6").get_weights())
    if config.init_from_vgg_serd:
        net.init_head_from_dense(vgg_serd.get_layer("fc7").get_weights(), vgg_serd.get_layer("fc8").get_weights())


def train_mpvs_net(config: TrainConfig, caches, train: FaceSet, val: FaceSet, run: RunDir, num_classes: int,
                   vgg_serd=None, verbose: int = 1) -> MPVSNet:
    """MPVS-Net on the cached salient features ``caches = (train, val)`` (Algorithm 1, lines 5-11).

    Of the faces only the labels (and attributes) are read, but for ``end_to_end``. ``vgg_serd``
    is needed by what reaches back into stage 1: ``init_encoder_from_fc6``,
    ``init_from_vgg_serd``, ``end_to_end`` and the convolutional decoders (the feature map's shape).
    """
    if vgg_serd is None and needs_vgg_serd(config):
        raise ConfigError("--init-encoder-from-fc6, --init-from-vgg-serd, --end-to-end and --decoder conv need "
                          "stage 1's model")
    train_cache, val_cache = caches
    stage_dir = run.stage_dir("stage2")
    num_paths = num_paths_for(config, train)
    with make_strategy(config.strategy).scope():
        net = MPVSNet(
            train_cache.features.shape[1],
            num_classes,
            encoder_units=config.encoder_units,
            num_paths=num_paths,
            fc_units=config.fc_units,
            dropout=config.dropout,
            lam=config.lam,
            per_path_updates=config.per_path_updates,
            decoder=config.decoder,
            feature_shape=None if vgg_serd is None else feature_map_shape(vgg_serd),
        )
        total = _stage2_budget(config, train).total_steps
        net.compile(
            optimizer=make_optimizer(config.optimizer, learning_rate(config.alpha_fc, total, config.lr_schedule,
                                                                     config.warmup_fraction)),
            mpae_optimizer=make_optimizer(config.optimizer, learning_rate(config.alpha_m, total, config.lr_schedule,
                                                                          config.warmup_fraction)),
            jit_compile=config.jit_compile,
        )
    if "stage2" in run.completed():
        if config.end_to_end:
            vgg_serd.load_weights(stage_dir / "vgg_serd.weights.h5")
        net.load_weights(stage_dir / "mpvs_net.weights.h5")
        return net
    net.mpae.adapt(train_cache.features)  # the [0, 1] scaling, from training features only
    start_from_vgg_serd(net, vgg_serd, config)
    # The validation pairs stay fixed, so their loss is comparable from epoch to epoch.
    val_targets = _pair_targets(config, val, config.seed + 1, num_paths)
    if config.end_to_end:
        train_targets = _pair_targets(config, train, config.seed, num_paths)
        return _train_end_to_end(config, vgg_serd, net, train, val, (train_targets, val_targets), run, stage_dir,
                                 num_paths, verbose)
    train_ds, fit_kwargs = _training_pairs(config, train_cache, train, num_paths, stage_dir)
    val_ds = pair_dataset(val_cache, val.labels, val_targets, config.stage2_batch_size, shuffle=False)
    budget = _stage2_budget(config, train)
    if verbose:
        print(f"Stage 2: up to {budget.total_steps} steps ({budget.epochs} rounds of {budget.steps_per_epoch}), "
              f"at least {budget.min_epochs * budget.steps_per_epoch}")
    start = time.monotonic()
    # Started from stage 1's classifier, MPVS-Net's start competes with its epochs: with a sigmoid
    # fc6 the start is that classifier, so stage 2 never ends with a worse monitored validation
    # score than stage 1's.
    _, epochs = _fit(net, train_ds, val_ds, budget.epochs, stage_dir, "stage 2", config.patience, verbose,
                     monitor=config.stage2_monitor, min_epochs=budget.min_epochs,
                     start_competes=starts_from_vgg_serd(config), **fit_kwargs)
    atomic_save_weights(net, stage_dir / "mpvs_net.weights.h5")
    run.mark_completed("stage2", epochs=epochs, steps=epochs * budget.steps_per_epoch, num_paths=num_paths,
                       seconds=round(time.monotonic() - start, 1))
    return net


def stage2_kept_round(run: RunDir) -> Optional[int]:
    """The validation round whose weights stage 2 ended with (1 = the first), 0 when its start
    competed and no round beat it; None when no round was checkpointed."""
    return kept_epoch(run.path / "stage2" / BEST_WEIGHTS)


def end_to_end_passes(config: TrainConfig, num_faces: int) -> int:
    """End to end trains on image pairs drawn once, one pass an epoch: stage 2's epochs, or its
    step budget in whole passes, at least ``stage2_passes`` of them as over cached features."""
    if config.stage2_epochs is not None:
        return config.stage2_epochs
    one_pass = -(-num_faces // config.stage2_batch_size)
    return max(1, -(-config.stage2_steps // one_pass), config.stage2_passes)


def _train_end_to_end(config, vgg_serd, net, train, val, targets, run, stage_dir, num_paths, verbose) -> MPVSNet:
    from dam_cnn_tf.training.end_to_end import end_to_end_datasets, make_end_to_end

    with make_strategy(config.strategy).scope():
        model = make_end_to_end(salient_feature_model(vgg_serd), net, config)
    train_ds, val_ds = end_to_end_datasets(config, train, val, *targets)
    passes = end_to_end_passes(config, len(train))
    _, epochs = _fit(model, train_ds, val_ds, passes, stage_dir, "stage 2 (end to end)",
                     config.patience, verbose, monitor=config.stage2_monitor)
    atomic_save_weights(vgg_serd, stage_dir / "vgg_serd.weights.h5")
    atomic_save_weights(net, stage_dir / "mpvs_net.weights.h5")
    run.mark_completed("stage2", epochs=epochs, num_paths=num_paths, end_to_end=True)
    return net


def train_dam_cnn(config: TrainConfig, train: FaceSet, val: FaceSet, run: RunDir, class_names, stage: str = "all",
                  verbose: int = 1):
    """Algorithm 1 end to end in ``run``; returns the inference model (or VGG-SERD for stage 1 alone).

    Steps already completed in ``run`` are loaded, not repeated; an interrupted step resumes
    from its last completed epoch.
    """
    vgg_serd, model = train_both_stages(config, train, val, run, class_names, stage, verbose)
    return vgg_serd if model is None else model


def train_both_stages(config: TrainConfig, train: FaceSet, val: FaceSet, run: RunDir, class_names,
                      stage: str = "all", verbose: int = 1):
    """``(VGG-SERD, DAM-CNN)`` as ``train_dam_cnn`` trains them; DAM-CNN is None with ``stage="1"``.

    VGG-SERD keeps its own classifier (fc6-fc8), so stage 1 can be judged beside the final model.
    """
    set_precision(config.mixed_precision)
    keras.utils.set_random_seed(config.seed)
    num_classes = len(class_names)
    vgg_serd = train_stage1(config, train, val, run, num_classes, verbose)
    if stage == "1":
        return vgg_serd, None
    net = train_stage2(config, vgg_serd, train, val, run, num_classes, verbose)
    model = build_dam_cnn(vgg_serd, net)
    if not run.model_path.exists() or "model" not in run.completed():
        atomic_save_model(model, run.model_path)
        run.write_json("classes.json", {"class_names": list(class_names)})
        run.mark_completed("model")
    return vgg_serd, model


def load_class_names(run_or_model_path) -> list:
    path = Path(run_or_model_path)
    candidates = [path / "classes.json", path.parent / "classes.json"]
    for candidate in candidates:
        if candidate.exists():
            try:
                names = json.loads(candidate.read_text(encoding="utf-8"))["class_names"]
            except (UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
                raise RunDirError(f"{candidate}: not a class list of the form {{\"class_names\": [...]}} "
                                  f"({one_line(error)})") from None
            if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
                raise RunDirError(f"{candidate}: class names must be a list of non-empty strings")
            return names
    raise FileNotFoundError(f"{path}: no classes.json beside the model")
