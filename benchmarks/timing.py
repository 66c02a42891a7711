"""Wall-clock timing of repeated calls: one warm-up call (tracing, allocation), then the median."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def _materialise(result) -> None:
    """Wait for a call's outputs, so asynchronous work is inside the timed interval."""
    import tensorflow as tf

    for item in tf.nest.flatten(result):
        if hasattr(item, "numpy"):
            item.numpy()


def time_calls(fn: Callable[[], object], steps: int, warmup: int = 1) -> dict:
    """Seconds per call of ``fn``: ``{"median_s", "min_s", "steps"}`` over ``steps`` timed calls."""
    for _ in range(warmup):
        _materialise(fn())
    times = []
    for _ in range(max(1, steps)):
        start = time.perf_counter()
        _materialise(fn())
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "steps": len(times)}


def rate(count: float, timing: dict) -> float:
    """Items per second from a per-call timing."""
    return count / timing["median_s"]
