"""Writing TensorFlow.js weights manifests for tests, as the TF.js converter lays them out."""

import json
from pathlib import Path

import numpy as np


def quantize_uint8(values: np.ndarray) -> tuple[np.ndarray, dict]:
    """The TF.js converter's affine uint8 quantization of ``values``: ``(q, quantization)``."""
    low, high = float(values.min()), float(values.max())
    scale = (high - low) / 255.0 or 1.0
    q = np.clip(np.round((values - low) / scale), 0, 255).astype(np.uint8)
    return q, {"dtype": "uint8", "scale": scale, "min": low}


def write_manifest(folder: Path, tensors: dict, *, quantize=(), shards: int = 1, stem: str = "model",
                   patch=None) -> Path:
    """Write ``tensors`` ({name: array}) as ``stem-weights_manifest.json`` and ``shards`` shard files.

    Names in ``quantize`` are stored as uint8; the others as float32 (int32 arrays as int32).
    The shards split the byte stream evenly, cutting through tensors as the converter does.
    ``patch`` may edit the manifest (a list of groups) before it is written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    entries, chunks = [], []
    for name, array in tensors.items():
        array = np.asarray(array)
        entry = {"name": name, "shape": list(array.shape),
                 "dtype": "int32" if array.dtype.kind in "iu" else "float32"}
        if name in quantize:
            q, entry["quantization"] = quantize_uint8(array.astype(np.float64))
            chunks.append(q.tobytes())
        else:
            chunks.append(array.astype("<i4" if entry["dtype"] == "int32" else "<f4").tobytes())
        entries.append(entry)
    data = b"".join(chunks)
    cut = [len(data) * i // shards for i in range(shards + 1)]
    paths = []
    for i in range(shards):
        path = f"{stem}-shard{i + 1}" if shards > 1 else f"{stem}.bin"
        (folder / path).write_bytes(data[cut[i]:cut[i + 1]])
        paths.append(path)
    manifest = [{"paths": paths, "weights": entries}]
    if patch is not None:
        manifest = patch(manifest) or manifest
    target = folder / f"{stem}-weights_manifest.json"
    target.write_text(json.dumps(manifest))
    return target


def dequantized(array: np.ndarray) -> np.ndarray:
    """What a reader must return for a uint8-quantized ``array``: ``q * scale + min`` in float64, as float32."""
    q, quantization = quantize_uint8(np.asarray(array, np.float64))
    return (q.astype(np.float64) * quantization["scale"] + quantization["min"]).astype(np.float32)
