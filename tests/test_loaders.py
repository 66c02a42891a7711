"""Dataset loaders on small generated files in each layout."""

import collections
import csv

import numpy as np
import pytest

from data_helpers import random_image, write_image
from dam_cnn_tf.data.datasets import LAYOUTS, UnknownLayoutError, detect_layout, load_dataset
from dam_cnn_tf.data.fer2013 import FER2013_LABELS, ferplus_label, load_fer2013, load_ferplus
from dam_cnn_tf.data.images import ImageReadError
from dam_cnn_tf.data.loading import DatasetFormatError, canonical_split
from dam_cnn_tf.data.manifest import load_baum2i, load_manifest
from dam_cnn_tf.data.samples import Dataset


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _folders(root, layout):
    for i, (folder, n) in enumerate(layout.items()):
        for j in range(n):
            write_image(root / folder / f"S{j:03d}_img{i}{j}.png", random_image(i * 10 + j))
    return root


# --- class folders, splits, SFEW, TFEID -------------------------------------------------

def test_class_folders_map_labels(tmp_path):
    root = _folders(tmp_path / "ds", {"Angry": 2, "happy": 3, "Neutral": 1})
    data = load_dataset(root)
    assert isinstance(data, Dataset) and len(data) == 6
    assert data.classes == ("neutral", "anger", "happiness")
    counts = collections.Counter(s.label for s in data.samples)
    assert counts == {"anger": 2, "happiness": 3, "neutral": 1}
    assert all(s.split is None and s.subject is None for s in data.samples)


def test_split_folders_like_kaggle_fer2013(tmp_path):
    root = tmp_path / "fer"
    _folders(root / "train", {"angry": 2, "sad": 1})
    _folders(root / "test", {"angry": 1})
    data = load_dataset(root, layout="folders")
    assert collections.Counter(s.split for s in data.samples) == {"train": 3, "test": 1}


def test_unknown_folder_is_an_error_or_dropped_with_count(tmp_path):
    root = _folders(tmp_path / "ds", {"happy": 2, "sleepy": 3})
    with pytest.raises(DatasetFormatError, match="sleepy") as info:
        load_dataset(root)
    assert "\n" not in str(info.value)
    data = load_dataset(root, unknown_labels="drop")
    assert len(data) == 2 and data.report.dropped_labels == {"sleepy": 3}


def test_non_image_and_bad_files_skip_or_error(tmp_path):
    root = _folders(tmp_path / "ds", {"happy": 2})
    (root / "happy" / "notes.txt").write_text("x")
    (root / "happy" / "broken.png").write_bytes(b"not a png")
    data = load_dataset(root, on_bad="skip")
    assert len(data) == 2
    skipped = dict(data.report.skipped)
    assert set(skipped) == {str(root / "happy" / "notes.txt"), str(root / "happy" / "broken.png")}
    assert "2 file(s) skipped" in data.report.summary()
    with pytest.raises(ImageReadError, match="broken.png"):
        load_dataset(root, on_bad="error")


def test_check_decode_finds_truncated_pixels(tmp_path):
    root = _folders(tmp_path / "ds", {"happy": 1})
    good = (root / "happy").glob("*.png").__next__().read_bytes()
    (root / "happy" / "cut.png").write_bytes(good[: len(good) // 2])
    assert len(load_dataset(root)) == 2  # the header alone looks fine
    data = load_dataset(root, check="decode")
    assert len(data) == 1 and data.report.skipped[0][0].endswith("cut.png")


def test_bad_option_values_name_the_option(tmp_path):
    root = _folders(tmp_path / "ds", {"happy": 1})
    with pytest.raises(ValueError, match="on_bad"):
        load_dataset(root, on_bad="ignore")


def test_sfew_and_tfeid(tmp_path):
    sfew = tmp_path / "sfew"
    _folders(sfew / "Train", {"Happy": 2, "Surprise": 1})
    _folders(sfew / "Val", {"Happy": 1})
    data = load_dataset(sfew, layout="sfew")
    assert collections.Counter(s.split for s in data.samples) == {"train": 3, "val": 1}
    tfeid = tmp_path / "tfeid"
    for label, names in {"anger": ["f01_an.jpg", "m12_an_s.jpg"], "neutral": ["f01_ne.jpg"]}.items():
        for name in names:
            write_image(tfeid / label / name, random_image(1))
    data = load_dataset(tfeid, layout="tfeid")
    assert sorted((s.subject, s.label) for s in data.samples) == [
        ("f01", "anger"), ("f01", "neutral"), ("m12", "anger")]
    write_image(tfeid / "anger" / "nosubject.jpg", random_image(2))
    with pytest.raises(DatasetFormatError, match="nosubject.jpg"):
        load_dataset(tfeid, layout="tfeid")


# --- manifests and BAUM-2i --------------------------------------------------------------

def test_manifest_columns_and_relative_paths(tmp_path):
    write_image(tmp_path / "imgs" / "a.png", random_image(1))
    write_image(tmp_path / "imgs" / "b.png", random_image(2))
    _write_csv(tmp_path / "index.csv", ["path", "label", "subject", "split", "gender"],
               [["imgs/a.png", "normal", "s1", "Training", "f"], ["imgs/b.png", "surprised", "s2", "PublicTest", ""]])
    data = load_dataset(tmp_path)
    assert [s.label for s in data.samples] == ["neutral", "surprise"]
    assert [s.subject for s in data.samples] == ["s1", "s2"]
    assert [s.split for s in data.samples] == ["train", "public_test"]
    assert data.samples[0].attributes == {"gender": "f"} and data.samples[1].attributes == {}
    assert data.samples[0].path == str(tmp_path / "imgs" / "a.png")


@pytest.mark.parametrize("bad_path", ["../outside.png", "imgs/../../outside.png", "/etc/passwd"])
def test_manifest_refuses_paths_leaving_the_root(tmp_path, bad_path):
    root = tmp_path / "root"
    root.mkdir()
    write_image(tmp_path / "outside.png", random_image(1))
    _write_csv(root / "index.csv", ["path", "label"], [[bad_path, "happy"]])
    with pytest.raises(DatasetFormatError, match="escapes the dataset root"):
        load_manifest(root / "index.csv")


def test_manifest_unknown_labels_and_missing_files(tmp_path):
    write_image(tmp_path / "a.png", random_image(1))
    _write_csv(tmp_path / "m.csv", ["path", "label"],
               [["a.png", "happy"], ["a.png", "wink"], ["a.png", "wink"], ["gone.png", "sad"]])
    with pytest.raises(DatasetFormatError, match="m.csv:3.*wink"):
        load_manifest(tmp_path / "m.csv")
    data = load_manifest(tmp_path / "m.csv", unknown_labels="drop")
    assert len(data) == 1 and data.report.dropped_labels == {"wink": 2}
    assert data.report.skipped[0][0] == str(tmp_path / "gone.png")
    with pytest.raises(ImageReadError, match="gone.png"):
        load_manifest(tmp_path / "m.csv", unknown_labels="drop", on_bad="error")


def test_manifest_missing_column(tmp_path):
    _write_csv(tmp_path / "m.csv", ["file", "label"], [["a.png", "happy"]])
    with pytest.raises(DatasetFormatError, match="missing column.*path"):
        load_manifest(tmp_path / "m.csv")


def test_baum2i_gender(tmp_path):
    write_image(tmp_path / "a.png", random_image(1))
    _write_csv(tmp_path / "labels.csv", ["path", "label", "subject", "gender"],
               [["a.png", "anger", "p1", "M"], ["a.png", "fear", "p2", "female"]])
    data = load_dataset(tmp_path, layout="baum2i")
    assert list(data.attribute("gender")) == ["male", "female"]
    _write_csv(tmp_path / "labels.csv", ["path", "label"], [["a.png", "anger"]])
    with pytest.raises(DatasetFormatError, match="gender"):
        load_baum2i(tmp_path)


# --- FER2013 and FER+ -------------------------------------------------------------------

def _fer_rows(n, seed=0):
    rng = np.random.default_rng(seed)
    pixels = [rng.integers(0, 256, 48 * 48) for _ in range(n)]
    usages = ["Training", "PublicTest", "PrivateTest"]
    return pixels, [[i % 7, " ".join(map(str, p)), usages[i % 3]] for i, p in enumerate(pixels)]


def test_fer2013_csv(tmp_path):
    pixels, rows = _fer_rows(8)
    rows[5][1] = "1 2 3"  # wrong pixel count
    path = _write_csv(tmp_path / "fer2013.csv", ["emotion", "pixels", "Usage"], rows)
    data = load_dataset(tmp_path)
    assert len(data) == 7 and data.report.skipped[0][0] == f"{path}:7"
    ids = [i for i in range(8) if i != 5]
    assert [s.label for s in data.samples] == [FER2013_LABELS[i % 7] for i in ids]
    assert FER2013_LABELS == ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
    assert [s.split for s in data.samples][:3] == ["train", "public_test", "private_test"]
    image = data.samples[1].image
    assert image.shape == (48, 48, 3)
    np.testing.assert_array_equal(image[..., 0], pixels[1].reshape(48, 48))
    with pytest.raises(ImageReadError, match=r"fer2013.csv:7: expected 2304 pixel values, got 3"):
        load_fer2013(path, on_bad="error")


def test_ferplus_label_rule():
    # columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
    assert ferplus_label([0, 7, 3, 0, 0, 0, 0, 0, 0, 0]) == ("happiness", None)
    assert ferplus_label([4, 4, 2, 0, 0, 0, 0, 0, 0, 0]) == (None, "tie")
    assert ferplus_label([1, 0, 0, 0, 0, 0, 0, 0, 6, 3]) == (None, "unknown")
    assert ferplus_label([0, 0, 0, 0, 0, 0, 0, 0, 0, 10]) == (None, "NF")
    assert ferplus_label([0] * 10) == (None, "no votes")
    assert ferplus_label([4, 3, 3, 0, 0, 0, 0, 0, 0, 0], min_share=0.5) == (None, "below min_share")


def test_ferplus_pairs_with_fer2013_rows(tmp_path):
    _, rows = _fer_rows(4)
    _write_csv(tmp_path / "fer2013.csv", ["emotion", "pixels", "Usage"], rows)
    votes = [[0, 0, 0, 0, 9, 1, 0, 0, 0, 0], [5, 5, 0, 0, 0, 0, 0, 0, 0, 0],
             [0, 0, 0, 0, 0, 0, 0, 0, 0, 10], [0, 0, 0, 0, 0, 0, 0, 8, 2, 0]]
    header = ["Usage", "Image name", "neutral", "happiness", "surprise", "sadness", "anger", "disgust",
              "fear", "contempt", "unknown", "NF"]
    _write_csv(tmp_path / "fer2013new.csv", header,
               [[r[2], f"fer{i:07d}.png", *v] for i, (r, v) in enumerate(zip(rows, votes))])
    assert detect_layout(tmp_path) == "ferplus"
    data = load_dataset(tmp_path)
    assert [s.label for s in data.samples] == ["anger", "contempt"]
    assert data.report.dropped_labels == {"ferplus:tie": 1, "ferplus:NF": 1}
    np.testing.assert_array_equal(data.samples[1].image[..., 1],
                                  np.array(rows[3][1].split(), int).reshape(48, 48))
    _write_csv(tmp_path / "fer2013.csv", ["emotion", "pixels", "Usage"], rows[:3])
    with pytest.raises(DatasetFormatError, match="pair row by row"):
        load_ferplus(tmp_path / "fer2013new.csv", tmp_path / "fer2013.csv")


# --- CK+ and JAFFE ----------------------------------------------------------------------

def _ckplus(root, sequences):
    for (subject, seq), (n_frames, code) in sequences.items():
        for f in range(1, n_frames + 1):
            write_image(root / "cohn-kanade-images" / subject / seq / f"{subject}_{seq}_{f:08d}.png",
                        random_image(f, (8, 8)))
        if code is not None:
            emotion = root / "Emotion" / subject / seq
            emotion.mkdir(parents=True)
            (emotion / f"{subject}_{seq}_{n_frames:08d}_emotion.txt").write_text(f"   {code:.7e}\n")
    return root


def test_ckplus_last_three_frames_and_first_neutral(tmp_path):
    root = _ckplus(tmp_path, {("S005", "001"): (6, 3.0), ("S010", "002"): (5, 7.0), ("S010", "003"): (4, None)})
    data = load_dataset(root)
    got = [(s.path.rsplit("_", 1)[-1], s.label, s.subject, s.attributes["frame"]) for s in data.samples]
    assert got == [
        ("00000001.png", "neutral", "S005", "onset"), ("00000004.png", "disgust", "S005", "peak"),
        ("00000005.png", "disgust", "S005", "peak"), ("00000006.png", "disgust", "S005", "peak"),
        ("00000001.png", "neutral", "S010", "onset"), ("00000003.png", "surprise", "S010", "peak"),
        ("00000004.png", "surprise", "S010", "peak"), ("00000005.png", "surprise", "S010", "peak"),
    ]
    assert data.report.dropped_labels == {"ckplus:unlabelled sequence": 1}
    assert len(load_dataset(root, neutral=False)) == 6


def test_ckplus_bad_code(tmp_path):
    root = _ckplus(tmp_path, {("S005", "001"): (4, 9.0)})
    with pytest.raises(DatasetFormatError, match="_emotion.txt"):
        load_dataset(root, layout="ckplus")


def test_jaffe_names(tmp_path):
    for name in ["KA.AN1.39.tiff", "KA.NE2.27.tiff", "YM.SU3.60.tiff", "TM.DI1.101.tiff"]:
        write_image(tmp_path / "jaffe" / name, random_image(1, (8, 8)))
    (tmp_path / "jaffe" / "README").write_text("x")
    data = load_dataset(tmp_path / "jaffe")
    assert sorted((s.subject, s.label) for s in data.samples) == [
        ("KA", "anger"), ("KA", "neutral"), ("TM", "disgust"), ("YM", "surprise")]
    assert [p.rsplit("/", 1)[-1] for p, _ in data.report.skipped] == ["README"]


# --- layout selection -------------------------------------------------------------------

def test_unknown_layout_errors(tmp_path):
    with pytest.raises(UnknownLayoutError, match="unknown dataset layout 'kdef'"):
        load_dataset(tmp_path, layout="kdef")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UnknownLayoutError, match="x.csv"):
        load_dataset(tmp_path / "x.csv")
    with pytest.raises(UnknownLayoutError, match="no such file"):
        load_dataset(tmp_path / "absent")
    assert {"folders", "manifest", "fer2013", "ferplus", "ckplus", "jaffe", "tfeid", "sfew", "baum2i"} <= set(LAYOUTS)


def test_canonical_split_names():
    assert [canonical_split(n) for n in ["Training", "PublicTest", "PrivateTest", "Train", "Val", "test"]] == [
        "train", "public_test", "private_test", "train", "val", "test"]
    assert canonical_split("happy") is None
