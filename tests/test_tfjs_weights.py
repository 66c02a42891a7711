"""The TensorFlow.js weights reader: shards, quantization, and hostile manifests."""

import json
import os

import numpy as np
import pytest

from dam_cnn_tf.weights.errors import WeightsFormatError
from dam_cnn_tf.weights.tfjs import is_tfjs_manifest, read_tfjs_weights
from tfjs_files import dequantized, write_manifest


def _tensors(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "block/conv/filters": rng.normal(0, 0.1, (3, 3, 2, 4)).astype(np.float32),
        "block/conv/bias": rng.normal(0, 1e-6, (4,)).astype(np.float32),
        "steps": np.arange(5, dtype=np.int32) - 2,
        "fc": rng.normal(0, 1, (4, 3)).astype(np.float32),
    }


@pytest.mark.parametrize("shards", [1, 3])
def test_plain_and_quantized_tensors_over_shards(tmp_path, shards):
    tensors = _tensors()
    quantized = ("block/conv/filters", "block/conv/bias")
    manifest = write_manifest(tmp_path, tensors, quantize=quantized, shards=shards)
    read = read_tfjs_weights(manifest)
    assert list(read) == list(tensors)  # manifest order
    for name in quantized:
        assert read[name].dtype == np.float32 and read[name].shape == tensors[name].shape
        np.testing.assert_array_equal(read[name], dequantized(tensors[name]))
        # Quantization is lossy by at most half a step.
        step = (tensors[name].max() - tensors[name].min()) / 255
        assert np.abs(read[name] - tensors[name]).max() <= step / 2 + 1e-12
    np.testing.assert_array_equal(read["fc"], tensors["fc"])
    assert read["steps"].dtype == np.int32
    np.testing.assert_array_equal(read["steps"], tensors["steps"])


def test_dequantization_is_computed_in_float64(tmp_path):
    # q * scale + min in float32 differs from the float64 result for these constants.
    scale, low = 0.0005260649557207145, -0.07101876902229645
    q = np.arange(256, dtype=np.uint8)
    (tmp_path / "m.bin").write_bytes(q.tobytes())
    entry = {"name": "w", "shape": [256], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": scale, "min": low}}
    manifest = tmp_path / "m-weights_manifest.json"
    manifest.write_text(json.dumps([{"paths": ["m.bin"], "weights": [entry]}]))
    expected = (q.astype(np.float64) * scale + low).astype(np.float32)
    in_float32 = q.astype(np.float32) * np.float32(scale) + np.float32(low)
    assert not np.array_equal(expected, in_float32)
    np.testing.assert_array_equal(read_tfjs_weights(manifest)["w"], expected)


def test_several_groups_and_float16(tmp_path):
    values = np.array([0.5, -2.0, 1e-3], np.float16)
    (tmp_path / "a.bin").write_bytes(np.float32([1, 2]).tobytes())
    (tmp_path / "b.bin").write_bytes(values.tobytes())
    manifest = tmp_path / "m-weights_manifest.json"
    manifest.write_text(json.dumps([
        {"paths": ["a.bin"], "weights": [{"name": "a", "shape": [2], "dtype": "float32"}]},
        {"paths": ["b.bin"], "weights": [{"name": "b", "shape": [3], "dtype": "float32",
                                          "quantization": {"dtype": "float16"}}]},
    ]))
    read = read_tfjs_weights(manifest)
    np.testing.assert_array_equal(read["a"], [1, 2])
    np.testing.assert_array_equal(read["b"], values.astype(np.float32))


def _hostile(tmp_path, patch, tensors=None):
    return write_manifest(tmp_path, tensors or {"w": np.ones((2, 3), np.float32)}, patch=patch)


def _set(key, value, where="weights"):
    def patch(manifest):
        if where == "weights":
            manifest[0]["weights"][0][key] = value
        else:
            manifest[0][key] = value
    return patch


HOSTILE = {
    "path leaves the folder": (_set("paths", ["../outside.bin"], "group"), "leaves the manifest's folder"),
    "absolute path": (_set("paths", ["/etc/passwd"], "group"), "leaves the manifest's folder"),
    "missing shard": (_set("paths", ["gone.bin"], "group"), "missing"),
    "paths not a list": (_set("paths", "model.bin", "group"), "lacks its 'paths'"),
    "too few bytes": (_set("shape", [2, 4]), "need 32 bytes but model.bin hold 24"),
    "too many bytes": (_set("shape", [2, 2]), "need 16 bytes but model.bin hold 24"),
    "huge shape": (_set("shape", [1 << 20, 1 << 20]), "more than any face network"),
    "negative dimension": (_set("shape", [-2, -3]), "invalid shape"),
    "float dimension": (_set("shape", [2.0, 3]), "invalid shape"),
    "unknown dtype": (_set("dtype", "complex64"), "unsupported dtype"),
    "unknown quantization": (_set("quantization", {"dtype": "int4", "scale": 1, "min": 0}), "unsupported quantization"),
    "nan scale": (_set("quantization", {"dtype": "uint8", "scale": float("nan"), "min": 0}), "not a finite number"),
    "no name": (_set("name", ""), "without a name"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_manifests_are_refused_in_one_line(tmp_path, case):
    patch, message = HOSTILE[case]
    manifest = _hostile(tmp_path, patch)
    with pytest.raises(WeightsFormatError) as raised:
        read_tfjs_weights(manifest)
    text = str(raised.value)
    assert "\n" not in text and str(manifest) in text and message in text


def test_shard_link_leaving_the_folder_is_refused(tmp_path):
    outside = tmp_path / "outside.bin"
    outside.write_bytes(np.ones(6, np.float32).tobytes())
    folder = tmp_path / "model"
    manifest = write_manifest(folder, {"w": np.ones((2, 3), np.float32)})
    os.remove(folder / "model.bin")
    os.symlink(outside, folder / "model.bin")
    with pytest.raises(WeightsFormatError, match="through a link"):
        read_tfjs_weights(manifest)


def test_duplicate_names_and_non_manifests_are_refused(tmp_path):
    tensors = {"w": np.ones(2, np.float32), "v": np.ones(2, np.float32)}
    manifest = write_manifest(tmp_path, tensors, patch=lambda m: m[0]["weights"][1].update(name="w"))
    with pytest.raises(WeightsFormatError, match="appears twice"):
        read_tfjs_weights(manifest)
    for content in ("{not json", '{"paths": []}', "[]", "[1]"):
        manifest.write_text(content)
        with pytest.raises(WeightsFormatError):
            read_tfjs_weights(manifest)


def test_manifest_detection(tmp_path):
    manifest = write_manifest(tmp_path / "a", {"w": np.ones(2, np.float32)}, stem="x")
    renamed = tmp_path / "a" / "weights.json"
    renamed.write_text(manifest.read_text())
    other = tmp_path / "config.json"
    other.write_text('{"classes": 6}')
    assert is_tfjs_manifest(manifest) and is_tfjs_manifest(renamed)
    assert not is_tfjs_manifest(other) and not is_tfjs_manifest(tmp_path / "a" / "x.bin")
