"""Distilled students side by side on the same faces, for choosing between runs of a recipe.

    python -m benchmarks.student_runs --run <run-A> --run <run-B> \\
        --data fer2013=<fer2013>/train --data rafdb=<rafdb>/train \\
        --teacher-labels <run-A>/teacher --json benchmarks/results/student-runs.json

Each run folder is one ``scripts/build_preset.py`` distillation run (its ``model.keras`` and
``recipe.json``); all of them must share the data sets, split and teachers. For each data set:

- on its validation part, each student's accuracy in one pass (with its per-class recall) and
  with the mirror average, and each later run against the first, face by face (McNemar's exact
  test);
- on ``--train-sample`` faces drawn from its training part, each student's accuracy and how
  often it gives the teacher's class: a student about as right on training faces as on
  validation ones, and far from its teacher even on the faces it learnt from, is too small
  rather than overfitted.

The teachers' labels are read from the folder the build kept them in and checked against the
faces and the teachers; none is computed here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SPLIT_KEYS = ("datasets", "val_fraction", "teachers", "teacher")


def read_runs(runs) -> dict:
    """The recipe the runs share; ``SystemExit`` naming the run that differs."""
    recipes = [json.loads((Path(run) / "recipe.json").read_text(encoding="utf-8")) for run in runs]
    first = recipes[0]
    for run, recipe in zip(runs, recipes):
        same = all(recipe.get(k) == first.get(k) for k in SPLIT_KEYS) and \
            recipe["training"].get("seed", 0) == first["training"].get("seed", 0) and \
            recipe["student"]["input_size"] == first["student"]["input_size"]
        if not same:
            raise SystemExit(f"--run {run}: its data sets, split, teachers or input size differ from {runs[0]}'s")
    return first


def labelled_sets(recipe: dict, data: dict, labels_dir: Path) -> list:
    """Each data set at the students' size, split as their runs split it, with its teacher's labels."""
    from dam_cnn_tf.presets import PresetError
    from dam_cnn_tf.presets.teacher_sets import teacher_labelled_sets

    missing = [name for name in recipe["datasets"] if name not in data]
    if missing:
        raise SystemExit(f"--data: give NAME=PATH for {', '.join(missing)}")
    try:  # labels are read back, never computed here
        return teacher_labelled_sets(recipe, data, labels_dir, log=lambda message: None)
    except PresetError as error:
        raise SystemExit(f"--teacher-labels {error} (build the run first)") from None


def probabilities(model, faces: np.ndarray, mirror: bool = False) -> np.ndarray:
    faces = faces.astype(np.float32)
    if mirror:
        faces = faces[:, :, ::-1]
    return model.predict(faces, batch_size=256, verbose=0)["probabilities"]


def compare(runs, sets, train_sample: int, seed: int = 0) -> dict:
    from dam_cnn_tf.evaluation.baselines import mcnemar
    from dam_cnn_tf.evaluation.metrics import classification_report
    from dam_cnn_tf.models.model_file import load_model_file

    out = {}
    models = {Path(run).name: load_model_file(Path(run) / "model.keras") for run in runs}
    for data in sets:
        drawn = np.sort(np.random.default_rng(seed).choice(data.train, min(train_sample, len(data.train)),
                                                           replace=False))
        entry, right_first = {"validation_faces": int(len(data.val)), "training_faces_drawn": int(len(drawn))}, None
        val = data.faces[data.val]
        for i, (run, model) in enumerate(models.items()):
            one = probabilities(model, val)
            mirrored = (one + probabilities(model, val, mirror=True)) / 2
            right = one.argmax(1) == data.labels[data.val]
            on_train = probabilities(model, data.faces[drawn]).argmax(1)
            entry[run] = {
                "validation_accuracy": float(right.mean()),
                "validation_accuracy_mirror_average": float(np.mean(mirrored.argmax(1) == data.labels[data.val])),
                "validation_per_class_recall": classification_report(data.labels[data.val], one,
                                                                     data.class_names)["per_class_recall"],
                "training_accuracy": float(np.mean(on_train == data.labels[drawn])),
                "training_agreement_with_teacher": float(np.mean(on_train == data.soft[drawn].argmax(1))),
            }
            if i == 0:
                right_first = right
            else:
                entry[run]["against_first"] = mcnemar(right, right_first)
        entry["teacher_validation_accuracy"] = float(np.mean(data.soft[data.val].argmax(1) == data.labels[data.val]))
        out[data.name] = entry
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", type=Path, required=True, help="a distillation run folder")
    parser.add_argument("--data", action="append", default=[], metavar="NAME=PATH", help="each data set's folder")
    parser.add_argument("--teacher-labels", type=Path, required=True, help="the folder of the teachers' labels")
    parser.add_argument("--train-sample", type=int, default=4000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    data = {}
    for item in args.data:
        name, sep, path = item.partition("=")
        if not sep or not path:
            parser.error(f"--data {item}: expected NAME=PATH")
        data[name] = path
    for run in args.run:
        if not (run / "model.keras").is_file():
            parser.error(f"--run {run}: no model.keras there")
    names = [run.name for run in args.run]
    if len(set(names)) != len(names):
        parser.error("--run: the run folders' names must differ (the figures are keyed by them)")
    recipe = read_runs(args.run)
    figures = compare(args.run, labelled_sets(recipe, data, args.teacher_labels), args.train_sample)
    for name, entry in figures.items():
        for run in names:
            r = entry[run]
            versus = r.get("against_first")
            print(f"{name} {run}: validation {100 * r['validation_accuracy']:.2f} % "
                  f"(mirrored {100 * r['validation_accuracy_mirror_average']:.2f}), training faces "
                  f"{100 * r['training_accuracy']:.2f} %, agrees with the teacher on "
                  f"{100 * r['training_agreement_with_teacher']:.1f} % of them"
                  + (f"; against the first {versus['only_first_right']}/{versus['only_second_right']} "
                     f"p = {versus['p_value']:.3g}" if versus else ""))
    if args.json:
        args.json.write_text(json.dumps({"runs": names, "train_sample": args.train_sample, "figures": figures},
                                        indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
