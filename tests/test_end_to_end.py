"""End-to-end training (beyond the paper): each part's update follows its own objective."""

import numpy as np
import keras
import tensorflow as tf

from dam_cnn_tf import MPVSNet, build_vgg_serd, salient_feature_model
from dam_cnn_tf.models.end_to_end import EndToEndDAMCNN
from dam_cnn_tf.recipes.options import TrainConfig
from dam_cnn_tf.training.end_to_end import image_pair_dataset
from dam_cnn_tf.training.stages import build_stage1_model

from cli_helpers import TINY_OPTIONS, invoke, read_json


def tiny_parts():
    vgg_serd = build_vgg_serd(3, input_shape=(32, 32, 3), fc_units=8, backbone_widths=(4, 4, 8, 8, 8), dropout=0.0)
    net = MPVSNet(8, 3, encoder_units=6, num_paths=2, fc_units=5, dropout=0.0)
    return vgg_serd, net


def test_reconstruction_never_reaches_the_backbone():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (6, 32, 32, 3)).astype("uint8")
    labels = np.array([0, 0, 1, 1, 2, 2])
    targets = np.array([[1, 1], [0, 0], [3, 3], [2, 2], [5, 5], [4, 4]])
    vgg_serd, net = tiny_parts()
    front = salient_feature_model(vgg_serd)
    net.mpae.adapt(front.predict(images.astype("float32"), verbose=0)["features"])
    model = EndToEndDAMCNN(front, net)
    model.compile(optimizer=keras.optimizers.SGD(1.0), mpae_optimizer=keras.optimizers.SGD(1.0),
                  front_optimizer=keras.optimizers.SGD(1.0))
    x, y = next(iter(image_pair_dataset(images, labels, targets, 6, shuffle=False)))
    np.testing.assert_array_equal(y["target_images"][0, 0].numpy(), images[1].astype("float32"))

    kernel = vgg_serd.get_layer("serd").attention_conv.kernel
    with tf.GradientTape() as tape:
        features = front(x, training=True)["features"]
        probs = net.classify(net.mpae.encode(features))
        ce = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y["label"], probs))
        want = ce + tf.add_n(front.losses)
    expected = tape.gradient(want, kernel).numpy()
    before = kernel.numpy().copy()
    model.train_on_batch(x, y)
    np.testing.assert_allclose(before - kernel.numpy(), expected, rtol=1e-4, atol=1e-6)


def test_end_to_end_option_trains_a_run(tmp_path):
    run = tmp_path / "run"
    invoke("train", "--run-dir", run, "--end-to-end", *TINY_OPTIONS)
    state = read_json(run / "state.json")
    assert state["info"]["stage2"]["end_to_end"] is True
    assert state["completed"] == ["stage1", "stage2", "model"]
    # Stage 2 changed the backbone: trainable weights differ from stage 1's (BatchNorm's moving
    # statistics change in any forward pass in training mode, so they are not compared).
    config = TrainConfig(**read_json(run / "config.json")).replace(backbone_weights=None)
    num_classes = len(read_json(run / "classes.json")["class_names"])

    def trained(stage):
        model = build_stage1_model(config, num_classes)
        model.optimizer.build(model.trainable_variables)  # the weights file may hold its state
        model.load_weights(run / stage / "vgg_serd.weights.h5")
        return [w.numpy() for w in model.trainable_weights]

    assert any(not np.array_equal(p, q) for p, q in zip(trained("stage1"), trained("stage2")))
