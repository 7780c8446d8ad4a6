"""The ETA from the start (suite/grid_eta.py): priors from conf/experiment/common/cell_seconds.yaml,
rescaled by what finished cells really took."""

from __future__ import annotations

import time

import pytest

from suite import grid_eta
from suite.grid import progress_line


@pytest.mark.parametrize(("arm", "kind"), [
    ("+experiment/arm/prune_ofa=dense", "dense"), ("+experiment/arm/prune_ofa=gmp90_kd", "kd"),
    ("+experiment/arm/prune_ofa=gmp90_kd_qat8", "qat"), ("+experiment/arm/intelcaffe_int8=ptq_maxabs", "ptq"),
    ("+experiment/common/key=small_dense", "small"), ("+experiment/arm/sparsebert_s4=dense_half_layers", "small")])
def test_cell_kind_from_the_arm(arm, kind):
    assert grid_eta.cell_kind(["model=minilm", "task=sst2", arm, "seed=42"]) == kind


def test_priors_pay_each_teacher_once_and_scale_with_budget_and_train_size():
    t = grid_eta.table()
    seconds = t["seconds"]["sst2"]
    jobs = [["task=sst2", "+experiment/common/key=gmp90_kd", f"profile.budget={b}", "seed=42"] for b in (1, 2)]
    jobs += [["task=sst2", "+experiment/common/key=dense", f"profile.budget={b}", "seed=42"] for b in (1, 2)]
    priors = grid_eta.grid_prior(jobs)
    # the 1x teacher serves every budget; the 1x dense cell *is* it (evaluated only); 2x dense trains
    assert priors == [seconds["kd"] + seconds["teacher"], 2 * seconds["kd"], t["dense_cached_seconds"],
                      2 * seconds["dense"]]
    assert grid_eta.grid_prior(jobs[2:3], train_samples=8000) == [4 * seconds["dense"]]
    paid: set = set()  # one cache across the grids of `./reproduce.sh all`
    grid_eta.grid_prior(jobs[2:3], paid=paid)
    assert grid_eta.grid_prior(jobs[:1], paid=paid) == [seconds["kd"]]
    upstream = [["task=sst2", f"+experiment/arm/prune_ofa={a}", "seed=42", "+experiment=prune_ofa"]
                for a in ("dense", "ofa90_kd", "ofa90_kd")]
    assert grid_eta.grid_prior(upstream) == [seconds["dense"], seconds["kd"] + t["upstream_seconds"], seconds["kd"]]


def test_eta_is_shown_before_the_first_cell_and_calibrated_after():
    plan = {"experiment": "x", "total": 3, "start": time.time(), "parallel": 1, "prior_seconds": [100.0, 100.0, 200.0]}
    assert "eta 6:40" in progress_line(plan, [])                       # 400 s before anything ran
    ran = [{"job": 0, "status": "FINISHED", "seconds": 50.0}]
    assert grid_eta.calibrated_eta(plan["prior_seconds"], ran, 1) == pytest.approx(150.0)  # twice as fast
    assert "eta 2:30" in progress_line(plan, ran)
    skipped = [{"job": 0, "status": "SKIPPED", "seconds": 0.1}]
    assert grid_eta.calibrated_eta(plan["prior_seconds"], skipped, 2) == pytest.approx(150.0)


def test_estimate_of_the_quick_grids_before_they_run(capsys):
    from suite.grid import main

    assert main(["--estimate", "prune_ofa", "budget_curves"]) == 0
    err = capsys.readouterr().err
    assert "prune_ofa: 4 cells" in err and "budget_curves: 12 cells" in err and "all 2 grids: 16 cells" in err


def test_all_fits_two_hours_on_two_cores_by_the_measured_cell_times():
    """`./reproduce.sh all` is sized to 2 h on 2 idle cores (issue 14): a guard on the grids' configs
    (by cell_seconds.yaml, which is refreshed from real runs), not a timing."""
    import re

    from suite.paths import ROOT

    script = (ROOT / "reproduce.sh").read_text()
    experiments = re.search(r"EXPERIMENTS=\(([^)]*)\)", script).group(1).split()
    rows = grid_eta.estimate(experiments, parallel=2)
    assert len(rows) == 7 and sum(seconds for *_, seconds in rows) <= 2 * 3600
