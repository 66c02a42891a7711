"""Wall time of whole commands, one after another on one machine, written as JSON.

Used for the trunk cache's figure in docs/performance.md: the same 10-fold CK+48 face-resnet
cross-validation by the recipe before the trunk cache (a checkout of the earlier release, its
own config file) and by the current one, each with an empty cache, in one run:

    python -m benchmarks.crossval_timing --out benchmarks/results/cpu-amd-epyc-crossval-trunk-cache.json \\
        --run before "PYTHONPATH=/tmp/before python -m dam_cnn_tf.cli crossval --config ... --out /tmp/t-before" \\
        --run after "damcnn-tf crossval --backbone face-resnet ... --out /tmp/t-after"

Each command runs in a shell with its own empty ``DAMCNN_CACHE`` (prepared faces and trunk
maps are computed inside the timed run), its output going to ``<out>.<name>.log``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.machine import cpu_name


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the figures")
    parser.add_argument("--run", nargs=2, action="append", metavar=("NAME", "COMMAND"), required=True)
    args = parser.parse_args(argv)
    figures = {"cpu": cpu_name(), "cores": os.cpu_count(), "runs": []}
    for name, command in args.run:
        log = args.out.with_name(f"{args.out.stem}.{name}.log")
        with tempfile.TemporaryDirectory(prefix="damcnn-timing-cache-") as cache, open(log, "w") as out:
            start = time.monotonic()
            code = subprocess.call(command, shell=True, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "DAMCNN_CACHE": cache})
            seconds = time.monotonic() - start
        figures["runs"].append({"name": name, "command": command, "seconds": round(seconds, 1), "exit_code": code})
        print(f"{name}: {seconds / 60:.1f} min (exit {code})", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    first = figures["runs"][0]["seconds"]
    for run in figures["runs"][1:]:
        print(f"{figures['runs'][0]['name']} / {run['name']}: {first / run['seconds']:.2f}x on {figures['cpu']}")


if __name__ == "__main__":
    main()
