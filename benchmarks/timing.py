"""Wall-clock timing of repeated calls: one warm-up call each (tracing, allocation), then the median."""

from __future__ import annotations

import resource
import statistics
import time
from typing import Callable, Dict


def materialise(result) -> None:
    """Wait for a call's outputs, so asynchronous work is inside the timed interval."""
    import tensorflow as tf

    for item in tf.nest.flatten(result):
        if hasattr(item, "numpy"):
            item.numpy()


def time_interleaved(fns: Dict[str, Callable[[], object]], steps: int) -> Dict[str, dict]:
    """Seconds per call of each function, ``{"median_s", "min_s", "steps", ...}``, over ``steps``
    rounds after one warm-up call each; the functions are called in turn (A, B, A, B, ...), so
    that all of them see the same machine state.

    Also the median per call of the process's CPU time in user code and in the kernel
    (``user_s``, ``system_s``, all threads) and of its minor page faults (``minor_faults``): a
    call whose temporaries are fresh pages each time shows it there.
    """
    for fn in fns.values():
        materialise(fn())
    samples = {name: {"wall": [], "user": [], "system": [], "faults": []} for name in fns}
    for _ in range(max(1, steps)):
        for name, fn in fns.items():
            before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            materialise(fn())
            wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
            sample = samples[name]
            sample["wall"].append(wall)
            sample["user"].append(after.ru_utime - before.ru_utime)
            sample["system"].append(after.ru_stime - before.ru_stime)
            sample["faults"].append(after.ru_minflt - before.ru_minflt)
    return {
        name: {"median_s": statistics.median(s["wall"]), "min_s": min(s["wall"]), "steps": len(s["wall"]),
               "user_s": statistics.median(s["user"]), "system_s": statistics.median(s["system"]),
               "minor_faults": statistics.median(s["faults"])}
        for name, s in samples.items()
    }


def rate(count: float, timing: dict) -> float:
    """Items per second from a per-call timing."""
    return count / timing["median_s"]
