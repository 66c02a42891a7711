"""Training under ``tf.distribute.MirroredStrategy`` over two logical CPU devices."""

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from dam_cnn_tf.training.distribute import make_strategy
    from dam_cnn_tf import MPVSNet, build_vgg_serd, compile_vgg_serd

    strategy = make_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 3, 16)
    with strategy.scope():
        vgg_serd = build_vgg_serd(3, input_shape=(32, 32, 3), fc_units=8, backbone_widths=(4, 4, 8, 8, 8))
        compile_vgg_serd(vgg_serd, learning_rate=1e-3)
    history = vgg_serd.fit(images, labels, batch_size=8, epochs=2, verbose=0).history
    assert all(np.isfinite(history["loss"])), history

    s = rng.gamma(2.0, 1.0, (16, 10)).astype("float32")
    targets = rng.gamma(2.0, 1.0, (16, 2, 10)).astype("float32")
    with strategy.scope():
        net = MPVSNet(10, 3, encoder_units=6, num_paths=2, fc_units=5, dropout=0.0)
        net.compile(optimizer=keras.optimizers.SGD(0.1), mpae_optimizer=keras.optimizers.SGD(0.1))
    net.mpae.adapt(s)
    ds = tf.data.Dataset.from_tensor_slices((s, {"label": labels, "targets": targets})).batch(8)
    before = net.mpae.encoder.kernel.numpy().copy()
    history = net.fit(ds, epochs=2, verbose=0).history
    assert all(np.isfinite(history["loss"])), history
    assert int(net.mpae_optimizer.iterations.numpy()) == 4
    assert not np.allclose(before, net.mpae.encoder.kernel.numpy())

    # The distributed step equals the single-device step: gradients are averaged, not summed.
    keras.utils.set_random_seed(5)
    with strategy.scope():
        a = MPVSNet(10, 3, encoder_units=6, num_paths=2, fc_units=5, dropout=0.0)
        a.compile(optimizer=keras.optimizers.SGD(0.1), mpae_optimizer=keras.optimizers.SGD(0.1))
    keras.utils.set_random_seed(5)
    b = MPVSNet(10, 3, encoder_units=6, num_paths=2, fc_units=5, dropout=0.0)
    b.compile(optimizer=keras.optimizers.SGD(0.1), mpae_optimizer=keras.optimizers.SGD(0.1))
    b.set_weights(a.get_weights())
    one_batch = tf.data.Dataset.from_tensor_slices((s, {"label": labels, "targets": targets})).batch(16)
    a.fit(one_batch, epochs=1, verbose=0)
    b.fit(one_batch, epochs=1, verbose=0)
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)

    # The default optimizers (fused Adam) update every replica's copy alike.
    with strategy.scope():
        fused = MPVSNet(10, 3, encoder_units=6, num_paths=2, fc_units=5, dropout=0.0)
        fused.compile()
    fused.mpae.adapt(s)
    before = [v.numpy().copy() for v in fused.trainable_variables]
    fused.fit(ds, epochs=1, verbose=0)
    assert type(fused.mpae_optimizer).__name__ == "FusedAdam"
    for variable, old in zip(fused.trainable_variables, before):
        copies = [c.numpy() for c in variable.value.values]
        assert len(copies) == 2 and not np.allclose(copies[0], old)
        np.testing.assert_array_equal(copies[0], copies[1])
    print("MIRRORED OK")
    """
)


def test_mirrored_strategy_over_two_logical_cpus():
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300,
                            cwd=root, env={"PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "2",
                                           "PATH": "/usr/bin:/bin"})
    assert "MIRRORED OK" in result.stdout, result.stderr[-3000:]
