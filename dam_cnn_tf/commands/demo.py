"""``damcnn-tf demo``: the whole job on the built-in synthetic faces, on a CPU in minutes."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from dam_cnn_tf.commands.common import handle_user_errors

# The demo's settings: the recipe ``demo`` (dam_cnn_tf/recipes/demo.toml).
DEMO_RECIPE = "demo"
DEMO_SUBJECTS = 64
DEMO_IMAGES_PER_CLASS = 2


def synthetic_prepared(config, num_subjects: int = DEMO_SUBJECTS, images_per_class: int = DEMO_IMAGES_PER_CLASS, seed: int = 0):
    """The synthetic faces as prepared data (they are face crops already: no detection)."""
    from dam_cnn_tf.data.synthetic import make_synthetic_faces
    from dam_cnn_tf.training.prepare import PreparedData, select_classes

    dataset = make_synthetic_faces(num_subjects=num_subjects, images_per_class=images_per_class,
                                   image_size=config.input_size, seed=seed)
    dataset = select_classes(dataset, config.classes)
    faces = np.stack([s.image for s in dataset.samples])
    return PreparedData(dataset, faces, dataset.labels())


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("damcnn-demo"), show_default=True,
              help="where the run, the test evaluation, predictions and attention maps go")
@click.option("--subjects", type=int, default=DEMO_SUBJECTS, show_default=True, help="synthetic subjects to draw")
@click.option("--epochs", type=int, default=None, help="epochs of each stage [default: 60 for stage 1, 20 for stage 2]")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="no progress bars")
@handle_user_errors
def demo(out, subjects, epochs, seed, quiet):
    """Train a small DAM-CNN on synthetic faces, test it on unseen subjects, and write
    predictions and SERD attention maps. No download; a few minutes on a CPU."""
    from dam_cnn_tf.data.protocols import Fold, subject_kfold, carve_validation
    from dam_cnn_tf.evaluation.baselines import PIXELS, pixel_features, probe_fold
    from dam_cnn_tf.evaluation.crossval import run_fold
    from dam_cnn_tf.recipes import resolve_settings
    from dam_cnn_tf.recipes.plan import make_plan
    from dam_cnn_tf.training.run_dir import RunDir

    if subjects < 6:
        raise click.BadParameter("needs at least 6 subjects (train, validation and test are split by subject)", param_hint="--subjects")
    overrides = {"seed": seed}
    if epochs is not None:
        overrides.update(stage1_epochs=epochs, stage2_epochs=epochs)
    config, sources = resolve_settings(recipe=DEMO_RECIPE, options=overrides)
    data = synthetic_prepared(config, num_subjects=subjects, seed=seed)
    subjects_ids = data.dataset.subjects()
    # One fold of a subject-grouped 4-fold split: the test faces belong to unseen people.
    fold = subject_kfold(data.labels, subjects_ids, 4, seed)[0]
    fold = carve_validation(Fold("demo", fold.train, fold.test), data.labels, subjects_ids, 0.2, seed)
    run = RunDir(out)
    click.echo(f"Synthetic faces: {len(data.labels)} images of {subjects} subjects, {len(data.class_names)} classes; "
               f"{len(fold.train)} train, {len(fold.val)} validation, {len(fold.test)} test (unseen subjects)")
    result = run_fold(data, fold, make_plan(config, len(fold.train), sources), run, verbose=0 if quiet else 2)
    chance = 1.0 / len(data.class_names)
    # The trivial bar on the same split: logistic regression on the raw pixels.
    pixels = probe_fold(pixel_features(data.faces), data.labels, fold, data.class_names, seed)
    run.write_json("baseline_pixels.json", pixels)
    click.echo(f"Test accuracy on unseen subjects: {100 * result['accuracy']:.1f}% (chance {100 * chance:.1f}%; "
               f"{PIXELS.label}: {100 * pixels['accuracy']:.1f}%)")
    _write_predictions(run, data, _two_per_class(data, fold.test), config)
    click.echo(f"Written to {out}: model.keras, test_evaluation.json/.png, baseline_pixels.json, predictions.csv, "
               "attention.png")


def _two_per_class(data, indices) -> np.ndarray:
    """Two test faces of each class, of different people where possible."""
    chosen = []
    for label in range(len(data.class_names)):
        seen = set()
        for i in indices:
            subject = data.dataset.samples[i].subject
            if data.labels[i] == label and subject not in seen:
                chosen.append(i)
                seen.add(subject)
            if len(seen) == 2:
                break
    return np.asarray(chosen, dtype=np.int64)


def _write_predictions(run, data, indices, config) -> None:
    """Predictions and attention maps for a few test faces."""
    import csv
    import io

    from dam_cnn_tf.data.pipeline import image_dataset
    from dam_cnn_tf.models.model_file import load_model_file
    from dam_cnn_tf.training.run_dir import atomic_write_text
    from dam_cnn_tf.viz.attention import attention_grid

    model = load_model_file(run.model_path)
    out = model.predict(image_dataset(data.faces[indices], None, 32, config.input_size, preprocess=False), verbose=0)
    predicted = out["probabilities"].argmax(axis=1)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["index", "subject", "true", "predicted", *data.class_names])
    for row, i in enumerate(indices):
        sample = data.dataset.samples[i]
        writer.writerow([int(i), sample.subject, sample.label, data.class_names[predicted[row]],
                         *(f"{p:.4f}" for p in out["probabilities"][row])])
    atomic_write_text(run.path / "predictions.csv", text.getvalue())
    captions = [f"{data.dataset.samples[i].label[:4]}>{data.class_names[p][:4]}" for i, p in zip(indices, predicted)]
    attention_grid(data.faces[indices], out["attention"], captions, run.path / "attention.png")
