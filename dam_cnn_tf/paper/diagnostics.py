"""Why stage 2 helps or not: the balance of Eq. 11's two terms and the state of the MPAE code.

Eq. 11 trains the encoder on ``Σ_j J_j + λ·L_ce``. Whether MPVS-Net can make the features
more discriminative depends on which term steers the encoder, so ``gradient_balance`` measures
the norm of each term's gradient at the encoder (W_E, B_E of Eq. 6) and the cosine between
them. ``code_saturation`` tells how much of the sigmoid code (Eq. 6) sits at 0 or 1, where it
passes no gradient; ``scaled_feature_share`` how many scaled inputs are exactly 0 (ReLU zeros)
or at the top of the range.

``diagnose_run`` applies them to a finished run directory, at the trained weights and at the
start (fresh weights, the same scaling), on the run's training features. ``prediction_agreement``
compares two cross-validations face by face (``test_predictions.csv`` of each fold): how many
test faces DAM-CNN decides differently from its own VGG-SERD, and which of the two is right.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from dam_cnn_tf.data.feature_cache import FeatureCache
from dam_cnn_tf.data.pairs import sample_pair_targets
from dam_cnn_tf.models.mpae import reconstruction_losses
from dam_cnn_tf.models.mpvs_net import MPVSNet
from dam_cnn_tf.recipes.options import TrainConfig, config_from_saved
from dam_cnn_tf.training.run_dir import RunDir
from dam_cnn_tf.training.stages import (build_stage1_model, load_class_names, start_from_vgg_serd)

# A sigmoid unit is "saturated" where its slope h(1 - h) is below 1 % of its maximum 1/4.
SATURATED_BELOW, SATURATED_ABOVE = 0.0101, 0.9899


def _encoder_variables(net: MPVSNet):
    return net.mpae.encoder.trainable_variables


def _global_norm(gradients) -> float:
    return float(tf.linalg.global_norm([g for g in gradients if g is not None]).numpy())


def _cosine(a, b) -> float:
    flat_a = tf.concat([tf.reshape(g, [-1]) for g in a], 0)
    flat_b = tf.concat([tf.reshape(g, [-1]) for g in b], 0)
    denominator = tf.norm(flat_a) * tf.norm(flat_b)
    return float((tf.reduce_sum(flat_a * flat_b) / denominator).numpy()) if float(denominator) > 0 else 0.0


def gradient_balance(net: MPVSNet, features, labels, targets) -> dict:
    """Eq. 11's two terms and their gradients at the encoder, on one batch (no dropout).

    ``features``: ``(B, D)`` salient features; ``labels``: ``(B,)``; ``targets``: ``(B, N, D)``
    the same-class targets of Eq. 8, unscaled like ``features``.
    """
    s = ops.convert_to_tensor(np.asarray(features, dtype="float32"))
    y = ops.convert_to_tensor(np.asarray(labels, dtype="int64"))
    variables = _encoder_variables(net)
    with tf.GradientTape(persistent=True) as tape:
        h = net.mpae.encode(s, training=False)
        probabilities = net.classify(h, training=False)
        cross_entropy = ops.mean(keras.losses.sparse_categorical_crossentropy(y, probabilities))
        per_path = reconstruction_losses(net.mpae.decoders(h), net.mpae.scale_targets(targets))
        reconstruction = ops.sum(per_path)  # Σ_j J_j
        weighted_ce = net.lam * cross_entropy  # λ·L_ce
    grad_reconstruction = tape.gradient(reconstruction, variables)
    grad_ce = tape.gradient(weighted_ce, variables)
    del tape
    norm_reconstruction, norm_ce = _global_norm(grad_reconstruction), _global_norm(grad_ce)
    return {
        "reconstruction": float(reconstruction),
        "lambda_cross_entropy": float(weighted_ce),
        "grad_norm_reconstruction": norm_reconstruction,
        "grad_norm_lambda_cross_entropy": norm_ce,
        "grad_ratio": norm_reconstruction / norm_ce if norm_ce > 0 else float("inf"),
        "grad_cosine": _cosine(grad_reconstruction, grad_ce),
    }


def code_saturation(net: MPVSNet, features) -> dict:
    """How much of the sigmoid code h (Eq. 6) is saturated, and how many units never move."""
    h = np.asarray(net.mpae.encode(np.asarray(features, dtype="float32"), training=False))
    saturated = (h < SATURATED_BELOW) | (h > SATURATED_ABOVE)
    return {
        "code_saturated_share": float(saturated.mean()),
        "code_mean": float(h.mean()),
        "code_units_constant_share": float((h.std(axis=0) < 1e-3).mean()),
    }


def scaled_feature_share(net: MPVSNet, features) -> dict:
    """Share of the scaled inputs (the decoders' targets) at exactly 0 and above 0.99."""
    scaled = np.asarray(net.mpae.scaler(np.asarray(features, dtype="float32")))
    return {"scaled_zero_share": float((scaled == 0).mean()), "scaled_top_share": float((scaled > 0.99).mean())}


def diagnose(net: MPVSNet, features, labels, targets) -> dict:
    """All three diagnostics on the same samples."""
    return {**gradient_balance(net, features, labels, targets), **code_saturation(net, features),
            **scaled_feature_share(net, features)}


def _build_net(config: TrainConfig, input_dim: int, num_classes: int, num_paths: int, feature_shape) -> MPVSNet:
    return MPVSNet(input_dim, num_classes, encoder_units=config.encoder_units, num_paths=num_paths,
                   fc_units=config.fc_units, dropout=config.dropout, lam=config.lam, decoder=config.decoder,
                   feature_shape=feature_shape)


def diagnose_run(run_path, max_samples: int = 256, seed: int = 0) -> dict:
    """``{"start": ..., "trained": ...}`` for the finished stage 2 of the run at ``run_path``."""
    run = RunDir(Path(run_path))
    # An experiment keeps one config.json per variant, beside its fold runs.
    stored = run.read_json("config.json", None) or RunDir(run.path.parent).read_json("config.json", None)
    if stored is None or "stage2" not in run.completed():
        raise ValueError(f"{run.path}: no completed stage 2 to diagnose")
    config = config_from_saved(stored, run.path / "config.json")
    cache = FeatureCache.open(run / "features" / "train")
    features = np.asarray(cache.features, dtype="float32")
    labels = np.asarray(cache.labels)
    weights = run / "stage2" / "mpvs_net.weights.h5"
    num_paths = int(run.step_info("stage2").get("num_paths", config.num_paths))
    num_classes = len(load_class_names(run.path))
    picked = np.random.default_rng(seed).permutation(len(features))[:max_samples]
    target_index = sample_pair_targets(labels, num_paths, seed=config.seed)[picked]
    batch = (features[picked], labels[picked], features[target_index])

    keras.utils.set_random_seed(config.seed)
    fresh = _build_net(config, features.shape[1], num_classes, num_paths, cache.feature_shape)
    fresh.mpae.adapt(features)  # the scaling stage 2 starts from
    if config.init_from_vgg_serd:  # and the weights
        vgg_serd = build_stage1_model(config.replace(backbone_weights=None), num_classes)
        vgg_serd.load_weights(run / "stage1" / "vgg_serd.weights.h5")
        start_from_vgg_serd(fresh, vgg_serd, config)
    trained = _build_net(config, features.shape[1], num_classes, num_paths, cache.feature_shape)
    trained.load_weights(weights)
    return {"start": diagnose(fresh, *batch), "trained": diagnose(trained, *batch)}


def prediction_agreement(baseline_dir, other_dir) -> dict:
    """Face-by-face comparison of two cross-validations over their common folds.

    ``same``: test faces both predict alike; ``fixed``: the baseline wrong and the other right;
    ``broken``: the reverse; ``changed_both_wrong``: both wrong, with different classes.
    """
    from dam_cnn_tf.evaluation.metrics import read_predictions

    counts = {"folds": 0, "faces": 0, "same": 0, "fixed": 0, "broken": 0, "changed_both_wrong": 0}
    for fold in sorted(Path(baseline_dir).glob("fold-*")):
        paths = fold / "test_predictions.csv", Path(other_dir) / fold.name / "test_predictions.csv"
        if not all(path.exists() for path in paths):
            continue
        base, other = (read_predictions(path) for path in paths)
        if set(base) != set(other):
            raise ValueError(f"{fold.name}: the two runs tested different faces")
        counts["folds"] += 1
        for index, (true, predicted) in base.items():
            other_predicted = other[index][1]
            counts["faces"] += 1
            if other_predicted == predicted:
                counts["same"] += 1
            elif other_predicted == true:
                counts["fixed"] += 1
            elif predicted == true:
                counts["broken"] += 1
            else:
                counts["changed_both_wrong"] += 1
    if not counts["folds"]:
        raise ValueError(f"{baseline_dir} and {other_dir}: no fold with test_predictions.csv in both")
    return counts


COLUMNS = ("reconstruction", "lambda_cross_entropy", "grad_ratio", "grad_cosine", "code_saturated_share",
           "code_units_constant_share", "scaled_zero_share")


def markdown_table(reports: dict) -> str:
    """One row per run and moment (start / trained), the columns of ``COLUMNS``."""
    lines = ["| run | at | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---:|" * len(COLUMNS)]
    for name, report in reports.items():
        for moment in ("start", "trained"):
            values = " | ".join(f"{report[moment][column]:.4g}" for column in COLUMNS)
            lines.append(f"| {name} | {moment} | {values} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    # python -m dam_cnn_tf.paper.diagnostics RUN_DIR...
    # python -m dam_cnn_tf.paper.diagnostics --agreement OUT/vgg-serd OUT/dam-cnn-n3 [OUT/dam-cnn-n5 ...]
    import json
    import sys

    if sys.argv[1:2] == ["--agreement"]:
        baseline, *others = sys.argv[2:]
        for other in others:
            print(json.dumps({"baseline": baseline, "other": other, **prediction_agreement(baseline, other)}))
    else:
        print(markdown_table({path: diagnose_run(path) for path in sys.argv[1:]}), end="")
