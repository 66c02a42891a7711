"""A small data set cut from a larger one: the faces of K people, or K faces, drawn at random (seeded).

Used to check that a training recipe holds on a small lab data set and on a small set of faces
in the wild (docs/results.md):

    python benchmarks/people_subset.py ../shared/data/ckplus48 ck48-12people --people 12 --seed 0
    python benchmarks/people_subset.py ../shared/data/fer2013/train fer2013-2000 --faces 2000 --seed 0

With ``--people`` the source is a folder of class folders with an ``index.csv``
(``path,label,subject``), as CK+48 is; the people are drawn with NumPy's generator from
``--seed`` among the sorted subject ids, and their images are copied with the same layout and a
filtered ``index.csv``. With ``--faces`` (for sets without people, as FER2013) the faces are
drawn among all images of the class folders, sorted by path, so each class keeps about its share.
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


def draw_faces(source: Path, faces: int, seed: int) -> list:
    pool = sorted(p.relative_to(source).as_posix() for p in source.glob("*/*") if p.is_file())
    if faces > len(pool):
        raise SystemExit(f"--faces {faces}: {source} has only {len(pool)} images in class folders")
    return sorted(np.random.default_rng(seed).choice(pool, size=faces, replace=False).tolist())


def copy_faces(source: Path, out: Path, paths) -> None:
    for path in paths:
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / path, target)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--people", type=int, default=12)
    what.add_argument("--faces", type=int, help="draw this many faces instead of people")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.faces is not None:
        chosen = draw_faces(args.source, args.faces, args.seed)
        copy_faces(args.source, args.out, chosen)
        print(f"{len(chosen)} images in {args.out}")
        return
    with open(args.source / "index.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    chosen = set(draw_people([r["subject"] for r in rows], args.people, args.seed))
    kept = [r for r in rows if r["subject"] in chosen]
    copy_faces(args.source, args.out, [row["path"] for row in kept])
    with open(args.out / "index.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    print(f"{len(kept)} images of {len(chosen)} people ({', '.join(sorted(chosen))}) in {args.out}")


if __name__ == "__main__":
    main()
