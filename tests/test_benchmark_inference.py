"""benchmarks/inference.py: its yardsticks count what they should; the run writes every section."""

import json
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # benchmarks/ lives beside the package, not inside it
    sys.path.insert(0, str(REPO))

from benchmarks import inference  # noqa: E402
from dam_cnn_tf.presets import preset_card  # noqa: E402


def test_flops_are_the_products_of_the_layers():
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(3, 3, use_bias=False)(inputs)  # 4x4x3 outputs of 3*3*2 products
    outputs = keras.layers.Dense(5, use_bias=False)(keras.layers.Flatten()(x))  # 48 -> 5
    model = keras.Model(inputs, outputs)
    assert inference.flops_per_face(model, (6, 6, 2)) == 2 * (4 * 4 * 3 * 3 * 3 * 2) + 2 * 48 * 5


def test_yardsticks_and_faces():
    assert inference.matmul_gflops(n=128, steps=2) > 0
    faces, said = inference.synthetic_faces(9)
    assert len(faces) == 9 and "synthetic" in said
    assert inference.at_size(faces, 20).shape == (9, 20, 20, 3)
    assert inference.at_size(faces, 16, grey=True).shape == (9, 16, 16, 1)
    rates = inference.rates(lambda batch: batch * 2.0, np.zeros((64, 4), np.float32), steps=1)
    assert set(rates) == {"batch_1", "batch_64"} and all(r["faces_per_s"] > 0 for r in rates.values())


@pytest.mark.slow
def test_the_run_writes_every_section(tmp_path, monkeypatch):
    monkeypatch.setenv("DAMCNN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "inference.json"
    inference.main(["--json", str(out), "--num-faces", "8", "--steps", "1", "--cli-repeats", "1"])
    figures = json.loads(out.read_text())
    assert {"cli", "models", "light_formats", "batching"} <= set(figures)
    preset = figures["models"]["fer2013-face-resnet"]
    assert preset["flops_per_face"] > 1e8
    # the light file is int8 (dynamic range): synthetic faces sit near ties, so argmax may flip;
    # its probabilities stay within the tolerance its card was built to
    tolerance = preset_card("fer2013-face-resnet")["light"]["tolerance"]
    assert preset["light"]["parity_with_keras"]["max_abs_probability_difference"] <= tolerance
    assert "median_s" in figures["cli"]["predict_light"]


def test_head_to_head_times_a_preset_and_fers_model_in_turn(tmp_path):
    """--head-to-head: the fast preset's light file and Keras model beside a model shaped as fer's
    (64x64 grey in, 7 classes out), through Keras and LiteRT, in one section."""
    inputs = keras.Input((64, 64, 1))
    x = keras.layers.Conv2D(4, 3, strides=4, activation="relu")(inputs)
    outputs = keras.layers.Dense(7, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    fer = tmp_path / "emotion_model.keras"
    keras.Model(inputs, outputs).save(fer)
    out = tmp_path / "inference.json"
    inference.main(["--json", str(out), "--num-faces", "8", "--steps", "1", "--head-to-head", "fer2013-student",
                    "--fer-model", str(fer), "--skip", "models", "--skip", "light_formats", "--skip", "cli",
                    "--skip", "batching"])
    section = json.loads(out.read_text())["head_to_head"]
    assert section["preset"] == "fer2013-student" and section["fer_litert_bytes"] > 0
    from dam_cnn_tf.presets import preset_card

    # an int8 preset is also timed as a float32 light file of the same model, and fer's model as int8
    int8 = preset_card("fer2013-student")["light"]["quantize"] == "int8"
    extra = ("fer2013-student light float32", "fer litert int8") if int8 else ()
    assert (("fer2013-student light float32" in section) == int8)
    for run in ("fer2013-student light", "fer2013-student keras", "fer keras", "fer litert") + extra:
        assert section[run]["batch_64"]["faces_per_s"] > 0, run
