"""Several ``MultiWorkerMirroredStrategy`` workers sharing one run directory.

TensorFlow's convention: every worker runs the same command; only the chief writes the run.
Keras 3's callbacks do not tell workers apart (Keras 2 gave non-chief workers temporary
folders), so a non-chief worker here trains in a private copy of the run directory: it reads
what the chief wrote there (on ``--resume``) and writes only into its copy, removed at the end.
``crossval`` does the same fold by fold (``training/crossval.py``).

Stopping: the coordination service's heartbeats end every worker when a peer dies, and a
SIGTERM or Ctrl-C ends the process at once (TensorFlow's own SIGTERM handler only records a
preemption, and a Python handler cannot run while the main thread waits in a collective).
"""

from __future__ import annotations

import contextlib
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
# How to resume, in the line a stopped worker writes.
TRAIN_RESUME = "`damcnn-tf train --resume RUN_DIR`"


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


def private_folder() -> tuple:
    """``(path, temporary)``: ``$DAMCNN_WORKER_DIR`` (emptied, kept) or a new temporary folder."""
    chosen = os.environ.get(WORKER_DIR_ENV)
    if not chosen:
        return Path(tempfile.mkdtemp(prefix="damcnn-worker-")), True
    path = Path(chosen)
    if path.exists():
        shutil.rmtree(path)  # a previous attempt's copy; the chief's run is what counts
    path.mkdir(parents=True)
    return path, False


def private_copy(run: RunDir, path: Path) -> RunDir:
    """What resuming ``run`` needs, copied to ``path`` (empty if ``run`` does not exist yet)."""
    if run.path.exists():
        shutil.copytree(run.path, path, ignore=_NOT_COPIED, dirs_exist_ok=True)
    path.mkdir(parents=True, exist_ok=True)
    return RunDir(path)


def worker_run_dir(run: RunDir, resume: bool) -> RunDir:
    """A non-chief worker's private run directory: on ``resume`` a copy of the chief's state."""
    path, temporary = private_folder()
    private = private_copy(run, path) if resume else RunDir(path)
    private.temporary = temporary
    return private


def remove_worker_dir(run: RunDir) -> None:
    if getattr(run, "temporary", False):
        shutil.rmtree(run.path, ignore_errors=True)


@contextlib.contextmanager
def worker_role(strategy: str, run: RunDir, resume: bool, resume_hint: str = TRAIN_RESUME):
    """Who writes ``run``: yields None in the process that does (a single process, or the chief
    of several workers), else a private run directory for this non-chief worker, removed at
    the end. With several workers, all meet first; a signal then ends this one at once."""
    if strategy != "multiworker":
        yield None
        return
    private = None if is_chief() else worker_run_dir(run, resume)
    cleanup = (lambda: None) if private is None else (lambda: remove_worker_dir(private))
    try:
        start_workers(cleanup, resume_hint)
        yield private
    finally:
        cleanup()


def start_workers(on_exit=lambda: None, resume_hint: str = TRAIN_RESUME) -> None:
    """All workers meet before any data is read; a signal then ends this one at once."""
    from dam_cnn_tf.training.distribute import make_strategy

    make_strategy("multiworker")
    exit_on_signals(on_exit, resume_hint)


def exit_on_signals(on_exit=lambda: None, resume_hint: str = TRAIN_RESUME) -> None:
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
        sys.stderr.write(f"Error: {name}: worker stopped; resume with {resume_hint} on every worker\n")
        sys.stderr.flush()
        on_exit()
        os._exit(128 + number)

    threading.Thread(target=watch, name="damcnn-signal-watch", daemon=True).start()
