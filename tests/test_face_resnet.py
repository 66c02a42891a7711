"""The face-resnet backbone: face-api's preprocessing and blocks, weights in and out, training use.

Its outputs are checked against face-api's own JavaScript in test_face_resnet_reference.py;
here each piece is checked against NumPy and the weights' way through files and models.
"""

import numpy as np
import pytest

from cli_helpers import invoke
from dam_cnn_tf.backbones.face_resnet.model import (
    FACE_RESNET_MEAN_RGB,
    DownsampleShortcut,
    FaceResNetPreprocess,
    build_face_resnet,
    map_sides,
    pad_to_square,
)
from dam_cnn_tf.weights.errors import MissingLayerError, WeightsShapeError
from dam_cnn_tf.backbones.face_resnet.weights import convert_face_resnet, load_face_resnet_weights
from face_api_reference import numpy_pad_to_square as _numpy_pad_to_square
from face_api_reference import numpy_resize_bilinear as _numpy_resize_bilinear
from tfjs_files import write_manifest

MANIFEST_NAME = "face_recognition_model-weights_manifest.json"


@pytest.mark.parametrize("shape", [(5, 8, 3), (8, 5, 3), (7, 7, 3), (4, 9, 1)])
def test_pad_to_square_puts_the_odd_pixel_after(shape):
    image = np.random.default_rng(0).uniform(1, 255, (1,) + shape).astype(np.float32)
    np.testing.assert_array_equal(pad_to_square(image).numpy()[0], _numpy_pad_to_square(image[0]))


def test_preprocessing_pads_resizes_and_normalises_as_face_api():
    image = np.random.default_rng(1).uniform(0, 255, (13, 20, 3)).astype(np.float32)
    expected = (_numpy_resize_bilinear(_numpy_pad_to_square(image).astype(np.float64), 16)
                - np.array(FACE_RESNET_MEAN_RGB)) / 255.0
    got = FaceResNetPreprocess(16)(image[None]).numpy()[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # A square image of the right size is only normalised; a grey one is repeated to RGB first.
    grey = np.random.default_rng(2).uniform(0, 255, (1, 16, 16, 1)).astype(np.float32)
    np.testing.assert_allclose(FaceResNetPreprocess(16)(grey).numpy()[0],
                               (np.repeat(grey[0], 3, -1) - np.array(FACE_RESNET_MEAN_RGB)) / 255.0, atol=1e-5)


def test_downsample_shortcut_pools_and_zero_fills_channels():
    x = np.random.default_rng(3).normal(size=(2, 5, 5, 3)).astype(np.float32)
    expected = np.zeros((2, 2, 2, 6), np.float32)
    expected[..., :3] = x[:, :4, :4].reshape(2, 2, 2, 2, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(DownsampleShortcut(6)(x).numpy(), expected, atol=1e-6)


def test_shapes_of_the_public_contract():
    top = build_face_resnet()
    assert tuple(top.input.shape) == (None, 150, 150, 3) and tuple(top.output.shape) == (None, 128)
    features = build_face_resnet(include_top=False)
    assert tuple(features.output.shape) == (None, 4, 4, 256)
    # Any image size: padded to a square and resized to 150, as face-api does.
    anysize = build_face_resnet(input_shape=(None, None, 3), size=150)
    for shape in [(1, 48, 48, 3), (1, 60, 90, 3)]:
        assert anysize(np.zeros(shape, np.float32)).shape == (1, 128)
    assert tuple(build_face_resnet(include_top=False, input_shape=(224, 224, 3)).output.shape) == (None, 6, 6, 256)
    assert map_sides(150) == [35, 17, 8, 4, 2] and map_sides(104)[-1] == 1
    with pytest.raises(ValueError, match="at least 103x103"):
        build_face_resnet(input_shape=(96, 96, 3))
    with pytest.raises(ValueError, match="without its top needs images of at least [0-9]+x[0-9]+, got 48x48"):
        build_face_resnet(include_top=False, input_shape=(48, 48, 3))


def _face_api_name(layer_name: str, index: int) -> str:
    """Our layer and variable index as face-api names the tensor."""
    if layer_name == "fc":
        return "fc"
    base, kind = layer_name.rsplit("_", 1)
    if base[-6:] in ("_conv1", "_conv2"):
        base = f"{base[:-6]}/{base[-5:]}"
    role = {"conv": ("conv/filters", "conv/bias"), "scale": ("scale/weights", "scale/biases")}[kind][index]
    return f"{base}/{role}"


def _randomised(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([rng.normal(1.0 if "scale" in w.path and w.name == "scale" else 0.0, 0.05, w.shape)
                               .astype(np.float32) for w in layer.weights])
    return model


def _manifest_of(model, folder, shards=2):
    tensors = {_face_api_name(layer.name, i): np.asarray(w)
               for layer in model.layers for i, w in enumerate(layer.get_weights())}
    quantize = [name for name in tensors if name.endswith("scale/weights")]
    return write_manifest(folder, tensors, quantize=quantize, shards=shards, stem="face_recognition_model")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    model = _randomised(build_face_resnet(input_shape=(104, 104, 3)))
    folder = tmp_path_factory.mktemp("face-api")
    manifest = _manifest_of(model, folder)
    images = np.random.default_rng(4).uniform(0, 255, (2, 104, 104, 3)).astype(np.float32)
    # Read back through the manifest: the quantized scale weights are what face-api would use.
    loaded = build_face_resnet(weights=manifest, input_shape=(104, 104, 3))
    return manifest, images, loaded(images).numpy()


def test_manifest_and_converted_file_give_the_same_network(tmp_path, reference):
    manifest, images, expected = reference
    converted = convert_face_resnet(manifest, tmp_path / "face-resnet.weights.h5")
    again = build_face_resnet(weights=converted, input_shape=(104, 104, 3))
    np.testing.assert_array_equal(again(images).numpy(), expected)
    # Without the top the same weights load, fc and the last block left out.
    features = build_face_resnet(weights=converted, include_top=False, input_shape=(104, 104, 3))
    assert "fc" not in [layer.name for layer in features.layers]


def test_weights_reach_the_layers_face_api_names(reference):
    from dam_cnn_tf.weights.tfjs import read_tfjs_weights

    manifest, _, _ = reference
    tensors = read_tfjs_weights(manifest)
    model = build_face_resnet(weights=manifest, input_shape=(104, 104, 3))
    loaded = {_face_api_name(layer.name, i): w for layer in model.layers for i, w in enumerate(layer.get_weights())}
    assert sorted(loaded) == sorted(tensors)
    for name, value in tensors.items():
        np.testing.assert_array_equal(loaded[name], value)


def test_cli_converts_a_manifest(tmp_path, reference):
    manifest, images, expected = reference
    out = tmp_path / "out.weights.h5"
    result = invoke("weights", "convert", manifest, out)
    assert out.is_file() and "face-resnet" in result.output
    np.testing.assert_array_equal(build_face_resnet(weights=out, input_shape=(104, 104, 3))(images).numpy(), expected)


def test_incompatible_weights_are_refused_before_anything_changes(tmp_path, reference):
    manifest, _, _ = reference
    model = build_face_resnet(input_shape=(104, 104, 3))
    before = [w.copy() for w in model.get_weights()]
    from dam_cnn_tf.weights.tfjs import read_tfjs_weights

    stem_only = {name: value for name, value in read_tfjs_weights(manifest).items() if name.startswith("conv32_down/")}
    with pytest.raises(MissingLayerError, match="no weights for layer"):
        load_face_resnet_weights(model, write_manifest(tmp_path / "short", stem_only))
    bad = dict(read_tfjs_weights(manifest))
    bad["conv256_2/conv2/conv/bias"] = np.ones(5, np.float32)
    with pytest.raises(WeightsShapeError, match="conv256_2_conv2_conv"):
        load_face_resnet_weights(model, write_manifest(tmp_path / "bad", bad))
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_keras_file_round_trip(tmp_path, reference):
    import keras

    manifest, images, expected = reference
    model = build_face_resnet(weights=manifest, input_shape=(104, 104, 3))
    model.save(tmp_path / "face_resnet.keras")
    again = keras.saving.load_model(tmp_path / "face_resnet.keras")
    np.testing.assert_allclose(again(images).numpy(), expected, atol=1e-6)


def test_frozen_baseline_sees_the_public_feature_map(reference):
    """The frozen-feature baseline's features are build_face_resnet(include_top=False)'s map."""
    from dam_cnn_tf.evaluation.baselines import available, frozen_features
    from dam_cnn_tf.recipes.options import TrainConfig

    manifest, images, _ = reference
    config = TrainConfig(backbone="face-resnet", backbone_weights=str(manifest), input_size=104)
    assert [b.key for b in available(config)] == ["baseline-pixels", "baseline-frozen"]
    faces = np.clip(images, 0, 255).astype(np.uint8)
    expected = build_face_resnet(weights=manifest, include_top=False, input_shape=(104, 104, 3))(
        faces.astype(np.float32)).numpy()
    got = frozen_features(faces, config)
    assert got.shape == (2, int(np.prod(expected.shape[1:])))
    # predict() and a direct call sum in different orders: 2e-4 on features of magnitude ~100.
    np.testing.assert_allclose(got, expected.reshape(2, -1), rtol=1e-4, atol=1e-3)


def test_stage1_model_loads_and_freezes_the_backbone(reference):
    from dam_cnn_tf.recipes.options import ConfigError, TrainConfig
    from dam_cnn_tf.training.stages import build_stage1_model

    manifest, images, _ = reference
    config = TrainConfig(backbone="face-resnet", backbone_weights=str(manifest), input_size=104, fc_units=8,
                         classes=6, fine_tune_from="conv256_down_conv1_conv")
    model = build_stage1_model(config, 6)
    backbone = model.get_layer("backbone")
    expected = build_face_resnet(weights=manifest, include_top=False, input_shape=(104, 104, 3))
    np.testing.assert_allclose(backbone(images).numpy(), expected(images).numpy(), atol=1e-6)
    trained = {layer.name for layer in backbone.layers if layer.trainable and layer.weights}
    assert "conv256_down_conv1_conv" in trained and "conv128_2_conv2_conv" not in trained
    assert "conv32_down_conv" not in trained
    with pytest.raises(ConfigError, match="--fine-tune-from: .* no layer 'conv9'"):
        build_stage1_model(config.replace(fine_tune_from="conv9"), 6)


@pytest.fixture
def real_manifest():
    from conftest import shared_data_dir

    path = shared_data_dir().parent / "weights" / "face-api" / MANIFEST_NAME
    if not path.is_file():
        pytest.skip(f"face-api weights not present at {path}")
    return path


@pytest.mark.realdata
def test_real_weights_fill_every_layer(real_manifest):
    from dam_cnn_tf.weights.tfjs import read_tfjs_weights

    tensors = read_tfjs_weights(real_manifest)
    model = build_face_resnet(weights=real_manifest)
    assert model.count_params() == sum(t.size for t in tensors.values()) == 5_614_592


def test_train_and_export_with_face_resnet_from_the_command_line(tmp_path, reference):
    import keras

    from cli_helpers import TINY_OPTIONS, read_json, synthetic_folder

    manifest, _, _ = reference
    faces = synthetic_folder(tmp_path / "faces", size=64)
    run = tmp_path / "run"
    invoke("train", "--data", faces, "--run-dir", run, *TINY_OPTIONS, "--backbone", "face-resnet",
           "--backbone-weights", manifest, "--input-size", "64", "--fine-tune-from", "conv256_down_conv1_conv")
    config = read_json(run / "config.json")
    assert config["backbone"] == "face-resnet" and config["fine_tune_from"] == "conv256_down_conv1_conv"
    model = keras.saving.load_model(run / "model.keras")
    # The frozen early layers still hold face-api's weights after both stages; the trained ones moved.
    expected = build_face_resnet(weights=manifest, include_top=False, input_shape=(64, 64, 3))
    trained = {w.path: np.asarray(w) for w in model.weights}
    for layer, moved in (("conv32_down_conv", False), ("conv256_2_conv2_conv", True)):
        kernel = next(value for path, value in trained.items() if f"/{path}".endswith(f"/{layer}/kernel"))
        assert np.array_equal(kernel, expected.get_layer(layer).kernel.numpy()) != moved, layer
    out = tmp_path / "export"
    invoke("export", run / "model.keras", out)
    assert (out / "1" / "saved_model.pb").is_file()


def test_unusable_face_resnet_weights_stop_before_any_data_is_read(tmp_path):
    bad = tmp_path / "face_recognition_model-weights_manifest.json"
    bad.write_text('[{"paths": ["../x.bin"], "weights": []}]')
    from cli_helpers import synthetic_folder

    result = invoke("train", "--data", synthetic_folder(tmp_path / "faces"), "--backbone", "face-resnet", "--backbone-weights", bad,
                    "--run-dir", tmp_path / "run", expect_ok=False)
    assert result.exit_code != 0
    assert "leaves the manifest's folder" in result.output and len(result.output.strip().splitlines()) == 1
