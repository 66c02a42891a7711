"""Hostile datasets: every loader and the face cropper give correct samples or the one-line
errors they define (``DatasetFormatError``, ``ImageReadError``, ``UnknownLayoutError``),
never another exception, and manifest paths never leave the dataset root.
See docs/reliability.md.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dam_cnn_tf.data.datasets import UnknownLayoutError, load_dataset
from dam_cnn_tf.data.faces import FacePreparer, HaarFaceDetector, crop_face
from dam_cnn_tf.data.fer2013 import FER2013_LABELS, load_fer2013
from dam_cnn_tf.data.images import ImageReadError, read_image
from dam_cnn_tf.data.loading import DatasetFormatError
from dam_cnn_tf.data.manifest import load_manifest
from hostile import (
    FAST, FUZZ_MAX_PIXELS, LONG, assert_clean_outcome, mutated_images, random_payloads, valid_images,
)

LOADER_ERRORS = (DatasetFormatError, ImageReadError, UnknownLayoutError)


def _one_line(err, *names):
    message = str(err)
    assert "\n" not in message, message
    assert any(str(n) in message for n in names), message


def _both(strategy, check):
    """The default (FAST) and the ``slow`` (LONG) property test of ``check``."""
    return FAST(given(strategy)(check)), pytest.mark.slow(LONG(given(strategy)(check)))


# ---- FER2013 CSV rows -------------------------------------------------------------------

GOOD_PIXELS = np.arange(2304) % 256
pixel_fields = st.one_of(
    st.just(" ".join(map(str, GOOD_PIXELS))),                                   # correct
    st.integers(0, 3000).map(lambda n: " ".join(["7"] * n)),                    # wrong count
    st.lists(st.sampled_from(["-1", "256", "1e3", "x", "nan", "99999999999999999999999", "0x10", "3.5"]),
             min_size=1, max_size=3).map(lambda bad: " ".join(["1"] * (2304 - len(bad)) + bad)),
    st.text(max_size=40),
)
emotion_fields = st.one_of(st.integers(-3, 9).map(str), st.text(max_size=5), st.just("1" * 30))
fer_rows = st.lists(st.tuples(emotion_fields, pixel_fields, st.sampled_from(["Training", "PublicTest", ""]),
                              st.integers(0, 2)), min_size=1, max_size=6)


def _write_fer(path, rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["emotion", "pixels", "Usage"])
    for emotion, pixels, usage, extra in rows:
        writer.writerow([emotion, pixels, usage] + ["surplus"] * (extra == 2))
    path.write_text(buffer.getvalue())


def _expected_fer(emotion, pixels):
    """Independent reading of one row: ``(label, grey image)``, or None for a bad row."""
    try:
        emotion = int(emotion)
        values = [int(v) for v in pixels.split()]
    except ValueError:
        return None, None
    label = FER2013_LABELS[emotion] if 0 <= emotion < 7 else None
    if len(values) != 2304 or min(values) < 0 or max(values) > 255:
        return label, None
    return label, np.array(values, np.uint8).reshape(48, 48)


def _check_fer(rows):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fer2013.csv"
        _write_fer(path, rows)
        try:
            dataset = load_fer2013(path)
        except (DatasetFormatError, ImageReadError) as err:
            _one_line(err, path)
            expected = [_expected_fer(e, p) for e, p, _, _ in rows]
            # Only an unusable emotion, a surplus field or no good row at all may fail the load.
            assert (any(x == 2 for *_, x in rows) or any(label is None for label, _ in expected)
                    or all(image is None for _, image in expected)), str(err)
            return
        kept = {s.path: s for s in dataset.samples}
        for line, (emotion, pixels, _, _) in enumerate(rows, start=2):
            label, image = _expected_fer(emotion, pixels)
            sample = kept.get(f"{path}:{line}")
            if image is None:
                assert sample is None and any(p == f"{path}:{line}" for p, _ in dataset.report.skipped)
            else:
                assert sample.label == label
                np.testing.assert_array_equal(sample.image, np.repeat(image[..., None], 3, axis=2))


test_fer2013_rows, test_fer2013_rows_long = _both(fer_rows, _check_fer)


def test_fer2013_regressions(tmp_path):
    path = tmp_path / "fer2013.csv"
    _write_fer(path, [("3", " ".join(["99999999999999999999999"] * 2304), "Training", 0)])
    with pytest.raises(DatasetFormatError, match="no usable samples"):
        load_fer2013(path)
    with pytest.raises(ImageReadError, match="pixels are not integers"):
        load_fer2013(path, on_bad="error")
    _write_fer(path, [("3", " ".join(map(str, GOOD_PIXELS)), "Training", 2)])
    with pytest.raises(DatasetFormatError, match=r"fer2013.csv:2: row has 4 fields, the header has 3"):
        load_fer2013(path)


# ---- Any bytes given as a dataset file ----------------------------------------------------

def _check_csv_bytes(data):
    with tempfile.TemporaryDirectory() as folder:
        for name, layout in (("fer2013.csv", "fer2013"), ("index.csv", "manifest"), ("fer2013new.csv", "auto")):
            path = Path(folder) / name
            path.write_bytes(data)
            try:
                load_dataset(path, layout=layout)
            except LOADER_ERRORS as err:
                _one_line(err, path, folder)


csv_payloads = st.one_of(random_payloads(), st.builds(
    lambda header, body: header + body,
    st.sampled_from([b"emotion,pixels,Usage\n", b"path,label\n", b"Usage,Image name,neutral\n", b"\xef\xbb\xbf"]),
    st.binary(max_size=512)))
test_random_csv_files, test_random_csv_files_long = _both(csv_payloads, _check_csv_bytes)


# ---- Image files inside every folder layout ----------------------------------------------

def _layouts(folder: Path, data: bytes) -> list:
    """The same bytes as an image of each folder layout; ``(layout, root, image path)``."""
    layouts = {"folders": (folder / "folders", "happy/x.png"), "jaffe": (folder / "jaffe", "KA.HA1.29.tiff"),
               "ckplus": (folder / "ck", "cohn-kanade-images/S005/001/S005_001_00000001.png"),
               "manifest": (folder / "manifest", "img/x.png")}
    made = []
    for layout, (root, relative) in layouts.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        made.append((layout, root, path))
    (folder / "ck" / "Emotion" / "S005" / "001").mkdir(parents=True)
    (folder / "ck" / "Emotion" / "S005" / "001" / "S005_001_emotion.txt").write_text("5.0000000e+00\n")
    (folder / "manifest" / "index.csv").write_text("path,label\nimg/x.png,happy\n")
    return made


def _check_image_in_layouts(case):
    _, data = case
    with tempfile.TemporaryDirectory() as folder:
        for layout, root, path in _layouts(Path(folder), data):
            for check in ("header", "decode"):
                try:
                    dataset = load_dataset(root, layout=layout, check=check, max_pixels=FUZZ_MAX_PIXELS)
                except (DatasetFormatError, ImageReadError) as err:
                    # The one image is bad: skipped (then no usable samples) and named.
                    _one_line(err, root, path)
                    assert "no usable samples found (1 file(s) skipped)" in str(err), str(err)
                    continue
                assert [s.path for s in dataset.samples] == [str(path)]
                assert dataset.report.skipped == []
                if check == "decode":  # what was accepted decodes
                    assert_clean_outcome(lambda: read_image(path, FUZZ_MAX_PIXELS), path, ())


image_payloads = st.one_of(mutated_images(), st.tuples(st.just("random"), random_payloads()))
test_images_in_every_layout, test_images_in_every_layout_long = _both(image_payloads, _check_image_in_layouts)


def _check_ck_code(text):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        frames = root / "cohn-kanade-images" / "S005" / "001"
        frames.mkdir(parents=True)
        frames.joinpath("S005_001_00000001.png").write_bytes(valid_images()["png"])
        code = root / "Emotion" / "S005" / "001" / "S005_001_emotion.txt"
        code.parent.mkdir(parents=True)
        code.write_bytes(text)
        try:
            dataset = load_dataset(root, layout="ckplus")
        except DatasetFormatError as err:
            _one_line(err, code)
            return
        value = float(text.decode().split()[0])
        assert value == int(value) and 0 <= value < 8 and len(dataset) == 1


ck_codes = st.one_of(st.binary(max_size=16), st.sampled_from([b"nan", b"inf", b"-inf", b"1e400", b"5.0", b"7.5",
                                                              b"-0", b"8", b"\xff\xfe5"]))
test_ckplus_emotion_codes, test_ckplus_emotion_codes_long = _both(ck_codes, _check_ck_code)


# ---- Manifest paths: nothing outside the root -------------------------------------------

def make_sandbox(tmp_path):
    """``root`` with an image, and ``outside`` with a secret image and links to it from the root."""
    png = valid_images()["png"]
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "img").mkdir(parents=True)
    outside.mkdir()
    (root / "img" / "a.png").write_bytes(png)
    (outside / "secret.png").write_bytes(png)
    os.symlink(outside / "secret.png", root / "img" / "link-out.png")
    os.symlink(outside, root / "dir-out")
    os.symlink(root / "img" / "a.png", root / "img" / "link-in.png")
    os.symlink("../../outside/secret.png", root / "img" / "relative-link-out.png")
    return root, outside


@pytest.fixture
def sandbox(tmp_path):
    return make_sandbox(tmp_path)


@pytest.fixture(scope="module")
def module_sandbox(tmp_path_factory):
    return make_sandbox(tmp_path_factory.mktemp("manifest"))


def _manifest(root: Path, paths) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "label"])
    writer.writerows([p, "happy"] for p in paths)
    (root / "index.csv").write_text(buffer.getvalue())
    return root / "index.csv"


ESCAPES = ["../outside/secret.png", "../../etc/passwd", "/etc/passwd", "img/../../outside/secret.png",
           "img/link-out.png", "dir-out/secret.png", "img/relative-link-out.png", "..\\outside\\secret.png",
           "img/a.png\0.txt"]


@pytest.mark.parametrize("escape", ESCAPES)
def test_manifest_paths_cannot_escape_the_root(sandbox, escape):
    root, _ = sandbox
    csv_path = _manifest(root, ["img/a.png", escape])
    with pytest.raises(DatasetFormatError, match="escapes the dataset root|outside the dataset root|NUL") as info:
        load_manifest(csv_path)
    _one_line(info.value, f"{csv_path}:3")


def test_links_inside_the_root_and_explicitly_allowed_links(sandbox):
    root, outside = sandbox
    dataset = load_manifest(_manifest(root, ["img/a.png", "img/link-in.png"]))
    assert len(dataset) == 2
    allowed = load_manifest(_manifest(root, ["img/link-out.png", "dir-out/secret.png"]), allow_external_links=True)
    assert [Path(s.path).resolve() for s in allowed.samples] == [outside / "secret.png"] * 2
    # A root reached through a link is still the root.
    _manifest(root, ["img/a.png", "img/link-in.png"])
    os.symlink(root, root.parent / "root-link")
    assert len(load_manifest(root.parent / "root-link" / "index.csv")) == 2


path_parts = st.lists(st.sampled_from(["..", ".", "img", "a.png", "link-out.png", "link-in.png", "dir-out",
                                       "secret.png", "outside", "", "~", "etc", "passwd", "\\", "\0"]),
                      min_size=1, max_size=6)


def _check_manifest_path(parts, lead_slash, root_and_outside):
    root, _ = root_and_outside
    relative = ("/" if lead_slash else "") + "/".join(parts)
    csv_path = _manifest(root, [relative])
    try:
        dataset = load_manifest(csv_path)
    except DatasetFormatError as err:
        _one_line(err, csv_path)
        return
    real_root = os.path.realpath(root)
    for sample in dataset.samples:
        assert os.path.commonpath([real_root, os.path.realpath(sample.path)]) == real_root, relative


@FAST
@given(parts=path_parts, lead_slash=st.booleans())
def test_random_manifest_paths_stay_inside(module_sandbox, parts, lead_slash):
    _check_manifest_path(parts, lead_slash, module_sandbox)


@pytest.mark.slow
@LONG
@given(parts=path_parts, lead_slash=st.booleans())
def test_random_manifest_paths_stay_inside_long(module_sandbox, parts, lead_slash):
    _check_manifest_path(parts, lead_slash, module_sandbox)


# ---- Face cropper ------------------------------------------------------------------------

DETECTOR = HaarFaceDetector()

arrays = st.tuples(st.integers(1, 96), st.integers(1, 96), st.sampled_from([None, 1, 3]), st.integers(0, 2**32 - 1))


def _check_crop(spec):
    height, width, channels, seed = spec
    shape = (height, width) if channels is None else (height, width, channels)
    image = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    face, found = crop_face(image, (24, 20), DETECTOR, margin=0.2)
    assert face.shape == (24, 20, 3) and face.dtype == np.uint8 and isinstance(found, bool)


test_crop_any_array, test_crop_any_array_long = _both(arrays, _check_crop)


def _check_preparer(cases):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "happy"
        root.mkdir()
        for i, (_, data) in enumerate(cases):
            root.joinpath(f"{i:02d}.png").write_bytes(data)
        dataset = load_dataset(Path(folder), layout="folders", check="none")
        preparer = FacePreparer(32, detector=DETECTOR, no_face="whole", max_pixels=FUZZ_MAX_PIXELS,
                                progress=False, cache_dir=Path(folder) / "cache")
        for _ in range(2):  # the second pass reads the cache
            prepared = preparer.prepare(dataset)
            assert len(prepared.faces) + len(prepared.report.bad) == len(cases)
            assert prepared.faces.shape[1:] == (32, 32, 3) and prepared.faces.dtype == np.uint8
            for path, reason in prepared.report.bad:
                assert "\n" not in reason and Path(path).parent == root


preparer_cases = st.lists(image_payloads, min_size=1, max_size=4)
test_face_preparer_on_hostile_files, test_face_preparer_on_hostile_files_long = _both(preparer_cases, _check_preparer)
