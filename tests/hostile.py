"""Hostile inputs for the reliability tests: valid images to mutate, decompression bombs,
and the oracle every outcome must satisfy (a correct sample or the loaders' one-line error)."""

from __future__ import annotations

import struct

import cv2
import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from data_helpers import palette_png, png_header_only

# The default run stays short; the slow run (``-m slow``) tries many more cases.
FAST = settings(max_examples=40, deadline=5000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
LONG = settings(max_examples=2000, deadline=20000, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# A small pixel limit for fuzzing, so a mutated header can never make a test allocate much.
FUZZ_MAX_PIXELS = 256 * 256
BOMB_SIDE = 100_000


def base_image(shape=(16, 20, 3), seed=7) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def encoded(ext: str, image=None, params=()) -> bytes:
    ok, buffer = cv2.imencode(ext, base_image() if image is None else image, list(params))
    assert ok, ext
    return buffer.tobytes()


def valid_images() -> dict:
    """One small valid file per format the loaders read, including the awkward colour types."""
    rgb = base_image()
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])
    return {
        "png": encoded(".png", rgb),
        "png16": encoded(".png", rgb.astype(np.uint16) * 257),
        "png-rgba": encoded(".png", rgba),
        "png-palette": palette_png(rgb[..., 0] % 4, [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]),
        "jpeg": encoded(".jpg", rgb),
        "jpeg-progressive": encoded(".jpg", rgb, (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)),
        "gif": encoded(".gif", rgb),
        "bmp": encoded(".bmp", rgb),
        "tiff": encoded(".tiff", rgb),
        "tiff16": encoded(".tiff", rgb.astype(np.uint16) * 257),
        "webp": encoded(".webp", rgb),
        "webp-lossless": encoded(".webp", rgb, (cv2.IMWRITE_WEBP_QUALITY, 101)),
        "pgm16": encoded(".pgm", rgb[..., 0].astype(np.uint16) * 257),
        "ppm": encoded(".ppm", rgb),
    }


def _patch(data: bytes, offset: int, packed: bytes) -> bytes:
    return data[:offset] + packed + data[offset + len(packed):]


def _jpeg_sof_offset(data: bytes) -> int:
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        index = data.find(marker)
        if index > 0:
            return index
    raise AssertionError("no SOF marker")


def tiff_bytes(width: int, height: int, extra_tags=()) -> bytes:
    """A minimal little-endian grey TIFF whose directory declares ``width`` x ``height``,
    with 16 bytes of pixel data; ``extra_tags`` are ``(tag, type, value)`` entries appended."""
    pixels_at, ifd_at = 8, 24
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
               (273, 4, pixels_at), (277, 3, 1), (278, 4, height), (279, 4, 16), *extra_tags]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        ifd += struct.pack("<HHII", tag, kind, 1, value) if kind == 4 else struct.pack("<HHIHH", tag, kind, 1, value, 0)
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_at) + bytes(range(16)) + ifd


def webp_vp8x(width: int, height: int) -> bytes:
    chunk = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") \
        + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def bombs() -> dict:
    """Small files whose headers declare far more pixels than the default limit allows."""
    jpeg = encoded(".jpg")
    sof = _jpeg_sof_offset(jpeg)
    gif = encoded(".gif")
    frame = gif.find(b"\x2c", 13)  # first image descriptor (no extension in OpenCV's output)
    bmp = encoded(".bmp")
    return {
        "png": png_header_only(BOMB_SIDE, BOMB_SIDE),
        "jpeg": _patch(jpeg, sof + 5, struct.pack(">HH", 65535, 65535)),
        "gif-screen": _patch(gif, 6, struct.pack("<HH", 65535, 65535)),
        "gif-frame": _patch(gif, frame + 5, struct.pack("<HH", 65535, 65535)),
        "bmp": _patch(bmp, 18, struct.pack("<ii", BOMB_SIDE, -BOMB_SIDE)),
        "tiff": tiff_bytes(BOMB_SIDE, BOMB_SIDE),
        # A repeated width tag: whichever copy a decoder believes, the file is refused.
        "tiff-repeated-tag": tiff_bytes(16, 1, extra_tags=[(256, 4, BOMB_SIDE), (257, 4, BOMB_SIDE)]),
        "webp": webp_vp8x(BOMB_SIDE, BOMB_SIDE),
        "pgm": b"P5\n100000 100000\n255\n" + bytes(64),
    }


@st.composite
def mutated_images(draw, sources=None):
    """``(format, bytes)``: a valid image with 1-4 random byte flips, overwrites, cuts,
    insertions, deletions or duplicated runs."""
    sources = sources or valid_images()
    name = draw(st.sampled_from(sorted(sources)))
    data = bytearray(sources[name])
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        op = draw(st.sampled_from(("flip", "set", "cut", "insert", "delete", "repeat")))
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.sampled_from((0x00, 0xFF, 0x7F, 0x80, draw(st.integers(0, 255)))))
        elif op == "cut":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[i:i + draw(st.integers(1, 64))]
        else:
            data[i:i] = data[i:i + draw(st.integers(1, 256))] * draw(st.integers(1, 8))
    return name, bytes(data)


MAGICS = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"GIF87a", b"BM", b"II*\x00", b"MM\x00*",
          b"PK\x03\x04", b"RIFF\x00\x00\x00\x00WEBPVP8X", b"RIFF\x00\x00\x00\x00WEBPVP8L", b"P5\n", b"P6 ", b"P1\t")


def random_payloads():
    """Random bytes, alone or behind a real format's magic number, so the parsers are reached."""
    return st.one_of(st.binary(max_size=2048),
                     st.builds(lambda m, b: m + b, st.sampled_from(MAGICS), st.binary(max_size=2048)))


def assert_clean_outcome(call, name, error_types, max_pixels=FUZZ_MAX_PIXELS):
    """Run ``call``; it returns an RGB uint8 image within the pixel limit or raises one of
    ``error_types`` with a one-line message naming ``name``. Anything else fails the test."""
    try:
        image = call()
    except error_types as err:
        message = str(err)
        assert "\n" not in message and str(name) in message, message
        return None
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8, type(image)
    assert image.ndim == 3 and image.shape[2] == 3 and 0 < image.shape[0] * image.shape[1] <= max_pixels
    return image
