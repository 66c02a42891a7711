"""The faces a distilled preset learns from: each data set of its recipe at the student's size,
split as its teacher's run split it, with that teacher preset's probabilities for every face.

``scripts/build_distilled.py`` computes the labels it lacks (``predict``); the comparison of
runs (``benchmarks/student_runs.py``) only reads them back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Optional

from dam_cnn_tf.presets import PresetError, preset_card, teacher_fingerprint_of


def teacher_class_names(recipe: dict) -> tuple:
    """The class names every teacher of the recipe shares; ``PresetError`` if two differ."""
    from dam_cnn_tf.training.distillation_recipe import teacher_of

    names = {teacher_of(recipe, d) for d in recipe["datasets"]} | {recipe["teacher"]}
    chosen = tuple(preset_card(recipe["teacher"])["class_names"])
    for name in sorted(names):
        if tuple(preset_card(name)["class_names"]) != chosen:
            raise PresetError(f"teacher {name}: classes {preset_card(name)['class_names']} differ from {list(chosen)}")
    return chosen


def teacher_labelled_sets(recipe: dict, paths: Mapping[str, Path], cache_dir,
                          predict: Optional[Callable] = None, log: Callable[[str], None] = print) -> list:
    """``DistillationSet``s of the recipe's data sets (``paths``: name -> folder), with ``soft``
    read from ``cache_dir`` when it holds them for these faces and teachers, else
    ``predict(set)``; without ``predict``, a ``PresetError`` naming the data set."""
    from dam_cnn_tf.training.distillation_data import attach_teacher_labels, load_distillation_set
    from dam_cnn_tf.training.distillation_recipe import teacher_of

    class_names = teacher_class_names(recipe)
    fingerprints = {d: teacher_fingerprint_of(teacher_of(recipe, d), class_names) for d in recipe["datasets"]}
    seed = recipe["training"].get("seed", 0)
    sets = [load_distillation_set(name, paths[name], recipe["student"]["input_size"], recipe["val_fraction"], seed)
            for name in recipe["datasets"]]

    def missing(data):
        raise PresetError(f"{cache_dir}: no labels there for {data.name}'s faces by its teacher "
                          f"{teacher_of(recipe, data.name)}")

    attach_teacher_labels(sets, cache_dir, fingerprints, class_names, predict or missing, log=log)
    return sets
