"""One cell on many processes (suite/distributed.py): the split of a global batch, the same loss curve
on 1 and 2 gloo processes (with and without gradient accumulation), and a torchrun cell that logs
exactly one FINISHED run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import ddp_support
import mlflow
import pytest
import torch

from suite import distributed
from suite.distributed import World, layout, rank_slices, split

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("batch", "processes", "micro", "expected"), [
    (32, 1, None, (32, 1)), (32, 2, None, (16, 1)), (32, 2, 4, (16, 4)), (32, 4, 8, (8, 1)),
    (32, 3, None, (11, 1)), (32, 2, 5, (16, 4)), (8, 2, 64, (4, 1))])
def test_layout_keeps_the_global_batch(batch, processes, micro, expected):
    per_process, accumulation = layout(batch, processes, micro)
    assert (per_process, accumulation) == expected
    assert per_process * processes >= batch and per_process * processes - batch < processes


@pytest.mark.parametrize("n", [1, 2, 5, 8, 13, 32])
@pytest.mark.parametrize(("size", "accumulation"), [(1, 1), (1, 3), (2, 1), (2, 2), (3, 2), (4, 4)])
def test_rank_slices_cover_the_batch_once_with_shares_summing_to_one(n, size, accumulation):
    covered, shares = [], 0.0
    for rank in range(size):
        parts = rank_slices(n, World(rank=rank, size=size), accumulation)
        assert len(parts) == accumulation  # every rank runs as many micro-batches: DDP stays in step
        for start, stop, share in parts:
            assert stop > start  # an empty part runs one example...
            if share == 0.0:
                assert (start, stop) == (0, 1)  # ...at weight 0
            else:
                covered += range(start, stop)
                assert share == pytest.approx((stop - start) / n)
            shares += share
    assert sorted(covered) == list(range(n)) and shares == pytest.approx(1.0)
    assert split(n, size) == sorted(split(n, size), reverse=True) and sum(split(n, size)) == n


def test_one_process_without_accumulation_scales_the_loss_by_exactly_one():
    assert rank_slices(32, distributed.SINGLE, 1) == [(0, 32, 1.0)]


def test_world_from_torchrun_environment():
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    w = distributed.world_from_env(env)
    assert (w.rank, w.size, w.local_rank, w.local_size, w.main, w.active) == (3, 4, 1, 2, False, True)
    assert distributed.world_from_env({}) is distributed.SINGLE and distributed.current() is distributed.SINGLE
    assert distributed.local_device(torch.device("cuda"), w) == torch.device("cuda", 1)
    assert distributed.local_device(torch.device("cpu"), w) == torch.device("cpu")
    assert distributed.backend(torch.device("cpu")) == "gloo" and distributed.backend(torch.device("cuda")) == "nccl"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_ranks(tiny_model: Path, micro_batches: list, out: Path) -> list[list[dict]]:
    """[per micro-batch size: [rank 0's result, rank 1's]] of one 2-process gloo group."""
    import torch.multiprocessing as mp

    mp.spawn(ddp_support.rank_main, args=(2, _free_port(), str(tiny_model), micro_batches, str(out)), nprocs=2,
             join=True)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
    return [list(runs) for runs in zip(*ranks, strict=True)]


def test_two_gloo_processes_follow_the_one_process_loss_curve(tiny_model, tmp_path):
    """The same global batch (8; the last batch of each epoch 5, split 3 + 2) on 1 process, on 2
    processes, and on 2 processes x 2 micro-batches: the same loss at every step and the same
    weights after 10 steps, within float rounding. Plain DDP averaging of the short batch (2 and 3
    examples weighted alike) would be off from step 6 on."""
    torch.set_num_threads(1)
    one = ddp_support.train(str(tiny_model), distributed.SINGLE, None)
    accumulated = ddp_support.train(str(tiny_model), distributed.SINGLE, 3)  # 3 + 3 + 2 per batch of 8
    two, two_micro = _two_ranks(tiny_model, [None, 2], tmp_path)
    assert len(one["losses"]) == 2 * 5 and len(set(one["losses"])) > 5  # it trains: the loss moves
    for run in (accumulated, *two, *two_micro):
        assert run["losses"] == pytest.approx(one["losses"], rel=1e-5, abs=1e-6)
        for name, w in one["weights"].items():
            torch.testing.assert_close(run["weights"][name], w, rtol=1e-4, atol=1e-5)
    assert two[0]["losses"] == two[1]["losses"]  # every rank logs the same global loss
    for name, w in two[0]["weights"].items():  # and holds the same weights (check_in_step too)
        assert torch.equal(two[1]["weights"][name], w)



def test_the_curve_check_sees_a_wrong_weighting(tiny_model, monkeypatch):
    """Micro-batches weighted alike (plain averaging: 3, 3 and 2 examples at 1/3 each) leave the
    one-process curve by more than the tolerance above, so that test can fail."""
    torch.set_num_threads(1)
    one = ddp_support.train(str(tiny_model), distributed.SINGLE, None)
    exact = distributed.rank_slices

    def alike(n, world, accumulation):
        parts = exact(n, world, accumulation)
        return [(a, b, 1 / len(parts)) for a, b, _ in parts]

    monkeypatch.setattr(distributed, "rank_slices", alike)
    naive = ddp_support.train(str(tiny_model), distributed.SINGLE, 3)
    assert naive["losses"] != pytest.approx(one["losses"], rel=1e-5, abs=1e-6)


def _runs(experiment: str) -> list:
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    exp = mlflow.get_experiment_by_name(experiment)
    return [] if exp is None else mlflow.search_runs([exp.experiment_id], output_format="list")


def test_torchrun_cell_logs_one_finished_run_like_one_process(smoke_overrides, run_cell):
    """`torchrun --standalone --nproc_per_node=2 -m suite.run ... profile=smoke`: a 50% GMP + KD cell
    (the teacher and its cached logits shared, masks on every rank) is one FINISHED MLflow run, with
    the loss and accuracy of the same cell on one process (dropout off: ranks draw their own)."""
    cell = [*smoke_overrides, "task=sst2", "sparsity=gmp", "sparsity.target=0.5", "distill=logits",
            "train.dropout=0", "seed=7"]
    one = run_cell([*cell, "experiment_name=ddp-one"])
    assert one.status == "FINISHED"
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "suite.run",
           *cell, "experiment_name=ddp-two", "force=true", "threads=1"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = _runs("ddp-two-smoke")
    assert [r.info.status for r in runs] == ["FINISHED"]
    run = runs[0]
    assert run.data.tags["cell_id"] == one.cell_id and run.data.tags["train_processes"] == "2"
    assert run.data.tags["train_per_process_batch"] == "16" and run.data.tags["teacher_reused"] == "true"
    m = run.data.metrics
    assert m["train_loss"] == pytest.approx(one.metrics["train_loss"], rel=1e-5)
    assert m["eval_primary"] == one.metrics["eval_primary"]
    assert m["sparsity_measured"] == pytest.approx(one.metrics["sparsity_measured"])


def test_a_grid_under_torchrun_is_refused_in_one_line(smoke_overrides):
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "0"}
    result = subprocess.run([sys.executable, "-m", "suite.run", "-m", *smoke_overrides, "seed=1,2"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("sparq: error: a grid (-m) under torchrun")
