"""A run directory: what a training run writes, and the lock that keeps it to one process.

    RUN_DIR/
      config.json         resolved configuration
      data.json           the dataset, class names and the split used
      state.json          the stages completed so far
      stage1/             VGG-SERD: backup (resume), best checkpoint, metrics.csv
      features/           salient-feature caches of stage 2
      stage2/             MPVS-Net: backup (resume), best checkpoint, metrics.csv
      model.keras         the DAM-CNN inference model
      run.lock            held while a process trains here, removed when it is done

Every file is written to a temporary name and renamed, so a killed run never leaves a
half-written file in place of a good one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path


class RunDirError(RuntimeError):
    pass


def atomic_write_text(path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def temporary_sibling(path) -> Path:
    """A name beside ``path`` to write to before renaming onto it (same file system)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{''.join(path.suffixes)}")


def _write_then_rename(path, write) -> None:
    tmp = temporary_sibling(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_save_model(model, path) -> None:
    """``model.save`` to a temporary name, then rename."""
    _write_then_rename(path, model.save)


def atomic_save_weights(model, path) -> None:
    """``model.save_weights`` to a temporary name, then rename."""
    _write_then_rename(path, model.save_weights)


def _same_file(handle, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


class RunDir:
    def __init__(self, path):
        self.path = Path(path)
        self._lock_file = None

    def __truediv__(self, name) -> Path:
        return self.path / name

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def model_path(self) -> Path:
        return self.path / "model.keras"

    def stage_dir(self, name: str) -> Path:
        path = self.path / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    # --- the lock --------------------------------------------------------------------------
    def acquire(self) -> "RunDir":
        self.path.mkdir(parents=True, exist_ok=True)
        lock_path = self.path / "run.lock"
        while True:
            handle = open(lock_path, "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                owner = handle.read().strip() or "another process"
                handle.close()
                raise RunDirError(f"{self.path}: in use by {owner} (lock {lock_path})") from None
            # The holder before us may have removed the file between our open and our lock:
            # then the lock is on a file no one else can find, so take the one now there.
            if _same_file(handle, lock_path):
                break
            handle.close()
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        self._lock_file = handle
        return self

    def release(self) -> None:
        """Remove ``run.lock`` (while still holding it), then unlock."""
        if self._lock_file is not None:
            (self.path / "run.lock").unlink(missing_ok=True)
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    @contextlib.contextmanager
    def locked(self):
        self.acquire()
        try:
            yield self
        finally:
            self.release()

    # --- state -----------------------------------------------------------------------------
    def read_json(self, name: str, default=None):
        path = self.path / name
        if not path.exists():
            return default
        try:
            return json.loads(path.read_text())
        except ValueError as error:
            raise RunDirError(f"{path}: not valid JSON ({error})") from None

    def write_json(self, name: str, data) -> None:
        atomic_write_json(self.path / name, data)

    def completed(self) -> set:
        return set(self.read_json("state.json", {}).get("completed", []))

    def step_info(self, step: str) -> dict:
        """What ``mark_completed`` recorded with ``step`` (empty if nothing)."""
        return dict(self.read_json("state.json", {}).get("info", {}).get(step, {}))

    def mark_completed(self, step: str, **info) -> None:
        """Record ``step`` as done, with ``info``; ``done_with`` lists steps it replaces in
        ``completed`` (their info stays), e.g. a stage's phases once the stage is done."""
        done_with = info.pop("done_with", ())
        state = self.read_json("state.json", {"completed": []})
        state["completed"] = [s for s in state["completed"] if s not in done_with]
        if step not in state["completed"]:
            state["completed"].append(step)
        state.setdefault("info", {})[step] = info
        self.write_json("state.json", state)
