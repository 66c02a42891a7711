"""Stage 2 of Algorithm 1 (lines 5-11): VGG-SERD frozen, MPVS-Net learns from the cached
salient features of same-class pairs (Eq. 10-11), as its plan's phase says (``recipes.plan``):
its budget, rates, start, and whether that start competes with its rounds."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from dam_cnn_tf.data.face_set import FaceSet
from dam_cnn_tf.data.feature_cache import FeatureCache
from dam_cnn_tf.data.pairs import sample_pair_targets
from dam_cnn_tf.data.pipeline import pair_dataset
from dam_cnn_tf.models.mpvs_net import MPVSNet
from dam_cnn_tf.models.vgg_serd import feature_map_shape, salient_feature_model
from dam_cnn_tf.recipes.options import ConfigError, TrainConfig
from dam_cnn_tf.recipes.plan import Phase, Plan, as_plan
from dam_cnn_tf.training import fit
from dam_cnn_tf.training.callbacks import completed_epochs, kept_epoch
from dam_cnn_tf.training.distribute import make_optimizer, make_strategy
from dam_cnn_tf.training.features import extract_features
from dam_cnn_tf.training.run_dir import RunDir, atomic_save_weights
from dam_cnn_tf.training.schedule import learning_rate


def pair_targets(settings: TrainConfig, faces: FaceSet, seed: int, num_paths: int, epoch: int = 0):
    """N same-class targets per sample; decoder j's of attribute value j with ``--pair-attribute``.

    A part lacking one of the training part's attribute values (a small validation part)
    gets random same-class targets, so its N still matches the model's.
    """
    if settings.pair_attribute and len(set(faces.attributes.tolist())) == num_paths:
        return sample_pair_targets(faces.labels, None, seed=seed, attributes=faces.attributes, epoch=epoch)
    return sample_pair_targets(faces.labels, num_paths, seed=seed, epoch=epoch)


def training_pairs(plan, cache: FeatureCache, faces: FaceSet, num_paths: int, stage_dir: Path):
    """Stage 2's training batches and ``fit``'s extra arguments.

    The paper stores one set of pairs before stage 2 (§3.3.2), the default. ``--resample-pairs``
    draws fresh same-class targets for each pass over the data instead, seeded by (seed, pass);
    a resumed run starts at the pass it stopped in, so it sees the targets an uninterrupted run would.
    """
    plan = as_plan(plan, len(faces))
    settings, phase = plan.settings, plan.stage2
    batch = phase.batch_size
    steps = {} if phase.by_epochs else {"steps_per_epoch": phase.steps_per_round}
    if not settings.resample_pairs or phase.rounds == 0:
        targets = pair_targets(settings, faces, settings.seed, num_paths)
        return (pair_dataset(cache, faces.labels, targets, batch, shuffle=True, seed=settings.seed,
                             repeat=not phase.by_epochs), steps)
    one_pass = -(-len(faces) // batch)
    passes = -(-phase.total_steps // one_pass)
    # (A kill after the last round's backup but before the stage was marked done resumes there.)
    done_steps = completed_epochs(stage_dir / "backup") * phase.steps_per_round
    first_pass = min(done_steps // one_pass, passes - 1)
    dataset = pair_dataset(cache, faces.labels,
                           lambda epoch: pair_targets(settings, faces, settings.seed, num_paths, epoch=epoch),
                           batch, shuffle=True, seed=settings.seed, epochs=passes, first_epoch=first_pass)
    # One dataset over all passes, so fit must be told where each round ends.
    return dataset, {"steps_per_epoch": phase.steps_per_round}


def num_paths_for(settings: TrainConfig, faces: FaceSet) -> int:
    """N: ``--num-paths``, or the number of attribute values for attribute-specific decoders."""
    if settings.pair_attribute:
        return len(set(faces.attributes.tolist()))
    return settings.num_paths


def needs_vgg_serd(settings: TrainConfig) -> bool:
    """Whether stage 2 reaches back into stage 1's model: its weights as a start, the backbone
    for end-to-end training, or the feature map's shape for the convolutional decoders."""
    return settings.init_from_vgg_serd or settings.end_to_end or settings.decoder != "dense"


def start_from_vgg_serd(net: MPVSNet, vgg_serd, settings: TrainConfig) -> None:
    """MPVS-Net's starting weights from stage 1's classifier where the settings ask for it: the
    MPAE encoder from fc6, its FC layer from fc7 and its output layer from fc8. Call after the
    encoder's scaling is fitted."""
    if settings.init_from_vgg_serd:
        net.mpae.init_encoder_from_dense(*vgg_serd.get_layer("fc6").get_weights())
        net.init_head_from_dense(vgg_serd.get_layer("fc7").get_weights(), vgg_serd.get_layer("fc8").get_weights())


def train_stage2(plan, vgg_serd, train: FaceSet, val: FaceSet, run: RunDir, num_classes: int,
                 verbose: int = 1) -> MPVSNet:
    """Stage 2: freeze VGG-SERD, extract features once, train MPVS-Net (Eq. 10-11)."""
    plan = as_plan(plan, len(train))
    feature_dir = run.stage_dir("features")
    caches = (extract_features(vgg_serd, train, feature_dir / "train", plan, verbose),
              extract_features(vgg_serd, val, feature_dir / "val", plan, verbose))
    return train_mpvs_net(plan, caches, train, val, run, num_classes, vgg_serd, verbose)


def train_mpvs_net(plan, caches, train: FaceSet, val: FaceSet, run: RunDir, num_classes: int,
                   vgg_serd=None, verbose: int = 1) -> MPVSNet:
    """MPVS-Net on the cached salient features ``caches = (train, val)`` (Algorithm 1, lines 5-11).

    Of the faces only the labels (and attributes) are read, but for ``end_to_end``. ``vgg_serd``
    is needed by what reaches back into stage 1 (``needs_vgg_serd``).
    """
    plan = as_plan(plan, len(train))
    settings, phase = plan.settings, plan.stage2
    if vgg_serd is None and needs_vgg_serd(settings):
        raise ConfigError("--init-from-vgg-serd, --end-to-end and --decoder conv need stage 1's model")
    train_cache, val_cache = caches
    stage_dir = run.stage_dir("stage2")
    num_paths = num_paths_for(settings, train)
    with make_strategy(settings.strategy).scope():
        net = MPVSNet(
            train_cache.features.shape[1],
            num_classes,
            encoder_units=settings.encoder_units,
            num_paths=num_paths,
            fc_units=settings.fc_units,
            dropout=settings.dropout,
            lam=settings.lam,
            per_path_updates=settings.per_path_updates,
            decoder=settings.decoder,
            feature_shape=None if vgg_serd is None else feature_map_shape(vgg_serd),
        )
        net.compile(
            optimizer=make_optimizer(settings.optimizer, _rate(phase, phase.rate)),
            mpae_optimizer=make_optimizer(settings.optimizer, _rate(phase, phase.mpae_rate)),
            jit_compile=settings.jit_compile,
        )
    if "stage2" in run.completed():
        if settings.end_to_end:
            vgg_serd.load_weights(stage_dir / "vgg_serd.weights.h5")
        net.load_weights(stage_dir / "mpvs_net.weights.h5")
        return net
    net.mpae.adapt(train_cache.features)  # the [0, 1] scaling, from training features only
    start_from_vgg_serd(net, vgg_serd, settings)
    # The validation pairs stay fixed, so their loss is comparable from round to round.
    val_targets = pair_targets(settings, val, settings.seed + 1, num_paths)
    if settings.end_to_end:
        train_targets = pair_targets(settings, train, settings.seed, num_paths)
        return _train_end_to_end(plan, vgg_serd, net, train, val, (train_targets, val_targets), run, stage_dir,
                                 num_paths, verbose)
    train_ds, fit_kwargs = training_pairs(plan, train_cache, train, num_paths, stage_dir)
    val_ds = pair_dataset(val_cache, val.labels, val_targets, phase.batch_size, shuffle=False)
    if verbose:
        print(f"Stage 2: up to {phase.total_steps} steps ({phase.rounds} rounds of {phase.steps_per_round}), "
              f"at least {phase.floor_rounds * phase.steps_per_round}")
    start = time.monotonic()
    # Started as stage 1's classifier (a sigmoid fc6 makes the start that classifier exactly),
    # the start competes with the rounds: stage 2 never ends with a worse monitored validation
    # score than stage 1's.
    _, rounds = fit.fit_phase(net, train_ds, val_ds, phase, stage_dir, "stage 2", verbose, **fit_kwargs)
    atomic_save_weights(net, stage_dir / "mpvs_net.weights.h5")
    run.mark_completed("stage2", epochs=rounds, steps=rounds * phase.steps_per_round, num_paths=num_paths,
                       seconds=round(time.monotonic() - start, 1))
    return net


def _rate(phase: Phase, peak: float):
    return learning_rate(peak, phase.total_steps, phase.schedule, phase.warmup_fraction)


def stage2_kept_round(run: RunDir) -> Optional[int]:
    """The validation round whose weights stage 2 ended with (1 = the first), 0 when its start
    competed and no round beat it; None when no round was checkpointed."""
    return kept_epoch(run.path / "stage2" / fit.BEST_WEIGHTS)


def _train_end_to_end(plan: Plan, vgg_serd, net, train, val, targets, run, stage_dir, num_paths, verbose) -> MPVSNet:
    from dam_cnn_tf.training.end_to_end import end_to_end_datasets, make_end_to_end

    settings, phase = plan.settings, plan.stage2
    with make_strategy(settings.strategy).scope():
        model = make_end_to_end(salient_feature_model(vgg_serd), net, settings)
    train_ds, val_ds = end_to_end_datasets(settings, train, val, *targets)
    _, rounds = fit.fit_rounds(model, train_ds, val_ds, phase.rounds, stage_dir, "stage 2 (end to end)",
                               phase.patience, verbose, monitor=phase.monitor)
    atomic_save_weights(vgg_serd, stage_dir / "vgg_serd.weights.h5")
    atomic_save_weights(net, stage_dir / "mpvs_net.weights.h5")
    run.mark_completed("stage2", epochs=rounds, num_paths=num_paths, end_to_end=True)
    return net
