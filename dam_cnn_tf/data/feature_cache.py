"""An on-disk cache of salient features ``s_i`` for stage 2 (paper §3.3, Algorithm 1).

Stage 2 trains the MPVS-Net on the frozen VGG-SERD's salient features (``h_s`` of Eq. 2,
flattened: 7x7x512 = 25088 per image), and the paper stores them before that stage starts.
The features go into a ``.npy`` file written batch by batch through a memory map, so the whole
set never has to fit in memory, and a small JSON beside it records labels, shape, dtype and a
caller-given fingerprint (e.g. a hash of the weights and data). Both are written under temporary
names and renamed at the end, the JSON last: a cache whose JSON exists is complete.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

from dam_cnn_tf.errors import one_line

CACHE_FORMAT_VERSION = 1
_DTYPES = ("float32", "float16")


class FeatureCacheError(ValueError):
    """A feature cache that is missing, incomplete, stale or inconsistent, or a bad write request."""


def _paths(path) -> tuple[Path, Path]:
    path = Path(path)
    if path.suffix != ".npy":
        path = path.with_name(path.name + ".npy")
    return path, path.with_suffix(".json")


def _is_count(value) -> bool:
    """A non-negative JSON integer (``bool`` is an ``int`` in Python, but not a count)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _split_batch(batch):
    """``x`` or ``(x, y)`` or ``(x, y, ...)`` from an iterable of batches."""
    if isinstance(batch, (tuple, list)):
        return batch[0], (batch[1] if len(batch) > 1 else None)
    return batch, None


class FeatureCache:
    """A complete feature cache, memory-mapped read-only.

    ``features``: ``(n, D)`` array (float32 or float16) mapped from disk; ``labels``: ``(n,)``
    int64 or None; ``feature_shape``: the per-sample shape before flattening (e.g. (7, 7, 512));
    ``fingerprint``: the string given at write time; ``metadata``: the whole JSON record.
    """

    def __init__(self, path: Path, features: np.ndarray, labels: Optional[np.ndarray], metadata: dict):
        self.path = path
        self.features = features
        self.labels = labels
        self.metadata = metadata

    @property
    def fingerprint(self) -> str:
        return self.metadata["fingerprint"]

    @property
    def feature_shape(self) -> tuple:
        return tuple(self.metadata["feature_shape"])

    def __len__(self) -> int:
        return self.features.shape[0]

    @staticmethod
    def paths(path) -> tuple[Path, Path]:
        """The ``(features .npy, metadata .json)`` files of the cache at ``path``."""
        return _paths(path)

    @classmethod
    def exists(cls, path, fingerprint: Optional[str] = None) -> bool:
        """Whether a complete cache (with this fingerprint, if given) opens at ``path``."""
        try:
            cls.open(path, fingerprint)
        except FeatureCacheError:
            return False
        return True

    @classmethod
    def open(cls, path, fingerprint: Optional[str] = None) -> "FeatureCache":
        """Validate and memory-map the cache at ``path``; with ``fingerprint``, refuse a stale one."""
        npy, meta_path = _paths(path)
        if not meta_path.is_file():
            raise FeatureCacheError(f"{meta_path}: no complete feature cache here (metadata missing)")
        try:
            metadata = json.loads(meta_path.read_text())
            shape = tuple(metadata["shape"])
            dtype = metadata["dtype"]
            stored_fingerprint = metadata["fingerprint"]
            version = metadata["version"]
            feature_shape = tuple(metadata["feature_shape"])
            labels = metadata.get("labels")
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise FeatureCacheError(f"{meta_path}: unreadable feature-cache metadata ({one_line(err)})") from None
        if version != CACHE_FORMAT_VERSION:
            raise FeatureCacheError(f"{meta_path}: cache format {version!r}, this version reads {CACHE_FORMAT_VERSION}")
        # The JSON is data from disk: check every field's type before it reaches NumPy.
        if not (len(shape) == 2 and all(_is_count(n) for n in shape) and dtype in _DTYPES
                and isinstance(stored_fingerprint, str) and all(_is_count(n) for n in feature_shape)
                and int(np.prod(feature_shape)) == shape[1]):
            raise FeatureCacheError(f"{meta_path}: inconsistent feature-cache metadata (shape, dtype or feature_shape)")
        if labels is not None and not (isinstance(labels, list) and len(labels) == shape[0]
                                       and all(_is_count(n) for n in labels)):
            raise FeatureCacheError(f"{meta_path}: labels must be {shape[0]} non-negative integers")
        if fingerprint is not None and fingerprint != stored_fingerprint:
            raise FeatureCacheError(
                f"{npy}: stale feature cache (fingerprint {stored_fingerprint!r}, expected {fingerprint!r})"
            )
        try:
            features = np.load(npy, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # EOFError: empty; BadZipFile: "PK..."
            raise FeatureCacheError(f"{npy}: cannot read features ({one_line(err)})") from None
        if not isinstance(features, np.ndarray) or features.shape != shape or features.dtype != np.dtype(dtype):
            raise FeatureCacheError(
                f"{npy}: holds {getattr(features, 'shape', '?')} {getattr(features, 'dtype', type(features).__name__)}"
                f", metadata says {shape} {dtype}"
            )
        if labels is not None:
            labels = np.asarray(labels, dtype=np.int64)
        return cls(npy, features, labels, metadata)


def write_feature_cache(
    path,
    features_fn: Callable,
    batches: Iterable,
    num_samples: int,
    labels=None,
    fingerprint: str = "",
    dtype: str = "float32",
    verbose: int = 1,
) -> FeatureCache:
    """Run ``features_fn`` over ``batches`` and store the results as a cache at ``path``.

    ``batches`` yields ``x`` or ``(x, y, ...)``; ``features_fn(x)`` returns ``(B, ...)`` features
    (NumPy or tensors), flattened to ``(B, D)``. ``labels``, if not given, are collected from the
    batches' ``y``. ``num_samples`` must equal the number of rows the batches produce. Nothing
    is left at ``path`` unless all of them were written; an earlier cache there is invalidated
    first. ``verbose`` 1 shows a ``keras.utils.Progbar``, 2 one line at the end.
    """
    if dtype not in _DTYPES:
        raise FeatureCacheError(f"--cache-dtype must be one of {_DTYPES}, got {dtype!r}")
    if int(num_samples) < 1:
        raise FeatureCacheError(f"num_samples must be positive, got {num_samples}")
    npy, meta_path = _paths(path)
    npy.parent.mkdir(parents=True, exist_ok=True)
    # An older cache here stops being valid the moment we start overwriting it.
    meta_path.unlink(missing_ok=True)
    tmp_npy = npy.with_name(f".{npy.name}.partial-{os.getpid()}")
    tmp_meta = meta_path.with_name(f".{meta_path.name}.partial-{os.getpid()}")
    progbar = None
    if verbose:
        import keras

        progbar = keras.utils.Progbar(num_samples, unit_name="image", verbose=2 if verbose == 2 else 1)
    out = None
    written = 0
    collected = []
    feature_shape = None
    try:
        for batch in batches:
            x, y = _split_batch(batch)
            feats = np.asarray(features_fn(x))
            if feature_shape is None:
                feature_shape = feats.shape[1:]
                dim = int(np.prod(feature_shape))
                out = np.lib.format.open_memmap(tmp_npy, mode="w+", dtype=dtype, shape=(num_samples, dim))
            elif feats.shape[1:] != feature_shape:
                raise FeatureCacheError(f"{npy}: features_fn gave {feats.shape[1:]} after {feature_shape}")
            rows = feats.shape[0]
            if written + rows > num_samples:
                raise FeatureCacheError(f"{npy}: batches gave more than num_samples={num_samples} rows")
            out[written : written + rows] = feats.reshape(rows, -1)
            if labels is None and y is not None:
                collected.append(np.asarray(y).reshape(-1))
            written += rows
            if progbar is not None:
                progbar.update(written)
        if written != num_samples:
            raise FeatureCacheError(f"{npy}: batches gave {written} rows, num_samples={num_samples}")
        out.flush()
        del out
        if labels is None and collected:
            labels = np.concatenate(collected)
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != (num_samples,) or not np.issubdtype(labels.dtype, np.integer):
                raise FeatureCacheError(f"{npy}: labels must be {num_samples} integers, got {labels.shape}")
            labels = labels.astype(np.int64).tolist()
        metadata = {
            "version": CACHE_FORMAT_VERSION,
            "shape": [num_samples, int(np.prod(feature_shape))],
            "feature_shape": list(feature_shape),
            "dtype": dtype,
            "fingerprint": str(fingerprint),
            "labels": labels,
        }
        tmp_meta.write_text(json.dumps(metadata))
        os.replace(tmp_npy, npy)
        os.replace(tmp_meta, meta_path)
    except BaseException:
        out = None
        tmp_npy.unlink(missing_ok=True)
        tmp_meta.unlink(missing_ok=True)
        raise
    return FeatureCache.open(npy, fingerprint)
