"""Untrusted files: loading a model, weights, feature cache or face cache never runs code
from the file and refuses hostile content with one line naming it. See docs/reliability.md.
"""

from __future__ import annotations

import json
import re
import tempfile
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import dam_cnn_tf
from dam_cnn_tf import MPVSNet, build_dam_cnn, build_vgg_serd
from dam_cnn_tf.data.face_cache import FaceCache
from dam_cnn_tf.data.feature_cache import FeatureCache, FeatureCacheError, write_feature_cache
from dam_cnn_tf.models.model_file import ModelFileError, load_model_file, unsafe_config_entry
from dam_cnn_tf.weights.convert import load_backbone_weights, read_converted, read_weights
from dam_cnn_tf.weights.errors import WeightsError
from dam_cnn_tf.weights.hdf5 import MAX_ARRAY_VALUES
from hostile import FAST, LONG, random_payloads

PACKAGE = Path(dam_cnn_tf.__file__).parent


def _one_line(err, name):
    assert "\n" not in str(err) and str(name) in str(err), str(err)


# ---- Source audit ------------------------------------------------------------------------

FORBIDDEN = {
    "pickle": re.compile(r"\bpickle\b|cPickle|\bdill\b|cloudpickle"),
    "allow_pickle=True": re.compile(r"allow_pickle\s*=\s*True"),
    "safe_mode=False": re.compile(r"safe_mode\s*=\s*False"),
    "enable_unsafe_deserialization": re.compile(r"enable_unsafe_deserialization"),
    "eval(": re.compile(r"(?<![\w.])eval\("),
    "exec(": re.compile(r"(?<![\w.])exec\("),
    "marshal": re.compile(r"\bmarshal\b"),
}


def _sources():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 30
    return [(f, f.read_text()) for f in files]


def _code_lines(text):
    """Lines of code without comments and docstrings (which may name the dangers)."""
    import ast
    import io
    import tokenize

    docstrings = set()
    for node in ast.walk(ast.parse(text)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(
                getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    kept = []
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type != tokenize.COMMENT and token.start[0] not in docstrings:
            kept.append((token.start[0], token.string))
    return kept


def test_package_source_has_no_code_execution_paths():
    found = []
    for path, text in _sources():
        code = " ".join(s for _, s in _code_lines(text)).replace("( ", "(").replace(" (", "(")
        code = re.sub(r"\s*=\s*", "=", code)
        for name, pattern in FORBIDDEN.items():
            if pattern.search(code):
                found.append(f"{path.relative_to(PACKAGE)}: {name}")
    assert found == []


def test_every_np_load_and_load_model_call_is_safe():
    for path, text in _sources():
        for match in re.finditer(r"np\.load\(([^)]*)\)", text):
            assert "allow_pickle=False" in match.group(1), f"{path}: {match.group(0)}"
        for match in re.finditer(r"(?<!\w)load_model\(([^)]*)\)", text):
            assert "safe_mode=True" in match.group(1), f"{path}: {match.group(0)}"


# ---- Models: no Python from the file ------------------------------------------------------

def _lambda_model(tmp_path, marker: Path) -> Path:
    # Its function writes ``marker`` whenever Keras rebuilds the layer from the file's bytecode.
    target = str(marker)
    inputs = keras.Input((2,))
    outputs = keras.layers.Lambda(lambda x: x * 2 + len(open(target, "w").name) * 0)(inputs)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    marker.unlink(missing_ok=True)
    return path


def test_lambda_layer_bytecode_is_refused_even_when_unsafe_mode_is_on(tmp_path, monkeypatch):
    marker = tmp_path / "code-ran"
    path = _lambda_model(tmp_path, marker)
    with pytest.raises(ModelFileError, match="holds Python code") as info:
        load_model_file(path)
    _one_line(info.value, path)
    # A process that switched safe mode off globally still gets the refusal.
    from keras.src.saving import serialization_lib

    monkeypatch.setattr(serialization_lib, "in_safe_mode", lambda: False)
    with pytest.raises(ModelFileError, match="holds Python code"):
        load_model_file(path)
    assert not marker.exists()
    # Control: the file really carries code that runs once safe mode is off.
    keras.saving.load_model(path, safe_mode=False)(np.ones((1, 2), "float32"))
    assert marker.exists()


def test_config_naming_a_function_outside_keras_is_refused(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", loss=keras.losses.mean_squared_error)  # a Keras function in the config is fine
    good = tmp_path / "good.keras"
    model.save(good)
    bad = tmp_path / "bad.keras"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            if item == "config.json":
                config = json.loads(data)
                config["config"]["layers"][1]["config"]["activation"] = {
                    "module": "os", "class_name": "function", "config": "system", "registered_name": "system"}
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    with pytest.raises(ModelFileError, match="holds Python code") as info:
        load_model_file(bad)
    _one_line(info.value, bad)
    assert isinstance(load_model_file(good), keras.Model)
    assert unsafe_config_entry({"module": "builtins", "class_name": "eval", "config": {}}) is not None
    assert isinstance(load_model_file(good, compile=True), keras.Model)


def test_a_dam_cnn_model_round_trips_through_the_safe_loader(tmp_path):
    vgg_serd = build_vgg_serd(3, input_shape=(32, 32, 3), fc_units=8, backbone_widths=(4, 4, 8, 8, 8))
    net = MPVSNet(8, 3, encoder_units=6, num_paths=4, fc_units=5)
    net.mpae.adapt(np.random.default_rng(0).gamma(2.0, 1.0, size=(20, 8)).astype("float32"))
    model = build_dam_cnn(vgg_serd, net)
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = load_model_file(path)
    np.testing.assert_allclose(loaded.predict(images, verbose=0)["probabilities"],
                               model.predict(images, verbose=0)["probabilities"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not a zip", b"\x89HDF\r\n\x1a\n" + bytes(100)])
def test_damaged_model_files_are_one_line_errors(tmp_path, content):
    path = tmp_path / "model.keras"
    path.write_bytes(content)
    with pytest.raises(ModelFileError) as info:
        load_model_file(path)
    _one_line(info.value, path)
    with pytest.raises(ModelFileError, match="no such file"):
        load_model_file(tmp_path / "missing.keras")
    legacy = tmp_path / "model.h5"
    legacy.write_bytes(content)
    with pytest.raises(ModelFileError, match="not a Keras 3 .keras archive"):
        load_model_file(legacy)


def _zip_without_config(tmp_path):
    path = tmp_path / "empty.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", "{}")
    return path


def test_archive_without_config_is_refused(tmp_path):
    path = _zip_without_config(tmp_path)
    with pytest.raises(ModelFileError, match="config.json"):
        load_model_file(path)


# ---- Feature and face caches --------------------------------------------------------------

def _cache(tmp_path, name="feats"):
    rows = np.arange(12, dtype="float32").reshape(4, 3)
    return write_feature_cache(tmp_path / name, lambda x: x, [(rows, np.arange(4))], 4, verbose=0)


def test_object_array_npy_is_refused_without_unpickling(tmp_path, monkeypatch):
    cache = _cache(tmp_path)
    npy, _ = FeatureCache.paths(cache.path)
    np.save(npy, np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)  # a pickled payload
    import pickle  # noqa: F401  (only to watch that loading never unpickles)

    monkeypatch.setattr("pickle.loads", lambda *a, **k: pytest.fail("unpickled"))
    monkeypatch.setattr("pickle.load", lambda *a, **k: pytest.fail("unpickled"))
    with pytest.raises(FeatureCacheError, match="cannot read features") as info:
        FeatureCache.open(cache.path)
    _one_line(info.value, npy)


def test_npy_declaring_a_huge_shape_is_refused(tmp_path):
    cache = _cache(tmp_path)
    npy, meta = FeatureCache.paths(cache.path)
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**9, 25088)}
    with open(npy, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        handle.write(bytes(64))
    record = json.loads(meta.read_text())
    record["shape"], record["feature_shape"], record["labels"] = [10**9, 25088], [25088], None
    meta.write_text(json.dumps(record))
    with pytest.raises(FeatureCacheError) as info:
        FeatureCache.open(cache.path)
    _one_line(info.value, npy)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2, 10**12), st.floats(allow_nan=True), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
metadata_edits = st.dictionaries(st.sampled_from(["version", "shape", "dtype", "fingerprint", "labels",
                                                  "feature_shape"]), json_values, min_size=1, max_size=3)


def _check_metadata(edits):
    with tempfile.TemporaryDirectory() as folder:
        cache = _cache(Path(folder))
        _, meta = FeatureCache.paths(cache.path)
        record = json.loads(meta.read_text())
        record.update(edits)
        meta.write_text(json.dumps(record))
        try:
            opened = FeatureCache.open(cache.path)
        except FeatureCacheError as err:
            assert "\n" not in str(err) and folder in str(err)
            return
        assert opened.features.shape == (4, 3) and opened.features.dtype == np.float32
        assert opened.labels is None or (opened.labels.shape == (4,) and opened.labels.dtype == np.int64)


test_feature_cache_metadata = FAST(given(metadata_edits)(_check_metadata))
test_feature_cache_metadata_long = pytest.mark.slow(LONG(given(metadata_edits)(_check_metadata)))


def _check_npy_bytes(data):
    with tempfile.TemporaryDirectory() as folder:
        cache = _cache(Path(folder))
        npy, _ = FeatureCache.paths(cache.path)
        npy.write_bytes(data)
        try:
            FeatureCache.open(cache.path)
        except FeatureCacheError as err:
            assert "\n" not in str(err) and str(npy) in str(err)
        else:
            pytest.fail("random bytes accepted as the features")


npy_payloads = st.one_of(random_payloads(), st.binary(max_size=256).map(lambda b: b"\x93NUMPY\x01\x00" + b))
test_feature_cache_npy_bytes = FAST(given(npy_payloads)(_check_npy_bytes))
test_feature_cache_npy_bytes_long = pytest.mark.slow(LONG(given(npy_payloads)(_check_npy_bytes)))


def test_face_cache_entries_of_the_wrong_kind_are_misses(tmp_path):
    cache = FaceCache(tmp_path)
    key = "ab" + "0" * 62
    cache.put(key, np.zeros((8, 8, 3), np.uint8), True)
    assert cache.get(key, shape=(8, 8, 3))[1] is True
    path = tmp_path / "ab" / f"{key}.npz"
    for payload in ({"face": np.array([{"x": 1}], dtype=object), "found": np.bool_(True)},
                    {"face": np.zeros((4, 4, 3), np.uint8), "found": np.bool_(True)},
                    {"face": np.zeros((8, 8, 3), np.float64), "found": np.bool_(True)},
                    {"found": np.bool_(True)}):
        with open(path, "wb") as handle:
            np.savez(handle, allow_pickle=True, **payload)
        assert cache.get(key, shape=(8, 8, 3)) is None
    path.write_bytes(b"PK\x03\x04garbage")
    assert cache.get(key, shape=(8, 8, 3)) is None


# ---- HDF5 weights -----------------------------------------------------------------------

def _keras2(f, kernel=None, **kwargs):
    f.attrs["layer_names"] = [b"conv1_1"]
    group = f.create_group("conv1_1")
    group.attrs["weight_names"] = [b"conv1_1/kernel:0", b"conv1_1/bias:0"]
    if kernel is None:
        group.create_dataset("conv1_1/kernel:0", data=np.zeros((3, 3, 3, 64), "f4"))
    else:
        kernel(group)
    group.create_dataset("conv1_1/bias:0", data=np.zeros(64, "f4"))


def _converted(f, kernel):
    f.attrs["format"] = "dam_cnn_tf.vgg_face_weights"
    group = f.create_group("conv1_1")
    kernel(group)
    group.create_dataset("bias", data=np.zeros(64, "f4"))


def _huge(name):
    return lambda g: g.create_dataset(name, shape=(100_000, 100_000, 3, 64), dtype="f4", chunks=(8, 8, 3, 64))


def _external(tmp_path, name):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("secret", data=np.zeros((3, 3, 3, 64), "f4"))
    return lambda g: g.__setitem__(name, h5py.ExternalLink(str(other), "/secret"))


def _hostile_weights(tmp_path):
    kk = "conv1_1/kernel:0"
    return {
        "huge declared shape": (_keras2, dict(kernel=_huge(kk))),
        "group where an array belongs": (_keras2, dict(kernel=lambda g: g.create_group(kk))),
        "strings where numbers belong": (_keras2, dict(kernel=lambda g: g.create_dataset(kk, data=np.array([b"x"])))),
        "compound dtype": (_keras2, dict(kernel=lambda g: g.create_dataset(
            kk, data=np.zeros(3, dtype=[("a", "f4"), ("b", "i4")])))),
        "link to another file": (_keras2, dict(kernel=_external(tmp_path, kk))),
        "layer_names lists a missing group": (lambda f: f.attrs.__setitem__("layer_names", [b"conv1_1"]), {}),
        "layer_names is a number": (lambda f: f.attrs.__setitem__("layer_names", 5), {}),
        "converted: huge declared shape": (_converted, dict(kernel=_huge("kernel"))),
        "converted: link to another file": (_converted, dict(kernel=_external(tmp_path, "kernel"))),
        "converted: layer is an array": (lambda f: (f.attrs.__setitem__("format", "dam_cnn_tf.vgg_face_weights"),
                                                    f.create_dataset("conv1_1", data=np.zeros(3))), {}),
        "converted: object references": (_converted, dict(kernel=lambda g: g.create_dataset(
            "kernel", data=[g.file.ref], dtype=h5py.ref_dtype))),
    }


@pytest.mark.parametrize("case", sorted(_hostile_weights(Path(tempfile.gettempdir()))))
def test_hostile_hdf5_weights_are_refused(tmp_path, case):
    build, kwargs = _hostile_weights(tmp_path)[case]
    path = tmp_path / "weights.h5"
    with h5py.File(path, "w") as f:
        build(f, **kwargs) if kwargs else build(f)
    assert path.stat().st_size < 1 << 20
    reader = read_converted if case.startswith("converted") else (lambda p: read_weights(p, "keras-vggface"))
    with pytest.raises(WeightsError) as info:
        reader(path)
    _one_line(info.value, path)
    if case.startswith("converted"):
        with pytest.raises(WeightsError):
            load_backbone_weights(keras.Sequential([keras.Input((2,))]), path)


def test_array_limit_is_the_largest_vgg_face_layer():
    assert MAX_ARRAY_VALUES == 7 * 7 * 512 * 4096


def _check_weights_bytes(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "weights.bin"
        path.write_bytes(data)
        for call in (lambda: read_weights(path), lambda: read_converted(path)):
            try:
                call()
            except WeightsError as err:
                assert "\n" not in str(err) and str(path) in str(err)
            else:
                pytest.fail("random bytes accepted as weights")


weights_payloads = st.one_of(random_payloads(), st.binary(max_size=512).map(lambda b: b"MATLAB 5.0 MAT-file" + b),
                             st.binary(max_size=512).map(lambda b: b"\x0a" + b),
                             st.binary(max_size=512).map(lambda b: b"\x89HDF\r\n\x1a\n" + b))
test_weights_random_bytes = FAST(given(weights_payloads)(_check_weights_bytes))
test_weights_random_bytes_long = pytest.mark.slow(LONG(given(weights_payloads)(_check_weights_bytes)))
