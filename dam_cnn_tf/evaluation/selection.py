"""Choosing among recipes without a test face: nested selection, fold by fold.

A recipe chosen on some folds' test figures, or on one fold's validation part whose people are
other folds' test people, carries that choice into the figures it reports. Here every choice
is made inside one outer fold, on that fold's validation part (carved from its training
people), and applies to that fold's test part alone:

1. each candidate variant trains on the fold's training part, choosing its checkpoints on the
   validation part, and is scored there (``score_on_validation``; nothing else is predicted);
2. the candidate with the highest validation accuracy is chosen (ties: the lower validation
   cross-entropy, then the earlier candidate), after ``check_blind`` has made sure that no
   score it compares was computed on a face of the fold's test part or of a person in it;
3. only the chosen candidate is then scored on the test part, once (``score_choice_on_test``).

What each choice saw is recorded: every candidate's validation scores, the validation faces
(their paths) and people.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Optional

import numpy as np

from dam_cnn_tf.data.protocols import Fold
from dam_cnn_tf.evaluation.protocol import train_and_evaluate
from dam_cnn_tf.recipes.options import FIELDS, ConfigError, TrainConfig
from dam_cnn_tf.training.prepare import PreparedData
from dam_cnn_tf.training.run_dir import RunDir


class SelectionError(ValueError):
    """A choice that would read a test face, or candidates that cannot be compared; one line."""


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One variant a fold may choose: ``key`` names its folder, ``changes`` its settings."""

    key: str
    label: str
    changes: tuple = ()  # (setting, value) pairs over the experiment's settings

    def config(self, base: TrainConfig) -> TrainConfig:
        return base.replace(**dict(self.changes))


def read_candidates(path) -> tuple:
    """The candidates of a TOML file: one table each, in order of preference for ties; ``label``
    names it, every other key is a setting (``[defaults]`` with none is the settings as given)."""
    path = Path(path)
    try:
        tables = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"--candidates {path}: unreadable ({error})") from None
    candidates = []
    for key, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"--candidates {path}: {key!r} is not a table of settings")
        settings = {name.replace("-", "_"): value for name, value in table.items() if name != "label"}
        unknown = sorted(set(settings) - FIELDS)
        if unknown:
            raise ConfigError(f"--candidates {path}: [{key}] has unknown setting(s) {', '.join(unknown)}")
        label = str(table.get("label", key))
        candidates.append(Candidate(key, label, tuple(sorted(settings.items()))))
    if len(candidates) < 2:
        raise ConfigError(f"--candidates {path}: a choice needs at least two candidates, found {len(candidates)}")
    return tuple(candidates)


@dataclasses.dataclass(frozen=True)
class ValidationScore:
    """A candidate's scores on some faces: ``faces`` are their indices into the data set."""

    accuracy: float
    cross_entropy: float
    faces: np.ndarray


def validation_only(fold: Fold) -> Fold:
    """``fold`` without its test part: a run on it is scored on the validation part alone."""
    return Fold(fold.name, fold.train, np.zeros(0, np.int64), fold.val)


def check_blind(fold: Fold, scores: dict, subjects=None) -> None:
    """Refuse a choice between ``scores`` if any of them was computed on a face of ``fold``'s
    test part, or (with ``subjects``, one id per face of the data set) on a face of a person
    who has a face in the test part."""
    test = np.asarray(fold.test)
    people = set(np.asarray(subjects, dtype=object)[test].tolist()) - {None, ""} if subjects is not None else set()
    for key, score in scores.items():
        seen = np.asarray(score.faces, dtype=np.int64)
        read = np.intersect1d(seen, test)
        if read.size:
            raise SelectionError(f"fold {fold.name}: the choice would read {read.size} test face(s) (candidate "
                                 f"{key}, e.g. face {int(read[0])}); choices are made on validation faces only")
        if people:
            shared = sorted(set(np.asarray(subjects, dtype=object)[seen].tolist()) & people)
            if shared:
                raise SelectionError(f"fold {fold.name}: the choice would read faces of {len(shared)} test "
                                     f"person(s) ({', '.join(map(str, shared[:3]))}, candidate {key}); choices "
                                     "are made on validation people only")


def choose(fold: Fold, candidates, scores: dict, subjects=None) -> str:
    """The key of the candidate with the best validation accuracy (ties: the lower validation
    cross-entropy, then the earlier candidate), once ``check_blind`` has passed."""
    if not candidates:
        raise SelectionError(f"fold {fold.name}: no candidate to choose from")
    missing = [c.key for c in candidates if c.key not in scores]
    if missing:
        raise SelectionError(f"fold {fold.name}: no validation score for {', '.join(missing)}")
    check_blind(fold, scores, subjects)
    order = {c.key: i for i, c in enumerate(candidates)}
    return max(order, key=lambda k: (scores[k].accuracy, -scores[k].cross_entropy, -order[k]))


def score_on_validation(data: PreparedData, fold: Fold, config: TrainConfig, run: RunDir, verbose: int = 1) -> ValidationScore:
    """Train ``run`` on ``fold``'s training part (checkpoints chosen on its validation part)
    and score it on the validation part; the test part is never predicted."""
    if not len(fold.val):
        raise SelectionError(f"fold {fold.name}: no validation part to choose on (--val-fraction)")
    result = train_and_evaluate(data, validation_only(fold), config, run, verbose=verbose)
    return ValidationScore(result["accuracy"], result["cross_entropy"], np.asarray(fold.val))


def score_choice_on_test(data: PreparedData, fold: Fold, config: TrainConfig, run: RunDir, verbose: int = 1) -> dict:
    """Score the chosen candidate's run (trained by ``score_on_validation``) on the test part, once."""
    return train_and_evaluate(data, fold, config, run, verbose=verbose)


def faces_seen(data: PreparedData, indices) -> dict:
    """What a choice saw: how many faces, which people (where known) and which files."""
    samples = [data.dataset.samples[int(i)] for i in indices]
    people = sorted({s.subject for s in samples if s.subject})
    return {"faces": len(samples), "people": people or None,
            "paths": [s.path if s.path is not None else f"#{int(i)}" for s, i in zip(samples, indices)]}


def subjects_of(data: PreparedData) -> Optional[np.ndarray]:
    return data.dataset.subjects() if data.dataset.has_subjects() else None
