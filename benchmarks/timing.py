"""Wall-clock timing of repeated calls: one warm-up call each (tracing, allocation), then the median."""

from __future__ import annotations

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
    """Seconds per call of each function, ``{"median_s", "min_s", "steps"}``, over ``steps``
    rounds after one warm-up call each; the functions are called in turn (A, B, A, B, ...), so
    that all of them see the same machine state."""
    for fn in fns.values():
        materialise(fn())
    times = {name: [] for name in fns}
    for _ in range(max(1, steps)):
        for name, fn in fns.items():
            start = time.perf_counter()
            materialise(fn())
            times[name].append(time.perf_counter() - start)
    return {name: {"median_s": statistics.median(t), "min_s": min(t), "steps": len(t)} for name, t in times.items()}


def rate(count: float, timing: dict) -> float:
    """Items per second from a per-call timing."""
    return count / timing["median_s"]
