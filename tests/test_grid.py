"""Grids as Hydra multiruns: failure isolation with a summary and a non-zero exit, resume of a
grid, parallel cells without oversubscription (joblib), the SLURM path through submitit's local
executor, and every experiment config composing into valid cells."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

ROOT = Path(__file__).resolve().parent.parent


def sweep(args: list[str], sweep_dir: Path, timeout: int = 400) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "suite.run", "-m", *args, f"hydra.sweep.dir={sweep_dir}"]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONHASHSEED": "0"})


def summary(sweep_dir: Path) -> dict:
    return json.loads((sweep_dir / "grid_summary.json").read_text())


def test_failing_cell_is_isolated_and_grid_resumes(smoke_overrides, tmp_path):
    # a seed no other test uses: a cell recorded by another test (any experiment) would be skipped here
    base = smoke_overrides + ["experiment_name=grid-fail", "profile.eval_samples=16", "seed=77"]
    first = sweep(base + ["task=sst2,mrpc", "debug.nan_at_step=null,0"], tmp_path / "a")
    assert first.returncode != 0, first.stderr[-3000:]
    s = summary(tmp_path / "a")
    assert (s["total"], s["done"], s["failed"], s["skipped"], s["remaining"]) == (4, 2, 2, 0, 0)
    failed = [c for c in s["cells"] if c["status"] == "FAILED"]
    assert all("debug.nan_at_step=0" in c["overrides"] and "nan" in c["error"].lower() for c in failed)
    assert "summary: 4 cells: done 2, skipped 0, failed 2" in first.stderr
    assert "remaining 0" in first.stderr and "eta" in first.stderr  # progress lines
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])  # the session's store, whatever a test set before
    exp = mlflow.get_experiment_by_name("grid-fail-smoke")
    runs = mlflow.search_runs([exp.experiment_id], output_format="list")
    assert sorted(r.info.status for r in runs) == ["FAILED", "FAILED", "FINISHED", "FINISHED"]
    assert all("nan" in r.data.tags["error"].lower() for r in runs if r.info.status == "FAILED")

    # Running the grid again (one more task) completes only what is missing; exit 0.
    second = sweep(base + ["task=sst2,mrpc,cola"], tmp_path / "b")
    assert second.returncode == 0, second.stderr[-3000:]
    s = summary(tmp_path / "b")
    assert (s["total"], s["done"], s["skipped"], s["failed"]) == (3, 1, 2, 0)


def test_joblib_runs_cells_in_parallel_without_oversubscription(smoke_overrides, tmp_path):
    from suite.grid import available_cores

    result = sweep(smoke_overrides + ["experiment_name=grid-joblib", "hydra/launcher=parallel",
                                      "hydra.launcher.n_jobs=2", "seed=1,2"], tmp_path / "j")
    assert result.returncode == 0, result.stderr[-3000:]
    s = summary(tmp_path / "j")
    assert (s["total"], s["done"]) == (2, 2)
    assert len({c["host"] for c in s["cells"]}) == 1
    exp = mlflow.get_experiment_by_name("grid-joblib-smoke")
    runs = mlflow.search_runs([exp.experiment_id], output_format="list")
    assert {r.data.params["seed"] for r in runs} == {"1", "2"}
    assert {r.data.tags["threads"] for r in runs} == {str(max(1, available_cores() // 2))}
    assert len({r.data.tags["pid"] for r in runs}) == 2  # two worker processes


def test_submitit_local_launcher_runs_the_grid(smoke_overrides, tmp_path):
    pytest.importorskip("submitit")
    result = sweep(smoke_overrides + ["experiment_name=grid-submitit", "hydra/launcher=local",
                                      "task=sst2,mrpc"], tmp_path / "s")
    assert result.returncode == 0, result.stderr[-3000:]
    s = summary(tmp_path / "s")
    assert (s["total"], s["done"], s["failed"]) == (2, 2, 0)
    assert (tmp_path / "s" / ".submitit").is_dir()
    exp = mlflow.get_experiment_by_name("grid-submitit-smoke")
    runs = mlflow.search_runs([exp.experiment_id], output_format="list")
    assert sorted(r.data.params["task"] for r in runs) == ["mrpc", "sst2"]
    assert {r.data.tags["threads"] for r in runs} == {"1"}  # cpus_per_task in conf/hydra/launcher/local.yaml
    assert all(r.data.tags["pid"] != str(os.getpid()) for r in runs)


EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
# `./reproduce.sh all`: the four paper grids (each with a paper-scale *_full twin)
ALL_GRIDS = re.search(r"^EXPERIMENTS=\(([^)]*)\)", (ROOT / "reproduce.sh").read_text(), re.M).group(1).split()
AXIS_GRIDS = [e for e in ALL_GRIDS if "_curves" in e]  # sparsity / budget axes of the papers' arms (issue 14)
PAPERS = [e for e in ALL_GRIDS if e not in AXIS_GRIDS]


def grid_jobs(experiment: str) -> list[list[str]]:
    from suite.sweep import experiment_jobs

    return experiment_jobs(experiment)[1]


def grid_cells(experiment: str, first_seed_only: bool = False) -> list:
    """Every job of the grid composed and validated (`first_seed_only`: one seed of each cell,
    for the paper-scale grids, whose seeds differ in nothing that can fail validation)."""
    from hydra import compose, initialize_config_dir

    from suite.config import validate
    from suite.paths import CONF_DIR

    jobs = grid_jobs(experiment)
    if first_seed_only:
        seeds = [o for job in jobs for o in job if o.startswith("seed=")]
        jobs = [job for job in jobs if not seeds or seeds[0] in job]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return [validate(compose("config", overrides=job)) for job in jobs]


def test_paper_grids_are_experiment_configs():
    assert sorted(PAPERS) == sorted(e for e in EXPERIMENTS if f"{e}_full" in EXPERIMENTS)


@pytest.mark.parametrize("name", PAPERS)
def test_quick_experiment_grid_composes_into_valid_cells(name):
    """Every cell of each quick grid validates; the paper-scale twin exists and is bigger."""
    from suite.tracking import cell_id

    cells = grid_cells(name)
    assert len({cell_id(c) for c in cells}) == len(cells)  # no duplicate cells
    assert {c.experiment_name for c in cells} == {name} and {c.profile.name for c in cells} == {"quick"}
    assert {c.model.name for c in cells} == {"minilm"}
    assert {c.task.name for c in cells} <= {"sst2", "mrpc", "cola", "qnli"}
    full = grid_cells(f"{name}_full", first_seed_only=True)
    assert len(grid_jobs(f"{name}_full")) > len(full) >= len({c.task.name for c in cells})
    assert full[0].profile.name == "full" and full[0].experiment_name == name


@pytest.mark.parametrize("name", AXIS_GRIDS)
def test_axis_grids_compose_into_valid_quick_sst2_cells(name):
    """The sparsity and budget curves: valid, distinct quick SST-2 cells on MiniLM; budgets 1/2/4x."""
    from suite.tracking import cell_id

    cells = grid_cells(name)
    assert cells and len({cell_id(c) for c in cells}) == len(cells)
    assert {c.profile.name for c in cells} == {"quick"} and {c.task.name for c in cells} == {"sst2"}
    assert {c.model.name for c in cells} == {"minilm"} and {c.profile.budget for c in cells} <= {1.0, 2.0, 4.0}


def test_prune_ofa_transfer_grid_extends_prune_ofa_with_the_same_upstream():
    """The longer-recipe comparison records into prune_ofa without overwriting its cells, and its
    transfer cells stand on the very upstream model the prune_ofa grid builds."""
    from suite.tracking import cell_id
    from suite.upstream.stage import upstream_cell_id

    quick, longer = grid_cells("prune_ofa"), grid_cells("prune_ofa_transfer")
    assert {c.experiment_name for c in longer} == {"prune_ofa"}
    assert {c.task.name for c in longer} == {"sst2", "mrpc", "cola"} and len(longer) == 9
    assert not {cell_id(c) for c in quick} & {cell_id(c) for c in longer}
    assert {c.profile.train_samples for c in longer} == {8000} and {c.profile.eval_samples for c in longer} == {None}
    ups = {upstream_cell_id(c) for c in quick + longer if c.stage == "transfer"}
    assert len(ups) == 1


def test_recipes_grid_pairs_each_issue_13_recipe_with_dense_over_two_seeds():
    """`./reproduce.sh recipes`: the main job's sizes, seeds 42 and 43; w4a4 differs from w4a8 only
    in the activation bits; the IBM arms start from the fine-tuned model, QAT after the lock."""
    from suite.tracking import cell_id

    cells = grid_cells("recipes")
    assert len({cell_id(c) for c in cells}) == len(cells) == 14
    assert {c.seed for c in cells} == {42, 43} and {c.task.name for c in cells} == {"sst2"}
    assert {c.profile.train_samples for c in cells} == {8000} and {c.profile.eval_samples for c in cells} == {None}
    nm = [c for c in cells if c.sparsity.pattern_label() == "2:4"]
    assert len(nm) == 4 and {c.init for c in nm} == {"finetuned"} and all(c.quant.after_lock for c in nm)
    assert sorted(c.quant.act_bits for c in nm) == [4, 4, 8, 8] and {c.quant.weight_bits for c in nm} == {4}
    assert {c.distill.method for c in cells if c.sparsity.prunes} >= {"logits", "knowledge_aware", "hidden"}
