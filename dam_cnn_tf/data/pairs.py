"""Sample pairs for the multi-path autoencoder (paper §3.3.1, Eq. 8; DESIGN §1 "Pairs").

Each training anchor ``s_i`` gets one reconstruction target ``s_i^j`` per decoder ``j``: a
*different* training sample with the *same* expression label. Two modes:

* random (the paper's default, "DAM-CNN-r" in §4.3.2): the ``N`` targets are drawn uniformly
  among the anchor's other same-class samples, without replacement, so the ``N`` paths see
  distinct targets whenever the class has at least ``N`` other samples;
* attribute-specific ("DAM-CNN-g", §4.3.2): decoder ``j`` reconstructs a same-class sample whose
  attribute (e.g. gender) equals the ``j``-th of the attribute's sorted values.

Targets are indices into the same arrays the labels came from (the training split). Drawing is
seeded; ``epoch`` is mixed into the seed so each epoch can draw fresh targets reproducibly.
Everything is vectorised over samples: 30k anchors take milliseconds.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Optional, Sequence

import numpy as np

logger = logging.getLogger(__name__)


class PairSamplingError(ValueError):
    """Bad labels, attributes or options for pair sampling."""


@dataclasses.dataclass
class AttributeTargets:
    """Attribute-specific targets: ``targets[:, j]`` has attribute ``values[j]`` unless it fell back.

    ``fallback`` marks the (anchor, decoder) entries whose class has no other sample with that
    attribute value; those got a random same-class target instead. ``fallbacks`` counts them.
    """

    targets: np.ndarray
    values: tuple
    fallback: np.ndarray

    @property
    def fallbacks(self) -> int:
        return int(self.fallback.sum())


def _rng(seed: int, epoch: int) -> np.random.Generator:
    if int(seed) < 0 or int(epoch) < 0:
        raise PairSamplingError(f"seed and epoch must be non-negative, got seed={seed}, epoch={epoch}")
    return np.random.default_rng([int(seed), int(epoch)])


def _check_labels(labels) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise PairSamplingError(f"labels must be a 1-D integer array, got shape {labels.shape} dtype {labels.dtype}")
    return labels.astype(np.int64)


def _group(keys: np.ndarray):
    """Members of each group of equal ``keys``: (uniq, order, start, size, rank, group).

    ``order[start[g] : start[g] + size[g]]`` are the indices in group ``g`` (key ``uniq[g]``);
    ``rank[i]`` is the position of sample ``i`` in its group and ``group[i]`` its group id.
    """
    uniq, group, size = np.unique(keys, return_inverse=True, return_counts=True)
    order = np.argsort(group, kind="stable")
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    rank = np.empty(len(keys), np.int64)
    rank[order] = np.arange(len(keys)) - start[group[order]]
    return uniq, order, start, size, rank, group.reshape(-1)


def _distinct_positions(rng, size, excluded, count):
    """For each row, ``count`` distinct positions in ``[0, size)`` avoiding ``excluded`` (-1: none).

    Sequential sampling without replacement: the k-th draw is uniform over the positions still
    free, mapped past the taken ones in increasing order. Rows with fewer than ``count`` free
    positions repeat their draws cyclically (every other sample used as evenly as possible).
    """
    n = len(size)
    free = size - (excluded >= 0)
    out = np.zeros((n, count), np.int64)
    big = np.iinfo(np.int64).max
    taken = np.where(excluded >= 0, excluded, big)[:, None]
    for k in range(count):
        active = k < free
        r = np.floor(rng.random(n) * np.maximum(free - k, 1)).astype(np.int64)
        for column in np.sort(taken, axis=1).T:
            r += r >= column
        out[:, k] = np.where(active, r, 0)
        taken = np.concatenate([taken, np.where(active, r, big)[:, None]], axis=1)
    # Rows with fewer free positions than paths: column k repeats column k mod free.
    cycle = np.arange(count)[None, :] % np.maximum(free, 1)[:, None]
    return np.take_along_axis(out, cycle, axis=1)


def _same_class_targets(rng, labels, count, exclude_self):
    _, order, start, size, rank, group = _group(labels)
    n_size = size[group]
    exclude = exclude_self & (n_size > 1)
    excluded = np.where(exclude, rank, -1)
    positions = _distinct_positions(rng, n_size, excluded, count)
    targets = order[start[group][:, None] + positions]
    # A class with a single sample: the anchor is its own (only possible) target.
    alone = n_size == 1
    targets[alone] = np.arange(len(labels))[alone, None]
    return targets


def attribute_pair_targets(
    labels, attributes, seed: int = 0, epoch: int = 0, exclude_self: bool = True
) -> AttributeTargets:
    """Decoder ``j`` gets a same-class target whose attribute equals ``values[j]`` (§4.3.2, DAM-CNN-g).

    ``values`` are the attribute's distinct values, sorted; there is one decoder per value.
    Where a class has no sample with value ``j`` other than the anchor itself, the target is a
    random same-class sample instead (the anchor itself only if its class has one sample), and
    the entry is marked in ``fallback``.
    """
    labels = _check_labels(labels)
    attributes = np.asarray(attributes, dtype=object)
    if attributes.shape != labels.shape:
        raise PairSamplingError(f"attributes has {attributes.shape[0]} entries for {len(labels)} labels")
    missing = [i for i, a in enumerate(attributes) if a is None or a == ""]
    if missing:
        raise PairSamplingError(f"sample {missing[0]} has no attribute value ({len(missing)} samples lack one)")
    try:
        values = tuple(sorted(set(attributes.tolist())))
    except TypeError:
        raise PairSamplingError("attribute values must be all strings or all numbers") from None
    value_id = np.searchsorted(np.array(values, dtype=object), attributes).astype(np.int64)
    rng = _rng(seed, epoch)
    n, n_values = len(labels), len(values)

    # Groups of (class, value); each anchor draws one member of each (its class, value j) group.
    key = labels * n_values + value_id
    uniq, order, start, size, rank, _ = _group(key)
    targets = np.zeros((n, n_values), np.int64)
    fallback = np.zeros((n, n_values), bool)
    for j in range(n_values):
        wanted = labels * n_values + j
        g = np.minimum(np.searchsorted(uniq, wanted), len(uniq) - 1)
        exists = uniq[g] == wanted
        g_size = np.where(exists, size[g], 0)
        self_in = exists & (value_id == j) & exclude_self
        free = g_size - self_in
        ok = free > 0
        r = np.floor(rng.random(n) * np.maximum(free, 1)).astype(np.int64)
        r += self_in & (r >= rank)
        targets[:, j] = order[np.where(ok, start[g] + r, 0)]
        fallback[:, j] = ~ok
    if fallback.any():
        random_targets = _same_class_targets(rng, labels, n_values, exclude_self)
        targets[fallback] = random_targets[fallback]
    return AttributeTargets(targets, values, fallback)


def sample_pair_targets(
    labels,
    num_paths: Optional[int],
    seed: int = 0,
    attributes: Optional[Sequence] = None,
    exclude_self: bool = True,
    epoch: int = 0,
) -> np.ndarray:
    """Target indices ``(n, N)`` int64 for the MPAE's ``N`` decoders (Eq. 8's ``s_i^j``).

    ``labels``: the training split's integer labels. Without ``attributes``, row ``i`` holds
    ``num_paths`` same-class samples other than ``i``, distinct when the class has at least
    ``num_paths`` others (else they repeat cyclically); a class with a single sample makes the
    anchor its own target. ``exclude_self=False`` lets the anchor be drawn like any other sample.
    With ``attributes``, see ``attribute_pair_targets``; ``num_paths`` must then be None or the
    number of distinct values, and fallbacks are logged. Same ``(seed, epoch)``, same targets.
    """
    labels = _check_labels(labels)
    if attributes is not None:
        result = attribute_pair_targets(labels, attributes, seed=seed, epoch=epoch, exclude_self=exclude_self)
        if num_paths is not None and num_paths != len(result.values):
            raise PairSamplingError(
                f"--num-paths {num_paths} does not match the {len(result.values)} attribute values {result.values}"
            )
        if result.fallbacks:
            logger.warning(
                "%d of %d pair targets had no same-class sample with the wanted attribute value; "
                "a random same-class sample was used instead",
                result.fallbacks,
                result.fallback.size,
            )
        return result.targets
    if num_paths is None or int(num_paths) < 1:
        raise PairSamplingError(f"--num-paths must be a positive integer, got {num_paths}")
    rng = _rng(seed, epoch)
    return _same_class_targets(rng, labels, int(num_paths), bool(exclude_self))


def pair_target_schedule(
    labels,
    num_paths: Optional[int],
    seed: int = 0,
    attributes: Optional[Sequence] = None,
    exclude_self: bool = True,
    resample: bool = True,
) -> Callable[[int], np.ndarray]:
    """A function ``epoch -> targets``: fresh targets each epoch when ``resample``, else the same table.

    The paper stores one fixed set of pairs before stage 2 (§3.3.2, with Algorithm 1);
    ``resample=False`` is that.
    """
    fixed = None if resample else sample_pair_targets(labels, num_paths, seed, attributes, exclude_self)

    def targets_for_epoch(epoch: int) -> np.ndarray:
        if fixed is not None:
            return fixed
        return sample_pair_targets(labels, num_paths, seed, attributes, exclude_self, epoch=epoch)

    return targets_for_epoch
