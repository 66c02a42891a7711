"""Export the DAM-CNN inference model (paper Fig. 2) as a SavedModel for TensorFlow Serving.

The export is a versioned directory, ``EXPORT_DIR/<version>/saved_model.pb``, the layout
TensorFlow Serving watches (``--model_base_path=EXPORT_DIR``). It holds the inference model
only (backbone → SERD → MPAE encoder → FC → softmax); the decoders serve training alone
and none of their weights are written.

Signatures:

* ``serving_default``: ``image`` float32 ``(None, H, W, 3)``, raw RGB in 0-255 (the
  VGG-Face preprocessing is inside the model);
* ``serving_bytes``: ``image_bytes`` string ``(None,)`` of encoded JPEG/PNG/BMP/GIF images,
  decoded and resized in the graph as ``Predictor`` and training resize faces (area averaging
  to shrink, bilinear to enlarge), so REST clients can send ``{"b64": ...}``.

Both return ``probabilities`` ``(None, K)`` float32, ``class_id`` ``(None,)`` int64,
``class_name`` ``(None,)`` string and ``attention`` ``(None, h, w)`` float32 (SERD's mask
``M``, Eq. 1). The class names travel inside the export: as the ``class_names`` variable of
the loaded object and as the asset ``assets/class_names.txt``, one name a line.

A plain ``tf.Module`` with one ``tf.function`` per signature is used rather than Keras'
``ExportArchive``: the latter also publishes its first endpoint a second time under the
``serving_default`` alias, and has no place for assets; here every signature is declared once,
with the input and output names TensorFlow Serving clients see.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import keras
import tensorflow as tf

from dam_cnn_tf.data.resize import decode_rgb, resize_like_faces
from dam_cnn_tf.models.dam_cnn import ATTENTION, PROBABILITIES

SERVING_DEFAULT = "serving_default"
SERVING_BYTES = "serving_bytes"
IMAGE = "image"
IMAGE_BYTES = "image_bytes"
CLASS_ID = "class_id"
CLASS_NAME = "class_name"
CLASS_NAMES_ASSET = "class_names.txt"
OUTPUT_KEYS = (PROBABILITIES, CLASS_ID, CLASS_NAME, ATTENTION)

_VERSION_DIR = re.compile(r"^[0-9]+$")


class ExportError(Exception):
    """A SavedModel could not be exported; the message names the path or option at fault."""


class ExportExistsError(ExportError):
    """The version directory exists already and ``overwrite`` was not given."""


class DamCnnServingModule(tf.Module):
    """What is saved: the inference model, its class names and the two serving functions."""

    def __init__(self, model: keras.Model, class_names: Sequence[str], input_size: Tuple[int, int], asset_path: str):
        super().__init__(name="dam_cnn_serving")
        self.model = model
        self.input_size = tuple(int(s) for s in input_size)
        self.class_names = tf.Variable(list(class_names), dtype=tf.string, trainable=False, name="class_names")
        self.class_names_file = tf.saved_model.Asset(asset_path)
        height, width = self.input_size
        self.serve = tf.function(
            self._serve, input_signature=[tf.TensorSpec((None, height, width, 3), tf.float32, name=IMAGE)]
        )
        self.serve_bytes = tf.function(
            self._serve_bytes, input_signature=[tf.TensorSpec((None,), tf.string, name=IMAGE_BYTES)]
        )

    def _outputs(self, image):
        outputs = self.model(image, training=False)
        probabilities = tf.cast(outputs[PROBABILITIES], tf.float32)
        class_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {
            PROBABILITIES: probabilities,
            CLASS_ID: class_id,
            CLASS_NAME: tf.gather(self.class_names, class_id),
            ATTENTION: tf.cast(outputs[ATTENTION], tf.float32),
        }

    def _serve(self, image):
        # A loaded signature checks the dtype of what it is fed but not the shape, and neither
        # does TensorFlow Serving: check it in the graph, so a wrong size fails with its shape.
        height, width = self.input_size
        return self._outputs(tf.ensure_shape(image, (None, height, width, 3), name="check_image_shape"))

    def _serve_bytes(self, image_bytes):
        height, width = self.input_size
        images = tf.map_fn(
            lambda encoded: decode_and_resize(encoded, self.input_size),
            image_bytes,
            fn_output_signature=tf.TensorSpec((height, width, 3), tf.float32),
        )
        return self._outputs(images)


def decode_and_resize(encoded: tf.Tensor, size: Tuple[int, int]) -> tf.Tensor:
    """One encoded JPEG/PNG/BMP/GIF image → float32 ``(H, W, 3)`` RGB in 0-255, as the model takes.

    Decoded and resized as ``Predictor`` and training prepare an image (OpenCV's decoder, then
    ``resize_face``), with ``data.resize``'s ``decode_rgb`` and ``resize_like_faces``. Grey
    images come out with the grey repeated to three channels, as VGG-Face expects (§3.1).
    """
    return resize_like_faces(decode_rgb(encoded), size)


def _model_input_size(model: keras.Model, input_size) -> Tuple[int, int]:
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[-1] != 3:
        raise ExportError(f"the model must take RGB images (None, H, W, 3), its input shape is {shape}")
    model_size = shape[1:3]
    if input_size is not None:
        size = (int(input_size), int(input_size)) if isinstance(input_size, int) else tuple(int(s) for s in input_size)
        if len(size) != 2 or min(size) < 1:
            raise ExportError(f"input_size must be H or (H, W) with positive sizes, got {input_size!r}")
        if any(m is not None and m != s for m, s in zip(model_size, size)):
            raise ExportError(f"input_size {size} differs from the model's input size {model_size}")
        return size
    if None in model_size:
        raise ExportError(f"the model's input size {model_size} is not fixed; give input_size=(H, W)")
    return tuple(int(s) for s in model_size)


def _check_class_names(model: keras.Model, class_names: Sequence[str]) -> list:
    outputs = model.output
    if not isinstance(outputs, dict) or not {PROBABILITIES, ATTENTION} <= set(outputs):
        raise ExportError(
            f"the model must output a dict with '{PROBABILITIES}' and '{ATTENTION}' (build it with build_dam_cnn)"
        )
    names = [str(n) for n in class_names]
    num_classes = outputs[PROBABILITIES].shape[-1]
    if len(names) != num_classes:
        raise ExportError(f"{len(names)} class names given for a model with {num_classes} classes")
    bad = [n for n in names if not n.strip() or "\n" in n or "\r" in n]
    if bad:
        raise ExportError(f"class names must be non-empty single lines, got {bad!r}")
    if len(set(names)) != len(names):
        raise ExportError(f"class names must be unique, got {names!r}")
    return names


def existing_versions(export_dir: Union[str, os.PathLike]) -> list:
    """The integer version directories under ``export_dir``, ascending (the ones TF Serving sees)."""
    export_dir = Path(export_dir)
    if not export_dir.is_dir():
        return []
    return sorted(int(p.name) for p in export_dir.iterdir() if p.is_dir() and _VERSION_DIR.match(p.name))


def next_version(export_dir: Union[str, os.PathLike]) -> int:
    """1 + the highest existing version, or 1 for an empty or new ``export_dir``."""
    versions = existing_versions(export_dir)
    return versions[-1] + 1 if versions else 1


def export_saved_model(
    model: keras.Model,
    export_dir: Union[str, os.PathLike],
    class_names: Sequence[str],
    version: Optional[int] = None,
    input_size=None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` (from ``build_dam_cnn``) as ``export_dir/<version>/`` and return that path.

    ``version`` defaults to :func:`next_version`. ``input_size`` (``H`` or ``(H, W)``) is
    needed only when the model's input size is not fixed. The SavedModel is written to a
    hidden temporary directory beside the target and renamed into place, so a failed export
    leaves no version directory behind; an existing version is replaced only when
    ``overwrite`` is true.
    """
    export_dir = Path(export_dir)
    if export_dir.exists() and not export_dir.is_dir():
        raise ExportError(f"export directory {export_dir} exists and is not a directory")
    if version is None:
        version = next_version(export_dir)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ExportError(f"version must be a positive integer, got {version!r}")
    size = _model_input_size(model, input_size)
    names = _check_class_names(model, class_names)
    target = export_dir / str(version)
    if target.exists() and not overwrite:
        raise ExportExistsError(f"export version {target} exists; choose another version or overwrite it")

    export_dir.mkdir(parents=True, exist_ok=True)
    # A hidden, non-integer name: TensorFlow Serving ignores it while it is being written.
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.partial-", dir=export_dir))
    try:
        asset_dir = staging / "asset_source"
        asset_dir.mkdir()
        asset_path = asset_dir / CLASS_NAMES_ASSET
        asset_path.write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
        module = DamCnnServingModule(model, names, size, str(asset_path))
        saved = staging / "saved_model"
        tf.saved_model.save(
            module,
            str(saved),
            signatures={
                SERVING_DEFAULT: module.serve.get_concrete_function(),
                SERVING_BYTES: module.serve_bytes.get_concrete_function(),
            },
        )
        if not (saved / "saved_model.pb").is_file():
            raise ExportError(f"saving to {saved} wrote no saved_model.pb")
        _move_into_place(saved, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _move_into_place(saved: Path, target: Path) -> None:
    """Rename ``saved`` to ``target``; an existing ``target`` is set aside until the rename succeeds."""
    if not target.exists():
        os.replace(saved, target)
        return
    aside = saved.with_name("previous")
    os.replace(target, aside)
    try:
        os.replace(saved, target)
    except BaseException:
        os.replace(aside, target)
        raise


def load_class_names(version_dir: Union[str, os.PathLike]) -> list:
    """The class names of an export, read from its ``assets/class_names.txt``."""
    path = Path(version_dir) / "assets" / CLASS_NAMES_ASSET
    if not path.is_file():
        raise ExportError(f"{path} not found: not a DAM-CNN export directory")
    return path.read_text(encoding="utf-8").splitlines()
