"""Tiny configurations and data for the command-line tests."""

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from dam_cnn_tf.cli import main

# A DAM-CNN small enough to train both stages in seconds on a CPU.
TINY_OPTIONS = [
    "--input-size", "32", "--backbone", "compact-tiny", "--fc-units", "16", "--encoder-units", "16",
    "--num-paths", "2", "--stage1-epochs", "2", "--stage2-epochs", "2", "--stage1-batch-size", "16",
    "--stage2-batch-size", "16", "--alpha-s", "1e-3", "--alpha-m", "1e-3", "--alpha-fc", "1e-3", "--quiet",
]


def invoke(*args, expect_ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if expect_ok:
        assert result.exit_code == 0, result.output
    return result


def synthetic_folder(root: Path, subjects: int = 6, per_class: int = 2, size: int = 32) -> Path:
    from dam_cnn_tf.data.synthetic import make_synthetic_faces, synthetic_dataset_to_folder

    dataset = make_synthetic_faces(num_subjects=subjects, images_per_class=per_class, image_size=size, seed=3)
    return synthetic_dataset_to_folder(dataset, root)


def read_json(path):
    return json.loads(Path(path).read_text())


def fresh_python_line(script: str, marker: str, env: dict) -> str:
    """Run ``script`` in a new interpreter with environment ``env`` (for settings that count only
    before TensorFlow starts); the rest of the first line of its output that starts with ``marker``."""
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return next(line for line in proc.stdout.splitlines() if line.startswith(marker))[len(marker):]
