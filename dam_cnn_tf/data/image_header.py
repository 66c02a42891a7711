"""Cheap image-header parsing: format and declared size before any pixel is decoded.

Reading the declared width and height from the header lets ``images.read_image`` refuse a
decompression bomb (a small file that declares a huge canvas) before OpenCV allocates it.
Checking after decoding is too late: the memory is already spent.
"""

from __future__ import annotations

import struct
from typing import NamedTuple


class ImageHeader(NamedTuple):
    """The format name and the declared ``width`` x ``height`` of an encoded image."""

    format: str
    width: int
    height: int


class HeaderError(ValueError):
    """The bytes are not a recognised image, or its header is cut short."""


# Bytes worth reading to find the size of any supported format; a JPEG may put its frame
# header after up to 64 KiB of EXIF and other APPn segments, hence the margin.
HEADER_PREFIX_BYTES = 256 * 1024


def _png(data: bytes) -> ImageHeader:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise HeaderError("PNG header cut short")
    width, height = struct.unpack(">II", data[16:24])
    return ImageHeader("png", width, height)


def _gif(data: bytes) -> ImageHeader:
    if len(data) < 10:
        raise HeaderError("GIF header cut short")
    width, height = struct.unpack("<HH", data[6:10])
    return ImageHeader("gif", width, height)


def _bmp(data: bytes) -> ImageHeader:
    if len(data) < 26:
        raise HeaderError("BMP header cut short")
    width, height = struct.unpack("<ii", data[18:26])
    return ImageHeader("bmp", abs(width), abs(height))


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    """The position after a chain of GIF data sub-blocks (length byte, bytes; 0 ends it)."""
    while True:
        if pos >= len(data):
            raise HeaderError("truncated GIF data (a block runs past the end)")
        length = data[pos]
        pos += 1 + length
        if length == 0:
            return pos


def gif_first_frame(data: bytes) -> tuple:
    """``(width, height)`` of the first frame of a whole GIF file, after checking that all of
    its data is present.

    OpenCV decodes a GIF cut short inside its pixel data without complaint, filling the rest
    with the background; walking the block structure (GIF89a spec, sections 17-24) finds
    such a file. Raises ``HeaderError``.
    """
    if len(data) < 13:
        raise HeaderError("GIF header cut short")
    pos = 13
    if data[10] & 0x80:  # global colour table of 3 * 2^(n+1) bytes
        pos += 3 * (2 << (data[10] & 0x07))
    while pos < len(data):
        introducer = data[pos]
        if introducer == 0x21:  # extension: label, then sub-blocks
            pos = _skip_sub_blocks(data, pos + 2)
        elif introducer == 0x2C:  # image descriptor
            if pos + 10 > len(data):
                break
            width, height = struct.unpack("<HH", data[pos + 5:pos + 9])
            flags = data[pos + 9]
            pos += 10
            if flags & 0x80:  # local colour table
                pos += 3 * (2 << (flags & 0x07))
            _skip_sub_blocks(data, pos + 1)  # after the LZW minimum code size
            return width, height
        elif introducer == 0x3B:  # trailer before any image
            raise HeaderError("GIF holds no image")
        else:
            raise HeaderError(f"GIF block of unknown type 0x{introducer:02x}")
    raise HeaderError("truncated GIF data (no complete image)")


# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range.
_JPEG_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg(data: bytes) -> ImageHeader:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise HeaderError("JPEG segment marker missing")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if marker in _JPEG_SOF:
            if pos + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return ImageHeader("jpeg", width, height)
        if marker == 0xDA:  # start of scan before any frame header
            raise HeaderError("JPEG has no frame header")
        pos += 2 + length
    raise HeaderError("JPEG header cut short")


def _tiff(data: bytes) -> ImageHeader:
    order = "<" if data[:2] == b"II" else ">"
    if len(data) < 8:
        raise HeaderError("TIFF header cut short")
    (offset,) = struct.unpack(order + "I", data[4:8])
    if offset + 2 > len(data):
        raise HeaderError("TIFF directory beyond the bytes read")
    (count,) = struct.unpack(order + "H", data[offset:offset + 2])
    size = {}
    for i in range(count):
        entry = offset + 2 + 12 * i
        if entry + 12 > len(data):
            raise HeaderError("TIFF directory cut short")
        tag, kind = struct.unpack(order + "HH", data[entry:entry + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
            fmt = order + ("H" if kind == 3 else "I")
            value = struct.unpack(fmt, data[entry + 8:entry + 8 + struct.calcsize(fmt)])[0]
            # A repeated tag: decoders differ on which copy wins, so judge by the largest.
            size[tag] = max(value, size.get(tag, 0))
    if 256 not in size or 257 not in size:
        raise HeaderError("TIFF directory lacks width or length")
    return ImageHeader("tiff", size[256], size[257])


def _webp(data: bytes) -> ImageHeader:
    if len(data) < 30:
        raise HeaderError("WebP header cut short")
    chunk = data[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return ImageHeader("webp", width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return ImageHeader("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return ImageHeader("webp", width, height)
    raise HeaderError("unknown WebP chunk")


def _pnm(data: bytes) -> ImageHeader:
    tokens: list[bytes] = []
    for line in data[2:4096].splitlines():
        tokens.extend(line.split(b"#", 1)[0].split())
        if len(tokens) >= 2:
            break
    try:
        return ImageHeader("pnm", int(tokens[0]), int(tokens[1]))
    except (IndexError, ValueError):
        raise HeaderError("PNM header unreadable") from None


def probe_header(data: bytes) -> ImageHeader:
    """Format and declared size of the encoded image in ``data`` (its first bytes suffice).

    Supports PNG, JPEG, GIF, BMP, TIFF, WebP and PNM, the formats the datasets of §4.1.1 use.
    Raises ``HeaderError`` for anything else, including empty and text files.
    """
    if not data:
        raise HeaderError("empty file")
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png(data)
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return _gif(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg(data)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff(data)
    if data.startswith(b"BM"):
        return _bmp(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp(data)
    if len(data) > 2 and data[:1] == b"P" and data[1:2] in b"123456" and data[2:3].isspace():
        return _pnm(data)
    raise HeaderError("not a supported image format")
