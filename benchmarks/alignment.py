"""Does aligning detected faces by their eyes help a preset? Measured on its validation faces.

    python -m benchmarks.alignment --faces <rafdb>/train \\
        --json benchmarks/results/cpu-intel-xeon-alignment-rafdb.json
    python -m benchmarks.alignment --preset fer2013-face-resnet --faces <fer2013>/train \\
        --json benchmarks/results/cpu-intel-xeon-alignment-fer2013.json
    python -m benchmarks.alignment --record --from-json \\
        --json benchmarks/results/cpu-intel-xeon-alignment-rafdb.json

The faces are the preset's validation part (10 % of its training folder, stratified by class,
seed 0, as ``training.prepare.training_split`` carves it: the faces its card measures; never a
test set). Each is made into a photo: enlarged to ``--face-side`` pixels, turned by an angle
drawn uniformly in +-``--max-angle`` degrees, scaled by a factor drawn in ``--scale``, and put
at a random place near the middle of a ``--canvas`` square of flat grey; the draws are fixed
by ``--seed``. The same photos are also made with
no turn (the upright condition: alignment must not hurt there).

Each photo goes through ``Predictor.predict_image`` with the preset (its light file where it
has one), the detector finding the face, with ``align=True`` and ``align=False``. A face
counts as found when a detected box holds the face's centre. Reported per condition:
faces found, accuracy on the faces found and on the whole set (a face not found counts as
wrong), Wilson's 95 % intervals, and McNemar's exact test, aligned against not, face by face.
The ceiling is the preset on the validation crops as training prepared them (no detection).

``--record`` writes the figures into the preset's card (``eye_template.validation``) and
decides ``eye_template.on_by_default``, what ``predict``'s default (``align="auto"``) follows,
by a rule fixed before measuring (``helps``): aligned faces are right significantly more often
than upright boxes on the turned photos (McNemar's exact p < 0.05), and not significantly less
often on the upright ones.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.machine import cpu_name, load_average
from benchmarks.validation_faces import accuracy_interval, validation_part

PRESET = "rafdb-face-resnet"
# A flat grey around the face: a replicated border smears it into stripes and a reflected one
# mirrors it, and BlazeFace missed 7 % and 12 % of 120 such faces, against 2 % on grey.
BACKGROUND = 128


def make_photo(face: np.ndarray, angle: float, scale: float, offset, face_side: int, canvas: int) -> tuple:
    """``(photo, centre)``: ``face`` enlarged to ``face_side``, turned by ``angle`` degrees
    (counter-clockwise) and scaled by ``scale`` about its centre, which lands at the canvas's
    middle plus ``offset``; grey around it."""
    interpolation = cv2.INTER_CUBIC if face.shape[0] < face_side else cv2.INTER_AREA
    big = cv2.resize(face, (face_side, face_side), interpolation=interpolation)
    matrix = cv2.getRotationMatrix2D((face_side / 2.0, face_side / 2.0), angle, scale)
    centre = np.array([canvas / 2.0 + offset[0], canvas / 2.0 + offset[1]])
    matrix[:, 2] += centre - face_side / 2.0
    photo = cv2.warpAffine(big, matrix, (canvas, canvas), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=(BACKGROUND,) * 3)
    return photo, centre


def draws(count: int, seed: int, max_angle: float, scale_range, max_offset: float) -> dict:
    """The angle, scale and offset of each photo, fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    return {"angle": rng.uniform(-max_angle, max_angle, count), "scale": rng.uniform(*scale_range, count),
            "offset": rng.uniform(-max_offset, max_offset, (count, 2))}


def face_at(faces, centre) -> int | None:
    """The class predicted for the detected face whose box holds ``centre`` (the largest such box), or None."""
    holding = [f for f in faces if f.detected and f.box[0] <= centre[0] <= f.box[0] + f.box[2]
               and f.box[1] <= centre[1] <= f.box[1] + f.box[3]]
    if not holding:
        return None
    return max(holding, key=lambda f: f.box[2] * f.box[3]).class_id


def summarize(predicted: list, labels: np.ndarray) -> dict:
    """Found faces and accuracy (on the faces found and on all, a missed face counting as wrong)."""
    found = np.array([p is not None for p in predicted])
    correct = np.array([p is not None and p == y for p, y in zip(predicted, labels)])
    return {"faces": len(labels), "found": int(found.sum()),
            "accuracy_found": float(correct[found].mean()) if found.any() else None,
            "accuracy_found_interval": accuracy_interval(correct[found]) if found.any() else None,
            "accuracy_all": float(correct.mean()), "accuracy_all_interval": accuracy_interval(correct),
            "correct": correct}


def helps(results: dict, level: float = 0.05) -> bool:
    """The rule for ``on_by_default`` (see the module's note), on ``aligned_against_box_all``."""
    turned, upright = results["rotated"]["aligned_against_box_all"], results["upright"]["aligned_against_box_all"]
    better = turned["p_value"] < level and turned["only_first_right"] > turned["only_second_right"]
    worse = upright["p_value"] < level and upright["only_first_right"] < upright["only_second_right"]
    return bool(better and not worse)


def card_entry(figures: dict) -> dict:
    """What the card records of a run (``eye_template.validation``), with its one-sentence summary."""
    def condition(name):
        r = figures[name]
        test = r["aligned_against_box_all"]
        return {"found": r["aligned"]["found"], "aligned": round(r["aligned"]["accuracy_all"], 4),
                "box": round(r["box"]["accuracy_all"], 4), "only_aligned_right": test["only_first_right"],
                "only_box_right": test["only_second_right"], "mcnemar_p": float(f"{test['p_value']:.3g}")}

    turned, upright = condition("rotated"), condition("upright")
    p = figures["photos"]
    summary = (f"On photos made from the {figures['faces']} validation faces (each turned by up to "
               f"{p['max_angle']:g} degrees and put on a {p['canvas']} px canvas), aligned faces score "
               f"{100 * turned['aligned']:.2f} % against {100 * turned['box']:.2f} % for the upright box "
               f"(McNemar's exact p = {turned['mcnemar_p']:.2g}); with no turn {100 * upright['aligned']:.2f} % "
               f"against {100 * upright['box']:.2f} % (p = {upright['mcnemar_p']:.2g}); the validation crops "
               f"themselves {100 * figures['ceiling']['accuracy_all']:.2f} % (benchmarks/alignment.py). "
               + ("Alignment is on by default." if helps(figures) else
                  "It does not help enough to be on by default: `--align` turns it on."))
    return {"faces": figures["faces"], "rotated": turned, "upright": upright,
            "ceiling": round(figures["ceiling"]["accuracy_all"], 4), "measured_by": "benchmarks/alignment.py",
            "summary": summary}


def record(preset: str, figures: dict) -> bool:
    """Write the run's figures and the default they decide into the preset's card; the default."""
    import importlib.util

    import dam_cnn_tf.presets as presets

    spec = importlib.util.spec_from_file_location(
        "measure_eye_template", Path(__file__).resolve().parents[1] / "scripts" / "measure_eye_template.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    card = presets.preset_card(preset)
    entry = card[presets.EYE_TEMPLATE]
    if [entry["right_eye"], entry["left_eye"]] != [figures["eye_template"]["right_eye"],
                                                  figures["eye_template"]["left_eye"]]:
        raise SystemExit("--record: the card's eye template changed since this run; run it again")
    entry["validation"] = card_entry(figures)
    entry["on_by_default"] = helps(figures)
    script.write_card(presets.preset_dir(preset), card)
    return entry["on_by_default"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default=PRESET, help=f"the preset [default: {PRESET}]")
    parser.add_argument("--faces", type=Path, help="the preset's training folder")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-angle", type=float, default=30.0)
    parser.add_argument("--scale", type=float, nargs=2, default=(0.8, 1.2), metavar=("LOW", "HIGH"))
    parser.add_argument("--face-side", type=int, default=200)
    parser.add_argument("--canvas", type=int, default=400)
    parser.add_argument("--limit", type=int, default=None, help="only the first N validation faces (a quick try)")
    parser.add_argument("--record", action="store_true",
                        help="write the figures and the default they decide into the preset's card")
    parser.add_argument("--from-json", action="store_true",
                        help="with --record: record the figures already in --json instead of measuring")
    args = parser.parse_args(argv)
    if args.from_json:
        if not args.record:
            parser.error("--from-json goes with --record")
        figures = json.loads(args.json.read_text(encoding="utf-8"))
        print(f"on by default: {record(figures['preset'], figures)}")
        return
    if args.faces is None:
        parser.error("--faces (the preset's training folder) is needed to measure")
    if args.record and args.limit is not None:
        parser.error("--record measures every validation face: leave out --limit")

    from dam_cnn_tf.data.images import read_image
    from dam_cnn_tf.evaluation.baselines import mcnemar
    from dam_cnn_tf.predict import Predictor
    from dam_cnn_tf.presets import card_split, eye_template, preset_card

    started = time.time()
    card = preset_card(args.preset)
    template = eye_template(args.preset)
    if template is None:
        raise SystemExit(f"preset {args.preset} records no eye template: run scripts/measure_eye_template.py first")
    fraction, seed = card_split(card)
    part = validation_part(args.faces, card["input_shape"][0], fraction, seed)
    count = len(part.labels) if args.limit is None else min(args.limit, len(part.labels))
    labels = part.labels[:count]
    aligned = Predictor(args.preset, align=True)
    upright = Predictor(args.preset, align=False)
    if list(aligned.class_names) != list(part.class_names):
        raise SystemExit(f"the preset's classes {aligned.class_names} are not the data's {part.class_names}")

    ceiling_probabilities, _ = upright.predict_faces(part.faces[:count])
    ceiling = summarize(list(ceiling_probabilities.argmax(axis=1)), labels)

    drawn = draws(count, args.seed, args.max_angle, args.scale, (args.canvas - args.face_side) / 5.0)
    predicted = {(c, a): [] for c in ("rotated", "upright") for a in ("aligned", "box")}
    for i in range(count):
        face = read_image(part.paths[i])
        if face.ndim == 2:
            face = cv2.cvtColor(face, cv2.COLOR_GRAY2RGB)
        for condition, angle in (("rotated", drawn["angle"][i]), ("upright", 0.0)):
            photo, centre = make_photo(face, angle, drawn["scale"][i], drawn["offset"][i], args.face_side,
                                       args.canvas)
            for mode, predictor in (("aligned", aligned), ("box", upright)):
                predicted[(condition, mode)].append(face_at(predictor.predict_image(photo), centre))
        if (i + 1) % 100 == 0:
            print(f"{i + 1}/{count} faces, {time.time() - started:.0f} s", flush=True)

    results = {}
    for condition in ("rotated", "upright"):
        with_alignment = summarize(predicted[(condition, "aligned")], labels)
        without = summarize(predicted[(condition, "box")], labels)
        both_found = np.array([a is not None and b is not None for a, b in
                               zip(predicted[(condition, "aligned")], predicted[(condition, "box")])])
        results[condition] = {
            "aligned": {k: v for k, v in with_alignment.items() if k != "correct"},
            "box": {k: v for k, v in without.items() if k != "correct"},
            "aligned_against_box_all": mcnemar(with_alignment["correct"], without["correct"]),
            "aligned_against_box_found_by_both": mcnemar(with_alignment["correct"][both_found],
                                                         without["correct"][both_found]),
            "found_by_both": int(both_found.sum())}
        results[condition]["aligned_against_ceiling_all"] = mcnemar(with_alignment["correct"], ceiling["correct"])
        results[condition]["box_against_ceiling_all"] = mcnemar(without["correct"], ceiling["correct"])
    figures = {
        "preset": args.preset, "faces": count,
        "data": f"validation part of {Path(args.faces).name} ({100 * fraction:.0f} %, stratified "
                f"by class, seed {seed})",
        "eye_template": {"right_eye": list(template.right_eye), "left_eye": list(template.left_eye)},
        "photos": {"face_side": args.face_side, "canvas": args.canvas, "max_angle": args.max_angle,
                   "scale": list(args.scale), "max_offset": (args.canvas - args.face_side) / 5.0, "seed": args.seed,
                   "background": f"grey {BACKGROUND}"},
        "runtime": aligned.runtime, "detector": aligned.detector.config(),
        "ceiling": {k: v for k, v in ceiling.items() if k != "correct"},
        "card_validation_accuracy": card["validation"]["accuracy"],
        "card_baselines": {k: {"label": b["label"], "accuracy": b["accuracy"]} for k, b in card["baselines"].items()},
        **results,
        "cpu": cpu_name(), "load_average": load_average(), "seconds": round(time.time() - started, 1),
        "command": f"python -m benchmarks.alignment --preset {args.preset} --faces <{args.preset.split('-')[0]}>/train "
                   f"--json {args.json.name}"}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    for condition in ("rotated", "upright"):
        r = results[condition]
        print(f"{condition}: aligned {r['aligned']['accuracy_all']:.4f} (found {r['aligned']['found']}), "
              f"box {r['box']['accuracy_all']:.4f} (found {r['box']['found']}), "
              f"McNemar {r['aligned_against_box_all']}")
    print(f"ceiling {ceiling['accuracy_all']:.4f}")
    if args.record:
        print(f"on by default: {record(args.preset, figures)}")


if __name__ == "__main__":
    main()
