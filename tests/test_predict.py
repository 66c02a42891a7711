"""Prediction on images, folders and videos, and the ``damcnn-tf predict`` command."""

import csv
import io
import json
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
from click.testing import CliRunner

from dam_cnn_tf import MPVSNet, build_dam_cnn, build_vgg_serd, salient_feature_model
from dam_cnn_tf.cli import main
from dam_cnn_tf.commands.predict import no_face_line
from dam_cnn_tf.data.faces import HaarFaceDetector, crop_face
from dam_cnn_tf.data.images import ImageReadError, read_image
from dam_cnn_tf.data.synthetic import make_synthetic_faces
from data_helpers import draw_face
from dam_cnn_tf.predict import PredictError, Predictor, VideoReadError, draw_predictions, expand_inputs

CLASSES = ["neutral", "happiness", "surprise"]
SIZE = 64  # a 2x2 attention mask; at 32x32 it would be a single value


def _save_model(run: Path, faces) -> None:
    """A tiny untrained DAM-CNN whose outputs still differ from face to face."""
    vgg_serd = build_vgg_serd(3, input_shape=(SIZE, SIZE, 3), fc_units=8, backbone_widths=(4, 4, 8, 8, 8))
    # A positive SERD bias keeps M > 0 (Eq. 1); a negative M would zero every feature through the ReLU (Eq. 2).
    vgg_serd.get_layer("serd").weights[1].assign(np.full((1,), 0.5, np.float32))
    features = salient_feature_model(vgg_serd).predict(np.asarray(faces, np.float32), verbose=0)["features"]
    net = MPVSNet(features.shape[-1], 3, encoder_units=6, num_paths=2, fc_units=5)
    net.mpae.adapt(features)  # scaled to [0, 1] from real features, so they do not all clip to 1
    run.mkdir(parents=True, exist_ok=True)
    build_dam_cnn(vgg_serd, net).save(run / "model.keras")
    (run / "classes.json").write_text(json.dumps({"class_names": CLASSES}))


def _write_png(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def _scene(faces, size=(200, 300), grey=200) -> np.ndarray:
    """Synthetic 64x64 faces enlarged to 128x128 and pasted side by side on a flat background."""
    scene = np.full((*size, 3), grey, np.uint8)
    for i, face in enumerate(faces):
        scene[40:168, 20 + 140 * i:148 + 140 * i] = cv2.resize(face, (128, 128), interpolation=cv2.INTER_LINEAR)
    return scene


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    dataset = make_synthetic_faces(num_subjects=2, images_per_class=1, image_size=64, classes=CLASSES)
    faces = [s.image for s in dataset.samples]
    _save_model(root / "run", faces)
    keras.backend.clear_session()
    # Subject syn001's faces are the ones the bundled Haar cascade finds once enlarged.
    detector = HaarFaceDetector()
    found = [f for f in faces if len(detector(cv2.cvtColor(_scene([f]), cv2.COLOR_RGB2GRAY))) == 1]
    assert len(found) >= 2, "the Haar cascade no longer finds the synthetic faces"
    two = _scene(found[:2])
    assert len(detector(cv2.cvtColor(two, cv2.COLOR_RGB2GRAY))) == 2
    paths = {
        "run": root / "run",
        "two": _write_png(root / "in" / "two.png", two),
        "one": _write_png(root / "in" / "sub" / "one.png", _scene(found[2:3] or found[:1])),
        "blank": _write_png(root / "in" / "blank.png", np.full((120, 100, 3), 90, np.uint8)),
        "crop": _write_png(root / "crops" / "face.png", found[0]),
    }
    video = root / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (300, 200))
    assert writer.isOpened()
    for shift in range(7):
        writer.write(cv2.cvtColor(np.roll(two, 2 * shift, axis=1), cv2.COLOR_RGB2BGR))
    writer.release()
    paths["video"] = video
    bad = root / "bad"
    bad.mkdir()
    paths["corrupt"] = bad / "corrupt.png"
    paths["corrupt"].write_bytes(paths["two"].read_bytes()[:300])
    paths["text"] = bad / "notes.jpg"
    paths["text"].write_text("not an image\n")
    paths["badvideo"] = root / "broken.avi"
    paths["badvideo"].write_text("not a video\n")
    return paths


def _model_on(run: Path, crops: np.ndarray):
    model = keras.models.load_model(run / "model.keras")
    out = model.predict(np.asarray(crops, np.float32), verbose=0)
    return out["probabilities"], out["attention"]


def _region_crop(image, region, size=SIZE):
    """The crop written out with plain slicing and OpenCV, as in training: area averaging along
    the axes that shrink, then bilinear along those that grow."""
    x0, y0, x1, y1 = region
    part = image[y0:y1, x0:x1]
    shrunk = (min(part.shape[1], size), min(part.shape[0], size))
    if shrunk != (part.shape[1], part.shape[0]):
        part = cv2.resize(part, shrunk, interpolation=cv2.INTER_AREA)
    if shrunk != (size, size):
        part = cv2.resize(part, (size, size), interpolation=cv2.INTER_LINEAR)
    return part


# -- Predictor ---------------------------------------------------------------------------------


def test_faces_match_the_model_on_training_crops(files):
    image = read_image(files["two"])
    faces = Predictor(files["run"], margin=0.2, detector="haar").predict_image(image)
    assert len(faces) == 2 and all(f.detected for f in faces)
    assert faces[0].box[0] < faces[1].box[0]  # left to right
    # With the paper's detector, the largest face is the one training's crop_face keeps.
    faces.sort(key=lambda f: -f.box[2] * f.box[3])
    first, _ = crop_face(image, (SIZE, SIZE), HaarFaceDetector(), margin=0.2)
    crops = np.stack([first, _region_crop(image, faces[1].region)])
    probabilities, attention = _model_on(files["run"], crops)
    assert np.abs(probabilities[0] - probabilities[1]).max() > 1e-3  # the check below can tell faces apart
    assert attention.shape == (2, 2, 2)
    for face, probs, mask in zip(faces, probabilities, attention):
        np.testing.assert_allclose([face.probabilities[c] for c in CLASSES], probs, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(face.attention, mask, rtol=1e-5, atol=1e-6)
        assert face.label == CLASSES[int(np.argmax(probs))] and face.class_id == int(np.argmax(probs))
        x, y, w, h = face.box
        dx, dy = round(0.2 * w), round(0.2 * h)
        assert face.region == (max(0, x - dx), max(0, y - dy), min(300, x + w + dx), min(200, y + h + dy))


class FixedBoxes:
    def __init__(self, boxes):
        self.boxes = np.asarray(boxes, np.int64).reshape(-1, 4)

    def __call__(self, grey):
        return self.boxes


def test_margin_clips_and_no_face_policies(files):
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, size=(60, 80, 3), dtype=np.uint8)
    predictor = Predictor(files["run"], margin=0.5, detector=FixedBoxes([[40, 20, 30, 30], [2, 3, 10, 10]]))
    faces = predictor.predict_image(image)
    assert [f.box for f in faces] == [(2, 3, 10, 10), (40, 20, 30, 30)]  # left to right
    assert [f.region for f in faces] == [(0, 0, 17, 18), (25, 5, 80, 60)]
    probabilities, _ = _model_on(files["run"], np.stack([_region_crop(image, f.region) for f in faces]))
    np.testing.assert_allclose([[f.probabilities[c] for c in CLASSES] for f in faces], probabilities, rtol=1e-5)

    assert Predictor(files["run"], detector=FixedBoxes([])).predict_image(image) == []
    whole = Predictor(files["run"], detector=FixedBoxes([]), no_face="whole").predict_image(image)
    assert len(whole) == 1 and not whole[0].detected and whole[0].region == (0, 0, 80, 60)
    crop = Predictor(files["run"], detect=False).predict_image(image[..., 0])  # grey is repeated to RGB
    probabilities, _ = _model_on(files["run"], _region_crop(np.repeat(image[..., :1], 3, -1), (0, 0, 80, 60))[None])
    np.testing.assert_allclose([crop[0].probabilities[c] for c in CLASSES], probabilities[0], rtol=1e-5)


def test_paths_folders_and_bad_files(files):
    root = files["two"].parent
    found = expand_inputs([root, files["video"]])
    assert [f.relative for f in found] == ["blank.png", "sub/one.png", "two.png", "clip.avi"]
    assert [f.kind for f in found] == ["image"] * 3 + ["video"]
    predictor = Predictor(files["run"])
    report = predictor.predict_paths([root, files["corrupt"], files["text"], files["badvideo"]])
    assert [Path(r.path).name for r in report.results] == ["blank.png", "one.png", "two.png"]
    assert [Path(p).name for p, _ in report.bad] == ["corrupt.png", "notes.jpg", "broken.avi"]
    assert [Path(p).name for p in report.no_face] == ["blank.png"]
    assert report.results[0].faces == [] and len(report.results[2].faces) == 2
    with pytest.raises(ImageReadError, match="notes.jpg"):
        predictor.predict_paths([files["text"]], on_bad="error")
    with pytest.raises(PredictError, match="nowhere.png"):
        predictor.predict_paths([root / "nowhere.png"])
    empty = files["corrupt"].parent / "empty"
    empty.mkdir(exist_ok=True)
    with pytest.raises(PredictError, match="empty"):
        predictor.predict_paths([empty])


def _decoded_frames(video):
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def test_video_frames_index_and_time(files):
    predictor = Predictor(files["run"], no_face="whole")
    results = predictor.predict_video(files["video"], every_n_frames=3)
    assert [r.frame for r in results] == [0, 3, 6]
    np.testing.assert_allclose([r.timestamp for r in results], [0.0, 0.3, 0.6])
    frames = _decoded_frames(files["video"])
    assert len(frames) == 7
    for result in results:
        expected = predictor.predict_image(frames[result.frame])
        assert [f.box for f in result.faces] == [f.box for f in expected]
        for got, want in zip(result.faces, expected):
            assert got.probabilities == pytest.approx(want.probabilities, rel=1e-5)
    with pytest.raises(VideoReadError, match="cannot read video .*broken.avi"):
        predictor.predict_video(files["badvideo"])
    with pytest.raises(PredictError, match="every_n_frames"):
        predictor.predict_video(files["video"], every_n_frames=0)


def test_draw_predictions_paints_regions_only(files):
    image = read_image(files["two"])
    faces = Predictor(files["run"]).predict_image(image)
    drawn = draw_predictions(image, faces)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    changed = np.any(drawn != image, axis=-1)
    inside = np.zeros_like(changed)
    for face in faces:
        x0, y0, x1, y1 = face.region
        inside[y0:y1, x0:x1] = True
    assert changed[inside].mean() > 0.9
    # Outside the faces only the label text, in a band above each box, may change.
    text_band = np.zeros_like(changed)
    for face in faces:
        x, y, w, h = face.box
        text_band[max(0, y - 30):y, max(0, x - 2):x + 2 * w] = True
    assert changed[~inside].any() and not changed[~inside & ~text_band].any()


# -- the command -------------------------------------------------------------------------------


def _invoke(*args):
    """``damcnn-tf predict ARGS`` through the top-level group, whose error handling users see."""
    return CliRunner().invoke(main, ["predict", *(str(a) for a in args)], catch_exceptions=True)


def _json_rows(result):
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_command_json_over_images_folder_and_video(files):
    result = _invoke(files["run"], files["two"].parent, files["video"], "--every-n-frames", "3", "--margin", "0.2",
                     "--detector", "haar")
    assert result.exit_code == 0, result.output
    rows = _json_rows(result)
    by_file = {}
    for row in rows:
        by_file.setdefault((Path(row["file"]).name, row["frame"]), []).append(row)
    assert set(by_file) == {("one.png", None), ("two.png", None), ("clip.avi", 0), ("clip.avi", 3), ("clip.avi", 6)}
    assert "no face found in" in result.stderr and "blank.png" in result.stderr
    image = read_image(files["two"])
    first, _ = crop_face(image, (SIZE, SIZE), HaarFaceDetector(), margin=0.2)
    probabilities, _ = _model_on(files["run"], first[None])
    rows = by_file[("two.png", None)]
    assert [r["face"] for r in rows] == [0, 1] and rows[0]["box"][0] < rows[1]["box"][0]  # left to right
    top = max(rows, key=lambda r: r["box"][2] * r["box"][3])
    assert top["detected"] is True
    assert [top["probabilities"][c] for c in CLASSES] == pytest.approx(list(probabilities[0]), rel=1e-5)
    assert top["label"] == CLASSES[int(np.argmax(probabilities[0]))]
    assert top["probability"] == max(top["probabilities"].values())
    assert [r["time"] for r in by_file[("clip.avi", 3)]] == pytest.approx([0.3] * len(by_file[("clip.avi", 3)]))


def test_command_csv_equals_json(files):
    args = (files["run"], files["two"], files["one"])
    as_json = _json_rows(_invoke(*args))
    result = _invoke(*args, "--format", "csv")
    assert result.exit_code == 0, result.output
    table = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(table[0]) == ["file", "frame", "time", "face", "x", "y", "w", "h", "detected", "label", "class_id",
                              "prob_neutral", "prob_happiness", "prob_surprise"]
    assert len(table) == len(as_json) == 3
    for row, obj in zip(table, as_json):
        assert row["file"] == obj["file"] and row["label"] == obj["label"] and row["frame"] == ""
        assert [int(row[k]) for k in "xywh"] == obj["box"]
        assert [float(row[f"prob_{c}"]) for c in CLASSES] == [obj["probabilities"][c] for c in CLASSES]


def test_command_output_file_whole_and_no_detect(files, tmp_path):
    out = tmp_path / "rows.jsonl"
    result = _invoke(files["run"], files["blank"], "--no-face", "whole", "--output", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["detected"] is False and row["box"] == [0, 0, 100, 120]
    result = _invoke(files["run"], files["crop"], "--no-detect")
    (row,) = _json_rows(result)
    probabilities, _ = _model_on(files["run"], cv2.resize(read_image(files["crop"]), (SIZE, SIZE),
                                                          interpolation=cv2.INTER_AREA)[None])
    assert [row["probabilities"][c] for c in CLASSES] == pytest.approx(list(probabilities[0]), rel=1e-5)


def test_command_heatmaps(files, tmp_path):
    folder = tmp_path / "heat"
    result = _invoke(files["run"], files["two"].parent, files["video"], "--every-n-frames", "3",
                     "--heatmaps", folder, "--heatmap-scale", "image")
    assert result.exit_code == 0, result.output
    written = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))
    assert written == ["clip/frame000000.png", "clip/frame000003.png", "clip/frame000006.png", "sub/one.png",
                       "two.png"]  # no face in blank.png, so no picture
    picture = read_image(folder / "two.png")
    original = read_image(files["two"])
    assert picture.shape == original.shape and np.any(picture != original)


def test_command_bad_input_keeps_existing_output(files, tmp_path):
    out = tmp_path / "rows.csv"
    out.write_text("previous\n")
    result = _invoke(files["run"], files["two"], files["corrupt"], "--on-bad", "error", "--format", "csv",
                     "--output", out)
    assert result.exit_code == 1
    _assert_one_error_line(result, "corrupt.png")
    assert out.read_text() == "previous\n" and [p.name for p in tmp_path.iterdir()] == ["rows.csv"]
    result = _invoke(files["run"], files["two"], files["corrupt"])  # skipped by default, and said so
    assert result.exit_code == 0 and len(_json_rows(result)) == 2
    assert "skipped unreadable" in result.stderr and "corrupt.png" in result.stderr


def _assert_one_error_line(result, needle):
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and needle in errors[0], result.stderr
    assert "Traceback" not in result.output


def _not_dam_cnn(path: Path) -> Path:
    inputs = keras.Input((SIZE, SIZE, 3))
    keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs))).save(path)
    return path


@pytest.mark.parametrize("case", [
    "missing_input", "missing_model", "run_without_model", "text_model", "other_model", "no_classes",
    "wrong_classes", "malformed_classes", "bad_image", "bad_video", "margin_without_detection", "no_face_without_detection",
    "output_is_folder", "heatmaps_is_file", "unknown_format", "zero_frames", "min_face_zero", "min_face_text",
    "min_face_infinite", "unknown_detector", "min_face_without_detection", "detector_without_detection",
])
def test_command_user_errors(files, tmp_path, case):
    run, image = files["run"], files["two"]
    args, needle = {
        "missing_input": ((run, tmp_path / "absent.png"), "absent.png"),
        "missing_model": ((tmp_path / "nothing", image), "nothing"),
        "run_without_model": ((tmp_path, image), "model.keras"),
        "bad_image": ((run, files["text"], "--on-bad", "error"), "notes.jpg"),
        "bad_video": ((run, files["badvideo"], "--on-bad", "error"), "broken.avi"),
        "margin_without_detection": ((run, image, "--no-detect", "--margin", "0.1"), "--margin"),
        "no_face_without_detection": ((run, image, "--no-detect", "--no-face", "whole"), "--no-face"),
        "output_is_folder": ((run, image, "--output", tmp_path), "--output"),
        "heatmaps_is_file": ((run, image, "--heatmaps", image), "--heatmaps"),
        "unknown_format": ((run, image, "--format", "xml"), "--format"),
        "zero_frames": ((run, image, "--every-n-frames", "0"), "--every-n-frames"),
        "min_face_zero": ((run, image, "--min-face", "0"), "--min-face"),
        "min_face_text": ((run, image, "--min-face", "big"), "--min-face"),
        "min_face_infinite": ((run, image, "--min-face", "inf"), "--min-face"),
        "unknown_detector": ((run, image, "--detector", "yunet"), "--detector"),
        "min_face_without_detection": ((run, image, "--no-detect", "--min-face", "50"), "--min-face"),
        "detector_without_detection": ((run, image, "--no-detect", "--detector", "haar"), "--detector"),
    }.get(case, (None, None))
    if case == "text_model":
        model = tmp_path / "model.keras"
        model.write_text("not a model")
        args, needle = (model, image), "model.keras"
    elif case == "other_model":
        model = _not_dam_cnn(tmp_path / "other.keras")
        (tmp_path / "classes.json").write_text(json.dumps({"class_names": CLASSES}))
        args, needle = (model, image), "not a DAM-CNN"
    elif case in ("no_classes", "wrong_classes", "malformed_classes"):
        (tmp_path / "model.keras").write_bytes((run / "model.keras").read_bytes())
        if case == "wrong_classes":
            (tmp_path / "classes.json").write_text(json.dumps({"class_names": CLASSES[:2]}))
        if case == "malformed_classes":
            (tmp_path / "classes.json").write_text('{"class_names": ["neutral", ')
        args, needle = (tmp_path, image), "classes.json"
    result = _invoke(*args)
    _assert_one_error_line(result, needle)
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1, result.stderr


# -- several faces, and faces too small to look for ---------------------------------------------


def _drawn_faces(shape, places) -> np.ndarray:
    """An RGB picture of ``draw_face`` faces, each an ``(x, y, side)`` square on a flat background."""
    grey = np.full(shape, 200, np.uint8)
    for x, y, side in places:
        grey[y:y + side, x:x + side] = draw_face(side)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)


@pytest.mark.parametrize("detector, sides", [("haar", (0.75, 1.0)), ("blazeface", (0.5, 0.9))])
def test_command_one_row_per_face_where_it_was_drawn(files, tmp_path, detector, sides):
    """Three drawn faces of different sizes, found by each real detector (no stand-in). The
    box sits inside the drawn square (BlazeFace's, brows to chin, further in than Haar's), so
    each row's box is checked against the square it belongs to: centre within a tenth of the
    side, sides within ``sides`` of it. Rows are numbered left to right, not by size."""
    places = [(20, 150, 60), (110, 40, 160), (300, 20, 100)]  # left to right
    path = _write_png(tmp_path / "group.png", _drawn_faces((260, 420), places))
    result = _invoke(files["run"], path, "--detector", detector)
    assert result.exit_code == 0, result.output
    rows = _json_rows(result)
    assert [row["face"] for row in rows] == [0, 1, 2] and all(row["detected"] for row in rows)
    low, high = sides
    for row, (x, y, side) in zip(rows, places):
        bx, by, bw, bh = row["box"]
        assert abs(bx + bw / 2 - (x + side / 2)) <= side / 10 and abs(by + bh / 2 - (y + side / 2)) <= side / 10, row
        assert low * side <= bw <= high * side and low * side <= bh <= high * side, row
    assert "no face found" not in result.stderr
    assert "1 inputs: 1 images or frames, 3 faces, 0 without a detected face" in result.stderr  # counts what it wrote


def test_no_face_message_names_the_smallest_face_looked_for(files, tmp_path):
    # The same 60-pixel face: found in a small picture, but not looked for in a large one,
    # where the cascade's smallest window is a tenth of the shorter side, 70 pixels.
    small = _write_png(tmp_path / "small.png", _drawn_faces((140, 140), [(40, 40, 60)]))
    large = _write_png(tmp_path / "large.png", _drawn_faces((700, 1000), [(470, 320, 60)]))
    assert HaarFaceDetector().min_face_side(700, 1000) == 70
    report = Predictor(files["run"], detector="haar").predict_paths([small, large])
    assert [len(r.faces) for r in report.results] == [1, 0]
    assert report.no_face == [str(large)] and report.min_face_side == {str(large): 70}
    result = _invoke(files["run"], small, large, "--no-face", "whole", "--detector", "haar")
    assert result.exit_code == 0, result.output
    assert (f"no face found in {large} (faces smaller than 70x70 pixels are not looked for; whole image used)"
            in result.stderr.splitlines())
    # With a lower minimum the face in the large picture is found: the minimum was the reason.
    lower = Predictor(files["run"], detector=HaarFaceDetector(min_size_fraction=0.05)).predict_paths([large])
    assert len(lower.results[0].faces) == 1 and lower.no_face == [] and lower.min_face_side == {}
    # A detector that does not say its minimum gives no size to report.
    report = Predictor(files["run"], detector=FixedBoxes([])).predict_paths([large])
    assert report.no_face == [str(large)] and report.min_face_side == {}
    assert no_face_line("x.jpg", None, "skipped") == "no face found in x.jpg (skipped)"
    assert no_face_line("x.jpg", 48, "skipped") == (
        "no face found in x.jpg (faces smaller than 48x48 pixels are not looked for; skipped)")


def test_min_face_is_honoured_by_both_detectors(files, tmp_path):
    # A 60-pixel face in a 700x1000 picture: BlazeFace looks down to 40 pixels by default.
    large = _write_png(tmp_path / "large.png", _drawn_faces((700, 1000), [(470, 320, 60)]))
    for args, found in [((), 1), (("--min-face", "150"), 0), (("--detector", "haar"), 0),
                        (("--detector", "haar", "--min-face", "40"), 1)]:
        result = _invoke(files["run"], large, *args)
        assert result.exit_code == (0 if found else 3), result.output  # 3: no face in any input
        assert len(_json_rows(result)) == found, args
    result = _invoke(files["run"], large, "--min-face", "150")
    assert (f"no face found in {large} (faces smaller than 150x150 pixels are not looked for; skipped)"
            in result.stderr.splitlines())


def test_haar_minimum_face_side():
    assert HaarFaceDetector().min_face_side(480, 640) == 48
    assert HaarFaceDetector().min_face_side(100, 300) == 24  # never under the cascade's window
    assert HaarFaceDetector(min_size_fraction=0.2).min_face_side(1000, 500) == 100


# -- real faces --------------------------------------------------------------------------------


@pytest.mark.realdata
def test_real_faces_end_to_end(files, shared_data, tmp_path):
    root = shared_data / "yalefaces_expr"
    if not (root / "index.csv").is_file():
        pytest.skip(f"{root} not present")
    with open(root / "index.csv", newline="") as handle:
        paths = [root / row["path"] for row in csv.DictReader(handle)][::20][:4]
    predictor = Predictor(files["run"], margin=0.1)
    for path in paths:
        faces = predictor.predict_image(read_image(path))
        assert len(faces) == 1 and faces[0].detected, path
        x, y, w, h = faces[0].box
        assert w > 0.3 * 320 and h > 0.3 * 243  # a frontal face filling much of the picture
    result = _invoke(files["run"], *paths, "--margin", "0.1", "--format", "csv", "--heatmaps", tmp_path / "heat")
    assert result.exit_code == 0, result.output
    table = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [Path(r["file"]).name for r in table] == [p.name for p in paths]
    assert len(list((tmp_path / "heat").glob("*.png"))) == len(paths)


# -- exit status when nothing was predicted -----------------------------------------------------


def _truncated_jpeg(path: Path) -> Path:
    ok, data = cv2.imencode(".jpg", np.full((80, 60, 3), 120, np.uint8))
    assert ok
    path.write_bytes(data.tobytes()[: len(data) // 2])
    return path


@pytest.mark.parametrize("bad", ["text", "truncated"])
def test_command_fails_when_no_input_could_be_read(files, tmp_path, bad):
    path = files["text"] if bad == "text" else _truncated_jpeg(tmp_path / "cut.jpg")
    out = tmp_path / "rows.jsonl"
    result = _invoke(files["run"], path, "--output", out)
    assert result.exit_code == 1 and result.stdout == ""
    assert f"skipped unreadable {path}" in result.stderr
    _assert_one_error_line(result, "none of the 1 inputs could be read")
    assert not out.exists()  # nothing written for a run that predicted nothing


def test_command_distinct_status_when_no_face_is_found(files, tmp_path):
    out = tmp_path / "rows.csv"
    result = _invoke(files["run"], files["blank"], files["text"], "--format", "csv", "--output", out)
    assert result.exit_code == 3 and not out.exists()
    assert "no face found in" in result.stderr and "skipped unreadable" in result.stderr
    _assert_one_error_line(result, "no face found in any of the 1 images")
    # The whole image as the face is a prediction: status 0.
    assert _invoke(files["run"], files["blank"], "--no-face", "whole").exit_code == 0


def test_command_one_good_photo_among_bad_files_succeeds(files, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.png").write_bytes(files["one"].read_bytes())
    (folder / "notes.jpg").write_text("not an image\n")
    _truncated_jpeg(folder / "cut.jpg")
    result = _invoke(files["run"], folder)
    assert result.exit_code == 0, result.output
    assert [Path(r["file"]).name for r in _json_rows(result)] == ["good.png"]
    assert "cut.jpg" in result.stderr and "notes.jpg" in result.stderr and "Error" not in result.stderr
