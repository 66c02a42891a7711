"""Process-wide TensorFlow settings that must be made before TensorFlow starts.

``keep_cpu_buffers``: TensorFlow's own BFC pool for tensors in CPU memory. By default
TensorFlow takes each tensor from ``malloc``, and glibc serves anything above its mmap
threshold (at most 32 MiB) with a fresh ``mmap`` that goes back to the kernel when freed. Stage
2's gradients are 0.4 GB per decoder at the paper's size, so every step faulted about 3.4 GB
of new pages in (835,000 faults; on a 2-core AMD EPYC about as much time in the kernel as in
the products, docs/performance.md). The pool keeps freed buffers and hands them out again.
Where TensorFlow runs oneDNN (by default on CPUs with AVX-512 VNNI/BF16 or AMX), oneDNN's
allocator pools already, and the setting changes nothing.
"""

from __future__ import annotations

import os

CPU_POOL_VARIABLE = "TF_CPU_ALLOCATOR_USE_BFC"


def keep_cpu_buffers() -> None:
    """Use TensorFlow's BFC allocator for CPU tensors, unless the user set the variable already.

    Effective only before TensorFlow allocates its first CPU tensor: the command line calls it
    at start; in a program of your own, set ``TF_CPU_ALLOCATOR_USE_BFC=true`` before importing
    TensorFlow.
    """
    os.environ.setdefault(CPU_POOL_VARIABLE, "true")
