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
4. makes the light file (LiteRT) from the shipped model and checks it against it
   (``dam_cnn_tf.presets.light``): shipped beside the model when the preset stays within 20 MB
   with it, else described in the card and made on first use into the user's cache;
5. writes ``card.json``, ``card.md``, ``classes.json``, ``config.toml``, ``train.log``.
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

PAPER_FER2013 = 0.6620  # Table 10, DAM-CNN on FER2013 (PrivateTest), VGG-Face backbone


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
    from dam_cnn_tf.presets.light import describe_light_file
    from dam_cnn_tf.presets.packing import preset_model, sha256_of, store_float16
    from dam_cnn_tf.training.run_plan import saved_settings
    from dam_cnn_tf.evaluation.metrics import classification_report, predict_probabilities
    from dam_cnn_tf.training.run_dir import RunDir, atomic_write_json, atomic_write_text
    from dam_cnn_tf.training.stages import build_stage1_model, load_class_names

    recipe = RECIPES[name]
    run = RunDir(args.run_dir)
    config = saved_settings(run)
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
        "train_command": f"damcnn-tf train --recipe {recipe['recipe']} --data <fer2013>/train "
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
    log("Light file")
    card["light"] = describe_light_file(staging, card, ship="auto")
    atomic_write_json(staging / "card.json", card)
    atomic_write_text(staging / "card.md", card_markdown(card))
    atomic_write_json(staging / "classes.json", {"class_names": list(class_names)})
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
              "and card.json holds every figure.", ""]
    lines += light_markdown(card)
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
    kind = "float32" if light.get("quantize") is None else f"{light['quantize']}-quantized"
    where = (f"ships beside `model.keras` ({light['bytes'] / 1e6:.1f} MB, SHA-256 `{light['sha256']}`)"
             if light["shipped"] else "is made from `model.keras` on first use into the user's cache "
             "(`~/.cache/dam_cnn_tf/presets/`, or `$DAMCNN_CACHE`), as it would not fit the package's 20 MB a preset")
    return ["## Light file", "",
            f"`{light['name']}` ({kind} LiteRT) {where}; `predict`, `analyze` and `evaluate --runtime light` run it "
            f"without starting TensorFlow. On the {parity['faces']} check faces it differs from the Keras model by "
            f"{parity['max_abs_probability_difference']:.2g} at most (same prediction for "
            f"{100 * parity['same_prediction']:.0f} %); a file made on first use is checked the same way, within "
            f"{light['tolerance']:.2g}.", ""]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(RECIPES))
    parser.add_argument("--data", type=Path, help="the data set's folder (not needed to resume a run)")
    parser.add_argument("--backbone-weights", type=Path)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=None, help="where the preset folder goes [default: dam_cnn_tf/presets]")
    parser.add_argument("--skip-training", action="store_true", help="the run is complete: only pack and measure")
    args = parser.parse_args(argv)
    if not args.skip_training:
        if not (args.run_dir / "config.json").exists() and (args.data is None or args.backbone_weights is None):
            parser.error("a new run needs --data and --backbone-weights")
        train(args.name, RECIPES[args.name], args)
    build(args.name, args)


if __name__ == "__main__":
    main()
