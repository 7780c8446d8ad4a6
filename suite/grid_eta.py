"""A grid's time before its first cell ends: a prior per cell from measured cell times.

`conf/experiment/common/cell_seconds.yaml` holds the measured wall seconds of one quick cell per
task and kind of cell (dense, KD, QAT, PTQ, small model), the teacher and the upstream stage.
A job's prior is read off its overrides (task, arm, budget) and scaled by the grid's train size;
once cells have run, the progress line rescales the priors of the remaining cells by what the
finished ones really took (`calibrated_eta`). `python -m suite.grid --estimate EXP...` (run first
by `./reproduce.sh all`) prints the estimate of whole grids before anything runs.

Paper-scale grids (`profile=full`) are estimated from compute instead (`paper_flops`), in core-hours
and GPU-hours: the table's `full` section says how (FLOPs per step, the calibration, the GPU assumed).
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
    return estimates(experiments, parallel)[0]


def estimates(experiments: list[str], parallel: int) -> tuple[list, list]:
    """(quick rows as `estimate`, paper-scale rows (experiment, cells, FLOPs per job)), in order."""
    from suite.sweep import experiment_jobs

    quick, paper, paid, paid_full = [], [], set(), set()
    for name in experiments:
        cfg, jobs = experiment_jobs(name)
        if is_paper_scale(cfg):
            paper.append((name, len(jobs), paper_flops(jobs, cfg, paid_full)))
            continue
        priors = grid_prior(jobs, cfg.profile.get("train_samples"), paid)
        quick.append((name, len(jobs), sum(priors) / max(1, parallel)))
    return quick, paper


# ---------------------------------------------------------------- paper scale: compute, not seconds

def encoder_weights(layers: int, hidden: int, ffn: int) -> float:
    """Matmul weights of a BERT encoder (attention 4 h^2 + FFN 2 h f per layer)."""
    return float(layers * (4 * hidden * hidden + 2 * hidden * ffn))


def kind_factors() -> dict[str, float]:
    """Training cost of a cell kind relative to a dense cell, from the measured quick cells (median over tasks)."""
    import statistics

    seconds = table()["seconds"].values()
    return {"dense": 1.0, **{k: statistics.median(s[k] / s["dense"] for s in seconds) for k in ("kd", "qat", "small")}}


def core_flops() -> float:
    """FLOP/s of one core: the quick SST-2 teacher's training FLOPs / its measured seconds (one thread)."""
    t, full = table(), table()["full"]
    flops = 6 * encoder_weights(*full["models"]["minilm"]) * QUICK_TRAIN * full["tasks"]["sst2"]["tokens"]
    return flops / t["seconds"]["sst2"]["teacher"]


def paper_flops(jobs: list[list[str]], base: Any, paid: set | None = None) -> list[float | None]:
    """FLOPs of each job of a paper-scale grid (None: a model or task the table does not know), its
    dense teacher (model x task x seed) and upstream stage (model x sparsity) paid once, as in
    `grid_prior`. `base`: the grid's composed config (default model, task, seed, epochs, upstream)."""
    import re

    full, factors = table()["full"], kind_factors()
    epochs = float(base.profile.get("epochs") or base.train.epochs)
    paid = set() if paid is None else paid
    out: list[float | None] = []
    for job in jobs:
        model = _value(job, "model") or base.model.name
        task = _value(job, "task") or base.task.name
        if model not in full["models"] or task not in full["tasks"]:
            out.append(None)
            continue
        weights, t = encoder_weights(*full["models"][model]), full["tasks"][task]
        train = 6 * weights * t["tokens"] * t["train"] * epochs
        evals = 2 * weights * t["tokens"] * t["eval"]
        kind, budget = cell_kind(job), float(_value(job, "profile.budget") or 1)
        teacher = ("teacher", model, task, _value(job, "seed") or str(base.seed))
        flops = 2 * evals if kind == "ptq" else train * budget * factors[kind] + evals
        if kind == "dense" and budget == 1:
            flops = evals if teacher in paid else flops
        elif kind != "dense" and teacher not in paid:
            flops += train
        if kind != "dense" or budget == 1:
            paid.add(teacher)
        arm = next((o.partition("=")[2] for o in job if re.match(r"ofa\d+", o.partition("=")[2])), None)
        if arm and (upstream := ("upstream", model, re.match(r"ofa(\d+)", arm).group(1))) not in paid:
            paid.add(upstream)
            u = base.upstream  # MLM steps on the corpus, distilled from the dense model (4/3 of a step)
            flops += 8 * weights * u.steps * u.batch_size * u.max_length
        out.append(flops)
    return out


def paper_hours(flops: float) -> tuple[float, float]:
    """(core-hours, GPU-hours) of `flops` at the calibrated core and the assumed GPU."""
    return flops / core_flops() / 3600, flops / float(table()["full"]["gpu"]["flops"]) / 3600


def _hours(h: float) -> str:
    return f"{h:,.0f}" if h >= 10 else f"{h:.1f}"


def paper_line(name: str, cells: int, flops: list[float | None]) -> str:
    """`NAME: N cells, about G GPU-hours (...) or C core-hours (...)`."""
    known = [f for f in flops if f is not None]
    core_h, gpu_h = paper_hours(sum(known))
    gpu = table()["full"]["gpu"]
    unknown = f" ({len(flops) - len(known)} cells of unknown size left out)" if len(known) < len(flops) else ""
    return (f"{name}: {cells} cells, about {_hours(gpu_h)} GPU-hours ({gpu['name']} at an assumed "
            f"{float(gpu['flops']) / 1e12:.0f} TFLOP/s) or {_hours(core_h)} core-hours (CPU at "
            f"{core_flops() / 1e9:.0f} GFLOP/s per core, measured){unknown}")


def is_paper_scale(cfg: Any) -> bool:
    return cfg.profile.get("name") == "full"
