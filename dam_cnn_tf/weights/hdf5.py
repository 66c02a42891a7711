"""Reading HDF5 weights files that may be hostile: bounded, plain arrays only.

An HDF5 file can declare a dataset of any shape while holding almost no bytes (unwritten
chunks read as the fill value), link to datasets in other files, or hold strings and
references where numbers belong. Every array the weights readers take goes through
``read_array``, which refuses all of these with a one-line ``WeightsFormatError`` naming the
file, before any memory is allocated for the data.
"""

from __future__ import annotations

import contextlib

import h5py
import numpy as np

from dam_cnn_tf.errors import one_line
from dam_cnn_tf.weights.errors import WeightsFormatError

# fc6 of VGG-Face (7x7x512 inputs, 4096 outputs, paper §3.1) is the largest array of any
# release; nothing larger belongs in a weights file for this backbone.
MAX_ARRAY_VALUES = 7 * 7 * 512 * 4096


def open_hdf5(path) -> h5py.File:
    """``h5py.File(path, "r")``; a damaged or non-HDF5 file raises ``WeightsFormatError``."""
    try:
        return h5py.File(path, "r")
    except (OSError, ValueError) as error:
        raise WeightsFormatError(f"{path}: not a readable HDF5 file ({one_line(error)})") from None


@contextlib.contextmanager
def reading_hdf5(path, what: str):
    """``open_hdf5(path)``, with any error while reading it turned into one ``WeightsFormatError``
    line calling the file an unreadable ``what``."""
    with open_hdf5(path) as handle:
        try:
            yield handle
        except WeightsFormatError:
            raise
        except (OSError, KeyError, ValueError, TypeError) as error:
            raise WeightsFormatError(f"{path}: unreadable {what} ({one_line(error)})") from None


def keras_root(handle, path):
    """The group holding a Keras 2 file's layers: ``model_weights`` in a full model file, else the root."""
    return child(handle, "model_weights", h5py.Group, path, "/") if "model_weights" in handle else handle


def child(group, name: str, kind, path, where: str):
    """``group[name]`` if it is a hard link to a ``kind`` (``h5py.Group`` or ``h5py.Dataset``)."""
    try:
        link = group.get(name, getlink=True)
    except (KeyError, ValueError, TypeError):
        link = None
    full = f"{where.rstrip('/')}/{name}"
    if link is None:
        raise WeightsFormatError(f"{path}: {where} has no {name!r}")
    if not isinstance(link, h5py.HardLink):
        raise WeightsFormatError(f"{path}: {full} is a {type(link).__name__}, not stored in the file; refused")
    obj = group[name]
    if not isinstance(obj, kind):
        raise WeightsFormatError(f"{path}: {full} is a {type(obj).__name__}, expected a {kind.__name__}")
    return obj


def read_array(group, name: str, path, where: str) -> np.ndarray:
    """The numeric dataset ``group[name]`` as a NumPy array, after checking its kind, type and size."""
    dataset = child(group, name, h5py.Dataset, path, where)
    where = f"{where.rstrip('/')}/{name}"
    if dataset.is_virtual:
        raise WeightsFormatError(f"{path}: {where} is a virtual dataset (data in other files); refused")
    if dataset.dtype.kind not in "fiu":
        raise WeightsFormatError(f"{path}: {where} holds {dataset.dtype}, not numbers")
    if dataset.size > MAX_ARRAY_VALUES:
        raise WeightsFormatError(
            f"{path}: {where} declares shape {dataset.shape}, larger than any VGG-Face layer")
    try:
        return np.asarray(dataset[()])
    except (OSError, ValueError, TypeError) as error:
        raise WeightsFormatError(f"{path}: cannot read {where} ({one_line(error)})") from None


def text_list(value) -> list[str]:
    """An HDF5 attribute holding names (bytes or str, any shape) as a list of strings."""
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in np.asarray(value).reshape(-1)]
