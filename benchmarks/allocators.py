"""Which memory allocator a process runs with, and how to give a worker another one.

* ``bfc``: TensorFlow's BFC pool for CPU tensors (``TF_CPU_ALLOCATOR_USE_BFC=true``), what
  ``damcnn-tf`` uses (``dam_cnn_tf.runtime``), and the suite's default;
* ``malloc``: TensorFlow's default, each tensor from the C library's ``malloc``. glibc serves
  a buffer above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and returns it to
  the kernel when freed, so the stage-2 step, whose gradients are 0.4 GB per decoder at the
  paper's size, faults its temporaries in anew every step (docs/performance.md);
* ``tcmalloc``, ``jemalloc``: other ``malloc``s that keep freed memory, loaded with ``LD_PRELOAD``.

Where TensorFlow runs its oneDNN kernels (by default on x86 CPUs with AVX-512 VNNI or BF16,
AVX-VNNI or AMX; ``TF_ENABLE_ONEDNN_OPTS`` overrides), its CPU tensors come from oneDNN's own
pooling allocator whatever this module asks for, so ``malloc`` there is a pool too.
"""

from __future__ import annotations

import ctypes.util
import os
import re
from pathlib import Path
from typing import Optional

from dam_cnn_tf.runtime import CPU_POOL_VARIABLE as BFC_VARIABLE

LIBRARIES = {
    "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4"),
    "jemalloc": ("libjemalloc.so.2",),
}
SEARCH_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
               "/usr/local/lib", "/opt/homebrew/lib")
INSTALL_HINT = {"tcmalloc": "apt install libtcmalloc-minimal4", "jemalloc": "apt install libjemalloc2"}
ALLOCATORS = ("bfc", "malloc", *LIBRARIES)


class AllocatorError(RuntimeError):
    """An allocator asked for that is not installed."""


def find_library(name: str) -> Optional[str]:
    """The path of allocator ``name``'s shared library, or None when it is not installed."""
    for filename in LIBRARIES[name]:
        for folder in SEARCH_DIRS:
            path = Path(folder) / filename
            if path.exists():
                return str(path)
    found = ctypes.util.find_library(name)
    return found if found and Path(found).is_absolute() else None


def preload_env(name: str) -> dict:
    """Environment entries that make a new process run with allocator ``name``."""
    if name in ("bfc", "malloc"):
        return {BFC_VARIABLE: "true" if name == "bfc" else "false"}
    path = find_library(name)
    if path is None:
        raise AllocatorError(f"--allocator {name}: {LIBRARIES[name][0]} not found ({INSTALL_HINT[name]})")
    preload = os.environ.get("LD_PRELOAD", "")
    return {"LD_PRELOAD": f"{path}:{preload}" if preload else path, BFC_VARIABLE: "false"}


def onednn_enabled() -> bool:
    """Whether this process's TensorFlow runs oneDNN kernels (and so oneDNN's CPU allocator)."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def active_allocator() -> str:
    """What this process's CPU tensors come from: TensorFlow's BFC pool, tcmalloc or jemalloc
    if mapped, else the C library's ``malloc`` (with any glibc tuning named); followed by
    "under TensorFlow's oneDNN allocator" where TensorFlow's oneDNN allocator takes them first."""
    under = ", under TensorFlow's oneDNN allocator (a pool)" if onednn_enabled() else ""
    return _base_allocator() + under


def _base_allocator() -> str:
    if os.environ.get(BFC_VARIABLE, "").lower() in ("1", "true"):
        return "bfc (TensorFlow's pool)"
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "unknown"
    for name in LIBRARIES:
        match = re.search(rf"\S*lib{name}\S*\.so\S*", maps)
        if match:
            return f"{name} ({match.group(0)})"
    tuning = sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith("MALLOC_") or k == "GLIBC_TUNABLES")
    return "malloc (glibc)" + (f" ({', '.join(tuning)})" if tuning else "")
