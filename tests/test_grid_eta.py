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
    assert len(rows) == 7 and sum(seconds for *_, seconds in rows) <= 2.5 * 3600  # DC3 runs its three ablations and the curves have movement pruning: ~2 h 15 min


def test_paper_scale_cost_pays_teachers_and_upstreams_once():
    """Paper-scale grids are estimated from compute: 6 x encoder weights x tokens per trained
    example, the dense teacher of a model x task x seed once, PTQ its evals only, one upstream per
    model x sparsity."""
    from omegaconf import OmegaConf

    t = grid_eta.table()["full"]
    assert grid_eta.encoder_weights(*t["models"]["bert_base"]) == 84_934_656  # BERT-Base's 85M encoder matmuls
    base = OmegaConf.create({"model": {"name": "bert_base"}, "task": {"name": "mrpc"}, "seed": 42,
                             "train": {"epochs": 3}, "profile": {"name": "full", "epochs": None},
                             "upstream": {"steps": 100, "batch_size": 8, "max_length": 128}})
    weights, mrpc = grid_eta.encoder_weights(*t["models"]["bert_base"]), t["tasks"]["mrpc"]
    train = 6 * weights * mrpc["tokens"] * mrpc["train"] * 3
    evals = 2 * weights * mrpc["tokens"] * mrpc["eval"]
    kd = grid_eta.kind_factors()["kd"]
    arm = "+experiment/arm/prune_ofa"
    jobs = [[f"{arm}=dense"], [f"{arm}=dense", "seed=43"], [f"{arm}=gmp90_kd"],
            ["+experiment/arm/intelcaffe_int8=ptq_maxabs"], [f"{arm}=ofa90_kd"], [f"{arm}=ofa90"],
            [f"{arm}=ofa85_kd"], ["model=nobody"]]
    flops = grid_eta.paper_flops(jobs, base)
    upstream = 8 * weights * 100 * 8 * 128
    assert flops[0] == pytest.approx(train + evals) and flops[1] == flops[0]  # each seed its teacher
    assert flops[2] == pytest.approx(train * kd + evals)  # the teacher is paid by the dense cell
    assert flops[3] == pytest.approx(2 * evals)
    assert flops[4] == pytest.approx(train * kd + evals + upstream) and flops[5] == pytest.approx(train * kd + evals)
    assert flops[6] == pytest.approx(flops[4]) and flops[7] is None  # 85% is another upstream; unknown model
    core_h, gpu_h = grid_eta.paper_hours(3600 * grid_eta.core_flops())
    assert core_h == pytest.approx(1.0) and gpu_h == pytest.approx(grid_eta.core_flops() / float(t["gpu"]["flops"]))


def test_paper_grids_print_gpu_and_core_hours_before_they_start(capsys, tmp_path):
    from suite.grid import GridCallback, main, read_plan
    from suite.sweep import experiment_jobs

    assert main(["--estimate", "sparsebert_s4_full", "ibm_deep_compression_full"]) == 0
    err = capsys.readouterr().err
    assert "sparsebert_s4_full: 36 cells, about" in err and "all 2 paper-scale grids: 246 cells" in err
    assert "GPU-hours" in err and "core-hours" in err and "assumed" in err
    cfg, jobs = experiment_jobs("sparsebert_s4_full")  # the multirun's own start, before its first cell
    cfg.hydra.sweep.dir = str(tmp_path)
    GridCallback().on_multirun_start(cfg)
    err = capsys.readouterr().err
    assert err.startswith("[grid] sparsebert_s4: 36 cells, about ") and "GPU-hours" in err
    priors = read_plan(tmp_path)["prior_seconds"]
    assert len(priors) == len(jobs) and all(p > 0 for p in priors)
