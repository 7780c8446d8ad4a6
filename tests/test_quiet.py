"""The machine-wide timing window (suite/quiet.py): loops pause while another process times."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from suite import quiet

CHILD_TIMER_PID = "from suite.quiet import timer_pid; print(timer_pid())"


@pytest.fixture(autouse=True)
def timing_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARQ_TIMING_DIR", str(tmp_path))
    return tmp_path


def _child(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=os.environ.copy()).stdout.strip()


def test_no_flag_no_wait():
    assert quiet.yield_to_timer() == 0.0
    assert quiet.timer_pid() is None


def test_loops_wait_while_a_live_process_holds_the_flag(timing_dir):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (timing_dir / quiet.FLAG).write_text(str(holder.pid))
        assert quiet.timer_pid() == holder.pid
        threading.Timer(0.5, lambda: (timing_dir / quiet.FLAG).unlink()).start()
        waited = quiet.yield_to_timer()
        assert 0.4 <= waited < 5
    finally:
        holder.kill()
        holder.wait()


def test_a_flag_left_by_a_dead_process_is_ignored(timing_dir):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (timing_dir / quiet.FLAG).write_text(str(dead.pid))
    start = time.monotonic()
    assert quiet.yield_to_timer() < 1.0
    assert time.monotonic() - start < 1.0


def test_timing_window_flags_this_process_for_others_then_clears(timing_dir):
    with quiet.timing_window(max_settle_s=1.0) as q:
        assert _child(CHILD_TIMER_PID) == str(os.getpid())
        assert quiet.timer_pid() is None  # never waits for itself
        assert q.waited_s >= 0 and (q.busy is None or 0.0 <= q.busy <= 1.0)
    assert not (timing_dir / quiet.FLAG).exists()
    assert _child(CHILD_TIMER_PID) == "None"


def test_a_busy_machine_is_recorded_not_quiet(monkeypatch):
    monkeypatch.setattr(quiet, "busy_share", lambda window_s=0.5: 0.9)
    with quiet.timing_window(max_settle_s=0.0) as q:
        assert (q.busy, q.quiet) == (0.9, False)
    monkeypatch.setattr(quiet, "busy_share", lambda window_s=0.5: 0.01)
    with quiet.timing_window(max_settle_s=0.0) as q:
        assert q.quiet


def test_a_cell_yields_to_a_timer_between_its_stages(monkeypatch, smoke_overrides, run_cell, tmp_path):
    """Loading, evaluation, packing: a cell pauses for another cell's timing at each stage, not only
    between training steps (model loading or a JIT compile beside a timer made it busy)."""
    import suite.measure
    import suite.run

    calls = []
    for module in (suite.run, suite.measure):
        monkeypatch.setattr(module, "yield_to_timer", lambda: calls.append(1) or 0.0)
    res = run_cell(smoke_overrides + ["sparsity=gmp", "sparsity.target=0.5", "measure.packed_eval=true",
                                      f"cache_dir={tmp_path}", "experiment_name=yield-stages"])
    assert res.status == "FINISHED" and len(calls) >= 5  # start, model, eval, measure, pack
