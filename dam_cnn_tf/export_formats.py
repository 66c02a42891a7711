"""Export the DAM-CNN inference model as one LiteRT (``.tflite``) or ONNX (``.onnx``) file.

Both files take what the SavedModel's ``serving_default`` takes, ``image`` float32
``(None, H, W, 3)`` raw RGB in 0-255, and return ``probabilities`` ``(None, K)`` and
``attention`` ``(None, h, w)``. ``class_id`` is their argmax; ``class_name`` is left out, as
neither runtime is meant for string tensors: the ONNX file carries the names in its metadata
(``class_names``, one a line), the LiteRT file in a metadata buffer of the same name.

LiteRT goes through TensorFlow's own converter; ONNX through ``tf2onnx`` (the
``dam-cnn-tf[onnx]`` extra), which is what Keras' ``model.export(format="onnx")`` calls too,
used directly so that the input and outputs keep the names above.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Union

import keras
import numpy as np
import tensorflow as tf

from dam_cnn_tf.export import IMAGE, ExportError, ExportExistsError, _check_class_names, _model_input_size
from dam_cnn_tf.models.dam_cnn import ATTENTION, PROBABILITIES
from dam_cnn_tf.quantization import INT8, MIN_CALIBRATION_FACES, QUANTIZE  # noqa: F401  (QUANTIZE: part of this module's face)

SAVED_MODEL, LITERT, ONNX = "saved_model", "litert", "onnx"
FORMATS = (SAVED_MODEL, LITERT, ONNX)
SUFFIXES = {LITERT: ".tflite", ONNX: ".onnx"}
CLASS_NAMES_KEY = "class_names"
# A fixed opset, so an export does not change with the installed tf2onnx; the extra's onnxruntime runs it.
ONNX_OPSET = 17


class MissingExtraError(ExportError):
    """An optional dependency of a format is not installed; the message names the extra."""


def require(module: str, extra: str, what: str):
    """Import ``module`` or fail with one line that says which extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(f'{what} needs {module}: pip install "dam-cnn-tf[{extra}]"') from None


def inference_function(model: keras.Model, size) -> tf.types.experimental.GenericFunction:
    """``image`` → ``{probabilities, attention}``, float32, with the SavedModel's input spec."""
    height, width = size

    @tf.function(input_signature=[tf.TensorSpec((None, height, width, 3), tf.float32, name=IMAGE)])
    def serve(image):
        outputs = model(image, training=False)
        return {
            PROBABILITIES: tf.cast(outputs[PROBABILITIES], tf.float32),
            ATTENTION: tf.cast(outputs[ATTENTION], tf.float32),
        }

    return serve


def export_model_file(
    model: keras.Model,
    path: Union[str, os.PathLike],
    class_names: Sequence[str],
    format: str,
    quantize: Optional[str] = None,
    input_size=None,
    overwrite: bool = False,
    calibration: Optional[np.ndarray] = None,
) -> Path:
    """Write ``model`` (from ``build_dam_cnn``) as one ``.tflite`` or ``.onnx`` file at ``path``.

    The file is written beside ``path`` under a hidden name and renamed into place, so a
    failed export leaves nothing at ``path`` (and an existing file untouched). ``quantize``
    (LiteRT only): ``float16`` stores the weights as float16, ``dynamic`` as int8 with
    activations quantized on the fly; both compute the same outputs within a few hundredths.
    ``int8`` stores weights and activations as int8 (the input and outputs stay float32), each
    activation's range measured on ``calibration`` (``(n, H, W, 3)`` faces, 0-255, as the model
    reads them; at least ``MIN_CALIBRATION_FACES``): XNNPACK runs its plain convolutions much
    faster than float32 on CPUs with int8 instructions; it changes a few in a hundred predictions.
    """
    if format not in SUFFIXES:
        raise ExportError(f"format must be one of {', '.join(SUFFIXES)}, got {format!r}")
    if quantize is not None and (format != LITERT or quantize not in QUANTIZE):
        raise ExportError(f"quantize is for litert only and one of {', '.join(QUANTIZE)}, got {quantize!r} for {format}")
    if quantize == INT8:
        calibration = _calibration_faces(calibration)
    path = Path(path)
    if path.suffix != SUFFIXES[format]:
        raise ExportError(f"the {format} export is one file named *{SUFFIXES[format]}, got {path}")
    if path.is_dir():
        raise ExportError(f"{path} is a directory; give a file name ending in {SUFFIXES[format]}")
    if path.exists() and not overwrite:
        raise ExportExistsError(f"{path} exists; choose another name or overwrite it")
    if format == ONNX:  # before any work, so a missing extra fails at once
        require("tf2onnx", "onnx", "ONNX export")
    size = _model_input_size(model, input_size)
    names = _check_class_names(model, class_names)
    serve = inference_function(model, size)

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}.partial-", dir=path.parent)
    os.close(handle)
    try:
        if format == LITERT:
            Path(staging).write_bytes(_litert_bytes(serve, model, names, quantize, calibration))
        else:
            _write_onnx(serve, names, staging)
        # mkstemp's file is private (0600); give the export the permissions a plain write would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o666 & ~umask)
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.remove(staging)
    return path


def _frozen(serve):
    """``serve`` with its variables folded in as constants, under the same input and output names.

    The converter keeps Keras 3 variables as resource variables that nothing initialises in the
    .tflite file (LiteRT reads garbage, or fails without XNNPACK); constants avoid that.
    """
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = serve.get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)

    @tf.function(input_signature=serve.input_signature)
    def serve_frozen(image):
        return tf.nest.pack_sequence_as(concrete.structured_outputs, frozen(image))

    return serve_frozen.get_concrete_function()


def _calibration_faces(calibration) -> np.ndarray:
    """``calibration`` checked: int8 needs faces to measure each activation's range on."""
    if calibration is None:
        raise ExportError("quantize='int8' needs calibration faces (n, H, W, 3), 0-255, as the model reads them")
    faces = np.asarray(calibration, np.float32)
    if faces.ndim != 4 or faces.shape[-1] != 3 or len(faces) < MIN_CALIBRATION_FACES:
        raise ExportError(f"quantize='int8': calibration must be at least {MIN_CALIBRATION_FACES} faces "
                          f"(n, H, W, 3), got shape {faces.shape}")
    return faces


def _litert_bytes(serve, model: keras.Model, names: Sequence[str], quantize: Optional[str],
                  calibration: Optional[np.ndarray] = None) -> bytes:
    converter = tf.lite.TFLiteConverter.from_concrete_functions([_frozen(serve)], tf.Module())
    if quantize is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == INT8:
        # One face at a time: the converter records each activation's range over all of them; an op
        # without an int8 kernel stays float32 (the converter inserts the (de)quantization).
        converter.representative_dataset = lambda: ([face[None]] for face in calibration)
    try:
        flatbuffer = converter.convert()
    except Exception as error:  # the converter's errors are many lines of MLIR
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"LiteRT conversion failed: {first}") from error
    return _with_metadata(flatbuffer, CLASS_NAMES_KEY, "\n".join(names).encode("utf-8"))


def _with_metadata(flatbuffer: bytes, name: str, data: bytes) -> bytes:
    """The model with one more named metadata buffer (how LiteRT files carry extra data)."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(flatbuffer, 0))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(data, np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata = (model.metadata or []) + [entry]
    import flatbuffers

    builder = flatbuffers.Builder(len(flatbuffer) + len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _write_onnx(serve, names: Sequence[str], path: str) -> None:
    tf2onnx = require("tf2onnx", "onnx", "ONNX export")
    import onnx

    spec = serve.input_signature
    try:
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=ONNX_OPSET)
        # tf2onnx keeps an op it cannot convert as it is; the checker refuses such a graph.
        onnx.checker.check_model(proto)
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"ONNX conversion failed: {first}") from error
    onnx.helper.set_model_props(proto, {CLASS_NAMES_KEY: "\n".join(names)})
    onnx.save_model(proto, path)


# --- running an exported file -----------------------------------------------------------------


def litert_interpreter(path: Union[str, os.PathLike]):
    """A LiteRT interpreter for ``path``: ``ai_edge_litert``'s where installed, else TensorFlow's."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    return Interpreter(model_path=str(path))


def litert_runner(path: Union[str, os.PathLike]) -> Callable[[np.ndarray], Dict[str, np.ndarray]]:
    """``images`` float32 ``(B, H, W, 3)`` → ``{probabilities, attention}`` through LiteRT."""
    runner = litert_interpreter(path).get_signature_runner()

    def run(images):
        return runner(**{IMAGE: np.asarray(images, np.float32)})

    return run


def onnx_runner(path: Union[str, os.PathLike]) -> Callable[[np.ndarray], Dict[str, np.ndarray]]:
    """``images`` float32 ``(B, H, W, 3)`` → ``{probabilities, attention}`` through onnxruntime."""
    ort = require("onnxruntime", "onnx", "Running an ONNX export")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]

    def run(images):
        values = session.run(outputs, {IMAGE: np.asarray(images, np.float32)})
        return dict(zip(outputs, values))

    return run


def file_class_names(path: Union[str, os.PathLike]) -> list:
    """The class names stored in a ``.tflite`` or ``.onnx`` export."""
    path = Path(path)
    if path.suffix == SUFFIXES[ONNX]:
        onnx = require("onnx", "onnx", "Reading an ONNX export")
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        text = props.get(CLASS_NAMES_KEY)
    else:
        from tensorflow.lite.python import schema_py_generated as schema

        model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(path.read_bytes(), 0))
        entries = {m.name.decode() if isinstance(m.name, bytes) else m.name: m.buffer for m in model.metadata or []}
        text = None
        if CLASS_NAMES_KEY in entries:
            text = bytes(np.asarray(model.buffers[entries[CLASS_NAMES_KEY]].data, np.uint8)).decode("utf-8")
    if text is None:
        raise ExportError(f"{path} holds no class names: not a DAM-CNN export")
    return text.splitlines()
