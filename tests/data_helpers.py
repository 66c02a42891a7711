"""Small image and dataset files written by the data tests into tmp_path."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np


def shared_data_dir() -> Path:
    """``$DAMCNN_SHARED_DATA`` or ``../shared/data`` beside the checkout."""
    env = os.environ.get("DAMCNN_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def write_image(path, image, ext=None) -> Path:
    """Encode ``image`` (BGR or grey, OpenCV order) with OpenCV and write it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buffer = cv2.imencode(ext or path.suffix, image)
    assert ok
    path.write_bytes(buffer.tobytes())
    return path


def random_image(seed=0, shape=(16, 20, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def draw_face(side=160, background=200) -> np.ndarray:
    """A grey drawing a Haar frontal-face cascade detects: oval, dark eyes, brows, nose, mouth."""
    img = np.full((side, side), background, np.uint8)
    c = side // 2
    cv2.ellipse(img, (c, c), (int(side * .32), int(side * .42)), 0, 0, 360, 170, -1)
    for dx in (-1, 1):
        cv2.ellipse(img, (c + dx * int(side * .13), int(c - side * .1)), (int(side * .06), int(side * .03)),
                    0, 0, 360, 40, -1)
        cv2.line(img, (c + dx * int(side * .07), int(c - side * .18)), (c + dx * int(side * .2), int(c - side * .18)),
                 60, int(side * .02) + 1)
    cv2.ellipse(img, (c, int(c + side * .05)), (int(side * .03), int(side * .08)), 0, 0, 360, 140, -1)
    cv2.ellipse(img, (c, int(c + side * .2)), (int(side * .1), int(side * .03)), 0, 0, 360, 80, -1)
    return img


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def palette_png(indices: np.ndarray, palette) -> bytes:
    """A colour-type-3 (palette) PNG, built by hand since OpenCV never writes one."""
    height, width = indices.shape
    raw = b"".join(b"\x00" + bytes(row.astype(np.uint8)) for row in indices)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0))
            + _chunk(b"PLTE", bytes(np.asarray(palette, np.uint8).ravel()))
            + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` but holds almost no data."""
    raw = zlib.compress(b"\x00" * 64)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + _chunk(b"IDAT", raw) + _chunk(b"IEND", b""))
