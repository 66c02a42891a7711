"""The command line starts quietly: no TensorFlow start-up lines, and ``--help`` without TensorFlow."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOISE = ("oneDNN custom operations", "Unable to register cu", "cudart_stub", "This TensorFlow binary is optimized",
         "absl::InitializeLog")
# Runs the console entry point, then says whether TensorFlow was imported.
ENTRY = ("import sys\nfrom dam_cnn_tf.cli import main\nsys.argv[0] = 'damcnn-tf'\n"
         "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
         "print('tensorflow imported:', 'tensorflow' in sys.modules)\nsys.exit(code)\n")


def _damcnn(*args, env_extra=None):
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", ""), "PYTHONPATH": str(ROOT),
           **(env_extra or {})}
    return subprocess.run([sys.executable, "-c", ENTRY, *args], env=env, capture_output=True, text=True, timeout=120)


def _assert_quiet(result):
    output = result.stdout + result.stderr
    assert not [n for n in NOISE if n in output], output


def test_help_is_quiet_and_does_not_import_tensorflow():
    result = _damcnn("--help")
    assert result.returncode == 0 and "Usage: damcnn-tf" in result.stdout
    _assert_quiet(result)
    assert "tensorflow imported: False" in result.stdout


@pytest.mark.parametrize("args", [("predict", "/no/such/model", "/no/such.png"), ("export", "--help")])
def test_quick_commands_are_quiet(args):
    result = _damcnn(*args)
    _assert_quiet(result)
    if args[-1] != "--help":
        assert result.returncode != 0
        assert [line for line in result.stderr.splitlines() if line.strip()] == [
            "Error: input /no/such.png does not exist"]


def test_log_level_default_respects_the_users_value():
    code = "import os, dam_cnn_tf; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    default = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    chosen = subprocess.run([sys.executable, "-c", code], env={**env, "TF_CPP_MIN_LOG_LEVEL": "0"},
                            capture_output=True, text=True, timeout=60)
    assert (default.stdout.strip(), chosen.stdout.strip()) == ("2", "0")
