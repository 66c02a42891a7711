"""Train a preset and write it, with its model card and training log, into a folder of presets.

    python scripts/build_preset.py fer2013-face-resnet --data <fer2013>/train \
        --backbone-weights ~/.cache/dam_cnn_tf/weights/face_recognition_model-weights_manifest.json \
        --run-dir runs/fer2013-face-resnet [--install --replace]

1. trains with ``damcnn-tf train`` (the recipe's config file; ``--resume`` when the run
   directory exists, so an interrupted build goes on where it stopped), its log in the run;
2. packs the run's inference model (``dam_cnn_tf.presets.packing``) into
   ``<out>/<name>/model.keras`` (``build/presets`` unless ``--out`` says otherwise; the package's
   own ``dam_cnn_tf/presets`` only with ``--install``), float16 weights; a preset folder that
   exists already is replaced only with ``--replace``, checked before training, so the documented
   command never deletes a shipped preset unasked; a run whose plan is not the recipe's is refused;
3. measures on the run's validation part (never on a test set): the shipped file's accuracy,
   per-class recall and confusion matrix, its parity with the float32 model, VGG-SERD (stage 1
   alone) against DAM-CNN face by face (McNemar's exact test), and the two trivial baselines
   (logistic regressions on pixels and on the frozen backbone), their C chosen on the same
   validation part as the model's checkpoint;
4. makes the light file (LiteRT) from the shipped model and checks it against it
   (``dam_cnn_tf.presets.light``): shipped beside the model when the preset stays within 20 MB
   with it, else described in the card and made on first use into the user's cache;
5. writes ``card.json`` (the recipe's name and SHA-256, and the run's plan), ``card.md``,
   ``classes.json``, ``train.log``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# What each preset is trained on and how it reads faces; the config file holds the recipe.
RECIPES = {
    "fer2013-face-resnet": {
        "recipe": "fer2013-face-resnet",
        "data_options": ["--no-detect"],
        "grey": True,
        # No blur to FER2013's 48 pixels: shrinking the (enlarged) training faces again and
        # enlarging them back changed 13.6 % of the validation predictions and cost 1.7 points.
        "source_size": None,
        # Decided before measuring: the model was trained on faces and their mirror images.
        "mirror_average": True,
        "description": "DAM-CNN on dlib's face ResNet, trained on FER2013 (7 expressions, in the wild)",
        "dataset": "FER2013's training set (Kaggle's class folders: 28,709 grey 48x48 faces)",
        "data_placeholder": "<fer2013>/train",
        "test_set": "FER2013's test set",
        "duplicates": "FER2013 holds duplicates",
        "paper": {"DAM-CNN, FER2013 (Table 10, VGG-Face, PrivateTest)": 0.6620},
        "input": ("RGB 0-255 face crops of 150x150 (predict and evaluate detect and crop faces first); "
                  "colour is read as grey (BT.601 luma), as FER2013's faces were; the probabilities are the mean "
                  "of the face's and its mirror image's"),
        "licence": ("weights: Apache-2.0, as the package; the backbone they were fine-tuned from is dlib's face "
                    "recognition ResNet (public domain, Davis King) as packaged by face-api.js (MIT, Vincent "
                    "Mühler); FER2013 (Goodfellow et al., 2013) is distributed for research through Kaggle"),
        "limits": [
            "Trained on 48x48 grey faces enlarged to 150x150: colour is discarded on purpose (ReadFacesAs), and "
            "sharp faces from photos have more detail than any training face had; accuracy on them is "
            "unmeasured here.",
            "FER2013's labels are noisy (human accuracy on it is estimated at 65 ± 5 %, Goodfellow et al. "
            "2013), which bounds any accuracy measured on it.",
            "FER2013 has no subject ids: the validation part is stratified by class, not by person, and the "
            "same person (or the same photo, duplicated) may be in both parts.",
            "Faces found by web image search: ages, poses and populations are as that search gave them, and "
            "accuracy on the less represented ones is unmeasured here.",
            "Disgust has 436 training faces (1.5 %) and the recipe does not reweight classes; each class's "
            "recall is in the table above.",
        ],
    },
}

RECIPES["rafdb-face-resnet"] = {
    "recipe": "rafdb-face-resnet",
    "data_options": ["--no-detect"],
    "grey": False,
    "source_size": None,
    # Decided before measuring: the model was trained on faces and their mirror images.
    "mirror_average": True,
    "description": "DAM-CNN on dlib's face ResNet, trained on RAF-DB (7 expressions, colour faces in the wild)",
    "dataset": ("RAF-DB's basic set, its official training part (Li, Deng & Du 2017: 12,271 aligned 100x100 colour "
                "faces from the web, 7 class folders)"),
    "data_placeholder": "<rafdb>/train",
    "test_set": "RAF-DB's official test part",
    "duplicates": "web images may repeat",
    "paper": {},
    "input": ("RGB 0-255 face crops of 150x150 (predict and evaluate detect and crop faces first), colour kept; the "
              "probabilities are the mean of the face's and its mirror image's"),
    "licence": ("non-commercial research only: RAF-DB is licensed for non-commercial research, and these weights, "
                "trained on it, inherit that. The backbone they were fine-tuned from is dlib's face recognition "
                "ResNet (public domain, Davis King) as packaged by face-api.js (MIT, Vincent Mühler)"),
    "limits": [
        "RAF-DB's faces are aligned (eyes level, at fixed places) and tightly cropped; predict's crops from a "
        "detector are framed by its box and not turned upright, and accuracy on them is unmeasured here.",
        "RAF-DB has no subject ids: the validation part is stratified by class, not by person.",
        "Fear has 281 training faces (2.3 %) and disgust 717, and the recipe does not reweight classes; each "
        "class's recall is in the table above.",
        "Faces found on the web and labelled by crowd votes: ages, poses and populations are as that search gave "
        "them, and accuracy on the less represented ones is unmeasured here.",
    ],
}


def log(message: str) -> None:
    print(message, flush=True)


def train(name: str, recipe: dict, args) -> None:
    """``damcnn-tf train`` for the recipe, or ``--resume`` of its run; output also to train.log."""
    run_dir = Path(args.run_dir)
    if (run_dir / "config.json").exists():
        command = ["damcnn-tf", "train", "--resume", str(run_dir)]
    else:
        command = ["damcnn-tf", "train", "--recipe", recipe["recipe"], "--data", str(args.data),
                   *recipe["data_options"], "--backbone-weights", str(args.backbone_weights),
                   "--run-dir", str(run_dir)]
    log("$ " + " ".join(command))
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "train.log", "a", encoding="utf-8") as out:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in process.stdout:
            out.write(line)
            out.flush()
            sys.stdout.write(line)
        if process.wait() != 0:
            raise SystemExit(f"training failed (exit {process.returncode}); see {run_dir / 'train.log'}")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def check_faces(model, input_size: int) -> dict:
    """Predictions on a few synthetic faces (regenerated by the tests to check the shipped file)."""
    from dam_cnn_tf.data.synthetic import make_synthetic_faces
    from dam_cnn_tf.data.faces import resize_face

    dataset = make_synthetic_faces(num_subjects=2, images_per_class=1, image_size=input_size, seed=0)
    faces = np.stack([resize_face(s.image, (input_size, input_size)) for s in dataset.samples])
    probabilities = model.predict(faces.astype(np.float32), verbose=0)["probabilities"]
    return {"generator": "make_synthetic_faces(num_subjects=2, images_per_class=1, image_size=input, seed=0)",
            "labels": probabilities.argmax(axis=1).tolist(), "probabilities": np.round(probabilities, 6).tolist()}


def baselines(data, split, config, class_names, run) -> dict:
    """Logistic regressions on pixels and on the frozen backbone, C chosen on the validation part;
    kept in the run (``baselines.json``) for the same split, as they take minutes on FER2013."""
    import hashlib

    key = hashlib.sha256(np.asarray(split.val, np.int64).tobytes() + np.asarray(split.train, np.int64).tobytes())
    saved = run.read_json("baselines.json")
    if saved is not None and saved.get("split") == key.hexdigest()[:16]:
        return saved["results"]
    results = _fit_baselines(data, split, config, class_names)
    run.write_json("baselines.json", {"split": key.hexdigest()[:16], "results": results})
    return results


def _fit_baselines(data, split, config, class_names) -> dict:
    from dam_cnn_tf.evaluation.baselines import PIXELS, available, frozen_features, pixel_features, probe_fold

    # Tested on the validation part, C chosen on it too (a Fold refuses that overlap by design).
    fold = types.SimpleNamespace(name="validation", train=split.train, test=split.val, val=split.val)
    out = {}
    for baseline in available(config):
        features = pixel_features if baseline is PIXELS else (lambda faces: frozen_features(faces, config))
        start = time.monotonic()
        log(f"Baseline: {baseline.label}")
        result = probe_fold(features(data.faces), data.labels, fold, class_names, config.seed)
        out[baseline.key] = {"label": baseline.label, "accuracy": result["accuracy"], "C": result["C"],
                             "C_scores": result["C_scores"],  # every C tried: its validation accuracy
                             "per_class_recall": result["per_class_recall"],
                             "seconds": round(time.monotonic() - start, 1)}
    return out


def duplicated_in_training(data, split) -> np.ndarray:
    """For each validation face, whether the training part holds a pixel-identical copy."""
    from dam_cnn_tf.data.trunk_cache import face_keys

    train_keys = {k.tobytes() for k in face_keys(data.faces[split.train])}
    return np.array([k.tobytes() in train_keys for k in face_keys(data.faces[split.val])], bool)


# Where a preset is written unless --install asks for the package's own folder.
DEFAULT_OUT = Path("build") / "presets"


def destination(out, install: bool) -> Path:
    """The folder of presets a build writes into: the package's with ``install``, else ``out``
    (``DEFAULT_OUT`` when not given)."""
    from dam_cnn_tf.presets import PRESETS_DIR

    return PRESETS_DIR if install else Path(out if out is not None else DEFAULT_OUT)


def check_destination(folder: Path, replace: bool) -> None:
    """Refuse, before any training, to write over a preset folder that exists unless ``replace``."""
    if folder.exists() and not replace:
        raise FileExistsError(f"{folder} exists; pass --replace to replace it (or another --out)")


def check_recipe(plan, recipe: str, where) -> None:
    """Refuse a run whose plan is not what ``recipe`` resolves to on its training faces (the
    backbone's weights file, a path on the building machine, and the recipes' names aside: a
    run trained from a config file with the recipe's values is the recipe's run)."""
    from dam_cnn_tf.recipes import resolve_settings
    from dam_cnn_tf.recipes.plan import PlanError, make_plan

    settings, _ = resolve_settings(recipe=recipe, options={"backbone_weights": plan.settings.backbone_weights})
    differing = [d for d in make_plan(settings, plan.num_train).differences(plan) if not d.startswith("sources")]
    if differing:
        raise PlanError(f"{where}: trained with another plan than the recipe {recipe!r} (differs in "
                        f"{', '.join(differing[:8])}); train it again with --recipe {recipe}")


def check_resumed_run(run_dir: Path, recipe: str) -> None:
    """Before resuming a run, the same check as after it: a run of another plan is refused
    before any training (a run too old to hold a plan is checked once it is complete)."""
    from dam_cnn_tf.training.run_dir import RunDir
    from dam_cnn_tf.training.run_plan import PLAN_FILE, saved_plan

    if (Path(run_dir) / PLAN_FILE).is_file():
        check_recipe(saved_plan(RunDir(run_dir)), recipe, run_dir)


def card_plan(plan) -> dict:
    """The run's plan as the card records it: the backbone's weights file by its name, not its
    path on the building machine (whether there were weights decides the probe)."""
    data = plan.to_dict()
    weights = data["settings"]["backbone_weights"]
    data["settings"]["backbone_weights"] = Path(weights).name if weights else None
    return data


def build(name: str, args) -> None:
    from dam_cnn_tf.commands.common import load_prepared
    from dam_cnn_tf.data.protocols import Fold
    from dam_cnn_tf.models.model_file import load_model_file
    from dam_cnn_tf.presets.light import describe_light_file
    from dam_cnn_tf.presets.packing import preset_model, sha256_of, store_float16
    from dam_cnn_tf.recipes import recipe_sha256
    from dam_cnn_tf.training.run_plan import saved_plan
    from dam_cnn_tf.evaluation.baselines import mcnemar
    from dam_cnn_tf.evaluation.metrics import classification_report, predict_probabilities
    from dam_cnn_tf.training.run_dir import RunDir, atomic_write_json, atomic_write_text
    from dam_cnn_tf.training.stages import build_stage1_model, load_class_names

    recipe = RECIPES[name]
    folder = Path(args.out) / name
    check_destination(folder, getattr(args, "replace", False))
    run = RunDir(args.run_dir)
    spec = run.read_json("data.json")
    spec.pop("stage", None)
    split = Fold.from_dict(run.read_json("split.json"))
    plan = saved_plan(run, len(split.train))
    check_recipe(plan, recipe["recipe"], run.path)
    config = plan.settings
    class_names = load_class_names(run.path)
    data = load_prepared(spec, config, progress=False)
    val_faces, val_labels = data.faces[split.val], data.labels[split.val]

    log("Packing the model")
    dam_cnn = load_model_file(run.model_path)
    packed = preset_model(dam_cnn, class_names, grey=recipe["grey"], source_size=recipe["source_size"],
                          mirror_average=recipe["mirror_average"])
    read_only = preset_model(dam_cnn, class_names, grey=recipe["grey"], source_size=recipe["source_size"])
    staging = folder.with_name(f".{name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shipped_path = store_float16(packed, staging / "model.keras")
    shipped = load_model_file(shipped_path)

    log("Validation")
    p_run = predict_probabilities(dam_cnn, val_faces, config.input_size)
    p_packed = predict_probabilities(packed, val_faces, config.input_size)
    p_read = predict_probabilities(read_only, val_faces, config.input_size)
    p_shipped = predict_probabilities(shipped, val_faces, config.input_size)
    result = classification_report(val_labels, p_shipped, class_names)
    stage1 = build_stage1_model(config, len(class_names))
    stage1.load_weights(run.path / "stage1" / "vgg_serd.weights.h5")
    p_stage1 = predict_probabilities(stage1, val_faces, config.input_size)
    right = {key: p.argmax(axis=1) == val_labels for key, p in
             (("stage1", p_stage1), ("run", p_run), ("read", p_read), ("shipped", p_shipped))}
    state = run.read_json("state.json") or {}
    info = state.get("info", {})
    seconds = sum(float(v.get("seconds", 0)) for v in info.values() if isinstance(v, dict))
    base = baselines(data, split, config, class_names, run)
    unique = ~duplicated_in_training(data, split)

    card = {
        "name": name, "description": recipe["description"], "class_names": list(class_names),
        "input": recipe["input"], "input_shape": [int(s) for s in shipped.input_shape[1:]],
        "outputs": {"probabilities": [len(class_names)],
                    "attention": [int(s) for s in shipped.output["attention"].shape[1:]]},
        "licence": recipe["licence"], "limits": recipe["limits"],
        "data": {"dataset": recipe["dataset"], "train_faces": len(split.train), "validation_faces": len(split.val),
                 "split": f"validation part: {100 * config.val_fraction:.0f} % of the training folder, stratified "
                          f"by class, seed {config.seed} (the run's split.json); {recipe['test_set']} is not used",
                 "class_counts": {c: int(np.sum(data.labels == i)) for i, c in enumerate(class_names)},
                 "validation_faces_duplicated_in_training": int((~unique).sum())},
        "validation_without_duplicates": {"accuracy": float(np.mean(right["shipped"][unique])),
                                          "num_samples": int(unique.sum())},
        "command": " ".join(["python scripts/build_preset.py", name, "--data", recipe["data_placeholder"],
                             "--backbone-weights", "<face_recognition_model-weights_manifest.json>",
                             "--run-dir", "<run>"]),
        "train_command": f"damcnn-tf train --recipe {recipe['recipe']} --data {recipe['data_placeholder']} "
                         f"{' '.join(recipe['data_options'])} --backbone-weights <weights> --run-dir <run>",
        # the recipe by name and hash (dam_cnn_tf/recipes/), and the plan it resolved to
        "recipe": {"name": recipe["recipe"], "sha256": recipe_sha256(recipe["recipe"])},
        "plan": card_plan(plan),
        "duplicates": recipe["duplicates"],
        "validation": result,
        "validation_dam_cnn_float32": float(np.mean(right["run"])),
        "validation_without_mirror_average": float(np.mean(right["read"])),
        "mirror_average": recipe["mirror_average"],
        "validation_vgg_serd": float(np.mean(right["stage1"])),
        "stage2_against_stage1": {"first": "DAM-CNN", "second": "VGG-SERD",
                                  **mcnemar(right["run"], right["stage1"])},
        "baselines": base,
        "paper": dict(recipe["paper"]),
        "reading_layer": "grey" if recipe["grey"] else None,
        "float16_parity": {"max_abs_probability_difference": float(np.abs(p_shipped - p_packed).max()),
                           "same_prediction": float(np.mean(p_shipped.argmax(1) == p_packed.argmax(1))),
                           "reading_layer_same_prediction": float(np.mean(p_read.argmax(1) == p_run.argmax(1)))},
        # fit time of the phases, and wall time from the split (written once the faces are ready) to the model
        "training": {"seconds": round(seconds, 1), "machine": cpu_name(), "stages": info,
                     "wall_seconds": round(run.model_path.stat().st_mtime - (run.path / "split.json").stat().st_mtime)},
        "check_faces": check_faces(shipped, config.input_size),
        "file": {"name": "model.keras", "bytes": shipped_path.stat().st_size, "sha256": sha256_of(shipped_path)},
    }
    log("Light file")
    card["light"] = describe_light_file(staging, card, ship="auto")
    atomic_write_json(staging / "card.json", card)
    atomic_write_text(staging / "card.md", card_markdown(card))
    atomic_write_json(staging / "classes.json", {"class_names": list(class_names)})
    shutil.copyfile(run.path / "train.log", staging / "train.log")
    if folder.exists():  # --replace was given (check_destination)
        shutil.rmtree(folder)
    os.replace(staging, folder)
    log(f"Preset written to {folder}: validation accuracy {100 * result['accuracy']:.2f}%")


def card_markdown(card: dict) -> str:
    v, names = card["validation"], card["class_names"]
    lines = [f"# Preset `{card['name']}`", "", card["description"] + ".", "",
             "```python", "import dam_cnn_tf", f"model = dam_cnn_tf.from_preset(\"{card['name']}\")  "
             "# model.class_names", "```", "",
             f"`damcnn-tf predict {card['name']} photo.jpg` (no download, no network).", "",
             "## Data", "", f"- {card['data']['dataset']}.",
             f"- {card['data']['train_faces']} training and {card['data']['validation_faces']} validation faces; "
             f"{card['data']['split']}.",
             f"- {card['data']['validation_faces_duplicated_in_training']} validation faces have a pixel-identical "
             f"copy in the training part ({card.get('duplicates', 'FER2013 holds duplicates')}); on the other "
             f"{card['validation_without_duplicates']['num_samples']} the preset scores "
             f"{100 * card['validation_without_duplicates']['accuracy']:.2f} %.",
             "- Faces per class: " + ", ".join(f"{k} {n}" for k, n in card["data"]["class_counts"].items()) + ".",
             "", "## Input", "", card["input"] + ".", "",
             "## Validation (the shipped file)", "",
             "| model | accuracy (%) |", "|---|---:|",
             f"| **DAM-CNN, this preset** | **{100 * v['accuracy']:.2f}** |",
             f"| DAM-CNN, the face alone (no mirror average) | {100 * card['validation_without_mirror_average']:.2f} |",
             f"| DAM-CNN as trained (the run's float32 model, no reading layer, face alone) | "
             f"{100 * card['validation_dam_cnn_float32']:.2f} |",
             f"| VGG-SERD (stage 1 alone, same run, face alone) | {100 * card['validation_vgg_serd']:.2f} |"]
    for b in card["baselines"].values():
        tried = sorted(float(c) for c in b.get("C_scores", {}))
        among = f", chosen among {tried[0]:g}-{tried[-1]:g}" if len(tried) > 1 else ""
        lines.append(f"| {b['label']} (C = {b['C']:g}{among}) | {100 * b['accuracy']:.2f} |")
    for label, value in card["paper"].items():
        lines.append(f"| paper: {label}, another split | {100 * value:.2f} |")
    m = card["stage2_against_stage1"]
    lines += ["", ("The preset averages each face's probabilities with its mirror image's (decided before "
                   "measuring: training saw both).") if card["mirror_average"] else "",
              f"Stage 2 against stage 1, face by face (both on the face alone): DAM-CNN alone right on "
              f"{m['only_first_right']} faces, "
              f"VGG-SERD alone right on {m['only_second_right']} (McNemar's exact p = {m['p_value']:.3g}).",
              "The baselines' C and the model's checkpoint are both chosen on this validation part.", "",
              "Per-class recall (%): " + ", ".join(f"{k} {100 * r:.1f}" for k, r in v["per_class_recall"].items())
              + f"; the lowest is {min(v['per_class_recall'], key=v['per_class_recall'].get)}'s.", "", "Confusion matrix (rows: true, columns: predicted):", "",
              "| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for name, row in zip(names, v["confusion_matrix"]):
        lines.append(f"| {name} | " + " | ".join(str(x) for x in row) + " |")
    p = card["float16_parity"]
    t = card["training"]
    lines += ["", "## Storage", "",
              f"`model.keras`: {card['file']['bytes'] / 1e6:.1f} MB, weights stored as float16 and computed in "
              f"float32; SHA-256 `{card['file']['sha256']}`. Against the float32 weights on the validation part: "
              f"largest probability difference {p['max_abs_probability_difference']:.2g}, same prediction for "
              f"{100 * p['same_prediction']:.2f} % of faces." + (
                  f" The reading layer ({card['reading_layer']}) changes "
                  f"{100 * (1 - p['reading_layer_same_prediction']):.2f} % of the run's own predictions."
                  if card.get("reading_layer", "grey") else " The preset reads faces as given (no reading layer)."),
              "",
              "## How it was made", "", f"`{card['command']}`, which runs", "", f"`{card['train_command']}`", "",
              f"Training took {t['wall_seconds'] / 60:.0f} min from start to saved model ({t['seconds'] / 60:.0f} min "
              f"of it in the optimizer loops) on {t['machine']}; train.log is beside this card, and card.json "
              f"holds every figure and the plan the run followed (the recipe `{card['recipe']['name']}`, "
              f"dam_cnn_tf/recipes/{card['recipe']['name']}.toml, SHA-256 `{card['recipe']['sha256'][:16]}…`).", ""]
    lines += light_markdown(card)
    lines += eye_template_markdown(card)
    lines += ["## Limits", ""]
    lines += [f"- {limit}" for limit in card["limits"]]
    lines += ["", "## Licence", "", card["licence"] + ".", ""]
    return "\n".join(lines)


def light_markdown(card: dict) -> list:
    """The card's paragraph on the light file, if it has one."""
    light = card.get("light")
    if not light:
        return []
    parity = light["parity"]
    kind = {None: "float32 LiteRT", "float16": "LiteRT, float16 weights",
            "dynamic": "LiteRT, int8 dynamic-range: int8 weights, activations quantized on the fly"}.get(
        light.get("quantize"), f"{light.get('quantize')}-quantized LiteRT")
    where = (f"ships beside `model.keras` ({light['bytes'] / 1e6:.1f} MB, SHA-256 `{light['sha256']}`)"
             if light["shipped"] else "is made from `model.keras` on first use into the user's cache "
             "(`~/.cache/dam_cnn_tf/presets/`, or `$DAMCNN_CACHE`), as it would not fit the package's 20 MB a preset")
    return ["## Light file", "",
            f"`{light['name']}` ({kind}) {where}; `predict`, `analyze` and `evaluate --runtime light` run it "
            f"without starting TensorFlow. On the {parity['faces']} check faces it differs from the Keras model by "
            f"{parity['max_abs_probability_difference']:.2g} at most (same prediction for "
            f"{100 * parity['same_prediction']:.0f} %); a file made on first use is checked the same way, within "
            f"{light['tolerance']:.2g}.", *light_validation_markdown(light.get("validation")), ""]


def shared() -> types.SimpleNamespace:
    """What build_distilled.py uses of this script: the log, the machine's name, the check faces,
    the destination rule and the eye template's paragraph, the same for every preset."""
    return types.SimpleNamespace(log=log, cpu_name=cpu_name, check_faces=check_faces,
                                 check_destination=check_destination, eye_template_markdown=eye_template_markdown)


def any_card_markdown(card: dict) -> str:
    """``card.md`` of any preset's card: a distilled preset's (``build_distilled``) or a trained one's."""
    if card.get("kind") == "distilled":
        return sibling_script("build_distilled").distilled_card_markdown(card, shared())
    return card_markdown(card)


def eye_template_markdown(card: dict) -> list:
    """The card's paragraph on where the eyes sit in the training faces, if it records that."""
    entry = card.get("eye_template")
    if not entry:
        return []
    (rx, ry), (lx, ly) = entry["right_eye"], entry["left_eye"]
    lines = ["## Eye template", "",
             f"In the training faces the right eye's centre sits at ({rx:.3f}, {ry:.3f}) and the left eye's at "
             f"({lx:.3f}, {ly:.3f}) of the face's side (x, y; medians over the {entry['faces_found']} faces BlazeFace "
             f"found among {entry['faces_measured']}: {entry['how'].split('; ')[0]}; `{entry['command']}`). "
             "`predict` (`--align`) can turn and scale each detected face so that its eyes land there."]
    measured = entry.get("validation")
    if measured:
        lines[-1] += " " + measured["summary"]
    return lines + [""]


def light_validation_markdown(measured) -> list:
    """The sentence on the light file's accuracy on the validation part, when it was measured."""
    if not measured:
        return []
    return [f"On the {measured['faces']} validation faces it scores {100 * measured['accuracy']:.2f} % (the float32 "
            f"file: {100 * measured['float32_accuracy']:.2f} %); {measured['different_predictions_from_keras']} of "
            f"its predictions differ from the Keras model's, {measured['only_this_right']} faces are right only with "
            f"it and {measured['only_float32_right']} only with the float32 file (McNemar's exact p = "
            f"{measured['mcnemar_p']:.2g}; {measured['measured_by']})."]


def sibling_script(name: str):
    """Another script of this folder, as a module (distilled presets are built by build_distilled.py)."""
    import importlib.util

    key = f"_build_preset_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, Path(__file__).resolve().parent / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[key] = module
    return sys.modules[key]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(RECIPES) + sorted(sibling_script("build_distilled").DISTILLED_PRESETS))
    parser.add_argument("--data", type=Path, help="the data set's folder (not needed to resume a run)")
    parser.add_argument("--backbone-weights", type=Path)
    parser.add_argument("--run-dir", type=Path, required=True)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, default=None,
                       help=f"the folder the preset's folder goes into [default: {DEFAULT_OUT}]")
    where.add_argument("--install", action="store_true",
                       help="write the preset into the package itself (dam_cnn_tf/presets), to ship it")
    parser.add_argument("--replace", action="store_true",
                        help="replace the preset's folder if it exists (a shipped one too, with --install)")
    parser.add_argument("--skip-training", action="store_true", help="the run is complete: only pack and measure")
    distilled = sibling_script("build_distilled")
    distilled.add_options(parser)
    args = parser.parse_args(argv)
    args.out = destination(args.out, args.install)
    try:
        check_destination(args.out / args.name, args.replace)
    except FileExistsError as error:
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    if args.name in distilled.DISTILLED_PRESETS:
        distilled.build_distilled(args.name, args, parser, shared())
        return
    from dam_cnn_tf.recipes.plan import PlanError

    try:
        if not args.skip_training:
            if not (args.run_dir / "config.json").exists() and (args.data is None or args.backbone_weights is None):
                parser.error("a new run needs --data and --backbone-weights")
            check_resumed_run(args.run_dir, RECIPES[args.name]["recipe"])
            train(args.name, RECIPES[args.name], args)
        build(args.name, args)
    except PlanError as error:
        parser.exit(1, f"{parser.prog}: error: {error}\n")


if __name__ == "__main__":
    main()
