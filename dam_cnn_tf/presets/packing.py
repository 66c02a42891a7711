"""Turning a trained run's inference model into a preset: its input reading, its class names,
and weights stored at half the size."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Optional, Sequence

import h5py
import keras
import numpy as np

from dam_cnn_tf.layers.class_names import NamedProbabilities
from dam_cnn_tf.layers.mirror import MirrorImages
from dam_cnn_tf.layers.read_faces import ReadFacesAs
from dam_cnn_tf.models.outputs import ATTENTION, PROBABILITIES
from dam_cnn_tf.presets import sha256_of  # noqa: F401  (where build_preset and its tests take it from)

WEIGHTS_ENTRY = "model.weights.h5"


def preset_model(dam_cnn: keras.Model, class_names: Sequence[str], grey: bool = False,
                 source_size: Optional[int] = None, mirror_average: bool = False,
                 name: str = "dam_cnn_preset") -> keras.Model:
    """``dam_cnn`` (from ``build_dam_cnn``) behind ``ReadFacesAs`` when ``grey`` or
    ``source_size`` asks for it, with its class names in its output layer. With
    ``mirror_average`` the probabilities are the mean of the face's and its mirror image's (the
    model was trained on both); the attention stays the face's own."""
    images = keras.Input(shape=tuple(dam_cnn.input.shape[1:]), name="image")
    x = ReadFacesAs(grey=grey, source_size=source_size, name="read_faces_as")(images) if (grey or source_size) else images
    outputs = dam_cnn(x)
    probabilities = outputs[PROBABILITIES]
    if mirror_average:
        mirrored = dam_cnn(MirrorImages(name="mirror")(x))[PROBABILITIES]
        probabilities = keras.layers.Average(name="mirror_average")([probabilities, mirrored])
    probabilities = NamedProbabilities(class_names, dtype="float32", name=PROBABILITIES)(probabilities)
    attention = keras.layers.Identity(name=ATTENTION)(outputs[ATTENTION])
    return keras.Model(images, {PROBABILITIES: probabilities, ATTENTION: attention}, name=name)


def _half_precision_weights(data: bytes) -> bytes:
    """A Keras weights file with every float32 array stored as float16 (loading casts back)."""
    out = io.BytesIO()
    with h5py.File(io.BytesIO(data), "r") as src, h5py.File(out, "w") as dst:
        dst.attrs.update(dict(src.attrs))

        def copy(name, item):
            if isinstance(item, h5py.Dataset):
                array = item[()]
                stored = dst.create_dataset(name, data=array.astype(np.float16) if array.dtype == np.float32 else array)
            else:
                stored = dst.require_group(name)
            stored.attrs.update(dict(item.attrs))

        src.visititems(copy)
    return out.getvalue()


def store_float16(model: keras.Model, path) -> Path:
    """Save ``model`` as a ``.keras`` archive whose weights are float16, compressed; atomic."""
    path = Path(path)
    full = io.BytesIO()
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.keras")  # Keras saves only to .keras names
    try:
        model.save(tmp)
        with zipfile.ZipFile(tmp) as archive:
            entries = {name: archive.read(name) for name in archive.namelist()}
        entries[WEIGHTS_ENTRY] = _half_precision_weights(entries[WEIGHTS_ENTRY])
        with zipfile.ZipFile(full, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, data in entries.items():
                archive.writestr(name, data)
        tmp.write_bytes(full.getvalue())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
