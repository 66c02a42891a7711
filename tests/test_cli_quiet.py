"""The command line starts quietly: no TensorFlow start-up lines, and ``--help`` without TensorFlow."""

import os
import re
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
        # MODEL is optional: a first argument that is no model, no preset and no file is an input.
        assert [line for line in result.stderr.splitlines() if line.strip()] == [
            "Error: input /no/such/model does not exist"]


def test_log_level_default_respects_the_users_value():
    code = "import os, dam_cnn_tf; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    default = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    chosen = subprocess.run([sys.executable, "-c", code], env={**env, "TF_CPP_MIN_LOG_LEVEL": "0"},
                            capture_output=True, text=True, timeout=60)
    assert (default.stdout.strip(), chosen.stdout.strip()) == ("2", "0")


# absl's line prefix, as TensorFlow's C++ log writes it: severity, date, time, thread, file:line]
LOG_LINE = re.compile(r"^[IWEF]\d{4} \d+:\d+:\d+\.\d+\s+\d+ \S+:\d+\] ", re.MULTILINE)


def test_a_command_that_starts_tensorflow_is_quiet_unless_the_log_level_is_set(tmp_path):
    args = ("crossval", "--data", str(tmp_path), "--protocol", "cross-dataset", "--out", str(tmp_path / "out"))
    error = "Error: --protocol cross-dataset and --test-data go together"
    quiet = _damcnn(*args)
    assert "tensorflow imported: True" in quiet.stdout  # the error comes after TensorFlow started
    assert [line for line in quiet.stderr.splitlines() if line.strip()] == [error], quiet.stderr
    asked = _damcnn(*args, env_extra={"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert LOG_LINE.search(asked.stderr) and error in asked.stderr, asked.stderr


def test_the_command_line_keeps_retracing_warnings_from_the_user(monkeypatch):
    import logging

    import tensorflow as tf

    import dam_cnn_tf
    from cli_helpers import invoke
    from dam_cnn_tf.tf_log import RETRACING_FILTER

    def retrace(step):  # a fresh tf.function of the same function each time, as each fold makes
        for i in range(6):
            tf.function(step)(tf.constant(i))

    def before(x):
        return x + 1

    def after(x):
        return x + 2

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = tf.get_logger()
    logger.addHandler(handler)
    try:
        logger.removeFilter(RETRACING_FILTER)
        retrace(before)
        assert any("retracing" in r.getMessage() for r in records)  # TensorFlow does warn
        records.clear()
        monkeypatch.setattr(dam_cnn_tf, "USER_TF_LOG_LEVEL", False)  # as for a user who set none
        invoke("--version")
        retrace(after)
        assert not [r.getMessage() for r in records if "retracing" in r.getMessage()]
    finally:
        logger.removeHandler(handler)
        logger.removeFilter(RETRACING_FILTER)
