"""The frozen trunk's map of every face, computed once per data set and kept on disk.

Stage 1 fine-tunes only the backbone's last blocks (``models.trunk``); what comes before them
gives the same map for a face in every epoch, in the probe and fine-tuning phases, in stage 2's
feature extraction and in every fold of a cross-validation. This cache holds that map for each
face and for its mirror image (the one augmentation that commutes with caching), addressed by
the face's pixels, so any subset of a data set (a fold, a validation part) finds its rows.

Layout: ``DIR/<fingerprint>/shard-<id>.maps.npy`` (``(m, 2, h, w, c)``: the face, then its
mirror) with ``shard-<id>.keys.npy`` (``(m, 16)`` uint8, a digest of each face's pixels). The
fingerprint names the trunk and its weights, so other weights never read these maps. A shard's
maps are written first, its keys last, each under a temporary name and renamed: a shard whose
keys exist is complete, and an interrupted computation resumes after its last whole shard.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Callable

import numpy as np

KEY_BYTES = 16
SHARD_FACES = 1024  # faces per shard: what an interrupted computation can lose at most


def default_cache_root() -> Path:
    """``$DAMCNN_CACHE`` or ``~/.cache/dam_cnn_tf``: prepared faces, trunk maps, weights."""
    return Path(os.environ.get("DAMCNN_CACHE", Path.home() / ".cache" / "dam_cnn_tf"))


def face_keys(faces: np.ndarray) -> np.ndarray:
    """``(n, 16)`` uint8: a digest of each face's shape and pixels."""
    keys = np.empty((len(faces), KEY_BYTES), np.uint8)
    for i, face in enumerate(faces):
        digest = hashlib.blake2b(str(face.shape).encode(), digest_size=KEY_BYTES)
        digest.update(np.ascontiguousarray(face).tobytes())
        keys[i] = np.frombuffer(digest.digest(), np.uint8)
    return keys


def mirrored(faces: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(faces[:, :, ::-1])


class TrunkCache:
    """Trunk maps of faces under ``directory / fingerprint``, stored as ``dtype``."""

    def __init__(self, directory, fingerprint: str, dtype: str = "float32"):
        self.path = Path(directory) / fingerprint
        self.dtype = np.dtype(dtype)

    def _shards(self) -> list[tuple[np.ndarray, np.ndarray]]:
        shards = []
        for keys_path in sorted(self.path.glob("shard-*.keys.npy")):
            maps_path = keys_path.with_name(keys_path.name.replace(".keys.npy", ".maps.npy"))
            shards.append((np.load(keys_path, allow_pickle=False),
                           np.load(maps_path, mmap_mode="r", allow_pickle=False)))
        return shards

    @staticmethod
    def _index(shards) -> dict:
        """Digest → (shard number, row) over the complete shards given."""
        index = {}
        for number, (keys, _) in enumerate(shards):
            for row, key in enumerate(keys):
                index.setdefault(key.tobytes(), (number, row))
        return index

    def _write_shard(self, keys: np.ndarray, maps: np.ndarray) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        stem = f"shard-{uuid.uuid4().hex[:12]}"
        for suffix, array in ((".maps.npy", maps.astype(self.dtype)), (".keys.npy", keys)):  # keys last
            final = self.path / f"{stem}{suffix}"
            tmp = final.with_name(f".{final.name}.tmp")
            with open(tmp, "wb") as f:
                np.save(f, array)
            os.replace(tmp, final)

    def missing(self, faces: np.ndarray) -> int:
        """How many distinct faces of ``faces`` have no maps yet."""
        index = self._index(self._shards())
        return len({key.tobytes() for key in face_keys(faces)} - set(index))

    def maps(self, faces: np.ndarray, compute: Callable[[np.ndarray], np.ndarray], log=None) -> np.ndarray:
        """``(n, 2, h, w, c)`` float32: the trunk map of each face and of its mirror image.

        ``compute`` maps uint8 faces ``(m, H, W, 3)`` to their trunk maps; it runs only on faces
        the cache does not hold, at most ``SHARD_FACES`` at a time, each batch saved at once.
        """
        keys = face_keys(faces)
        shards = self._shards()
        index = self._index(shards)
        todo, seen = [], set(index)
        for i, key in enumerate(keys):
            if key.tobytes() not in seen:
                seen.add(key.tobytes())
                todo.append(i)
        for start in range(0, len(todo), SHARD_FACES):
            chunk = np.asarray(todo[start:start + SHARD_FACES])
            if log:
                log(f"Trunk maps: faces {start + 1}-{start + len(chunk)} of {len(todo)} not yet cached")
            both = np.stack([compute(faces[chunk]), compute(mirrored(faces[chunk]))], axis=1)
            self._write_shard(keys[chunk], both)
        if todo:  # the shards just written, read once more
            shards = self._shards()
            index = self._index(shards)
        where = np.array([index[key.tobytes()] for key in keys], np.int64).reshape(-1, 2)
        out = None
        for number, (_, shard_maps) in enumerate(shards):
            rows = np.flatnonzero(where[:, 0] == number)
            if len(rows):
                block = np.asarray(shard_maps[np.sort(where[rows, 1])], np.float32)
                if out is None:
                    out = np.empty((len(keys),) + block.shape[1:], np.float32)
                order = np.argsort(where[rows, 1], kind="stable")
                out[rows[order]] = block
        if out is None:  # no faces at all
            return np.empty((0, 2), np.float32)
        return out
