"""A small data set cut from a larger one: the faces of K people drawn at random (seeded).

Used to check that a training recipe holds on a small lab data set (docs/results.md):

    python benchmarks/people_subset.py ../shared/data/ckplus48 ck48-12people --people 12 --seed 0

The source is a folder of class folders with an ``index.csv`` (``path,label,subject``), as
CK+48 is; the people are drawn with NumPy's generator from ``--seed`` among the sorted subject
ids, and their images are copied with the same layout and a filtered ``index.csv``.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import numpy as np


def draw_people(subjects, people: int, seed: int) -> list:
    pool = sorted(set(subjects))
    if people > len(pool):
        raise SystemExit(f"--people {people}: the source has only {len(pool)} people")
    return sorted(np.random.default_rng(seed).choice(pool, size=people, replace=False).tolist())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--people", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    with open(args.source / "index.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    chosen = set(draw_people([r["subject"] for r in rows], args.people, args.seed))
    kept = [r for r in rows if r["subject"] in chosen]
    for row in kept:
        target = args.out / row["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.source / row["path"], target)
    with open(args.out / "index.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    print(f"{len(kept)} images of {len(chosen)} people ({', '.join(sorted(chosen))}) in {args.out}")


if __name__ == "__main__":
    main()
