"""Algorithm 1, line 4: the salient features ``s`` of every face, from the frozen stage 1,
computed once and cached ("we can obtain all sᵢ and sᵢʲ before starting the second step")."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from dam_cnn_tf.data.face_set import FaceSet
from dam_cnn_tf.data.feature_cache import FeatureCache, write_feature_cache
from dam_cnn_tf.data.pipeline import image_dataset, trunk_dataset
from dam_cnn_tf.models.trunk import split_at
from dam_cnn_tf.models.vgg_serd import salient_feature_model
from dam_cnn_tf.recipes.plan import as_plan
from dam_cnn_tf.training.fit import weights_fingerprint
from dam_cnn_tf.training.stage1 import trunk_maps


def extract_features(vgg_serd, faces: FaceSet, path: Path, plan, verbose: int = 1) -> FeatureCache:
    """The salient features of ``faces`` (one pass of the frozen front: backbone and SERD),
    cached at ``path``; with the trunk cache the front runs from each face's cached trunk map."""
    plan = as_plan(plan, len(faces))
    settings = plan.settings
    front = salient_feature_model(vgg_serd)
    # The front's weights (backbone and SERD) decide the features; fc6-fc8 need no hashing.
    fingerprint = f"{faces.fingerprint()}-{weights_fingerprint(front)}-{settings.cache_dtype}"
    if FeatureCache.exists(path, fingerprint):
        return FeatureCache.open(path, fingerprint)
    if plan.trunk_cache is not None:
        split = split_at(vgg_serd, plan.trunk_cache["cut"])
        model, batches = split.front, trunk_dataset(trunk_maps(split, faces, plan, verbose), faces.labels,
                                                    settings.stage1_batch_size)
    else:
        model = front
        batches = image_dataset(faces.images, faces.labels, settings.stage1_batch_size, settings.input_size,
                                preprocess=False)

    # One traced function for every batch size, the last batch's included.
    @tf.function(reduce_retracing=True)
    def features_of(x):
        return model(x, training=False)["features"]

    return write_feature_cache(
        path,
        lambda x: features_of(x).numpy(),
        batches.as_numpy_iterator(),
        num_samples=len(faces),
        fingerprint=fingerprint,
        dtype=settings.cache_dtype,
        verbose=verbose,
    )
