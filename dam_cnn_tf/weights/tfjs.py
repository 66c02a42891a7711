"""Reading TensorFlow.js weights: a ``*-weights_manifest.json`` and the shards it names.

A manifest is a list of groups; each group names its shard files (``paths``, concatenated in
order) and its tensors (``weights``: name, shape, dtype, optional ``quantization``), which lie
back to back in that order. A quantized tensor stores one integer per value and is
``q * scale + min`` (uint8, uint16) or stores float16 values; the others are plain
little-endian float32 or int32.

Manifests come from the web, so nothing in one is trusted: shard paths must stay inside the
manifest's folder, every shape must be small and well formed, every dtype known, and the bytes
the tensors need must be exactly the bytes the shards hold — all checked before a shard is
read. Each refusal is one ``WeightsFormatError`` line naming the manifest.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from dam_cnn_tf.errors import one_line
from dam_cnn_tf.weights.errors import WeightsFormatError

# Bytes per stored value, for the plain dtypes and the quantized ones.
PLAIN_DTYPES = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4")}
QUANTIZED_DTYPES = {"uint8": np.dtype("u1"), "uint16": np.dtype("<u2"), "float16": np.dtype("<f2")}
# No face network shipped as TF.js comes near this; a manifest declaring more is hostile.
MAX_TENSOR_VALUES = 1 << 26
MAX_MANIFEST_BYTES = 16 << 20


def _fail(manifest, reason: str):
    raise WeightsFormatError(f"{manifest}: {one_line(reason)}")


def _load_manifest(manifest: Path) -> list:
    try:
        size = manifest.stat().st_size
    except OSError as error:
        _fail(manifest, f"cannot read ({error.strerror})")
    if size > MAX_MANIFEST_BYTES:
        _fail(manifest, f"{size} bytes is too large for a weights manifest")
    try:
        groups = json.loads(manifest.read_bytes())
    except (ValueError, UnicodeDecodeError) as error:
        _fail(manifest, f"not a JSON weights manifest ({error})")
    if not isinstance(groups, list) or not groups:
        _fail(manifest, "expected a list of weight groups")
    return groups


def _shard_path(manifest: Path, relative) -> Path:
    """A shard named by the manifest, refused if it would leave the manifest's folder."""
    if not isinstance(relative, str) or not relative or "\x00" in relative:
        _fail(manifest, f"shard path {relative!r} is not a file name")
    folder = manifest.resolve().parent
    candidate = Path(relative)
    if candidate.is_absolute() or ".." in candidate.parts:
        _fail(manifest, f"shard path {relative!r} leaves the manifest's folder")
    resolved = (folder / candidate).resolve()
    if not resolved.is_relative_to(folder):
        _fail(manifest, f"shard path {relative!r} leaves the manifest's folder (through a link)")
    if not resolved.is_file():
        _fail(manifest, f"shard {relative!r} is missing")
    return resolved


def _tensor_spec(manifest: Path, entry) -> tuple[str, tuple[int, ...], np.dtype, dict | None]:
    """``(name, shape, stored dtype, quantization)`` of one manifest entry, validated."""
    if not isinstance(entry, dict):
        _fail(manifest, "a weight entry is not an object")
    name, shape, dtype = entry.get("name"), entry.get("shape"), entry.get("dtype", "float32")
    if not isinstance(name, str) or not name:
        _fail(manifest, f"weight entry without a name: {str(entry)[:80]}")
    if not isinstance(shape, list) or not all(type(d) is int and 0 <= d <= MAX_TENSOR_VALUES for d in shape):
        _fail(manifest, f"weight {name!r} has an invalid shape {str(shape)[:80]}")
    if math.prod(shape) > MAX_TENSOR_VALUES:
        _fail(manifest, f"weight {name!r} declares {math.prod(shape)} values, more than any face network has")
    if dtype not in PLAIN_DTYPES:
        _fail(manifest, f"weight {name!r} has unsupported dtype {str(dtype)[:40]!r} (float32 or int32)")
    quantization = entry.get("quantization")
    if quantization is None:
        return name, tuple(shape), PLAIN_DTYPES[dtype], None
    if not isinstance(quantization, dict) or quantization.get("dtype") not in QUANTIZED_DTYPES:
        _fail(manifest, f"weight {name!r} has unsupported quantization {str(quantization)[:80]}")
    stored = QUANTIZED_DTYPES[quantization["dtype"]]
    if stored.kind == "u":
        for key in ("scale", "min"):
            value = quantization.get(key)
            if type(value) not in (int, float) or not math.isfinite(value):
                _fail(manifest, f"weight {name!r}: quantization {key} {str(value)[:40]!r} is not a finite number")
    return name, tuple(shape), stored, quantization


def _decode(stored: np.ndarray, dtype: str, quantization: dict | None) -> np.ndarray:
    if quantization is None:
        return stored.astype(PLAIN_DTYPES[dtype].newbyteorder("="))
    if stored.dtype.kind == "u":
        # w = q * scale + min, in float64 so the stored constants lose nothing before the cast.
        values = stored.astype(np.float64) * float(quantization["scale"]) + float(quantization["min"])
    else:
        values = stored.astype(np.float64)
    return values.astype(PLAIN_DTYPES[dtype].newbyteorder("="))


def read_tfjs_weights(manifest) -> dict[str, np.ndarray]:
    """Every tensor of a TF.js weights manifest, by name, in manifest order.

    Dequantized values are computed in float64 and then cast to the tensor's dtype, as
    TensorFlow.js does in float32 up to rounding.
    """
    manifest = Path(manifest)
    tensors: dict[str, np.ndarray] = {}
    for group in _load_manifest(manifest):
        if not isinstance(group, dict) or not isinstance(group.get("paths"), list) or not isinstance(group.get("weights"), list):
            _fail(manifest, "a weight group lacks its 'paths' or 'weights' list")
        shards = [_shard_path(manifest, relative) for relative in group["paths"]]
        specs = [_tensor_spec(manifest, entry) for entry in group["weights"]]
        needed = sum(math.prod(shape) * stored.itemsize for _, shape, stored, _ in specs)
        held = sum(shard.stat().st_size for shard in shards)
        if needed != held:
            names = ", ".join(shard.name for shard in shards) or "no shard"
            _fail(manifest, f"its tensors need {needed} bytes but {names} hold {held}")
        data = b"".join(shard.read_bytes() for shard in shards)
        offset = 0
        for (name, shape, stored, quantization), entry in zip(specs, group["weights"]):
            if name in tensors:
                _fail(manifest, f"weight {name!r} appears twice")
            count = math.prod(shape)
            raw = np.frombuffer(data, dtype=stored, count=count, offset=offset)
            offset += count * stored.itemsize
            tensors[name] = _decode(raw, entry.get("dtype", "float32"), quantization).reshape(shape)
    return tensors


def is_tfjs_manifest(path) -> bool:
    """Whether ``path`` looks like a TF.js weights manifest (by name or by content)."""
    path = Path(path)
    if path.name.endswith("weights_manifest.json"):
        return True
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    try:
        head = path.read_bytes()[:4096].lstrip()
    except OSError:
        return False
    return head.startswith(b"[") and b'"paths"' in head
