"""On-disk cache of prepared faces, keyed by the source's content and the preparation settings.

A face found once is never detected again: the key is a SHA-256 of the source file's bytes
(or of an in-memory image's pixels) and of every parameter that shapes the result, so a
changed image or setting misses the cache instead of returning a stale face.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np

# Bump when the preparation code changes what it produces for the same inputs.
CACHE_FORMAT = 2  # 2: faces shrunk along one axis and grown along the other take two passes


def content_digest(data: bytes) -> str:
    """SHA-256 hex digest of a source file's bytes."""
    return hashlib.sha256(data).hexdigest()


def array_digest(image: np.ndarray) -> str:
    """SHA-256 hex digest of an in-memory image: its dtype, shape and pixels."""
    image = np.ascontiguousarray(image)
    digest = hashlib.sha256(f"{image.dtype.str}{image.shape}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def cache_key(source_digest: str, params: dict) -> str:
    """The cache key for a source digest and the preparation parameters (JSON-able)."""
    blob = json.dumps({"source": source_digest, "params": params, "format": CACHE_FORMAT}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class FaceCache:
    """A folder of ``<key>.npz`` files, each holding ``face`` (uint8 H,W,3) and ``found``
    (whether a face was detected; if not, ``face`` is the whole image resized).
    Writes go to a temporary name first and are moved into place with ``os.replace``.
    """

    def __init__(self, directory):
        self.directory = Path(directory)

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npz"

    def get(self, key: str, shape: Optional[tuple] = None) -> Optional[tuple]:
        """``(face, found)`` stored under ``key``, or ``None``; an unreadable entry, or one that
        is not a uint8 face of ``shape`` (when given), is a miss and will be overwritten."""
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                face, found = stored["face"], stored["found"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # ValueError: object arrays
            return None
        if face.dtype != np.uint8 or (shape is not None and face.shape != tuple(shape)) or found.shape != ():
            return None
        return face, bool(found)

    def put(self, key: str, face: np.ndarray, found: bool) -> None:
        """Store ``(face, found)`` under ``key`` atomically."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, face=np.asarray(face, dtype=np.uint8), found=np.bool_(found))
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
