"""Timing, machine measurements (bandwidth, int8 peak) and MLflow logging for the benchmarks."""

from __future__ import annotations

import os
import statistics
import time
from contextlib import contextmanager

import numpy as np
import torch

from ..cpu import OtherLoad  # noqa: F401  (re-exported: the benches' per-block load column)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def set_threads(n: int) -> None:
    import numba

    torch.set_num_threads(n)
    numba.set_num_threads(n)


def timeit(fn, repeats: int = 20, warmup: int = 3, min_time: float = 0.0):
    """(median, min, max) in ms of ``fn()`` after ``warmup`` calls, with
    ``torch.utils.benchmark.Timer.blocked_autorange``: blocks of calls long enough that the timer
    does not matter (µs kernels), at least ``repeats`` calls' worth of run time (whole seconds
    for an encoder at batch 8). The statistics are over blocks (per-call averages)."""
    from torch.utils.benchmark import Timer

    s = time.perf_counter()
    for _ in range(max(1, warmup)):
        fn()
    one = (time.perf_counter() - s) / max(1, warmup)
    budget = max(min_time, 0.2, min(repeats * one, 60.0))
    m = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads()) \
        .blocked_autorange(min_run_time=budget)
    ts = [t * 1e3 for t in m.times]
    return statistics.median(ts), min(ts), max(ts)


def path_line() -> str:
    """How the sparq layers pick their kernel path in this run (printed in the bench header)."""
    from .. import cpu, dispatch

    if cpu.forced_path():
        return f"kernel path: {cpu.forced_path()} (forced, SPARQ_KERNEL_ISA)"
    if dispatch.enabled() and len(dispatch.tunable_paths()) > 1:
        return (f"kernel path: autotuned per layer among {', '.join(dispatch.tunable_paths())} "
                f"(static default {cpu.kernel_path()}; choices in {dispatch.cache_file()})")
    return f"kernel path: {cpu.kernel_path()}"


def check_load(threads: int) -> float:
    """1-minute load average; warns when other processes compete for the cores (figures taken
    then are not comparable: OpenMP barriers degrade badly under oversubscription)."""
    load = os.getloadavg()[0]
    if load > threads + 0.5:
        print(f"WARNING: load average {load:.1f} > {threads} threads: the machine is busy, "
              "timings below are contaminated")
    return load


@contextmanager
def quiet_window(settle_s: float | None = None):
    """The machine-wide timing window (``suite.quiet``): every sparq training / eval loop on the
    machine pauses between steps while it is held, and it waits up to ``settle_s`` for idle
    CPUs. Yields the ``Quiet`` record (``busy``, ``quiet``) that goes into every CSV row."""
    from suite.quiet import MAX_SETTLE_S, timing_window

    with timing_window(MAX_SETTLE_S if settle_s is None else settle_s) as q:
        busy = "n/a" if q.busy is None else f"{q.busy:.0%}"
        print(f"timing window: CPUs {busy} busy after {q.waited_s:.1f} s"
              + ("" if q.quiet else "  WARNING: not quiet, timings below are contaminated"))
        yield q


def quiet_columns(q) -> dict:
    return {"cpu_busy": "" if q.busy is None else round(q.busy, 3), "quiet": q.quiet}


def measure_bandwidth_gbs() -> float:
    """Copy of a 128 MiB buffer: (read + write bytes) / time, best of 5 (torch copy, threaded)."""
    a = torch.empty(32 * 2**20, dtype=torch.float32).fill_(1.0)
    b = torch.empty_like(a)
    b.copy_(a)
    best = min(timeit(lambda: b.copy_(a), repeats=5, warmup=1)[1:2])
    return 2 * a.numel() * 4 / (best * 1e-3) / 1e9


def measure_int8_peak_gmacs() -> tuple[float, str]:
    """Dense int8 peak: best of torch._int_mm and our dense VNNI kernel, 512x1024x1024."""
    m = k = n = 1024
    res = {}
    try:
        a = torch.randint(-127, 127, (512, k), dtype=torch.int8)
        bm = torch.randint(-127, 127, (k, n), dtype=torch.int8)
        t = timeit(lambda: torch._int_mm(a, bm), repeats=5)[1]
        res["torch._int_mm"] = 512 * k * n / (t * 1e-3) / 1e9
    except Exception:
        pass
    try:
        from .. import cpu, ops
        from ..formats import pack

        if cpu.kernel_path() != "portable":
            p = pack(np.random.default_rng(0).standard_normal((n, k)).astype(np.float32), "dense")
            x = np.random.default_rng(1).standard_normal((512, k)).astype(np.float32)
            t = timeit(lambda: ops.linear(x, p), repeats=5)[1]
            res[f"sparq_dense_{cpu.kernel_path()}"] = 512 * k * n / (t * 1e-3) / 1e9
    except Exception:
        pass
    del m
    if not res:
        return float("nan"), "none"
    best = max(res, key=res.get)
    return res[best], best


def log_mlflow(experiment: str, params: dict, metrics: dict, artifacts: list[str]) -> str | None:
    try:
        import mlflow
    except ImportError:
        print("mlflow not installed: skipping MLflow logging")
        return None
    uri = os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{REPO}/mlflow.db")
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run() as run:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        for a in artifacts:
            mlflow.log_artifact(a)
        return run.info.run_id
