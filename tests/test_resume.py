"""Resume: a recorded cell is skipped, force=true re-runs it bit-identically, and a SIGKILLed
run leaves nothing a later run trusts: re-running ends with exactly one FINISHED run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow

from suite.config import compose
from suite.tracking import cell_id, experiment_name

ROOT = Path(__file__).resolve().parent.parent
TIMING = ("seconds", "latency", "wall")


def _comparable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not any(t in k for t in TIMING)}


def _runs(experiment: str, cid: str) -> list:
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return mlflow.search_runs([exp.experiment_id], filter_string=f"tags.cell_id = '{cid}'", output_format="list")


def test_recorded_cell_is_skipped_and_force_reruns_identically(smoke_overrides, run_cell):
    # a pruned cell: it trains every time (a dense cell would read itself back as the cached teacher)
    overrides = smoke_overrides + ["task=sst2", "seed=11", "experiment_name=resume", "sparsity=gmp",
                                   "sparsity.target=0.5"]
    first = run_cell(overrides)
    assert first.status == "FINISHED"
    second = run_cell(overrides)
    assert second.status == "SKIPPED" and second.run_id == first.run_id
    elsewhere = run_cell([*overrides[:-3], "experiment_name=resume-other", *overrides[-2:]])
    assert elsewhere.status == "SKIPPED" and elsewhere.run_id == first.run_id  # recorded in another grid
    forced = run_cell(overrides + ["force=true"])
    assert forced.status == "FINISHED" and forced.run_id != first.run_id
    assert forced.cell_id == first.cell_id
    assert _comparable(forced.metrics) == _comparable(first.metrics)  # bit-identical, same seed
    run = mlflow.get_run(forced.run_id)
    assert run.data.params["seed"] == "11" and int(run.data.tags["threads"]) >= 1


def test_sigkilled_run_is_never_trusted_and_rerun_completes_it(smoke_overrides, run_cell):
    overrides = smoke_overrides + ["task=mrpc", "seed=5", "experiment_name=killed", "profile.max_steps=3"]
    cfg = compose(overrides)
    cid, experiment = cell_id(cfg), experiment_name(cfg)
    # debug.step_sleep prints a line per training step and sleeps: kill -9 in the middle of training.
    proc = subprocess.Popen([sys.executable, "-m", "suite.run", *overrides, "debug.step_sleep=30",
                             "hydra.run.dir=" + str(Path(os.environ["SPARQ_CACHE_DIR"]).parent / "killed-run")],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.time() + 240
        for line in proc.stderr:
            if line.startswith("sparq-debug: step 1"):
                break
            assert time.time() < deadline, "training never started"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    runs = _runs(experiment, cid)
    assert [r.info.status for r in runs] == ["RUNNING"]  # left behind, never FINISHED
    assert not mlflow.artifacts.list_artifacts(run_id=runs[0].info.run_id, artifact_path="result.json")

    rerun = run_cell(overrides)  # step_sleep does not change the cell id: same cell
    assert rerun.status == "FINISHED" and rerun.cell_id == cid
    statuses = sorted(r.info.status for r in _runs(experiment, cid))
    assert statuses == ["FINISHED", "KILLED"]  # the orphan is closed, exactly one FINISHED
    assert run_cell(overrides).status == "SKIPPED"
