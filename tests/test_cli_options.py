"""Command-line options, each checked by what it changes in the run it makes: a few tiny runs,
each carrying several options."""

import csv
import re
import shutil

import h5py
import numpy as np
import pytest

import weights_formats as wf
from cli_helpers import TINY_OPTIONS, invoke, read_json, synthetic_folder

# Stage 1 alone, one epoch: enough for the cross-validation protocols.
STAGE1 = ["--input-size", "32", "--backbone", "compact-tiny", "--fc-units", "8", "--stage1-epochs", "1",
          "--stage1-batch-size", "16", "--stage", "1", "--no-detect"]
TEST_SUBJECTS = ("syn004", "syn005")


def _one_epoch(options):
    options = list(options)
    for flag in ("--stage1-epochs", "--stage2-epochs"):
        options[options.index(flag) + 1] = "1"
    return options


def _write_manifest(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """6 synthetic people x 7 expressions, and manifests over the same images: with two faces
    of a label outside the canonical set, with a train/test split (syn004 and syn005 tested),
    and the two halves of that split on their own."""
    root = synthetic_folder(tmp_path_factory.mktemp("data") / "faces", subjects=6, per_class=1)
    rows = list(csv.DictReader(open(root / "index.csv", newline="")))
    odd = []
    for k, row in enumerate(rows[:2]):
        (root / "confused").mkdir(exist_ok=True)
        shutil.copy(root / row["path"], root / "confused" / f"{k}.png")
        odd.append({**row, "path": f"confused/{k}.png", "label": "confused"})
    split = [{**row, "split": "test" if row["subject"] in TEST_SUBJECTS else "train"} for row in rows]
    return {
        "folder": root,
        "count": len(rows),
        "unknown": _write_manifest(root / "unknown.csv", rows + odd),
        "split": _write_manifest(root / "split.csv", split),
        "train": _write_manifest(root / "train.csv", [r for r in rows if r["subject"] not in TEST_SUBJECTS]),
        "test": _write_manifest(root / "test.csv", [r for r in rows if r["subject"] in TEST_SUBJECTS]),
    }


# --- train: data, config file and stage-2 options ----------------------------------------------------

@pytest.fixture(scope="module")
def options_run(faces, tmp_path_factory):
    """``train --data`` on a manifest with unknown labels (dropped), a TOML config file under the
    command line, SGD, conv decoders, the per-path loop, augmentation and a float16 feature cache."""
    from dam_cnn_tf.data import pipeline
    from dam_cnn_tf.models.mpvs_net import MPVSNet
    from dam_cnn_tf.training import stage1, stage2

    tmp = tmp_path_factory.mktemp("options")
    config = tmp / "options.toml"
    config.write_text('decoder = "conv"\nlam = 5.0\nnum_paths = 3\n')
    seen = {"optimizers": [], "augmented": 0, "paths": set()}
    make_optimizer, augment, routed = stage1.make_optimizer, pipeline._augment, MPVSNet._apply_routed_gradients

    def spy_optimizer(*args):
        seen["optimizers"].append(type(make_optimizer(*args)).__name__)
        return make_optimizer(*args)

    def spy_augment(*args):
        seen["augmented"] += 1
        return augment(*args)

    def spy_routed(self, *args, path=None):
        seen["paths"].add(path)
        return routed(self, *args, path=path)

    run = tmp / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stage1, "make_optimizer", spy_optimizer)
        patch.setattr(stage2, "make_optimizer", spy_optimizer)
        patch.setattr(pipeline, "_augment", spy_augment)
        patch.setattr(MPVSNet, "_apply_routed_gradients", spy_routed)
        result = invoke("train", "--data", faces["unknown"], "--layout", "manifest", "--no-detect",
                        "--unknown-labels", "drop", "--run-dir", run, "--config", config, *_one_epoch(TINY_OPTIONS),
                        "--optimizer", "sgd", "--per-path-updates", "--augment", "--cache-dtype", "float16",
                        "--use-serd")
    return run, result.output, seen


def test_train_options_reach_the_run(options_run, faces):
    run, output, seen = options_run
    config = read_json(run / "config.json")
    assert {k: config[k] for k in ("decoder", "lam", "num_paths", "optimizer", "per_path_updates", "augment",
                                   "cache_dtype", "use_serd")} == {
        "decoder": "conv", "lam": 5.0, "num_paths": 2,  # the file's values, the command line's over them
        "optimizer": "sgd", "per_path_updates": True, "augment": True, "cache_dtype": "float16", "use_serd": True}
    assert read_json(run / "data.json")["path"] == str(faces["unknown"])
    split = read_json(run / "split.json")
    assert len(split["train"]) + len(split["val"]) == faces["count"]  # the two "confused" faces dropped
    assert f"{len(split['train'])} training and {len(split['val'])} validation faces" in output
    # Stage 1: the model as built, its fine-tuning phase, the model as saved; stage 2: head and MPAE.
    assert set(seen["optimizers"]) == {"FusedSGD"} and len(seen["optimizers"]) == 5
    assert seen["augmented"] >= 1
    assert seen["paths"] == {0, 1}  # Algorithm 1's inner loop, one update per path
    features = np.load(run / "features" / "train.npy", mmap_mode="r")
    assert features.dtype == np.float16 and read_json(run / "features" / "train.json")["dtype"] == "float16"
    with h5py.File(run / "stage2" / "mpvs_net.weights.h5") as weights:
        layers = []
        weights.visit(layers.append)
        lift = [name for name in layers if name.endswith("decoders/lift/vars/0")]  # the conv decoders' Conv2D
        assert len(lift) == 1 and weights[lift[0]].ndim == 4, layers
    assert not (run / "run.lock").exists()


def test_unknown_labels_stop_the_run_unless_dropped(faces, tmp_path):
    result = invoke("train", "--data", faces["unknown"], "--layout", "manifest", "--no-detect",
                    "--run-dir", tmp_path / "run", *TINY_OPTIONS, expect_ok=False)
    assert result.exit_code != 0 and "confused" in result.output and "Traceback" not in result.output


def test_evaluate_a_keras_file_on_one_split(options_run, faces, tmp_path):
    run, _, _ = options_run
    result = invoke("evaluate", run / "model.keras", "--data", faces["split"], "--layout", "manifest",
                    "--no-detect", "--split", "test", "--out", tmp_path / "eval", "--quiet")
    report = read_json(tmp_path / "eval" / "evaluation.json")
    assert report["num_samples"] == 7 * len(TEST_SUBJECTS) and "on 14 faces" in result.output


def test_export_versions(options_run, tmp_path):
    run, _, _ = options_run
    out = tmp_path / "export"
    invoke("export", run, out, "--version", "7")
    saved = out / "7" / "saved_model.pb"
    first = saved.stat().st_mtime_ns
    again = invoke("export", run, out, "--version", "7", expect_ok=False)
    lines = again.output.strip().splitlines()
    assert again.exit_code != 0 and len(lines) == 1 and "7" in lines[0] and "exists" in lines[0], again.output
    invoke("export", run, out, "--version", "7", "--overwrite")
    assert saved.stat().st_mtime_ns != first and sorted(p.name for p in out.iterdir()) == ["7"]


def test_malformed_classes_json_is_one_line(options_run, tmp_path):
    run, _, _ = options_run
    shutil.copy(run / "model.keras", tmp_path / "model.keras")
    (tmp_path / "classes.json").write_text('{"class_names": ["happiness", ')
    result = invoke("export", tmp_path / "model.keras", tmp_path / "export", expect_ok=False)
    lines = result.output.strip().splitlines()
    assert result.exit_code != 0 and len(lines) == 1 and "classes.json" in lines[0], result.output


# --- train: pretrained VGG-Face through build_vgg_serd, attribute-specific decoders --------------------

def test_vgg_face_weights_and_pair_attribute(faces, tmp_path):
    from dam_cnn_tf.recipes.options import TrainConfig
    from dam_cnn_tf.training.stages import build_stage1_model
    from dam_cnn_tf.weights.convert import convert_weights

    widths = (64, 128, 256, 512, 512)  # VGG-Face's own: the only widths its weights fit
    params = wf.keras_params(np.random.default_rng(0), 32, widths=widths)
    source = tmp_path / "rcmalli_vggface_tf_notop_vgg16.h5"
    wf.write_keras_vggface(source, params, include_top=False)
    weights = convert_weights(source, tmp_path / "vggface.weights.h5")
    run = tmp_path / "run"
    options = [o for o in _one_epoch(TINY_OPTIONS) if o not in ("--num-paths", "2")]
    result = invoke("train", "--data", faces["folder"], "--no-detect", "--run-dir", run, *options,
                    "--backbone", "vgg-face", "--backbone-weights", weights, "--fine-tune-from", "conv5_3",
                    "--pair-attribute", "gender")
    assert f"Backbone weights from {weights}" in result.output
    # The frozen layers kept the file's weights through stage 1.
    config = TrainConfig(**read_json(run / "config.json"))
    model = build_stage1_model(config.replace(backbone_weights=None), 7)
    model.load_weights(run / "stage1" / "vgg_serd.weights.h5")
    backbone = model.get_layer("backbone")
    for name in ("conv1_1", "conv5_2"):
        np.testing.assert_array_equal(backbone.get_layer(name).get_weights()[0], params[name][0])
    # One decoder per value of the attribute (two genders), not the default N = 5.
    assert read_json(run / "state.json")["info"]["stage2"]["num_paths"] == 2
    assert config.pair_attribute == "gender"


# --- crossval: every protocol ---------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["default", "loso", "predefined", "cross-dataset"])
def test_crossval_protocols(faces, tmp_path, protocol):
    data, extra = faces["folder"], ["--max-folds", "1"]
    if protocol == "default":
        extra += ["--dataset-name", "tfeid"]  # the paper's 5-fold protocol for TFEID
    elif protocol == "predefined":
        data, extra = faces["split"], ["--layout", "manifest"]
    elif protocol == "cross-dataset":
        data, extra = faces["train"], ["--layout", "manifest", "--test-data", faces["test"], "--test-layout", "manifest"]
    out = tmp_path / "cv"
    invoke("crossval", "--data", data, "--protocol", protocol, "--out", out, *extra, *STAGE1, "--quiet")
    fold = read_json(out / "folds.json")["folds"][0]
    summary = read_json(out / "results.json")
    assert summary["folds"] == 1 and summary["num_samples"] == len(fold["test"])
    from dam_cnn_tf.data.datasets import load_dataset

    if protocol in ("predefined", "cross-dataset"):
        dataset = load_dataset(faces["split"], "manifest")
        subjects = dataset.subjects()
    else:
        subjects = load_dataset(data).subjects()
    tested = set(subjects[fold["test"]])
    trained = set(subjects[fold["train"] + fold["val"]])
    if protocol == "default":
        # The paper's subject-independent 5 folds over 6 people: one or two people tested.
        assert summary["name"] == "tfeid-5fold" and len(tested) in (1, 2) and not tested & trained
    elif protocol == "loso":
        assert len(tested) == 1 and not tested & trained and len(fold["test"]) == 7
    else:  # the test part is the split's (or the other data set's) test subjects, every face once
        assert tested == set(TEST_SUBJECTS) and not tested & trained and len(fold["test"]) == 14


def test_crossval_kfold_says_fold_i_of_k_and_the_time_left(faces, tmp_path):
    out = tmp_path / "cv"
    # (A validation half: a tenth of three faces per class cannot be carved subject by subject.)
    result = invoke("crossval", "--data", faces["folder"], "--protocol", "kfold", "--folds", "3", "--max-folds", "2",
                    "--val-fraction", "0.5", "--out", out, *STAGE1, "--no-use-serd")
    assert re.search(r"Fold 1/2 \(fold1of3\): \d+ train, \d+ val, \d+ test\n", result.output), result.output
    assert re.search(r"Fold 2/2 \(fold2of3\): .*; about \d+ (s|min) left\n", result.output), result.output
    # Not a terminal: one line per round, no progress-bar frames (\r redraws, ANSI colours).
    assert re.search(r"^1/1 - \d+m?s - .*val_loss: [\d.]+\n", result.output, re.M), repr(result.output)
    assert "\r" not in result.output and "\x1b[" not in result.output
    assert max(len(line) for line in result.output.splitlines()) < 1000
    assert read_json(out / "results.json")["folds"] == 2
    assert read_json(out / "config.json")["use_serd"] is False
    with h5py.File(out / "fold-00" / "stage1" / "vgg_serd.weights.h5") as weights:
        assert not [name for name in weights["layers"] if "serd" in name]  # VGG-Face alone (Table 2)
