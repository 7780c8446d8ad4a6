"""Latency statistics as pure functions: a median and its distribution-free 95% interval over
rounds, and the speed ratios a claim reads.

A ratio is taken within each round (baseline ms / packed ms, both timed in that round, a few
hundred milliseconds apart), so a slow drift of the machine lands on both; the rounds then give
its median and the order-statistic interval of the median: the k-th smallest and k-th largest
rounds, with k the largest such that P(Bin(n, 1/2) < k) <= 2.5% on each side. With fewer than 6
rounds no pair reaches 95%: the interval is then [min, max] and `coverage` says what it covers.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    median: float
    lo: float
    hi: float
    n: int
    coverage: float  # probability that [lo, hi] holds the true median (order statistics)

    def as_dict(self) -> dict:
        return asdict(self)


def _below(k: int, n: int) -> float:
    """P(Bin(n, 1/2) < k)."""
    return sum(math.comb(n, i) for i in range(k)) / 2 ** n


def median_interval(values, level: float = LEVEL) -> Interval:
    """Median of `values` and the distribution-free interval of the median at `level`."""
    xs = sorted(float(v) for v in values if v is not None and math.isfinite(v))
    n = len(xs)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, 0.0)
    k = 1
    while k + 1 <= n // 2 and _below(k + 1, n) <= (1 - level) / 2:
        k += 1
    coverage = 1 - 2 * _below(k, n)
    return Interval(statistics.median(xs), xs[k - 1], xs[n - k], n, round(coverage, 4))


def round_ratios(times: dict[str, list[float]], target: str) -> dict[str, list[float]]:
    """Per baseline b: [ms_b / ms_target in each round] (rounds where both were timed)."""
    mine = times[target]
    return {b: [t / m for t, m in zip(ms, mine, strict=True) if t and m]
            for b, ms in times.items() if b != target}


def summarize(times: dict[str, list[float]], target: str, names: dict[str, str] | None = None) -> dict:
    """{"ms": {backend: Interval}, "ratios": {"<target>_vs_<baseline>": Interval}} as dicts."""
    names = names or {}
    ratios = round_ratios(times, target)
    return {"ms": {b: median_interval(ms).as_dict() for b, ms in times.items()},
            "ratios": {f"{names.get(target, target)}_vs_{names.get(b, b)}": median_interval(r).as_dict()
                       for b, r in ratios.items()}}


def agree(a: dict, b: dict, tolerance: float = 0.10) -> bool:
    """Two medians of one ratio within `tolerance` of each other (relative to the first)."""
    return abs(b["median"] - a["median"]) <= tolerance * abs(a["median"])


def cell_ratios(reports: list[dict], quiet_only: bool = True) -> dict[str, dict[str, dict]]:
    """What claims read: {cell_id: {"b<batch>_s<seq>/<ratio>": interval dict + machine}} from latency
    reports (`latency.json` of `python -m suite.latency` runs), the newest report first per cell
    and machine; entries of a report taken on a busy machine are left out unless `quiet_only` is
    False. A ratio > 1: the packed model is that many times faster than the baseline."""
    out: dict[str, dict[str, dict]] = {}
    for rep in sorted(reports, key=lambda r: r.get("started", 0), reverse=True):
        machine = rep.get("machine", {})
        for entry in rep.get("cells", []):
            if quiet_only and not entry.get("quiet", False):
                continue
            mine = out.setdefault(entry["cell_id"], {})
            for shape, res in entry.get("results", {}).items():
                for name, iv in res.get("ratios", {}).items():
                    key = f"{shape}/{name}"
                    if key not in mine:
                        mine[key] = {**iv, "cpu_model": machine.get("cpu_model"),
                                     "kernel_path": machine.get("kernel_path"), "threads": machine.get("threads"),
                                     "report_run_id": rep.get("run_id")}
    return out
