"""The model code on whichever Keras backend runs the tests, and without TensorFlow at all.

``python -m pytest -m backends`` under ``KERAS_BACKEND=tensorflow`` (the default) and ``jax``
(README, Set up); ``torch`` where PyTorch is installed.
"""

import importlib.util
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from keras import ops

from face_api_reference import numpy_pad_to_square, numpy_resize_bilinear

pytestmark = pytest.mark.backends

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(script: str, backend: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True, text=True,
                          timeout=600, cwd=ROOT)


NO_TENSORFLOW = """
    import importlib.abc, sys

    class NoTensorFlow(importlib.abc.MetaPathFinder):  # as on a machine without it
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                raise ModuleNotFoundError(f"No module named {name!r}")

    sys.meta_path.insert(0, NoTensorFlow())
"""


def test_model_code_imports_builds_and_trains_without_tensorflow(tmp_path):
    pytest.importorskip("jax")
    script = NO_TENSORFLOW + f"""
    import importlib, pkgutil
    import numpy as np, keras
    import dam_cnn_tf, dam_cnn_tf.layers, dam_cnn_tf.models, dam_cnn_tf.optimizers
    # Every module of the model code; end-to-end training alone is TensorFlow's (README, Backends).
    for package in (dam_cnn_tf.layers, dam_cnn_tf.models):
        for module in pkgutil.iter_modules(package.__path__):
            if module.name != "end_to_end":
                importlib.import_module(f"{{package.__name__}}.{{module.name}}")
    from dam_cnn_tf import MPVSNet, build_face_resnet, build_vgg_serd, compile_vgg_serd
    from dam_cnn_tf.models.dam_cnn import build_dam_cnn
    from dam_cnn_tf.models.vgg_serd import salient_feature_model

    rng = np.random.default_rng(0)
    images, labels = rng.uniform(0, 255, (8, 64, 64, 3)).astype("float32"), rng.integers(0, 3, 8)
    for backbone in ("vgg-face", "face-resnet"):
        if backbone == "vgg-face":
            model = build_vgg_serd(3, input_shape=(64, 64, 3), backbone_widths=(4, 4, 4, 4, 4), fc_units=8)
        else:
            model = build_vgg_serd(3, input_shape=(64, 64, 3), fc_units=8,
                                   backbone=build_face_resnet(include_top=False, input_shape=(64, 64, 3), name="backbone"))
        compile_vgg_serd(model)
        model.fit(images, labels, batch_size=4, epochs=1, verbose=0)
        features = np.asarray(salient_feature_model(model).predict(images, verbose=0)["features"])
        net = MPVSNet(features.shape[1], 3, encoder_units=6, num_paths=2, fc_units=5, per_path_updates=backbone == "face-resnet")
        net.mpae.adapt(features)
        net.compile()
        targets = np.stack([features[::-1], features], axis=1)
        net.fit(features, {{"label": labels, "targets": targets}}, batch_size=4, epochs=1, verbose=0)
        inference = build_dam_cnn(model, net)
        path = r"{tmp_path}" + f"/{{backbone}}.keras"
        inference.save(path)
        loaded = keras.models.load_model(path)
        np.testing.assert_allclose(np.asarray(loaded.predict(images, verbose=0)["probabilities"]),
                                   np.asarray(inference.predict(images, verbose=0)["probabilities"]), rtol=1e-5, atol=1e-6)
    assert "tensorflow" not in sys.modules
    print("trained on", keras.backend.backend())
    """
    proc = _python(script, "jax")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trained on jax" in proc.stdout


@pytest.mark.parametrize("shape", [(13, 20, 3), (20, 13, 1), (16, 16, 3), (9, 9, 3)])
def test_face_resnet_preprocessing_matches_face_api(shape):
    from dam_cnn_tf.backbones.face_resnet.model import FACE_RESNET_MEAN_RGB, FaceResNetPreprocess

    image = np.random.default_rng(1).uniform(0, 255, shape).astype(np.float32)
    rgb = np.repeat(image, 3, -1) if shape[-1] == 1 else image
    expected = (numpy_resize_bilinear(numpy_pad_to_square(rgb).astype(np.float64), 16)
                - np.array(FACE_RESNET_MEAN_RGB)) / 255.0
    got = ops.convert_to_numpy(FaceResNetPreprocess(16)(image[None]))[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_a_checkpoint_written_on_tensorflow_loads_on_this_backend(tmp_path):
    """Files keep one layout on every backend: the head's optimizer under ``optimizer``, the
    MPAE's under ``mpae_optimizer``, as TensorFlow has always written them."""
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("TensorFlow is not installed")
    weights = tmp_path / "mpvs_net.weights.h5"
    script = f"""
    import numpy as np, keras
    from dam_cnn_tf import MPVSNet
    from test_backends import small_net, small_batch
    s, labels, targets = small_batch()
    net = small_net()
    net.fit(s, {{"label": labels, "targets": targets}}, batch_size=4, epochs=2, verbose=0)
    net.save_weights(r"{weights}")
    np.save(r"{tmp_path / 'head.npy'}", np.asarray(net.optimizer.variables[-1]))
    np.save(r"{tmp_path / 'mpae.npy'}", np.asarray(net.mpae_optimizer.variables[-1]))
    np.save(r"{tmp_path / 'out.npy'}", np.asarray(net(s)))
    """
    proc = _python(script.replace("from test_backends", "import sys; sys.path.insert(0, 'tests')\n    from test_backends"),
                   "tensorflow")
    assert proc.returncode == 0, proc.stderr[-3000:]
    s, _, _ = small_batch()
    net = small_net()
    net.load_weights(weights)
    head, mpae = net.optimizers()
    np.testing.assert_allclose(ops.convert_to_numpy(net(s)), np.load(tmp_path / "out.npy"), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ops.convert_to_numpy(head.variables[-1]), np.load(tmp_path / "head.npy"))
    np.testing.assert_array_equal(ops.convert_to_numpy(mpae.variables[-1]), np.load(tmp_path / "mpae.npy"))
    assert int(ops.convert_to_numpy(mpae.iterations)) == 4 and int(ops.convert_to_numpy(net.optimizer.iterations)) == 4


def small_batch():
    rng = np.random.default_rng(5)
    return (rng.gamma(2.0, 1.0, (8, 10)).astype("float32"), rng.integers(0, 3, 8),
            rng.gamma(2.0, 1.0, (8, 2, 10)).astype("float32"))


def small_net():
    from dam_cnn_tf import MPVSNet

    keras.utils.set_random_seed(3)
    net = MPVSNet(10, 3, encoder_units=6, num_paths=2, fc_units=5)
    net.mpae.adapt(small_batch()[0])
    net.compile()
    return net


@pytest.mark.parametrize("policy, per_path", [("mixed_float16", False), ("mixed_float16", True), ("mixed_bfloat16", False)])
def test_mixed_precision_steps_update_every_weight(policy, per_path):
    """Under mixed_float16 both optimizers scale their losses (LossScaleOptimizer), whose update
    branches on the gradients being finite: JAX needs it stateless."""
    from dam_cnn_tf import MPVSNet

    s, labels, targets = small_batch()
    keras.utils.set_random_seed(3)
    net = MPVSNet(10, 3, encoder_units=6, num_paths=2, fc_units=5, per_path_updates=per_path, dtype=policy)
    net.mpae.adapt(s)
    net.compile()
    before = [ops.convert_to_numpy(v) for v in net.trainable_variables]
    history = net.fit(s, {"label": labels, "targets": targets}, batch_size=4, epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    for start, v in zip(before, net.trainable_variables):
        assert keras.backend.standardize_dtype(v.dtype) == "float32"
        assert not np.array_equal(start, ops.convert_to_numpy(v)), v.path
