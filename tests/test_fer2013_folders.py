"""Kaggle's FER2013 image folders split as the CSV does, and ``evaluate --split`` names."""

import json
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import invoke
from data_helpers import random_image, write_image
from dam_cnn_tf.commands.crossval import make_folds
from dam_cnn_tf.commands.evaluate import canonical_split_option
from dam_cnn_tf.data.datasets import load_dataset
from dam_cnn_tf.data.loading import usage_prefix_split
from dam_cnn_tf.data.protocols import DEFAULT_PROTOCOLS
from dam_cnn_tf.training.prepare import PreparedData, training_split

# Kaggle's layout: train/<class>/Training_*.jpg; test/<class>/ mixes PublicTest_* and PrivateTest_*.
# The last two files check that the prefix wins over the folder and that other names keep it.
TREE = {
    "train/angry/Training_10.jpg": "train",
    "train/angry/Training_11.jpg": "train",
    "train/happy/Training_12.png": "train",
    "train/happy/training_13.jpg": "train",
    "test/angry/PublicTest_20.jpg": "public_test",
    "test/happy/PUBLICTEST_21.png": "public_test",
    "test/angry/PrivateTest_30.jpg": "private_test",
    "test/happy/PrivateTest_31.jpg": "private_test",
    "test/happy/privatetest_32.png": "private_test",
    "train/happy/PublicTest_22.jpg": "public_test",
    "test/angry/extra_40.png": "test",
}


def _kaggle_tree(root: Path) -> Path:
    for seed, relative in enumerate(TREE):
        write_image(root / relative, random_image(seed, shape=(8, 8, 3)))
    return root


def _split_of_name(data) -> dict:
    return {Path(s.path).name: s.split for s in data.samples}


def _names(data, indices) -> set:
    return {Path(data.samples[i].path).name for i in indices}


def _names_in(*splits) -> set:
    return {Path(p).name for p, split in TREE.items() if split in splits}


def test_usage_prefix_gives_the_split():
    assert [usage_prefix_split(n) for n in ["Training_1.jpg", "PUBLICTEST_2.png", "privatetest_3.jpg"]] == [
        "train", "public_test", "private_test"]
    # Only a leading prefix followed by "_" counts.
    assert [usage_prefix_split(n) for n in ["Training1.jpg", "my_Training_1.jpg", "test_1.jpg", "Val_1.jpg"]] == [
        None] * 4


def test_each_file_gets_its_usage_split(tmp_path):
    data = load_dataset(_kaggle_tree(tmp_path / "fer"))
    assert _split_of_name(data) == {Path(p).name: split for p, split in TREE.items()}
    assert {s.label for s in data.samples} == {"anger", "happiness"}


def test_prefix_counts_without_split_folders(tmp_path):
    root = tmp_path / "flat"
    write_image(root / "angry" / "PrivateTest_1.png", random_image(1, shape=(8, 8, 3)))
    write_image(root / "happy" / "face_2.png", random_image(2, shape=(8, 8, 3)))
    assert _split_of_name(load_dataset(root, layout="folders")) == {"PrivateTest_1.png": "private_test",
                                                                     "face_2.png": None}


def test_paper_protocol_on_the_folders(tmp_path):
    data = load_dataset(_kaggle_tree(tmp_path / "fer"))
    (fold,) = DEFAULT_PROTOCOLS["fer2013"].make_folds(data)
    assert _names(data, fold.train) == _names_in("train")
    assert _names(data, fold.val) == _names_in("public_test")
    assert _names(data, fold.test) == _names_in("private_test")
    # What `crossval --protocol default --dataset-name fer2013` and `--protocol predefined` run.
    prepared = PreparedData(data, np.zeros((len(data), 4, 4, 3), np.uint8), data.labels())
    name, (default,) = make_folds("default", prepared, 10, 0, 0.1, "fer2013")
    assert name == "fer2013-predefined" and default.to_dict() == fold.to_dict()
    _, (predefined,) = make_folds("predefined", prepared, 10, 0, 0.1, "fer2013")
    assert _names(data, predefined.test) == _names_in("private_test", "test")
    # `train` validates on PublicTest instead of carving a part of Training.
    run = training_split(prepared, val_fraction=0.5, seed=0)
    assert _names(data, run.train) == _names_in("train") and _names(data, run.val) == _names_in("public_test")


@pytest.mark.parametrize("given, expected", [
    ("PublicTest", "public_test"), ("public_test", "public_test"), ("public-test", "public_test"),
    ("PRIVATETEST", "private_test"), ("PrivateTest", "private_test"), ("Training", "train"),
    ("test", "test"), ("Validation", "val"), ("val", "val"), (None, None),
])
def test_split_option_spellings(given, expected):
    assert canonical_split_option(given) == expected


def _one_error_line(result) -> str:
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert result.exit_code != 0 and len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_evaluate_refuses_a_name_that_is_no_split(tmp_path):
    tree = _kaggle_tree(tmp_path / "fer")
    # Refused before the model or the data is read: MODEL here is no model at all.
    line = _one_error_line(invoke("evaluate", tmp_path, "--data", tree, "--split", "PublicTst", expect_ok=False))
    assert "--split" in line and "PublicTst" in line and "PublicTest" in line


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """An untrained DAM-CNN for anger and happiness on 32x32 faces: evaluate only needs it to run."""
    from dam_cnn_tf import MPVSNet, build_dam_cnn, build_vgg_serd, salient_feature_model

    vgg_serd = build_vgg_serd(2, input_shape=(32, 32, 3), fc_units=4, backbone_widths=(2, 2, 4, 4, 4))
    faces = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    features = salient_feature_model(vgg_serd).predict(faces, verbose=0)["features"]
    net = MPVSNet(features.shape[-1], 2, encoder_units=4, num_paths=2, fc_units=4)
    net.mpae.adapt(features)
    run = tmp_path_factory.mktemp("run")
    build_dam_cnn(vgg_serd, net).save(run / "model.keras")
    (run / "classes.json").write_text(json.dumps({"class_names": ["anger", "happiness"]}))
    return run


def test_evaluate_on_one_split_of_the_folders(tiny_model, tmp_path):
    tree = _kaggle_tree(tmp_path / "fer")
    common = ("--data", tree, "--no-detect", "--face-cache", tmp_path / "cache", "--quiet")
    result = invoke("evaluate", tiny_model, *common, "--split", "PrivateTest")
    assert f"on {len(_names_in('private_test'))} faces" in result.output
    result = invoke("evaluate", tiny_model, *common, "--split", "public_test")
    assert f"on {len(_names_in('public_test'))} faces" in result.output
    line = _one_error_line(invoke("evaluate", tiny_model, *common, "--split", "val", expect_ok=False))
    assert "--split val" in line and str(tree) in line
    assert line.endswith("it has private_test, public_test, test, train"), line


@pytest.mark.parametrize("case", ["unreadable", "no_face"])
def test_evaluate_fails_when_no_face_is_usable(tiny_model, tmp_path, case):
    """As predict: a run that measured nothing exits non-zero with one line, never "0 faces"."""
    for name in ("train/angry/Training_1.jpg", "train/happy/Training_2.jpg", "train/happy/Training_3.jpg"):
        path = tmp_path / "fer" / name
        if case == "unreadable":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("not an image\n")
        else:  # flat grey pictures: the detector finds no face
            write_image(path, np.full((60, 60, 3), 128, np.uint8))
    result = invoke("evaluate", tiny_model, "--data", tmp_path / "fer", "--face-cache", tmp_path / "cache",
                    "--quiet", expect_ok=False)
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert len(errors) == 1 and "fer" in errors[0] and "no usable" in errors[0], result.output
