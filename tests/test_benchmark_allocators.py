"""The benchmark's allocator choice and its per-call page-fault and kernel-time counts."""

import ctypes
import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # benchmarks/ lives beside the package, not inside it
    sys.path.insert(0, str(REPO))

from benchmarks import allocators  # noqa: E402
from benchmarks.run import cpu_flags, main  # noqa: E402
from benchmarks.timing import time_interleaved  # noqa: E402
from cli_helpers import fresh_python_line  # noqa: E402

MB64 = 64 << 20


def test_fresh_buffers_count_their_page_faults_and_reused_ones_do_not():
    reused = (ctypes.c_char * MB64)()
    ctypes.memset(reused, 1, MB64)
    timings = time_interleaved({
        "fresh": lambda: b"\x01" * MB64,  # above glibc's mmap threshold: new pages each call
        "reused": lambda: ctypes.memset(reused, 2, MB64),
    }, steps=3)
    pages = MB64 // 4096
    assert timings["fresh"]["minor_faults"] > 0.5 * pages
    assert timings["reused"]["minor_faults"] < 0.05 * pages
    assert timings["fresh"]["system_s"] >= 0 and timings["fresh"]["user_s"] >= 0


def test_a_missing_allocator_is_one_line_naming_the_option_and_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(allocators, "SEARCH_DIRS", (str(tmp_path),))
    monkeypatch.setattr(allocators.ctypes.util, "find_library", lambda name: None)
    assert allocators.preload_env("malloc") == {"TF_CPU_ALLOCATOR_USE_BFC": "false"}
    assert allocators.preload_env("bfc") == {"TF_CPU_ALLOCATOR_USE_BFC": "true"}
    with pytest.raises(allocators.AllocatorError, match=r"^--allocator tcmalloc: .* not found \(apt install"):
        allocators.preload_env("tcmalloc")
    result = CliRunner().invoke(main, ["--config", "toy", "--allocator", "jemalloc", "--section", "stage2"])
    assert result.exit_code == 2 and "--allocator jemalloc" in result.output
    # A variant whose allocator is absent is reported as not run, the others still run.
    out = tmp_path / "stage2.json"
    result = CliRunner().invoke(main, ["--config", "toy", "--json", str(out), "--section", "stage2",
                                       "--stage2-variant", "float32", "--stage2-variant", "tcmalloc"])
    assert result.exit_code == 0, result.output
    variants = json.loads(out.read_text())["sections"]["stage2"]["variants"]
    assert "apt install libtcmalloc-minimal4" in variants["tcmalloc"]["skipped"]
    assert variants["float32"]["allocator"].startswith("bfc")  # the suite's default, as damcnn-tf
    assert variants["float32"]["step_minor_faults"] >= 0
    assert "not run" in result.output


def test_a_preloaded_allocator_runs_in_the_worker(tmp_path):
    if allocators.find_library("tcmalloc") is None:
        pytest.skip("tcmalloc is not installed (apt install libtcmalloc-minimal4)")
    out = tmp_path / "stage2.json"
    result = CliRunner().invoke(main, ["--config", "toy", "--json", str(out), "--section", "stage2",
                                       "--stage2-variant", "tcmalloc"])
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert payload["sections"]["stage2"]["variants"]["tcmalloc"]["allocator"].startswith("tcmalloc (")
    assert payload["machine"]["cpu_flags"] == cpu_flags()


def test_cpu_flags_come_from_the_known_list():
    flags = cpu_flags()
    assert set(flags) <= {"avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8"}
    if Path("/proc/cpuinfo").exists() and "avx2" in Path("/proc/cpuinfo").read_text():
        assert "avx2" in flags


def test_the_allocator_report_says_when_onednn_takes_the_tensors_first():
    script = ("import sys; sys.path.insert(0, %r); from benchmarks import allocators; "
              "print('REPORT', allocators.onednn_enabled(), allocators.active_allocator())" % str(REPO))
    reports = {}
    for setting in ("0", "1"):
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": setting, "TF_CPU_ALLOCATOR_USE_BFC": "true", "TF_CPP_MIN_LOG_LEVEL": "3"}
        reports[setting] = fresh_python_line(script, "REPORT ", env)
    assert reports["0"] == "False bfc (TensorFlow's pool)"
    assert reports["1"].startswith("True bfc (TensorFlow's pool), under TensorFlow's oneDNN allocator")
