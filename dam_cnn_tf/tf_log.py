"""What the command line keeps from its users of TensorFlow's own logging.

* TensorFlow's start-up lines (``cudart_stub``, ``absl::InitializeLog``, ``cuInit``, the CPU
  instruction notice): C++ writes them to the stderr file descriptor while TensorFlow is first
  imported and its devices are listed, before ``TF_CPP_MIN_LOG_LEVEL`` applies. The first
  import of TensorFlow therefore runs with file descriptor 2 caught; every other line caught
  there goes back to stderr.
* ``tf.function retracing`` warnings: each fold, stage and command builds its models afresh,
  so their functions are traced once per model by design.

A user who sets ``TF_CPP_MIN_LOG_LEVEL`` gets TensorFlow's logging unfiltered.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import tempfile

# absl's prefix: severity, date, time, thread, file:line]
_LOG_LINE = re.compile(rb"^([IWEF])\d{4} \d+:\d+:\d+\.\d+\s+\d+ \S+:\d+\] ")
_NOISE = (b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
          b"To enable the following instructions:",
          # LiteRT's interpreter, on its first call (presets' light files).
          b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
# The errors TensorFlow reports at start-up on a machine without a GPU or its drivers.
_STARTUP_ERRORS = (b"failed call to cuInit", b"Unable to register cu")


def is_startup_noise(line: bytes) -> bool:
    if line.startswith(_NOISE):
        return True
    match = _LOG_LINE.match(line)
    return bool(match) and (match.group(1) in (b"I", b"W") or any(e in line for e in _STARTUP_ERRORS))


@contextlib.contextmanager
def startup_noise_filtered():
    """File descriptor 2 caught for the duration; what is not start-up noise is written back."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = b"".join(line for line in caught if not is_startup_noise(line))
            if kept:
                os.write(2, kept)


class _QuietLoader(importlib.abc.Loader):
    """TensorFlow's own loader, run with its start-up noise filtered."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        try:
            with startup_noise_filtered():
                self.loader.exec_module(module)
                module.config.list_physical_devices()  # CUDA's start-up lines come here
        finally:
            module.__loader__ = module.__spec__.loader = self.loader

    def __getattr__(self, name):
        return getattr(self.loader, name)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` once, through the other finders, and gives it the quiet loader."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _RetracingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


RETRACING_FILTER = _RetracingFilter()


def quiet_tensorflow(user_log_level: bool) -> None:
    """Keep TensorFlow's start-up noise and retracing warnings from the user, unless the user
    chose a log level (``user_log_level``: ``TF_CPP_MIN_LOG_LEVEL`` was set before we set it)."""
    if user_log_level:
        return
    logger = logging.getLogger("tensorflow")
    if RETRACING_FILTER not in logger.filters:
        logger.addFilter(RETRACING_FILTER)
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowFinder())
