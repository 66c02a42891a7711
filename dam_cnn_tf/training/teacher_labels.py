"""A teacher's class probabilities for every training face, computed once and kept on disk.

Distillation (``training.distillation``) trains a small student on what a large model (the
teacher, e.g. the ``fer2013-face-resnet`` preset) says about each face. The teacher is slow
(minutes for tens of thousands of faces on a CPU), so its answers are stored in one ``.npz``
file beside the faces' fingerprint and the teacher's: a file made from other faces (another
order, another resize) or by another teacher is refused, never silently reused.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from dam_cnn_tf.data.faces import resize_face
from dam_cnn_tf.data.trunk_cache import face_keys
from dam_cnn_tf.errors import PathError

FORMAT_VERSION = 1


class TeacherLabelsError(PathError):
    """A teacher-label file that is missing, damaged, or made from other faces or another teacher."""

    MESSAGE = "teacher labels {path}: {reason}"


def faces_fingerprint(faces: np.ndarray) -> str:
    """A digest of the faces, in order: their shapes and pixels."""
    return hashlib.sha256(face_keys(faces).tobytes()).hexdigest()


def teacher_fingerprint(model_sha256: str, input_size: int, class_names: Sequence[str]) -> str:
    """What decides a teacher's answers: its file, the size faces are enlarged to, its classes."""
    text = f"{model_sha256}|{int(input_size)}|{','.join(class_names)}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def teacher_probabilities(predict: Callable[[np.ndarray], np.ndarray], faces: np.ndarray, input_size: int,
                          batch_size: int = 64, progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
    """``predict`` (float32 ``(B, S, S, 3)`` raw 0-255 → ``(B, K)`` probabilities) on every face,
    each enlarged to ``input_size`` as the teacher's training faces were (``resize_face``)."""
    out = []
    for start in range(0, len(faces), batch_size):
        batch = np.stack([resize_face(face, (input_size, input_size)) for face in faces[start:start + batch_size]])
        out.append(np.asarray(predict(batch.astype(np.float32)), np.float32))
        if progress is not None:
            progress(min(start + batch_size, len(faces)), len(faces))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def save_teacher_labels(path, probabilities: np.ndarray, faces: np.ndarray, teacher: str,
                        class_names: Sequence[str]) -> Path:
    """Write the teacher's ``probabilities`` for ``faces`` (atomic: a temporary name, renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
    try:
        np.savez(tmp, probabilities=np.asarray(probabilities, np.float32), faces=faces_fingerprint(faces),
                 teacher=teacher, class_names=np.asarray(list(class_names)), version=FORMAT_VERSION)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_teacher_labels(path, faces: np.ndarray, teacher: str, class_names: Sequence[str]) -> np.ndarray:
    """The probabilities stored at ``path``, after checking they were made by ``teacher`` (its
    fingerprint) for exactly ``faces`` with these ``class_names``; ``TeacherLabelsError`` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise TeacherLabelsError(path, "no such file")
    try:
        with np.load(path, allow_pickle=False) as stored:
            entries = {key: stored[key] for key in stored.files}
    except Exception as error:  # numpy raises many types for a damaged archive
        raise TeacherLabelsError(path, f"unreadable ({type(error).__name__}: {error})") from None
    missing = {"probabilities", "faces", "teacher", "class_names", "version"} - set(entries)
    if missing:
        raise TeacherLabelsError(path, f"not a teacher-label file (no {', '.join(sorted(missing))})")
    if int(entries["version"]) != FORMAT_VERSION:
        raise TeacherLabelsError(path, f"format version {int(entries['version'])}, expected {FORMAT_VERSION}")
    if str(entries["teacher"]) != teacher:
        raise TeacherLabelsError(path, "stale: made by another teacher (or another input size or class order)")
    if list(entries["class_names"]) != list(class_names):
        raise TeacherLabelsError(path, f"stale: classes {list(entries['class_names'])}, expected {list(class_names)}")
    probabilities = entries["probabilities"]
    if probabilities.shape != (len(faces), len(class_names)):
        raise TeacherLabelsError(path, f"stale: {probabilities.shape[0]} faces stored, {len(faces)} given")
    if str(entries["faces"]) != faces_fingerprint(faces):
        raise TeacherLabelsError(path, "stale: made from other faces (other pixels or another order)")
    return probabilities


def cached_teacher_labels(path, faces: np.ndarray, teacher: str, class_names: Sequence[str],
                          compute: Callable[[], np.ndarray]) -> np.ndarray:
    """The stored labels when ``path`` holds them for these faces and this teacher; else
    ``compute()``'s, written to ``path``. A file that exists but does not match is refused
    (``TeacherLabelsError``): delete it to recompute, rather than overwrite someone's labels."""
    if Path(path).exists():
        return load_teacher_labels(path, faces, teacher, class_names)
    probabilities = compute()
    save_teacher_labels(path, probabilities, faces, teacher, class_names)
    return probabilities
