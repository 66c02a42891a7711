"""Several ``MultiWorkerMirroredStrategy`` workers sharing one run directory.

TensorFlow's convention: every worker runs the same command; only the chief writes the run.
Keras 3's callbacks do not tell workers apart (Keras 2 gave non-chief workers temporary
folders), so a non-chief worker here trains in a private copy of the run directory: it reads
what the chief wrote there (on ``--resume``) and writes only into its copy, removed at the end.

Stopping: the coordination service's heartbeats end every worker when a peer dies, and a
SIGTERM or Ctrl-C ends the process at once (TensorFlow's own SIGTERM handler only records a
preemption, and a Python handler cannot run while the main thread waits in a collective).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Optional

from dam_cnn_tf.training.run_dir import RunDir, RunDirError

# Where a non-chief worker keeps its private copy; kept when set (a test hook, and for debugging).
WORKER_DIR_ENV = "DAMCNN_WORKER_DIR"
# What a worker needs to resume where the chief's backups stand; the feature caches and the
# final model are recomputed.
_NOT_COPIED = shutil.ignore_patterns("run.lock", "features", "model.keras", ".*.tmp-*")


def task() -> Optional[tuple]:
    """``(task_type, task_index, cluster)`` from ``TF_CONFIG``, or None outside a cluster."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        return None
    try:
        config = json.loads(text)
        cluster, task_type, index = config["cluster"], config["task"]["type"], int(config["task"]["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise RunDirError(f"TF_CONFIG: not a cluster description ({error!r})") from None
    if task_type not in cluster or not 0 <= index < len(cluster[task_type]):
        raise RunDirError(f"TF_CONFIG: task {task_type}:{index} is not in its cluster {sorted(cluster)}")
    return task_type, index, cluster


def is_chief() -> bool:
    """The chief task, or worker 0 of a cluster without one (TensorFlow's rule)."""
    found = task()
    if found is None:
        return True
    task_type, index, cluster = found
    return task_type == "chief" or (task_type == "worker" and index == 0 and "chief" not in cluster)


def worker_run_dir(run: RunDir, resume: bool) -> RunDir:
    """A non-chief worker's private run directory: on ``resume`` a copy of the chief's state."""
    chosen = os.environ.get(WORKER_DIR_ENV)
    path = Path(chosen) if chosen else Path(tempfile.mkdtemp(prefix="damcnn-worker-"))
    if chosen and path.exists():
        shutil.rmtree(path)  # a previous attempt's copy; the chief's run is what counts
    if resume:
        shutil.copytree(run.path, path, ignore=_NOT_COPIED, dirs_exist_ok=True)
    path.mkdir(parents=True, exist_ok=True)
    private = RunDir(path)
    private.temporary = not chosen
    return private


def remove_worker_dir(run: RunDir) -> None:
    if getattr(run, "temporary", False):
        shutil.rmtree(run.path, ignore_errors=True)


def exit_on_signals(on_exit=lambda: None) -> None:
    """SIGTERM and SIGINT end the process within a moment, with one line on stderr.

    Python runs signal handlers only between bytecodes of the main thread, which may be
    waiting in a collective for ever; the wake-up file descriptor lets a thread react instead.
    Call after the strategy is made: making it installs TensorFlow's SIGTERM handler.
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)  # the byte on the pipe does the work
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def watch():
        number = os.read(read_fd, 1)[0]
        name = signal.Signals(number).name
        sys.stderr.write(f"Error: {name}: worker stopped; resume with `damcnn-tf train --resume RUN_DIR` "
                         "on every worker\n")
        sys.stderr.flush()
        on_exit()
        os._exit(128 + number)

    threading.Thread(target=watch, name="damcnn-signal-watch", daemon=True).start()
