"""tf.data input pipelines: images for stage 1, salient-feature pairs for stage 2.

``image_dataset`` feeds VGG-SERD (paper §3.1-3.2): in-graph resize, VGG-Face preprocessing and
light augmentation. ``pair_dataset`` feeds the MPVS-Net (§3.3): anchors ``s_i`` with their
``N`` same-class targets ``s_i^j`` (Eq. 8), gathered a whole batch at a time from an in-memory
array or a memory-mapped ``FeatureCache``. Neither does Python work per sample.
"""

from __future__ import annotations

import functools
from typing import Callable, Optional, Union

import numpy as np
import tensorflow as tf

from dam_cnn_tf.data.resize import decode_rgb, resize_like_faces
from dam_cnn_tf.data.feature_cache import FeatureCache, FeatureCacheError, write_feature_cache  # noqa: F401

AUTOTUNE = tf.data.AUTOTUNE
# In-memory features up to this size are gathered with tf.gather from a tensor; larger arrays
# and memory maps are read with one NumPy fancy-indexing call per batch.
IN_GRAPH_FEATURE_LIMIT_BYTES = 1 << 30


class PipelineError(ValueError):
    """Inconsistent arrays or options given to a pipeline."""


def finish_pipeline(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Prefetch, with tf.data's model-based autotuner off.

    The batches here are one gather or a few reads each, so there is nothing to tune, and on a
    small CPU the autotuner's thread stalled 1 in 3 epochs by 0.4 s (and the end of a feature
    extraction pass by 2-4 s) when the iterator was deleted (docs/performance.md). Parallel maps
    keep their default parallelism, one call per core.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(AUTOTUNE).with_options(options)


def _augment(images, seeds, max_brightness):
    """Random horizontal flip and brightness shift, per image, from stateless seeds (reproducible)."""
    flip_seed, bright_seed = seeds[0], seeds[1]
    batch = tf.shape(images)[0]
    flip = tf.random.stateless_uniform([batch, 1, 1, 1], seed=flip_seed) < 0.5
    images = tf.where(flip, tf.reverse(images, axis=[2]), images)
    delta = tf.random.stateless_uniform([batch, 1, 1, 1], seed=bright_seed, minval=-1.0, maxval=1.0)
    return tf.clip_by_value(images + delta * max_brightness, 0.0, 255.0)


def image_dataset(
    images,
    labels=None,
    batch_size: int = 32,
    image_size: int = 224,
    shuffle: bool = False,
    seed: int = 0,
    augment: bool = False,
    preprocess: bool = True,
    drop_remainder: bool = False,
    max_brightness: float = 20.0,
    repeat: bool = False,
) -> tf.data.Dataset:
    """Batches of ``(images, labels)`` (or images alone when ``labels`` is None).

    ``images``: uint8 ``(N, H, W, 3)`` or grey ``(N, H, W)`` / ``(N, H, W, 1)`` in memory, or a
    list of image file paths (decoded in the graph; grey becomes RGB). Each batch is resized to
    ``image_size`` as faces are (``resize_like_faces``: area averaging to shrink, bilinear to enlarge), optionally augmented (random flip, brightness shift of
    up to ``max_brightness`` grey levels, different each epoch, reproducible by ``seed``), then
    mapped to the VGG-Face convention with ``preprocess_input`` when ``preprocess`` (else float32
    RGB 0-255). Labels come out as int32. ``repeat``: endless passes, each in a new order (for
    ``fit`` with ``steps_per_epoch``).
    """
    from dam_cnn_tf.backbones.vgg_face.model import preprocess_input

    from_paths = not isinstance(images, np.ndarray)
    if from_paths:
        images = [str(p) for p in images]
    elif images.ndim == 3:
        images = images[..., None]
    n = len(images)
    if not from_paths and (images.ndim != 4 or images.shape[-1] not in (1, 3)):
        raise PipelineError(f"images must be (N, H, W, 3) or (N, H, W[, 1]), got {images.shape}")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise PipelineError(f"{labels.shape[0] if labels.ndim else 0} labels for {n} images")
    if n == 0 or batch_size < 1 or image_size < 1:
        raise PipelineError(f"need images, batch_size >= 1 and image_size >= 1 (got {n}, {batch_size}, {image_size})")
    size = (int(image_size), int(image_size))

    def to_rgb_float(batch):
        batch = tf.cast(batch, tf.float32)
        if batch.shape[-1] == 1:
            batch = tf.repeat(batch, 3, axis=-1)
        return batch

    indices = tf.data.Dataset.range(n)
    if shuffle:
        indices = indices.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        indices = indices.repeat()
    if from_paths:
        path_table = tf.constant(images)

        def load(i):
            data = tf.io.read_file(path_table[i])
            return resize_like_faces(decode_rgb(data), size)

        ds = indices.map(lambda i: (i, load(i)), num_parallel_calls=AUTOTUNE, deterministic=True)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    else:
        table = tf.constant(images)
        # Faces prepared at the input size (the usual case) need no resampling.
        same_size = tuple(images.shape[1:3]) == size

        def gather_batch(i):
            batch = to_rgb_float(tf.gather(table, i))
            return i, (batch if same_size else resize_like_faces(batch, size))

        ds = indices.batch(batch_size, drop_remainder=drop_remainder).map(
            gather_batch,
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )
    if augment:
        # Two stateless seeds per batch; a fresh stream each epoch, the same streams for the same seed.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(4)
        seeds = seeds.map(lambda s: tf.reshape(s, [2, 2]))
        ds = tf.data.Dataset.zip(ds, seeds).map(
            lambda batch, s: (batch[0], _augment(batch[1], s, max_brightness)),
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )
    if preprocess:
        ds = ds.map(lambda i, x: (i, preprocess_input(x)), num_parallel_calls=AUTOTUNE, deterministic=True)
    if labels is None:
        ds = ds.map(lambda i, x: x)
    else:
        label_table = tf.constant(labels.astype(np.int32))
        ds = ds.map(lambda i, x: (x, tf.gather(label_table, i)))
    return finish_pipeline(ds)


def trunk_dataset(
    maps: np.ndarray,
    labels,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
    mirror: bool = False,
    repeat: bool = False,
    in_graph_limit_bytes: int = IN_GRAPH_FEATURE_LIMIT_BYTES,
    shift: int = 0,
) -> tf.data.Dataset:
    """Batches of ``(trunk maps, labels)`` from a trunk cache's ``(n, 2, h, w, c)`` array.

    Each face comes as it is (``maps[:, 0]``), or, with ``mirror``, as itself or its mirror
    image with equal chance, drawn anew each pass from ``seed`` (the cached form of a random
    horizontal flip). With ``shift`` each map is also moved by a whole number of cells, up to
    ``shift`` in each direction, the edge cells repeated (the cached form of a random
    translation: the trunk's convolutions move with the face). ``repeat``: endless passes,
    each in a new order.
    """
    maps = np.asarray(maps) if not isinstance(maps, np.memmap) else maps
    if maps.ndim != 5 or maps.shape[1] != 2:
        raise PipelineError(f"trunk maps must be (n, 2, h, w, c), got {maps.shape}")
    n = len(maps)
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise PipelineError(f"{labels.shape} labels for {n} trunk maps")
    if n == 0 or batch_size < 1:
        raise PipelineError(f"need trunk maps and batch_size >= 1 (got {n}, {batch_size})")
    shape = list(maps.shape[2:])
    indices = tf.data.Dataset.range(n)
    if shuffle:
        indices = indices.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        indices = indices.repeat()
    if shift < 0:
        raise PipelineError(f"shift must be a non-negative number of cells, got {shift}")
    ds = indices.batch(batch_size)

    def draw(i, r):
        flip = r % 2 if mirror else tf.zeros_like(i)
        if not shift:
            return i, flip
        span = 2 * shift + 1
        return i, flip, (r // 2) % span - shift, (r // (2 * span)) % span - shift

    if mirror or shift:
        # One random integer per face: its lowest bit is the flip, the rest its shift.
        draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(batch_size)
        ds = tf.data.Dataset.zip(ds, draws).map(draw)
    else:
        ds = ds.map(lambda i: (i, tf.zeros_like(i)))
    if maps.nbytes <= in_graph_limit_bytes and not isinstance(maps, np.memmap):
        table = tf.constant(maps, tf.float32)

        def read(i, flip):
            return tf.gather_nd(table, tf.stack([i[: tf.size(flip)], flip[: tf.size(i)]], axis=1))
    else:
        def read(i, flip):
            rows = tf.numpy_function(lambda a, b: np.asarray(maps[a, b[: len(a)]], np.float32), [i, flip],
                                     tf.float32, stateful=False)
            return tf.ensure_shape(rows, [None, *shape])
    label_table = tf.constant(labels.astype(np.int32))
    if shift:
        ds = ds.map(lambda i, flip, dy, dx: (translate_maps(read(i, flip), dy, dx), tf.gather(label_table, i)),
                    num_parallel_calls=AUTOTUNE, deterministic=True)
    else:
        ds = ds.map(lambda i, flip: (read(i, flip), tf.gather(label_table, i)), num_parallel_calls=AUTOTUNE,
                    deterministic=True)
    return finish_pipeline(ds)


def translate_maps(maps, dy, dx):
    """``(B, h, w, c)`` maps, each moved ``dy[b]`` cells down and ``dx[b]`` right; the cells that
    come in repeat the edge."""
    height, width = tf.shape(maps)[1], tf.shape(maps)[2]
    rows = tf.clip_by_value(tf.range(height, dtype=dy.dtype)[None, :] - dy[:, None], 0, tf.cast(height, dy.dtype) - 1)
    cols = tf.clip_by_value(tf.range(width, dtype=dx.dtype)[None, :] - dx[:, None], 0, tf.cast(width, dx.dtype) - 1)
    maps = tf.gather(maps, rows, axis=1, batch_dims=1)
    return tf.gather(maps, cols, axis=2, batch_dims=1)


def _check_targets(targets, n) -> np.ndarray:
    targets = np.asarray(targets)
    if targets.ndim != 2 or targets.shape[0] != n or not np.issubdtype(targets.dtype, np.integer):
        raise PipelineError(f"targets must be an integer array (n={n}, N), got {targets.shape} {targets.dtype}")
    if targets.size and (targets.min() < 0 or targets.max() >= n):
        raise PipelineError(f"targets index outside [0, {n})")
    return targets.astype(np.int64)


def pair_dataset(
    features: Union[np.ndarray, FeatureCache],
    labels=None,
    targets: Union[np.ndarray, Callable[[int], np.ndarray]] = None,
    batch_size: int = 32,
    shuffle: bool = True,
    seed: int = 0,
    scale=None,
    epochs: Optional[int] = None,
    drop_remainder: bool = False,
    with_labels: bool = True,
    in_graph_limit_bytes: int = IN_GRAPH_FEATURE_LIMIT_BYTES,
    first_epoch: int = 0,
    repeat: bool = False,
) -> tf.data.Dataset:
    """Batches of ``(s, {"label": y, "targets": t})`` for stage 2 (paper §3.3, Eq. 8-11).

    ``s``: ``(B, D)`` float32 anchors ``features[idx]``; ``y``: ``(B,)`` int32 labels;
    ``t``: ``(B, N, D)`` float32, exactly ``features[targets[idx]]``. ``with_labels=False``
    gives ``(s, t)`` for training a bare ``MultiPathAutoencoder``.

    ``features``: ``(n, D)`` array (in memory or ``np.memmap``) or a ``FeatureCache`` (its
    labels are used when ``labels`` is None). ``targets``: ``(n, N)`` indices (see
    ``pairs.sample_pair_targets``), or a function ``epoch -> (n, N)`` for fresh targets each
    epoch; the function needs ``epochs`` and the dataset then runs epochs ``first_epoch`` to
    ``epochs - 1`` in one pass (use ``steps_per_epoch`` in ``fit``; a resumed fit passes the
    epoch it resumes at); ``repeat`` makes fixed targets' passes endless, each in a new order
    (for ``fit`` with ``steps_per_epoch``). ``scale`` (a number or a ``(D,)`` array) multiplies ``s``
    and ``t``, e.g. into [0, 1] with a statistic of the training split (DESIGN §1).

    Indices are shuffled (seeded) and batched in tf.data; each batch is then gathered at once:
    ``tf.gather`` from a tensor for in-memory features below ``in_graph_limit_bytes``, else one
    ``tf.numpy_function`` per batch that fancy-indexes the array or memory map.
    """
    if isinstance(features, FeatureCache):
        if labels is None:
            labels = features.labels
        features = features.features
    if not isinstance(features, np.ndarray) or features.ndim != 2:
        got = getattr(features, "shape", type(features).__name__)
        raise PipelineError(f"features must be an (n, D) array or a FeatureCache, got {got}")
    n, dim = features.shape
    if with_labels:
        if labels is None:
            raise PipelineError("pair_dataset needs labels (or a FeatureCache that has them)")
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise PipelineError(f"{labels.shape} labels for {n} feature rows")
    if batch_size < 1:
        raise PipelineError(f"--batch-size must be positive, got {batch_size}")
    per_epoch = callable(targets)
    if per_epoch:
        if epochs is None or epochs < 1:
            raise PipelineError("per-epoch targets need epochs >= 1")
        if not 0 <= first_epoch < epochs:
            raise PipelineError(f"first_epoch must be in [0, {epochs}), got {first_epoch}")
        num_paths = _check_targets(targets(first_epoch), n).shape[1]

        # Batches of two consecutive epochs may be in flight at once; keep both tables.
        @functools.lru_cache(maxsize=2)
        def table_for(epoch: int) -> np.ndarray:
            table = _check_targets(targets(epoch), n)
            if table.shape[1] != num_paths:
                raise PipelineError(f"targets for epoch {epoch} have {table.shape[1]} paths, not {num_paths}")
            return table
    else:
        if targets is None:
            raise PipelineError("pair_dataset needs targets")
        table = _check_targets(targets, n)
        num_paths = table.shape[1]
    if scale is not None:
        scale = np.asarray(scale, np.float32)
        if scale.shape not in ((), (dim,)):
            raise PipelineError(f"scale must be a number or a ({dim},) array, got {scale.shape}")

    # Index batches: (epoch, idx) pairs. Per-epoch targets use a stateless permutation per epoch.
    if per_epoch:

        def epoch_batches(epoch):
            if shuffle:
                keys = tf.random.stateless_uniform([n], seed=tf.stack([tf.cast(seed, tf.int64), epoch]))
                order = tf.cast(tf.argsort(keys), tf.int64)
            else:
                order = tf.range(n, dtype=tf.int64)
            idx = tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder=drop_remainder)
            return idx.map(lambda i: (epoch, i))

        index_ds = tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch_batches)
    else:
        index_ds = tf.data.Dataset.range(n)
        if shuffle:
            index_ds = index_ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
        if repeat:
            index_ds = index_ds.repeat()
        index_ds = index_ds.batch(batch_size, drop_remainder=drop_remainder)
        index_ds = index_ds.map(lambda i: (tf.constant(0, tf.int64), i))

    in_graph = not isinstance(features, np.memmap) and features.nbytes <= in_graph_limit_bytes
    if in_graph:
        feature_tensor = tf.constant(features, dtype=tf.float32)

    def fetch_targets(epoch, idx):
        """(B, N) target indices for a batch of anchors."""
        if per_epoch:
            return tf.numpy_function(lambda e, i: table_for(int(e))[i], [epoch, idx], tf.int64, stateful=False)
        return tf.gather(target_tensor, idx)

    if not per_epoch:
        target_tensor = tf.constant(table)

    def fetch_from_array(idx, target_idx):
        def read(i, t):
            s = np.asarray(features[i], dtype=np.float32)
            rows = np.asarray(features[t.reshape(-1)], dtype=np.float32)
            return s, rows.reshape(t.shape + (dim,))

        return tf.numpy_function(read, [idx, target_idx], [tf.float32, tf.float32], stateful=False)

    def gather(epoch, idx):
        target_idx = fetch_targets(epoch, idx)
        target_idx = tf.reshape(target_idx, [-1, num_paths])
        if in_graph:
            s = tf.gather(feature_tensor, idx)
            t = tf.gather(feature_tensor, target_idx)
        else:
            s, t = fetch_from_array(idx, target_idx)
        s = tf.ensure_shape(s, [None, dim])
        t = tf.ensure_shape(t, [None, num_paths, dim])
        if scale is not None:
            s, t = s * scale, t * scale
        if not with_labels:
            return s, t
        return s, {"label": tf.gather(label_tensor, idx), "targets": t}

    if with_labels:
        label_tensor = tf.constant(labels.astype(np.int32))
    ds = index_ds.map(gather, num_parallel_calls=AUTOTUNE, deterministic=True)
    return finish_pipeline(ds)


def autoencoder_pair_dataset(features, targets, batch_size: int = 32, shuffle: bool = True, seed: int = 0,
                             scale=None, epochs: Optional[int] = None, drop_remainder: bool = False,
                             in_graph_limit_bytes: int = IN_GRAPH_FEATURE_LIMIT_BYTES) -> tf.data.Dataset:
    """``(s, t)`` batches for a bare ``MultiPathAutoencoder``: ``pair_dataset(..., with_labels=False)``."""
    return pair_dataset(features, None, targets, batch_size, shuffle, seed, scale, epochs, drop_remainder,
                        with_labels=False, in_graph_limit_bytes=in_graph_limit_bytes)
