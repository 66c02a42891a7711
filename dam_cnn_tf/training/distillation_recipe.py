"""A distilled student from a recipe file: the data sets, the teacher, the architecture and the
training budget in one TOML table (``dam_cnn_tf/recipes/distilled/*.toml``), run into a
run directory (``model.keras`` as trained, ``history.json``, ``recipe.json``).

    [student]   input_size, widths, convs_per_block, dense_units, dropout, serd
    [training]  epochs (per cycle), cycles, cycle_peak, average_cycle_ends, batch_size, learning_rate, weight_decay, temperature, alpha, seed,
                max_degrees, max_scale, max_shift
    kind = "distilled"; teacher = "<preset>"; datasets = ["fer2013", "rafdb"]; val_fraction; select_on = "fer2013"
    [teachers]  (optional) a data set's own teacher, e.g. rafdb = "rafdb-face-resnet"; the others use ``teacher``
    [shipping]  (optional) how the trained student is served: mirror_average, light_quantize ("none",
                "float16" or "int8"), calibration_faces (training faces an int8 file is scaled on);
                it does not change training, so a run trained before it was edited is packed again
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Sequence

import numpy as np

from dam_cnn_tf.quantization import MIN_CALIBRATION_FACES

KIND = "distilled"
# What a recipe leaves out (``resolve_recipe`` fills it in, so a card records every value used).
STUDENT_DEFAULTS = {"input_size": 48, "widths": [32, 64, 128], "convs_per_block": 2, "dense_units": [256],
                    "dropout": 0.5, "serd": True}
TRAINING_DEFAULTS = {"epochs": 30, "cycles": 1, "cycle_peak": 0.5, "average_cycle_ends": False, "batch_size": 128, "learning_rate": 2e-3, "weight_decay": 1e-4,
                     "temperature": 4.0, "alpha": 0.9, "seed": 0, "max_degrees": 10.0, "max_scale": 0.1,
                     "max_shift": 0.08}
SHIPPING_DEFAULTS = {"mirror_average": False, "light_quantize": "none", "calibration_faces": 1000}
LIGHT_QUANTIZE = ("none", "float16", "int8")
STUDENT_KEYS = tuple(STUDENT_DEFAULTS)
TRAINING_KEYS = tuple(TRAINING_DEFAULTS)
SHIPPING_KEYS = tuple(SHIPPING_DEFAULTS)


class RecipeError(ValueError):
    """A recipe that misses a table or names an unknown key; one line naming the recipe."""


def read_recipe(path) -> dict:
    """The recipe at ``path`` (TOML), checked for its tables and keys."""
    import tomllib

    path = Path(path)
    try:
        recipe = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RecipeError(f"{path}: unreadable recipe ({error})") from None
    return resolve_recipe(recipe, str(path))


def resolve_recipe(recipe: dict, where: str = "recipe") -> dict:
    """``recipe`` checked, with every student and training value it leaves out at its default."""
    check_recipe(recipe, where)
    return {**recipe, "student": {**STUDENT_DEFAULTS, **recipe["student"]},
            "training": {**TRAINING_DEFAULTS, **recipe["training"]},
            "shipping": {**SHIPPING_DEFAULTS, **recipe.get("shipping", {})}}


def training_part(recipe: dict) -> dict:
    """What decides a run's training: the recipe without its ``[shipping]`` table."""
    return {key: value for key, value in recipe.items() if key != "shipping"}


def is_distillation_recipe(path) -> bool:
    """Whether the TOML file at ``path`` is a distillation recipe (``kind = "distilled"``), not a
    ``damcnn-tf train`` config."""
    import tomllib

    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8")).get("kind") == KIND
    except (OSError, ValueError):
        return False


def check_recipe(recipe: dict, where: str = "recipe") -> None:
    if recipe.get("kind") != KIND:
        raise RecipeError(f"{where}: not a distillation recipe (kind = {KIND!r} missing)")
    for key in ("teacher", "datasets", "select_on", "val_fraction", "student", "training"):
        if key not in recipe:
            raise RecipeError(f"{where}: no {key!r}")
    for table, keys in (("student", STUDENT_KEYS), ("training", TRAINING_KEYS), ("shipping", SHIPPING_KEYS)):
        unknown = set(recipe.get(table, {})) - set(keys)
        if unknown:
            raise RecipeError(f"{where}: unknown [{table}] keys {sorted(unknown)}; known: {', '.join(keys)}")
    if recipe["select_on"] not in recipe["datasets"]:
        raise RecipeError(f"{where}: select_on {recipe['select_on']!r} is not among datasets {recipe['datasets']}")
    shipping = {**SHIPPING_DEFAULTS, **recipe.get("shipping", {})}
    if shipping["light_quantize"] not in LIGHT_QUANTIZE:
        raise RecipeError(f"{where}: [shipping] light_quantize must be one of {', '.join(LIGHT_QUANTIZE)}, "
                          f"got {shipping['light_quantize']!r}")
    if not isinstance(shipping["mirror_average"], bool):
        raise RecipeError(f"{where}: [shipping] mirror_average must be true or false")
    if not isinstance(shipping["calibration_faces"], int) or shipping["calibration_faces"] < MIN_CALIBRATION_FACES:
        raise RecipeError(f"{where}: [shipping] calibration_faces must be a whole number of at least "
                          f"{MIN_CALIBRATION_FACES}")
    others = set(recipe.get("teachers", {})) - set(recipe["datasets"])
    if others:
        raise RecipeError(f"{where}: [teachers] names {sorted(others)}, not among datasets {recipe['datasets']}")


def teacher_of(recipe: dict, dataset: str) -> str:
    """The preset that labels ``dataset``'s faces: its entry in ``[teachers]``, else ``teacher``
    (the one whose validation figures the student stands beside)."""
    return recipe.get("teachers", {}).get(dataset, recipe["teacher"])


def training_faces(sets: Sequence, names: Sequence[str]) -> tuple:
    """The training parts (never the validation parts) of the named sets, side by side:
    faces, labels and teacher probabilities."""
    chosen = [s for s in sets if s.name in names]
    faces = np.concatenate([s.faces[s.train] for s in chosen])
    labels = np.concatenate([s.labels[s.train] for s in chosen])
    soft = np.concatenate([s.soft[s.train] for s in chosen])
    return faces, labels, soft


def distil(recipe: dict, sets: Sequence, class_names: Sequence[str], run_dir,
           log: Callable[[str], None] = print) -> Dict:
    """Train the recipe's student on the training parts of ``sets`` (``DistillationSet``s with
    their teacher labels), score every validation part after each epoch, save the run."""
    from dam_cnn_tf.models.student import build_student, student_config
    from dam_cnn_tf.training.distillation import distillation_targets, read_epochs, train_student
    from dam_cnn_tf.training.run_dir import atomic_write_json

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "recipe.json", training_part(recipe))  # [shipping] does not train
    model = build_student(class_names, **recipe["student"])
    faces, labels, soft = training_faces(sets, recipe["datasets"])
    targets = distillation_targets(labels, soft, len(class_names))
    validation = {s.name: (s.faces[s.val], s.labels[s.val]) for s in sets}
    figures = student_config(model)
    log(f"Student: {figures['parameters']:,} parameters, {figures['flops_per_face'] / 1e6:.1f} MFLOP per face; "
        f"{len(faces):,} training faces ({', '.join(recipe['datasets'])})")
    train_student(model, faces, targets, validation, backup_dir=run_dir / "backup", cycle_dir=run_dir / "cycles",
                  record=run_dir / "epochs.jsonl",
                  log=log, **recipe["training"])
    model.save(run_dir / "model.keras")
    epochs = read_epochs(run_dir / "epochs.jsonl")  # every epoch, those before a resumption too
    history = {key: [e.get(key) for e in epochs] for key in epochs[-1] if key != "epoch"}
    result = {"history": history, "seconds": round(sum(e["seconds"] for e in epochs), 1),
              "train_faces": {s.name: int(len(s.train)) for s in sets if s.name in recipe["datasets"]},
              "student": figures}
    atomic_write_json(run_dir / "history.json", result)
    return result
