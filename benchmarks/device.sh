#!/usr/bin/env bash
# DAM-CNN's GPU figures through Keras on JAX, in one command, on a machine without TensorFlow.
#
#   bash benchmarks/device.sh          # full sizes; JSON to $OUT/device.json (benchmarks/results/ without OUT)
#   bash benchmarks/device.sh --toy    # toy sizes: the same run on a CPU with the JAX CPU build
#
# Keras and the two packages it needs that such a machine lacks (namex, optree) travel as wheels in
# .whl/ (ignored through .git/info/exclude); fetch them once on a machine with PyPI:
#   bash benchmarks/device.sh --fetch-wheels
# They are installed with --target /tmp/site and put first on PYTHONPATH; nothing else is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=(keras==3.15.1 namex==0.1.0 optree==0.20.0)

if [ "${1:-}" = "--fetch-wheels" ]; then
    exclude=$(git rev-parse --git-path info/exclude)
    grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
    for version in 3.12 "$($PYTHON -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"; do
        "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version "$version" --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
    done
    ls -l .whl
    exit 0
fi

if [ -d .whl ]; then
    # --find-links picks, of each package, the wheel this Python can install.
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        --find-links .whl "${WHEELS[@]}"
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} KERAS_BACKEND=jax PYTHONUNBUFFERED=1
"$PYTHON" -c 'import jax, keras; print("JAX", jax.__version__, jax.devices(), "| Keras", keras.__version__, keras.backend.backend())'

RESULTS=${OUT:-benchmarks/results}
mkdir -p "$RESULTS"
NAME=device
[ "${1:-}" = "--toy" ] && NAME=device-toy
# 480 s of sections leave the machine's 10-minute limit room for the install and the start.
"$PYTHON" -m benchmarks.device "$@" --budget-s "${BUDGET_S:-480}" --json "$RESULTS/$NAME.json"
