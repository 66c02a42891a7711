"""Face detection, cropping, no-face policy and the on-disk cache."""

import cv2
import numpy as np
import pytest

from data_helpers import draw_face, random_image, write_image
from dam_cnn_tf.data.faces import FacePreparer, HaarFaceDetector, crop_face, expand_box, largest_box
from dam_cnn_tf.data.images import ImageReadError
from dam_cnn_tf.data.samples import Dataset, Sample


class CountingDetector:
    """Returns fixed boxes and counts its calls."""

    def __init__(self, boxes):
        self.boxes, self.calls = np.asarray(boxes).reshape(-1, 4), 0

    def config(self):
        return {"stub": self.boxes.tolist()}

    def __call__(self, grey):
        assert grey.ndim == 2 and grey.dtype == np.uint8
        self.calls += 1
        return self.boxes


def _dataset(tmp_path, images):
    samples = []
    for i, image in enumerate(images):
        samples.append(Sample(str(write_image(tmp_path / f"img{i}.png", image)), "happiness", subject=f"s{i}"))
    return Dataset("t", samples, ("happiness",))


def test_haar_cascade_finds_a_drawn_face_and_nothing_in_a_blank():
    detector = HaarFaceDetector()
    face = cv2.copyMakeBorder(draw_face(120, 90), 40, 40, 60, 60, cv2.BORDER_CONSTANT, value=90)
    box = largest_box(detector(face))
    assert box is not None
    x, y, w, h = box
    assert x <= 60 + 60 <= x + w and y <= 40 + 60 <= y + h  # the drawing's centre is inside
    assert largest_box(detector(np.full((200, 240), 128, np.uint8))) is None


def test_crop_matches_independent_crop_and_resize():
    image = random_image(1, (60, 80, 3))
    detector = CountingDetector([[10, 5, 20, 20], [30, 20, 30, 36]])  # the second is larger
    face, found = crop_face(image, (24, 24), detector)
    assert found and face.shape == (24, 24, 3)
    expected = cv2.resize(image[20:56, 30:60], (24, 24), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(face, expected)


def test_margin_grows_the_box_and_clips_to_the_image():
    assert expand_box((10, 10, 20, 20), 0.25, 100, 100) == (5, 5, 35, 35)
    assert expand_box((2, 3, 20, 20), 0.5, 25, 30) == (0, 0, 25, 30)


def test_grey_input_gives_three_channels():
    grey = random_image(2, (30, 30))
    face, found = crop_face(grey, (16, 16), None)
    assert not found and face.shape == (16, 16, 3)
    assert (face[..., 0] == face[..., 1]).all() and (face[..., 1] == face[..., 2]).all()


def test_no_face_policy_is_reported(tmp_path):
    faces = [random_image(3, (40, 40, 3)), random_image(4, (40, 40, 3))]
    data = _dataset(tmp_path, faces)
    for policy, kept in (("skip", 0), ("whole", 2)):
        result = FacePreparer(16, no_face=policy, detector=CountingDetector([]), progress=False).prepare(data)
        assert len(result.faces) == kept and list(result.indices) == list(range(kept))
        assert result.report.no_face == [s.path for s in data.samples]
    whole = FacePreparer(16, no_face="whole", detector=CountingDetector([]), progress=False).prepare(data)
    expected = cv2.resize(faces[0][..., ::-1], (16, 16), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(whole.faces[0], expected)


def test_preparer_with_real_cascade(tmp_path):
    face = cv2.copyMakeBorder(draw_face(120, 90), 30, 30, 30, 30, cv2.BORDER_CONSTANT, value=90)
    data = _dataset(tmp_path, [face, np.full((180, 180), 128, np.uint8)])
    result = FacePreparer(32, progress=False).prepare(data)
    assert result.faces.shape == (1, 32, 32, 3) and result.faces.dtype == np.uint8
    assert list(result.indices) == [0] and result.report.no_face == [data.samples[1].path]


def test_second_run_uses_the_cache_and_does_no_detection(tmp_path):
    images = [random_image(i, (40, 50, 3)) for i in range(3)]
    data = _dataset(tmp_path, images)
    data.samples.append(Sample(None, "happiness", image=random_image(9, (40, 50, 3))))  # in memory
    cache = tmp_path / "cache"
    first_detector = CountingDetector([[5, 5, 20, 20]])
    first = FacePreparer(16, cache_dir=cache, detector=first_detector, progress=False).prepare(data)
    assert first_detector.calls == 4 and first.report.detections == 4
    second_detector = CountingDetector([[5, 5, 20, 20]])
    second = FacePreparer(16, cache_dir=cache, detector=second_detector, progress=False).prepare(data)
    assert second_detector.calls == 0 and second.report.cache_hits == 4
    np.testing.assert_array_equal(first.faces, second.faces)
    assert not list(cache.rglob("*.tmp"))
    # A changed parameter or changed file bytes is a miss, not a stale face.
    FacePreparer(16, margin=0.1, cache_dir=cache, detector=second_detector, progress=False).prepare(data)
    assert second_detector.calls == 4
    write_image(tmp_path / "img0.png", random_image(99, (40, 50, 3)))
    third = CountingDetector([[5, 5, 20, 20]])
    FacePreparer(16, cache_dir=cache, detector=third, progress=False).prepare(data)
    assert third.calls == 1


def test_detect_false_skips_detection(tmp_path):
    data = _dataset(tmp_path, [random_image(5, (48, 48, 3))])
    detector = CountingDetector([[0, 0, 10, 10]])
    result = FacePreparer(24, detect=False, detector=detector, progress=False).prepare(data)
    assert detector.calls == 0 and result.faces.shape == (1, 24, 24, 3) and not result.report.no_face


def test_bad_file_skip_or_error(tmp_path):
    data = _dataset(tmp_path, [random_image(6, (40, 40, 3))])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(30))
    data.samples.append(Sample(str(bad), "happiness"))
    result = FacePreparer(16, detector=CountingDetector([[0, 0, 30, 30]]), progress=False).prepare(data)
    assert list(result.indices) == [0] and result.report.bad[0][0] == str(bad)
    with pytest.raises(ImageReadError, match="bad.png") as info:
        FacePreparer(16, on_bad="error", detector=CountingDetector([]), progress=False).prepare(data)
    assert "\n" not in str(info.value)


def test_policy_values_are_checked():
    with pytest.raises(ValueError, match="no_face"):
        FacePreparer(16, no_face="drop", detect=False)


def test_progress_bar_counts_images(tmp_path, capsys):
    data = _dataset(tmp_path, [random_image(i, (20, 20, 3)) for i in range(3)])
    FacePreparer(8, detect=False, progress=True).prepare(data)
    assert "3/3" in capsys.readouterr().out
