"""Reading image files into RGB uint8 arrays with OpenCV, safely.

Every image goes through ``probe_header`` first, so a file that declares more pixels than
``max_pixels`` is refused before OpenCV allocates its canvas (a decompression bomb), and a
text or empty file is named as such instead of failing somewhere inside the decoder.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np

from dam_cnn_tf.data.image_header import (
    HEADER_PREFIX_BYTES, HeaderError, ImageHeader, gif_first_frame, probe_header,
)
from dam_cnn_tf.errors import PathError

# Twice a 6000x4000 photo; far above any face dataset of §4.1.1. Per-call ``max_pixels`` overrides it.
DEFAULT_MAX_PIXELS = 50_000_000

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".gif", ".bmp", ".dib", ".tif", ".tiff", ".webp",
     ".pgm", ".ppm", ".pbm", ".pnm"}
)


class ImageReadError(PathError):
    """An image that cannot be read; ``str`` is one line naming the file and the reason."""

    MESSAGE = "cannot read image {path}: {reason}"


def has_image_extension(path: Union[str, os.PathLike]) -> bool:
    """Whether the file name ends in an extension OpenCV decodes (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def check_header(data: bytes, name, max_pixels: Optional[int] = None) -> ImageHeader:
    """The header of ``data``; raises ``ImageReadError`` naming ``name`` if unreadable or too large."""
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    try:
        header = probe_header(data)
    except HeaderError as err:
        raise ImageReadError(name, str(err)) from None
    if header.width <= 0 or header.height <= 0:
        raise ImageReadError(name, f"declares an empty {header.width}x{header.height} canvas")
    if header.width * header.height > limit:
        raise ImageReadError(
            name, f"declares {header.width}x{header.height} pixels, above the limit of {limit}"
        )
    return header


def max_file_bytes(max_pixels: Optional[int] = None) -> int:
    """The largest file that can hold an image within the pixel limit.

    Uncompressed 16-bit RGBA (8 bytes a pixel) plus 16 MiB of metadata; a bigger file is
    refused before it is read, so neither probing nor decoding can be made to read an
    arbitrarily large file into memory.
    """
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    return 8 * int(limit) + (16 << 20)


def _open_bounded(path, max_pixels: Optional[int]):
    """``open(path, "rb")`` after checking the file's size; errors as ``ImageReadError``."""
    try:
        handle = open(path, "rb")
    except (OSError, ValueError) as err:  # ValueError: a NUL byte in the name
        raise ImageReadError(path, getattr(err, "strerror", None) or str(err)) from None
    try:
        size = os.fstat(handle.fileno()).st_size
    except OSError as err:
        handle.close()
        raise ImageReadError(path, err.strerror or str(err)) from None
    if size > max_file_bytes(max_pixels):
        handle.close()
        raise ImageReadError(path, f"is {size} bytes, more than any image within the pixel limit can take")
    return handle


def probe_file(path: Union[str, os.PathLike], max_pixels: Optional[int] = None) -> ImageHeader:
    """Check a file's header without decoding it (cheap: reads at most a few hundred KiB).

    Detects missing, zero-size, non-image and oversized files; truncated pixel data is only
    found by decoding (``read_image``).
    """
    with _open_bounded(path, max_pixels) as handle:
        try:
            data = handle.read(HEADER_PREFIX_BYTES)
            try:
                return check_header(data, path, max_pixels)
            except ImageReadError:
                if len(data) < HEADER_PREFIX_BYTES:
                    raise
                # A JPEG frame header or a TIFF directory may lie beyond the prefix: look at the
                # whole file once (its size is bounded by ``max_file_bytes``).
                return check_header(data + handle.read(), path, max_pixels)
        except OSError as err:  # e.g. a directory, or an I/O error while reading
            raise ImageReadError(path, err.strerror or str(err)) from None


def _to_rgb(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image.astype(np.float64) * (255.0 if image.max() <= 1.0 else 1.0), 0, 255)
        image = np.rint(image).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if image.shape[2] == 1:
        return cv2.cvtColor(image[..., 0], cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _decode_gif_with_videocapture(data: bytes) -> Optional[np.ndarray]:
    # OpenCV builds before 4.11 have no GIF codec in imdecode; their FFmpeg backend reads GIFs.
    fd, tmp = tempfile.mkstemp(suffix=".gif")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        capture = cv2.VideoCapture(tmp)
        ok, frame = capture.read()
        capture.release()
        return frame if ok else None
    finally:
        os.unlink(tmp)


def decode_image(data: bytes, name="<bytes>", max_pixels: Optional[int] = None) -> np.ndarray:
    """Decode encoded image bytes into an RGB ``uint8`` array ``(H, W, 3)``.

    Grey, 16-bit, RGBA and palette images all come out as 8-bit RGB (OpenCV's IMREAD_COLOR
    converts them; alpha is dropped). Animated GIFs give their first frame.
    Raises ``ImageReadError`` naming ``name``.
    """
    header = check_header(data, name, max_pixels)
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    # libjpeg fills a truncated scan with grey and only warns: require the end-of-image marker.
    if header.format == "jpeg" and b"\xff\xd9" not in data[-1024:]:
        raise ImageReadError(name, "truncated JPEG data (no end-of-image marker)")
    if header.format == "gif":
        # Likewise OpenCV fills a truncated GIF frame with the background; and a frame may
        # declare a size beyond the logical screen the header gives.
        try:
            width, height = gif_first_frame(data)
        except HeaderError as err:
            raise ImageReadError(name, str(err)) from None
        if width * height > limit:
            raise ImageReadError(name, f"its first frame declares {width}x{height} pixels, above the limit of {limit}")
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    except cv2.error as err:
        raise ImageReadError(name, f"OpenCV failed to decode it ({err})") from None
    if image is None and header.format == "gif":
        image = _decode_gif_with_videocapture(data)
    if image is None or image.size == 0:
        raise ImageReadError(name, f"corrupt or truncated {header.format.upper()} data")
    if image.shape[0] * image.shape[1] > limit:
        raise ImageReadError(name, f"decodes to {image.shape[1]}x{image.shape[0]}, above the pixel limit")
    return _to_rgb(image)


def read_file_bytes(path: Union[str, os.PathLike], max_pixels: Optional[int] = None) -> bytes:
    """The bytes of ``path``; an unreadable file, or one larger than ``max_file_bytes(max_pixels)``,
    raises ``ImageReadError`` naming it."""
    with _open_bounded(path, max_pixels) as handle:
        try:
            return handle.read()
        except OSError as err:
            raise ImageReadError(path, err.strerror or str(err)) from None


def read_image(path: Union[str, os.PathLike], max_pixels: Optional[int] = None) -> np.ndarray:
    """Read an image file into an RGB ``uint8`` array ``(H, W, 3)``.

    The header is checked before decoding: files declaring more than ``max_pixels`` pixels
    (default ``DEFAULT_MAX_PIXELS``), empty files and non-images raise ``ImageReadError``, as
    do corrupt and truncated ones.
    """
    return decode_image(read_file_bytes(path, max_pixels), path, max_pixels)
