"""Faults tier (issue 17, case 8, the parts outside the packed bytes): the smoke profile trains
the steps it says, a PTQ cell of the cached teacher logs no NaN, a dead sweep's wall time."""

from __future__ import annotations

import json
import math
import os
import time

import pytest

pytestmark = pytest.mark.faults


def test_smoke_profile_does_four_optimizer_steps(smoke_overrides, run_cell):
    result = run_cell(smoke_overrides + ["task=sst2", "seed=41", "experiment_name=faults-steps"])
    assert result.metrics["train_steps"] == 4.0


def test_ptq_of_the_cached_teacher_logs_no_nan(smoke_overrides, run_cell):
    overrides = smoke_overrides + ["task=sst2", "seed=42", "experiment_name=faults-ptq"]
    result = run_cell(overrides + ["quant=ptq", "quant.fp32_source=teacher"])
    assert result.status == "FINISHED" and result.metrics["train_steps"] == 0.0
    assert "train_loss" not in result.metrics  # no step ran in this cell: nothing to average
    assert not [k for k, v in result.metrics.items() if isinstance(v, float) and math.isnan(v)]


def test_dead_sweep_wall_time_ends_at_its_last_cell(tmp_path):
    from suite.grid import format_summary, summarize

    state = tmp_path / ".grid"
    state.mkdir()
    start = time.time() - 3600  # started an hour ago, killed 2 minutes in
    (state / "plan.json").write_text(json.dumps({"experiment": "dead", "total": 3, "start": start}))
    job = state / "job-00000.json"
    job.write_text(json.dumps({"job": 0, "status": "FINISHED", "cell_id": "abc", "metrics": {}}))
    os.utime(job, (start + 120, start + 120))
    s = summarize(tmp_path)
    assert s["wall_seconds"] == pytest.approx(120, abs=1) and not s["ended"]
    assert "wall 2:00 to its last cell (no end recorded" in format_summary(s)
    (state / "plan.json").write_text(json.dumps({"experiment": "done", "total": 1, "start": start,
                                                 "end": start + 60}))
    assert summarize(tmp_path)["wall_seconds"] == pytest.approx(60) and summarize(tmp_path)["ended"]
