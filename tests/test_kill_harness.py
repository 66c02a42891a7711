"""kill -9 at random points of stage 1, feature extraction, stage 2 and export.

Each resume finishes with the same number of epochs as an uninterrupted run, and nothing a
reader trusts is ever half-written. ``DAMCNN_KILLS`` sets the kills per phase (the slow run
takes many; see docs/reliability.md).
"""

import os
import random

import pytest

import kill_harness as harness

QUICK_KILLS = 1


def _kills(slow: bool) -> int:
    return int(os.environ.get("DAMCNN_KILLS", 10 if slow else QUICK_KILLS))


def _interrupt_and_finish(tmp_path, kills: int, seed: int) -> dict:
    rng = random.Random(seed)
    run = tmp_path / "run"
    done = {"kills": 0}
    for phase in ("stage1", "features", "stage2"):
        for _ in range(kills):
            if harness.kill_during(run, phase, rng):
                done["kills"] += 1
            harness.check_run_is_consistent(run)
    state = harness.finish(run)
    harness.check_run_is_consistent(run)
    assert state["completed"] == ["stage1", "stage2", "model"]
    assert state["info"]["stage1"]["epochs"] == harness.EPOCHS
    assert state["info"]["stage2"]["epochs"] == harness.EPOCHS
    for stage in ("stage1", "stage2"):
        rows = (run / stage / "metrics.csv").read_text().splitlines()[1:]
        assert [int(r.split(",")[0]) for r in rows] == list(range(harness.EPOCHS))

    export_dir = tmp_path / "export"
    for _ in range(kills):
        harness.kill_export(run, export_dir, rng)
        harness.check_export_is_consistent(export_dir)
    return done


def test_kill_at_random_points_quick(tmp_path):
    done = _interrupt_and_finish(tmp_path, _kills(slow=False), seed=0)
    assert done["kills"] >= 2


@pytest.mark.slow
def test_kill_at_random_points_many_times(tmp_path):
    done = _interrupt_and_finish(tmp_path, _kills(slow=True), seed=1)
    print(f"kills that landed: {done['kills']}")
    assert done["kills"] >= _kills(slow=True)
