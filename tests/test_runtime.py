"""The command line keeps CPU buffers in TensorFlow's pool: no fresh pages for each large tensor."""

import json
import os
from pathlib import Path

from cli_helpers import fresh_python_line

REPO = Path(__file__).resolve().parents[1]
MIB64 = 64 << 20

# A 64 MiB temporary per call, timed with the benchmarks' counter of minor page faults.
SCRIPT = f"""
import json, sys
sys.path.insert(0, {str(REPO)!r})
import dam_cnn_tf.cli  # what `damcnn-tf` does first
import tensorflow as tf
from benchmarks.timing import time_interleaved
x = tf.ones([{MIB64 // 4}])
double_and_sum = tf.function(lambda: tf.reduce_sum(x * 2.0))
print("FAULTS", json.dumps(time_interleaved({{"call": double_and_sum}}, 3)["call"]["minor_faults"]))
"""


def faults_per_call(**env_changes) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPU_ALLOCATOR_USE_BFC", "TF_ENABLE_ONEDNN_OPTS")}
    env.update(env_changes, TF_CPP_MIN_LOG_LEVEL="3")
    return json.loads(fresh_python_line(SCRIPT, "FAULTS ", env))


def test_the_command_line_reuses_large_cpu_buffers_unless_the_user_chose_otherwise():
    pages = MIB64 // 4096
    assert faults_per_call() < 0.05 * pages  # the pool hands the same buffer out again
    # Where TensorFlow runs oneDNN (by default on CPUs with AVX-512 VNNI/BF16 or AMX) its
    # oneDNN allocator pools buffers whatever the variable says; without oneDNN (AVX2-only
    # CPUs) the variable alone decides, which is what the command line's setting is for.
    assert faults_per_call(TF_ENABLE_ONEDNN_OPTS="0") < 0.05 * pages
    # The user's own setting wins: TensorFlow's default malloc faults the temporary in anew.
    assert faults_per_call(TF_ENABLE_ONEDNN_OPTS="0", TF_CPU_ALLOCATOR_USE_BFC="false") > 0.5 * pages
