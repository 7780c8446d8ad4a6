"""The latency stage (suite/latency): order-statistic intervals, interleaved rounds, and the stage on
a tiny store: each recorded compressed cell's exported packed model timed against torch fp32, ORT
int8 dense, its own QDQ model and a size-matched dense cell, recorded as an MLflow run; refused on
a busy machine."""

from __future__ import annotations

import math

import pytest

from suite.latency import load_reports
from suite.latency.stats import agree, cell_ratios, median_interval, round_ratios, summarize
from suite.latency.timing import time_rounds


def test_median_interval_is_the_distribution_free_interval_of_the_median():
    iv = median_interval([5, 1, 9, 3, 7, 2, 8, 4, 6, 10])
    assert (iv.median, iv.lo, iv.hi, iv.n) == (5.5, 2.0, 9.0, 10)  # 2nd smallest, 2nd largest
    assert iv.coverage == pytest.approx(1 - 2 * 11 / 1024, abs=1e-4)  # P(Bin(10, 1/2) <= 1) each side
    small = median_interval([3.0, 1.0, 2.0])
    assert (small.lo, small.hi) == (1.0, 3.0) and small.coverage == 0.75  # too few rounds for 95%
    assert median_interval([]).n == 0 and math.isnan(median_interval([]).median)
    wide = median_interval(range(100))
    assert wide.coverage >= 0.95 and 39 <= wide.lo < wide.median < wide.hi <= 60


def test_ratios_are_taken_within_each_round():
    times = {"sparq": [1.0, 2.0, 4.0], "torch_fp32": [3.0, 6.0, 12.0], "ort": [2.0, 2.0, 2.0]}
    assert round_ratios(times, "sparq") == {"torch_fp32": [3.0, 3.0, 3.0], "ort": [2.0, 1.0, 0.5]}
    s = summarize(times, "sparq")
    assert s["ratios"]["sparq_vs_torch_fp32"]["median"] == 3.0  # drift cancels within rounds
    assert s["ms"]["sparq"]["median"] == 2.0
    assert agree({"median": 3.0}, {"median": 3.2}) and not agree({"median": 3.0}, {"median": 3.5})


def test_rounds_interleave_every_backend_in_rotated_order():
    order = []
    calls = {n: (lambda n=n: order.append(n)) for n in ("a", "b", "c")}
    times, others = time_rounds(calls, 4, 0.0, block=lambda fn, t: fn() or 1.0)
    assert times == {n: [1.0] * 4 for n in "abc"} and len(others) == 4
    timed = order[6:]  # after two warm-up calls each
    assert timed == list("abc" "bca" "cab" "abc")


def test_cell_ratios_newest_quiet_report_first():
    iv = lambda m: {"median": m, "lo": m, "hi": m, "n": 1, "coverage": 0.0}  # noqa: E731
    cell = lambda m, quiet: {"cell_id": "c1", "quiet": quiet,  # noqa: E731
                             "results": {"b1_s128": {"ratios": {"sparq_vs_torch_fp32": iv(m)}}}}
    reports = [{"started": 1, "machine": {"cpu_model": "x"}, "cells": [cell(2.0, True)]},
               {"started": 3, "machine": {}, "cells": [cell(9.0, False)]},
               {"started": 2, "machine": {}, "cells": [cell(3.0, True)]}]
    assert cell_ratios(reports)["c1"]["b1_s128/sparq_vs_torch_fp32"]["median"] == 3.0
    assert cell_ratios(reports, quiet_only=False)["c1"]["b1_s128/sparq_vs_torch_fp32"]["median"] == 9.0


@pytest.fixture(scope="module")
def tiny_store(tiny_model, data_dir):
    """A 2:4 + 4-bit cell (exported) and a half-depth dense cell of the same task (its size match)."""
    from suite.config import compose
    from suite.run import run_cell

    base = [f"model.name_or_path={tiny_model}", "model.name=tiny", "profile=smoke", "progress=false",
            "task=sst2", "experiment_name=lat"]
    sparse = run_cell(compose(base + ["sparsity=nm", "sparsity.every=1", "quant=qat4"]))
    small = run_cell(compose(base + ["model.shrink_keep_every=2"]))
    assert sparse.status == small.status == "FINISHED"
    return sparse, small


ARGS = ["--experiment", "lat-smoke", "--rounds", "3", "--min-time", "0.01", "--seq", "32", "--settle", "1",
        "--threads", "1"]


def test_latency_stage_on_a_tiny_store(tiny_store, monkeypatch, capsys):
    import os

    from suite.latency.__main__ import main

    sparse, small = tiny_store
    monkeypatch.setattr("suite.quiet.busy_share", lambda window_s=0.5: 0.0)  # as if idle: no flakes
    assert main(ARGS) == 0
    out = capsys.readouterr().out
    assert "sparq_vs_torch_fp32" in out and "kernel path:" in out
    report = load_reports(os.environ["MLFLOW_TRACKING_URI"])[0]
    assert report["machine"]["threads"] == 1 and report["machine"]["kernel_path"] and report["machine"]["cpu_model"]
    [entry] = report["cells"]  # the dense cell is not compressed: it is a baseline, not timed itself
    assert entry["cell_id"] == sparse.cell_id and entry["run_id"] == sparse.run_id and entry["packed_format"] == "nm"
    assert entry["baselines"]["dense_matched_fp32"]["cell_id"] == small.cell_id
    res = entry["results"]["b1_s32"]
    assert set(res["ratios"]) == {"sparq_vs_torch_fp32", "sparq_vs_ort_int8_dense", "sparq_vs_ort_qdq_int8",
                                  "sparq_vs_dense_matched_fp32"}
    for iv in res["ratios"].values():
        assert iv["n"] == 3 and 0 < iv["lo"] <= iv["median"] <= iv["hi"]
    assert all(len(ms) == 3 and min(ms) > 0 for ms in res["rounds"].values())
    ratios = cell_ratios([report], quiet_only=False)[sparse.cell_id]
    assert ratios["b1_s32/sparq_vs_torch_fp32"]["median"] == res["ratios"]["sparq_vs_torch_fp32"]["median"]


def test_latency_stage_refuses_a_busy_machine(tiny_store, monkeypatch, capsys):
    import os

    from suite.latency.__main__ import main

    before = len(load_reports(os.environ["MLFLOW_TRACKING_URI"]))
    monkeypatch.setattr("suite.quiet.busy_share", lambda window_s=0.5: 0.9)
    assert main(ARGS) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("sparq: error: machine busy: 90% of the CPUs") and "nothing timed" in err
    assert len(load_reports(os.environ["MLFLOW_TRACKING_URI"])) == before  # no run logged
    assert main([*ARGS, "--allow-busy"]) == 0
    assert load_reports(os.environ["MLFLOW_TRACKING_URI"])[0]["cells"][0]["quiet"] is False
