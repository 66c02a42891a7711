"""Stage 2 as end-to-end training (``--end-to-end``, beyond the paper): see
``dam_cnn_tf.models.end_to_end``. Stage 1 still runs first and initialises the backbone."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from dam_cnn_tf.data.pipeline import finish_pipeline
from dam_cnn_tf.models.end_to_end import EndToEndDAMCNN
from dam_cnn_tf.training.distribute import make_optimizer


def image_pair_dataset(images: np.ndarray, labels, targets: np.ndarray, batch_size: int, shuffle: bool,
                       seed: int = 0) -> tf.data.Dataset:
    """Batches of ``(images, {"label", "target_images"})`` gathered in the graph, per batch.

    ``images``: uint8 ``(n, H, W, 3)`` faces at the model's input size; ``targets``: ``(n, N)``
    same-class indices (``pairs.sample_pair_targets``).
    """
    pixels = tf.constant(images)
    label_table = tf.constant(np.asarray(labels, np.int32))
    target_table = tf.constant(np.asarray(targets, np.int64))
    indices = tf.data.Dataset.range(len(images))
    if shuffle:
        indices = indices.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)

    def gather(batch):
        anchors = tf.cast(tf.gather(pixels, batch), tf.float32)
        target_images = tf.cast(tf.gather(pixels, tf.gather(target_table, batch)), tf.float32)
        return anchors, {"label": tf.gather(label_table, batch), "target_images": target_images}

    return finish_pipeline(indices.batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE))


def end_to_end_datasets(config, train, val, train_targets, val_targets):
    """Training and validation batches, with the same-class targets stage 2 drew for each part."""
    batch = config.stage2_batch_size
    return (image_pair_dataset(train.images, train.labels, train_targets, batch, True, config.seed),
            image_pair_dataset(val.images, val.labels, val_targets, batch, False))


def make_end_to_end(front, net, config) -> EndToEndDAMCNN:
    model = EndToEndDAMCNN(front, net)
    model.compile(
        optimizer=make_optimizer(config.optimizer, config.alpha_fc),
        mpae_optimizer=make_optimizer(config.optimizer, config.alpha_m),
        front_optimizer=make_optimizer(config.optimizer, config.alpha_s),
        jit_compile=config.jit_compile,
    )
    return model
