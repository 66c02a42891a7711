"""Loading a saved ``.keras`` model without running code from the file.

A ``.keras`` archive can carry Python: a ``Lambda`` layer stores its function as marshalled
bytecode, and a config can name any importable function. Keras' ``safe_mode`` refuses both;
``load_model_file`` always passes ``safe_mode=True`` (even where a program switched on
``keras.config.enable_unsafe_deserialization()``) and turns every failure into one line naming
the file. The package's own layers are registered serialisable, so its models need no
``custom_objects`` and nothing unsafe.

Keras lets a process-wide ``enable_unsafe_deserialization()`` override the ``safe_mode``
argument, so the archive's ``config.json`` is also checked here first: any ``Lambda`` layer,
serialised function or object from a module outside Keras and this package is refused.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Union

import keras

from dam_cnn_tf.errors import PathError, one_line


class ModelFileError(PathError):
    """A model file that cannot be loaded, or would run code; one line naming the path."""

    MESSAGE = "cannot load model {path}: {reason}"


_TRUSTED_MODULES = ("keras", "dam_cnn_tf")
# Keras functions (e.g. a loss given as ``keras.losses.mean_squared_error``) are fine: only
# their module decides; a Lambda carries bytecode whatever its module.
_CODE_CLASSES = ("Lambda", "__lambda__")


def unsafe_config_entry(config) -> str | None:
    """A description of the first entry of a Keras config that would run code, or None."""
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("class_name") in _CODE_CLASSES:
                return f"a {node['class_name']} entry"
            module = node.get("module")
            # Keras writes its own functions (a loss, an activation) as module "builtins",
            # class "function", and looks their name up among Keras' modules only.
            keras_function = module == "builtins" and node.get("class_name") == "function"
            if isinstance(module, str) and module.split(".")[0] not in _TRUSTED_MODULES and not keras_function:
                return f"an object from module {module!r}"
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None


def load_model_file(path: Union[str, os.PathLike], compile: bool = False) -> keras.Model:
    """Load a Keras 3 ``.keras`` file (e.g. a run's ``model.keras``) in safe mode.

    Legacy ``.h5``/SavedModel formats are refused: only the ``.keras`` zip archive is read.
    Raises ``ModelFileError`` for a missing or damaged file and for one that holds Python
    code (a ``Lambda`` layer's bytecode, a function from outside Keras and this package).
    """
    # The modules that register the package's serialisable classes (none is imported by
    # ``dam_cnn_tf.models`` itself, which loads nothing).
    import dam_cnn_tf.layers.class_names  # noqa: F401
    import dam_cnn_tf.layers.decoders  # noqa: F401
    import dam_cnn_tf.layers.feature_scaling  # noqa: F401
    import dam_cnn_tf.layers.mirror  # noqa: F401
    import dam_cnn_tf.layers.read_faces  # noqa: F401
    import dam_cnn_tf.layers.serd  # noqa: F401
    import dam_cnn_tf.backbones.face_resnet.model  # noqa: F401  (its layers, for models on that backbone)
    import dam_cnn_tf.models.mpae  # noqa: F401
    import dam_cnn_tf.models.mpvs_net  # noqa: F401
    import dam_cnn_tf.backbones.vgg_face.model  # noqa: F401
    import dam_cnn_tf.models.student  # noqa: F401  (Luma, for distilled students)
    import dam_cnn_tf.optimizers  # noqa: F401  (compile=True)
    import dam_cnn_tf.models.preset_model  # noqa: F401  (a saved from_preset model)

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(path, "no such file")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise ModelFileError(path, "not a Keras 3 .keras archive (only that format is loaded)")
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise ModelFileError(path, f"unreadable config.json ({error})") from None
    unsafe = unsafe_config_entry(config)
    if unsafe is not None:
        raise ModelFileError(path, f"it holds Python code ({unsafe}), refused in safe mode")
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as error:  # Keras raises many types for damaged archives; name them all alike
        message = one_line(error)
        if "safe_mode" in message or "unsafe" in message.lower():
            raise ModelFileError(path, "it holds Python code (e.g. a Lambda layer), refused in safe mode") from None
        raise ModelFileError(path, f"{type(error).__name__}: {message[:300]}") from None
