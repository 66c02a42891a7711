"""Hostile image bytes: every decode is a correct image or a one-line ``ImageReadError``.

Random bytes, mutated and truncated files of every supported format, zero-size files and
decompression bombs go through ``decode_image``, ``read_image``, ``probe_file`` and the
loaders' header check. Bombs must be refused before OpenCV is reached. See docs/reliability.md.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from hypothesis import given

from dam_cnn_tf.data.images import (
    DEFAULT_MAX_PIXELS, ImageReadError, decode_image, max_file_bytes, probe_file, read_image,
)
from hostile import (
    FAST, FUZZ_MAX_PIXELS, LONG, assert_clean_outcome, base_image, bombs, mutated_images, random_payloads,
    valid_images,
)

LOSSLESS = ("png", "png16", "png-rgba", "png-palette", "gif", "bmp", "tiff", "tiff16", "webp-lossless",
            "pgm16", "ppm")


def _decode(data, name="fuzz.img"):
    return assert_clean_outcome(lambda: decode_image(data, name, FUZZ_MAX_PIXELS), name, ImageReadError)


def _check_mutated(case):
    _decode(case[1])


def _check_random(data):
    _decode(data)


test_mutated_images_decode_cleanly = FAST(given(mutated_images())(_check_mutated))
test_mutated_images_decode_cleanly_long = pytest.mark.slow(LONG(given(mutated_images())(_check_mutated)))
test_random_bytes_decode_cleanly = FAST(given(random_payloads())(_check_random))
test_random_bytes_decode_cleanly_long = pytest.mark.slow(LONG(given(random_payloads())(_check_random)))


def _truncations(step):
    reference = {name: decode_image(data, name) for name, data in valid_images().items()}
    for name, data in valid_images().items():
        for cut in range(0, len(data), step):
            yield name, data[:cut], reference[name]


def _check_truncations(step):
    count = 0
    for name, data, whole in _truncations(step):
        image = _decode(data, name)
        # A lossless file cut short must never decode to other pixels than the whole file.
        if image is not None and name in LOSSLESS:
            np.testing.assert_array_equal(image, whole, err_msg=f"{name} cut at {len(data)}")
        count += 1
    return count


def test_every_format_truncated_is_refused_or_exact():
    assert _check_truncations(step=37) > 300


@pytest.mark.slow
def test_every_format_truncated_at_every_byte():
    assert _check_truncations(step=1) > 10_000


@pytest.mark.parametrize("name", sorted(valid_images()))
def test_zero_size_and_whole_files_through_every_entry_point(tmp_path, name):
    data = valid_images()[name]
    path = tmp_path / f"{name}.img"
    path.write_bytes(data)
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (16, 20, 3)
    assert probe_file(path).width == 20
    empty = tmp_path / f"empty-{name}.img"
    empty.write_bytes(b"")
    for call in (read_image, probe_file):
        with pytest.raises(ImageReadError, match="empty file") as info:
            call(empty)
        assert str(empty) in str(info.value) and "\n" not in str(info.value)


def test_awkward_colour_types_decode_to_the_right_rgb():
    rgb = base_image()
    images = valid_images()
    for name in ("png", "png16", "png-rgba", "bmp", "tiff", "tiff16", "webp-lossless", "ppm", "gif"):
        decoded = decode_image(images[name], name)
        if name == "gif":  # 256-colour palette: close, not equal
            assert np.abs(decoded.astype(int) - rgb[..., ::-1]).mean() < 16
        else:
            np.testing.assert_array_equal(decoded, rgb[..., ::-1], err_msg=name)  # files hold BGR
    grey16 = decode_image(images["pgm16"], "pgm16")
    np.testing.assert_array_equal(grey16, np.repeat(rgb[..., :1], 3, axis=2))
    palette = decode_image(images["png-palette"], "png-palette")
    lut = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    np.testing.assert_array_equal(palette, lut[rgb[..., 0] % 4])


def test_cmyk_jpeg_becomes_rgb():
    pil = pytest.importorskip("PIL.Image", reason="Pillow writes the CMYK JPEG")
    cmyk = np.random.default_rng(3).integers(0, 256, (8, 8, 4), dtype=np.uint8)
    buffer = io.BytesIO()
    pil.fromarray(cmyk, mode="CMYK").save(buffer, "JPEG", quality=100)
    decoded = decode_image(buffer.getvalue(), "cmyk.jpg")
    expected = np.asarray(pil.open(io.BytesIO(buffer.getvalue())).convert("RGB")).astype(int)
    assert decoded.shape == (8, 8, 3) and np.abs(decoded.astype(int) - expected).max() <= 3


@pytest.fixture
def decoder_must_not_run(monkeypatch):
    def reached(*args, **kwargs):
        raise AssertionError("the decoder was reached: the bomb was not refused from its header")

    monkeypatch.setattr(cv2, "imdecode", reached)
    monkeypatch.setattr(cv2, "VideoCapture", reached)


@pytest.mark.parametrize("name", sorted(bombs()))
def test_bombs_are_refused_before_decoding(tmp_path, decoder_must_not_run, name):
    data = bombs()[name]
    assert len(data) < 4096
    path = tmp_path / f"bomb-{name}"
    path.write_bytes(data)
    for call in (lambda: decode_image(data, path), lambda: read_image(path)):
        with pytest.raises(ImageReadError, match="above the limit") as info:
            call()
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    if name != "gif-frame":  # the frame descriptor is checked when decoding, not by the header probe
        with pytest.raises(ImageReadError, match="above the limit"):
            probe_file(path)


def test_a_bomb_below_opencvs_own_limit_is_refused_by_its_header(decoder_must_not_run):
    # 30000 x 30000 is 0.9 Gpixel: OpenCV's own limit (2^30) would let it allocate 2.7 GB. A
    # memory reading cannot see that (OpenCV's allocations escape tracemalloc, untouched pages
    # ru_maxrss), so the check is that the decoder is never called.
    from data_helpers import png_header_only

    with pytest.raises(ImageReadError, match="above the limit"):
        decode_image(png_header_only(30_000, 30_000), "bomb.png")


def test_oversized_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    with open(path, "wb") as handle:  # sparse: large on paper, nothing on disk
        handle.write(valid_images()["png"])
        handle.truncate(max_file_bytes(64 * 64) + 1)
    for call in (probe_file, read_image):
        with pytest.raises(ImageReadError, match="bytes, more than any image") as info:
            call(path, max_pixels=64 * 64)
        assert str(path) in str(info.value)
    assert max_file_bytes() >= 8 * DEFAULT_MAX_PIXELS


def test_unopenable_names_are_one_line_errors(tmp_path):
    for path in (tmp_path / "a\0b.png", tmp_path, tmp_path / "missing.png"):
        for call in (probe_file, read_image):
            with pytest.raises(ImageReadError) as info:
                call(path)
            assert "\n" not in str(info.value)
