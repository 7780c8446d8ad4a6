"""A grid's time before its first cell ends: a prior per cell from measured cell times.

`conf/experiment/common/cell_seconds.yaml` holds the measured wall seconds of one quick cell per
task and kind of cell (dense, KD, QAT, PTQ, small model), the teacher and the upstream stage.
A job's prior is read off its overrides (task, arm, budget) and scaled by the grid's train size;
once cells have run, the progress line rescales the priors of the remaining cells by what the
finished ones really took (`calibrated_eta`). `python -m suite.grid --estimate EXP...` (run first
by `./reproduce.sh all`) prints the estimate of whole grids before anything runs.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from omegaconf import OmegaConf

from suite.paths import CONF_DIR

TABLE = CONF_DIR / "experiment" / "common" / "cell_seconds.yaml"
QUICK_TRAIN = 2000  # the train size the table was measured at (conf/profile/grid/quick.yaml)


@lru_cache(maxsize=1)
def table() -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.load(TABLE), resolve=True)  # type: ignore[return-value]


def _value(overrides: list[str], key: str) -> str | None:
    """The value of `key` (or of a group whose name ends with `key`) among `key=value` overrides."""
    for o in overrides:
        k, _, v = o.lstrip("+~").partition("=")
        if k == key or k.endswith(f"/{key}"):
            return v
    return None


def cell_kind(overrides: list[str]) -> str:
    """dense | kd | qat | ptq | small, from the arm's name (the table's kinds)."""
    arm = next((o.partition("=")[2] for o in overrides if "/arm/" in o or "/common/" in o), "") or \
        _value(overrides, "sparsity") or "dense"
    if "ptq" in arm:
        return "ptq"
    if "qat" in arm:
        return "qat"
    if any(s in arm for s in ("small", "half_layers", "narrow")):
        return "small"
    if arm in ("dense", "fp32"):
        return "dense"
    return "kd"


def job_prior(overrides: list[str], train_scale: float = 1.0) -> float:
    """Prior wall seconds of one job (its teacher and upstream are counted by `grid_prior`)."""
    t = table()
    seconds = t["seconds"].get(_value(overrides, "task") or "sst2") or t["seconds"]["sst2"]
    budget = float(_value(overrides, "profile.budget") or 1)
    kind = cell_kind(overrides)
    steps_scale = 1.0 if kind == "ptq" else budget * train_scale
    return seconds[kind] * steps_scale


def grid_prior(jobs: list[list[str]], train_samples: int | None = None, paid: set | None = None) -> list[float]:
    """Per-job priors. The dense teacher of a task x seed (at budget 1x) is trained once, by the first
    job that needs it (a dense cell *is* the teacher: later dense cells only evaluate it); the first
    Prune OFA upstream arm pays the upstream stage. `paid` carries what is already built across
    grids (one cache for all of them); an upper bound, since cells shared between grids are skipped."""
    t, scale = table(), (train_samples or QUICK_TRAIN) / QUICK_TRAIN
    paid = set() if paid is None else paid
    priors = []
    for job in jobs:
        task_seconds = t["seconds"].get(_value(job, "task") or "sst2") or t["seconds"]["sst2"]
        budget = float(_value(job, "profile.budget") or 1)
        teacher = ("teacher", _value(job, "task"), _value(job, "seed"), scale)  # at budget 1x
        if cell_kind(job) == "dense" and budget == 1:  # the dense cell is the teacher
            s = t["dense_cached_seconds"] if teacher in paid else job_prior(job, scale)
        else:
            s = job_prior(job, scale)
            if cell_kind(job) != "dense" and teacher not in paid:
                s += task_seconds["teacher"] * scale
        if cell_kind(job) != "dense" or budget == 1:
            paid.add(teacher)
        if "upstream" not in paid and any(o.partition("=")[2].startswith("ofa") for o in job):
            paid.add("upstream")
            s += t["upstream_seconds"]
        priors.append(s)
    return priors


def calibrated_eta(priors: list[float] | None, records: list[dict], parallel: int) -> float | None:
    """Remaining jobs' priors x (measured / prior of the jobs that ran) / parallel; None without priors."""
    if not priors:
        return None
    done = {r.get("job") for r in records}
    ran = [(r["seconds"], priors[r["job"]]) for r in records
           if r.get("status") != "SKIPPED" and r.get("seconds") and 0 <= r.get("job", -1) < len(priors)]
    ratio = sum(m for m, _ in ran) / sum(p for _, p in ran) if ran and sum(p for _, p in ran) else 1.0
    left = sum(p for j, p in enumerate(priors) if j not in done)
    return left * ratio / max(1, parallel)


def estimate(experiments: list[str], parallel: int) -> list[tuple[str, int, float]]:
    """(experiment, cells, prior seconds on `parallel` workers) of each quick grid, before it runs,
    in order: a teacher or upstream built by an earlier grid is not paid again."""
    from suite.sweep import experiment_jobs

    out, paid = [], set()
    for name in experiments:
        cfg, jobs = experiment_jobs(name)
        priors = grid_prior(jobs, cfg.profile.get("train_samples"), paid)
        out.append((name, len(jobs), sum(priors) / max(1, parallel)))
    return out
