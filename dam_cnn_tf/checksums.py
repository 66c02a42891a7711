"""SHA-256 of files: the weights' sources, the presets' files and their cards all name files by it."""

from __future__ import annotations

import hashlib
from pathlib import Path

_DIGESTS: dict = {}  # (path, size, mtime) -> SHA-256: each file is hashed once per process


def sha256_of(path, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file, in hex, read ``chunk`` bytes at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_sha256(path) -> str:
    """``sha256_of``, computed once per process for a file that has not changed since."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_of(path)
    return _DIGESTS[key]
