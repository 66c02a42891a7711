"""Reading images: colour conversions, GIF, header checks, bad files."""

import cv2
import numpy as np
import pytest

from data_helpers import palette_png, png_header_only, random_image, write_image
from dam_cnn_tf.data import images
from dam_cnn_tf.data.images import ImageReadError, probe_file, read_image


def test_colour_png_comes_back_rgb(tmp_path):
    bgr = random_image(1)
    out = read_image(write_image(tmp_path / "a.png", bgr))
    assert out.dtype == np.uint8 and out.shape == bgr.shape
    np.testing.assert_array_equal(out, bgr[..., ::-1])


def test_grey_becomes_three_equal_channels(tmp_path):
    grey = random_image(2, (9, 7))
    out = read_image(write_image(tmp_path / "g.png", grey))
    assert out.shape == (9, 7, 3)
    for ch in range(3):
        np.testing.assert_array_equal(out[..., ch], grey)


def test_sixteen_bit_is_scaled_to_eight(tmp_path):
    deep = np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) * 500
    out = read_image(write_image(tmp_path / "d.png", deep))
    assert out.dtype == np.uint8
    assert np.abs(out[..., 0].astype(int) - deep / 257.0).max() <= 1


def test_rgba_drops_alpha_keeps_colour_order(tmp_path):
    bgra = np.zeros((5, 6, 4), np.uint8)
    bgra[...] = (10, 20, 30, 0)
    out = read_image(write_image(tmp_path / "t.png", bgra))
    np.testing.assert_array_equal(out[0, 0], [30, 20, 10])


def test_palette_png(tmp_path):
    palette = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    indices = np.array([[0, 1, 2], [2, 1, 0]])
    path = tmp_path / "p.png"
    path.write_bytes(palette_png(indices, palette))
    out = read_image(path)
    np.testing.assert_array_equal(out, np.asarray(palette, np.uint8)[indices])


def test_gif_and_videocapture_fallback(tmp_path, monkeypatch):
    bgr = np.zeros((12, 14, 3), np.uint8)
    bgr[:, 7:] = (0, 0, 255)  # right half red
    path = write_image(tmp_path / "x.gif", bgr)
    direct = read_image(path)
    assert direct.shape == (12, 14, 3) and direct[0, 10, 0] > 200 and direct[0, 10, 2] < 50
    # An OpenCV without a GIF codec returns None from imdecode: the FFmpeg reader takes over.
    real = cv2.imdecode
    monkeypatch.setattr(images.cv2, "imdecode", lambda buf, flags: None)
    fallback = read_image(path)
    monkeypatch.setattr(images.cv2, "imdecode", real)
    assert np.abs(fallback.astype(int) - direct).max() <= 8


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tiff", ".bmp", ".webp", ".ppm"])
def test_header_probe_matches_size(tmp_path, ext):
    path = write_image(tmp_path / f"s{ext}", random_image(3, (13, 29, 3)))
    header = probe_file(path)
    assert (header.width, header.height) == (29, 13)


def test_decompression_bomb_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(100_000, 100_000))
    monkeypatch.setattr(images.cv2, "imdecode", lambda *a: pytest.fail("decoder must not run"))
    with pytest.raises(ImageReadError, match="above the limit") as info:
        read_image(path)
    assert "bomb.png" in str(info.value) and "\n" not in str(info.value)


def test_pixel_limit_is_configurable(tmp_path):
    path = write_image(tmp_path / "m.png", random_image(4, (30, 40, 3)))
    assert read_image(path, max_pixels=1200).shape == (30, 40, 3)
    with pytest.raises(ImageReadError, match="40x30"):
        read_image(path, max_pixels=1199)


def _bad_files(tmp_path):
    good_jpg = cv2.imencode(".jpg", random_image(5, (64, 64, 3)))[1].tobytes()
    good_png = cv2.imencode(".png", random_image(6, (64, 64, 3)))[1].tobytes()
    files = {
        "empty.png": b"",
        "text.jpg": b"hello, not an image\n",
        "truncated.jpg": good_jpg[: len(good_jpg) * 2 // 3],
        "truncated.png": good_png[: len(good_png) // 2],
        "corrupt.png": good_png[:40] + bytes(200),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return [tmp_path / n for n in files]


def test_bad_files_raise_one_line_naming_the_file(tmp_path):
    for path in _bad_files(tmp_path) + [tmp_path / "missing.png"]:
        with pytest.raises(ImageReadError) as info:
            read_image(path)
        message = str(info.value)
        assert str(path) in message and "\n" not in message
        assert info.value.path == str(path)
