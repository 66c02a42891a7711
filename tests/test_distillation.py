"""Distillation: the loss against an independent NumPy computation, the softening of a teacher's
probabilities, the augmentation, and a short fit of a tiny student."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from dam_cnn_tf.models.student import build_student
from dam_cnn_tf.training.distillation import (DistillationLoss, augment_faces, distillation_targets, soften,
                                              train_student, training_dataset)

NAMES = ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise")


def _reference_loss(labels, teacher, logits, temperature, alpha):
    """Hinton et al.'s loss written out directly, in float64: the teacher's probabilities raised to
    1/T and normalised, the student's softmax at T, their KL, T², and the cross-entropy at T = 1."""
    logits = np.asarray(logits, np.float64)
    p = np.asarray(teacher, np.float64) ** (1.0 / temperature)
    p /= p.sum(axis=1, keepdims=True)
    q_t = np.exp(logits / temperature)
    q_t /= q_t.sum(axis=1, keepdims=True)
    kl = np.sum(p * np.log(p / q_t), axis=1)
    q = np.exp(logits)
    q /= q.sum(axis=1, keepdims=True)
    ce = -np.log(q[np.arange(len(labels)), labels])
    return np.mean(alpha * temperature ** 2 * kl + (1 - alpha) * ce)


@pytest.mark.parametrize("temperature,alpha", [(1.0, 0.5), (4.0, 0.9), (2.5, 0.0), (3.0, 1.0)])
def test_loss_matches_an_independent_computation(temperature, alpha):
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=3.0, size=(6, 7)).astype(np.float32)
    teacher = rng.dirichlet(np.full(7, 0.5), size=6).astype(np.float32)
    labels = rng.integers(0, 7, size=6)
    loss = DistillationLoss(temperature, alpha)
    got = float(loss(distillation_targets(labels, teacher, 7), logits))
    np.testing.assert_allclose(got, _reference_loss(labels, teacher, logits, temperature, alpha), rtol=1e-4)


def test_the_soft_term_vanishes_when_the_student_agrees_with_the_teacher():
    teacher = np.random.default_rng(0).dirichlet(np.ones(7), size=4).astype(np.float32)
    logits = np.log(teacher)  # a student whose softmax is the teacher's, at every temperature
    loss = DistillationLoss(temperature=4.0, alpha=1.0)
    assert abs(float(loss(distillation_targets([0, 1, 2, 3], teacher, 7), logits))) < 1e-5
    assert float(loss(distillation_targets([0, 1, 2, 3], teacher, 7), logits[:, ::-1])) > 0.01


def test_soften_is_a_temperature_on_the_teachers_log_probabilities():
    p = np.array([[0.7, 0.2, 0.1, 0.0]])
    np.testing.assert_allclose(soften(p, 1.0), p, atol=1e-6)
    warm = soften(p, 4.0)
    np.testing.assert_allclose(warm.sum(), 1.0)
    assert warm[0, 0] < 0.7 and warm[0, 2] > 0.1 and np.all(np.diff(warm[0]) <= 0)  # flatter, same order
    np.testing.assert_allclose(warm[0, 0] / warm[0, 1], (0.7 / 0.2) ** 0.25, rtol=1e-6)


def test_targets_refuse_probabilities_of_another_shape():
    with pytest.raises(ValueError, match="3 faces and 7 classes"):
        distillation_targets([0, 1, 2], np.full((3, 6), 1 / 6), 7)
    with pytest.raises(ValueError, match="temperature"):
        DistillationLoss(temperature=0.0)


def test_augmentation_without_motion_is_the_face_or_its_mirror():
    faces = np.random.default_rng(1).uniform(0, 255, (16, 8, 8, 3)).astype(np.float32)
    out = augment_faces(tf.constant(faces), tf.constant([4, 2], tf.int64), max_degrees=0, max_scale=0,
                        max_shift=0).numpy()
    same = [np.allclose(o, f, atol=1e-3) for o, f in zip(out, faces)]
    mirrored = [np.allclose(o, f[:, ::-1], atol=1e-3) for o, f in zip(out, faces)]
    assert all(s or m for s, m in zip(same, mirrored)) and any(same) and any(mirrored)


def test_augmentation_is_reproducible_and_moves_faces_within_its_limits():
    faces = np.zeros((8, 16, 16, 1), np.float32)
    faces[:, 6:10, 6:10] = 255.0  # a square at the centre
    seed = tf.constant([7, 0], tf.int64)
    a = augment_faces(tf.constant(faces), seed, max_degrees=0, max_scale=0, max_shift=0.125).numpy()
    np.testing.assert_array_equal(a, augment_faces(tf.constant(faces), seed, max_degrees=0, max_scale=0,
                                                   max_shift=0.125).numpy())
    assert not np.allclose(a, faces)  # some face moved
    ys, xs = np.nonzero(a[..., 0].max(axis=0) > 127)
    assert ys.min() >= 6 - 2 and ys.max() <= 9 + 2 and xs.min() >= 6 - 2 and xs.max() <= 9 + 2  # 2 px = 1/8 of 16


def test_training_dataset_draws_new_augmentations_every_pass():
    faces = np.random.default_rng(2).integers(0, 255, (4, 8, 8, 3), dtype=np.uint8)
    targets = distillation_targets([0, 1, 2, 3], np.full((4, 7), 1 / 7), 7)
    batches = [b for b, _ in training_dataset(faces, targets, batch_size=4, seed=0).take(2)]
    first, second = (np.sort(b.numpy().reshape(4, -1), axis=0) for b in batches)
    assert batches[0].dtype == tf.float32 and not np.allclose(first, second)


def test_a_tiny_student_trains_and_its_history_is_kept(tmp_path):
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 255, (16, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, 7, 16)
    targets = distillation_targets(labels, rng.dirichlet(np.ones(7), 16), 7)
    model = build_student(NAMES, input_size=8, widths=(4, 8), convs_per_block=1, dense_units=(8,))
    before = [w.copy() for w in model.get_weights()]
    history = train_student(model, faces, targets, {"val": (faces[:4], labels[:4])}, epochs=2, batch_size=8,
                            backup_dir=tmp_path / "backup", log=None)
    assert len(history["loss"]) == 2 and np.isfinite(history["loss"]).all()
    assert len(history["val_val"]) == 2 and 0.0 <= history["val_val"][-1] <= 1.0
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))


def test_cosine_cycles_warm_up_decay_and_restart_lower():
    from dam_cnn_tf.training.distillation import CosineCycles

    schedule = CosineCycles(1e-3, cycle_steps=100, warmup_steps=10, peak_decay=0.5)
    keras_first = keras.optimizers.schedules.CosineDecay(0.0, decay_steps=90, warmup_target=1e-3, warmup_steps=10)
    for step in (0, 5, 10, 40, 99):  # the first cycle is Keras' warm-up and cosine decay
        np.testing.assert_allclose(float(schedule(step)), float(keras_first(step)), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(float(schedule(100)), 5e-4, rtol=1e-5)  # restart at half the peak, no warm-up
    np.testing.assert_allclose(float(schedule(150)), 2.5e-4, rtol=1e-5)
    assert float(schedule(199)) < 1e-6
    np.testing.assert_allclose(float(schedule(200)), 2.5e-4, rtol=1e-5)


def test_an_interrupted_run_resumes_and_keeps_its_whole_history(tmp_path):
    from dam_cnn_tf.training.distillation import read_epochs

    rng = np.random.default_rng(0)
    faces = rng.integers(0, 255, (16, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, 7, 16)
    targets = distillation_targets(labels, rng.dirichlet(np.ones(7), 16), 7)
    options = dict(validation={"val": (faces[:4], labels[:4])}, batch_size=8, backup_dir=tmp_path / "backup",
                   record=tmp_path / "epochs.jsonl", log=None)

    def student():
        return build_student(NAMES, input_size=8, widths=(4, 8), convs_per_block=1, dense_units=(8,))

    lines = []
    options["log"] = lines.append
    train_student(student(), faces, targets, epochs=1, **options)  # "stopped" after its first epoch
    assert not [line for line in lines if "resumed" in line]
    resumed = train_student(student(), faces, targets, epochs=1, cycles=3, **options)
    assert len(resumed["loss"]) == 2  # epochs 2 and 3 only: the first came from the backup
    assert [line for line in lines if line.startswith("resumed")] == ["resumed from the run's backup after epoch 1"]
    assert [e["epoch"] for e in read_epochs(tmp_path / "epochs.jsonl")] == [1, 2, 3]


def test_the_cycle_ends_averaged_with_batch_norm_recomputed_on_the_training_faces(tmp_path):
    """average_cycle_ends: each cycle's last weights are kept; the student ends as their mean, and
    each batch-norm layer's statistics are those of the training faces through the averaged
    weights (checked with one batch against NumPy on the layer's input)."""
    from dam_cnn_tf.training.distillation import cycle_end_path

    rng = np.random.default_rng(1)
    faces = rng.integers(0, 255, (16, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, 7, 16)
    targets = distillation_targets(labels, rng.dirichlet(np.ones(7), 16), 7)
    model = build_student(NAMES, input_size=8, widths=(4, 8), convs_per_block=1, dense_units=(8,))
    lines = []
    train_student(model, faces, targets, {"val": (faces[:4], labels[:4])}, epochs=1, cycles=3, batch_size=8,
                  average_cycle_ends=True, cycle_dir=tmp_path / "cycles", log=lines.append)
    paths = [cycle_end_path(tmp_path / "cycles", c) for c in (1, 2, 3)]
    assert all(p.is_file() for p in paths) and not list((tmp_path / "cycles").glob(".partial*"))
    assert "averaged" in lines[-1]
    saved = []
    for path in paths:
        copy = build_student(NAMES, input_size=8, widths=(4, 8), convs_per_block=1, dense_units=(8,))
        copy.load_weights(path)
        saved.append(copy)
    assert not np.allclose(saved[0].layers[2].get_weights()[0], saved[2].layers[2].get_weights()[0])
    norms = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(layer.momentum == 0.99 for layer in norms)  # restored after the recomputation
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            mean = np.mean([s.get_layer(layer.name).get_weights()[0] for s in saved], axis=0)
            np.testing.assert_allclose(layer.get_weights()[0], mean, rtol=1e-6, atol=1e-7)

    from dam_cnn_tf.training.distillation import recompute_batch_norm

    first = norms[0]
    recompute_batch_norm(model, faces, batch_size=len(faces))  # one batch: exactly its statistics
    inputs = keras.Model(model.input, first.input)(faces.astype(np.float32)).numpy().astype(np.float64)
    np.testing.assert_allclose(first.moving_mean.numpy(), inputs.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(first.moving_variance.numpy(), inputs.var(axis=(0, 1, 2)), rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="needs a cycle_dir"):
        train_student(model, faces, targets, {}, epochs=1, batch_size=8, average_cycle_ends=True, log=None)
