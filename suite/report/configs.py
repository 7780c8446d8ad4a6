"""The board's default view: one row per configuration (a `Group`: records equal but for the seed)
and machine, with the mean over seeds and its 95% interval, the difference to our dense baseline
with its interval, ranked within blocks of like for like (profile, task, train examples, budget).

A configuration at chance (`suite.report.chance`) is shown, marked, but not ranked; the Pareto
front and the best-under answers (views.py) leave it out. Pure functions of the records.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from suite.report import chance as chance_mod
from suite.report import intervals as iv
from suite.report.intervals import Interval, delta
from suite.report.records import PROFILE_ORDER, Cell, Group, baseline_for, group_cells
from suite.report.views import Row, metric_name


def mean_interval(g: Group, resamples: int = iv.RESAMPLES) -> tuple[float, float]:
    """95% interval of the config's mean eval_primary, by the same bootstrap as `intervals.delta`
    (its helpers): seeds resampled, then each cell's eval examples (jointly when the cells share
    their eval set), the metric recomputed per resample. (nan, nan) without per-example outcomes."""
    outs = [iv._outcomes(c) for c in g.cells]
    if not outs or any(o is None for o in outs) or len({o.metric for o in outs}) != 1:
        return math.nan, math.nan
    rng = iv._rng(g)
    if len({(o.examples, len(o.predictions)) for o in outs}) == 1:
        n = len(outs[0].predictions)
        values = iv._per_cell(outs, rng.integers(0, n, (resamples, n), dtype=np.int32))
    else:
        values = np.concatenate([iv._per_cell([o], rng.integers(0, len(o.predictions), (resamples, len(o.predictions))))
                                 for o in outs])
    means = iv._seed_means(values, rng.integers(0, len(outs), (resamples, len(outs))))
    tail = (1 - iv.LEVEL) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


@dataclass
class ConfigRow:
    key: str  # the row's element id suffix: "c<n>"
    group: Group
    machine: str
    records: list[Row]  # per-record rows (views.Row): seed, score, command, commit
    block: tuple  # (profile, task, train examples, budget label): what is ranked together
    block_title: str
    mean: float
    lo: float
    hi: float
    std: float
    base: bool  # the block's dense baseline itself
    delta: Interval | None
    at_chance: bool
    chance_level: float | None
    compressed: bool  # sparse or quantized weights
    compression: float | None
    size_mb: float | None
    latency: float | None  # the fastest backend's mean over seeds (timed on a quiet machine)
    latency_backend: str
    metric: str
    rank: int | None = None  # None at chance
    dirty: bool = False
    cell_ids: list[str] = field(default_factory=list)

    # ---- what the template and the views show
    def __getattr__(self, name):  # axes of the config (task, paper, profile, model, ...)
        if name.startswith("_") or name in ("group", "records"):
            raise AttributeError(name)
        return getattr(self.records[0], name)

    @property
    def seeds(self) -> list[str]:
        return self.group.seeds

    @property
    def label(self) -> str:
        """'minilm · gmp 90% · fp32 · KD logits'."""
        parts = [self.model, self.sparsity, self.bits] + ([f"KD {self.distill}"] if self.distill != "none" else [])
        return " · ".join(parts)

    @property
    def interval_text(self) -> str:
        if math.isfinite(self.lo):
            return f"[{self.lo:.2f}, {self.hi:.2f}]"
        if math.isfinite(self.std):
            return f"± {self.std:.2f} sd (no interval)"
        return "no interval"

    @property
    def delta_text(self) -> str:
        if self.base:
            return "dense baseline"
        d = self.delta
        if d is None or not math.isfinite(d.value):
            return "–"
        return f"{d.value:+.2f}" + (f" [{d.lo:+.2f}, {d.hi:+.2f}]" if math.isfinite(d.lo) else "")

    @property
    def delta_value(self) -> float | None:
        if self.base:
            return 0.0
        return self.delta.value if self.delta is not None and math.isfinite(self.delta.value) else None

    @property
    def tip(self) -> str:
        return (f"{self.label} · {self.variant or 'default recipe'} | {self.metric} {self.mean:.2f} "
                f"{self.interval_text} over {len(self.seeds)} seed(s) | {self.machine}")


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(vals) if vals else None


def _block_title(g: Group, level: float | None) -> str:
    chance = f" · chance {level:.2f}%" if level is not None else ""
    return f"{g.task} · {g.profile} · {g.train_examples or '?'} train examples · budget {g.budget}{chance}"


def config_rows(rows: Sequence[Row]) -> list[ConfigRow]:
    """One ConfigRow per configuration and machine, ranked within its block, in block order."""
    by_machine: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_machine[r.machine].append(r)
    every: list[Group] = []
    per_machine: list[tuple[str, list[Group], dict[int, Row]]] = []
    for m, rs in sorted(by_machine.items()):
        of_record = {id(r.rec): r for r in rs}
        groups = group_cells([Cell(record=r.rec) for r in rs])
        per_machine.append((m, groups, of_record))
        every += groups
    lim = chance_mod.limits()
    chance = chance_mod.of_groups(every, lim)
    out: list[ConfigRow] = []
    for m, groups, of_record in per_machine:
        for g in groups:
            base = baseline_for(g, groups) or baseline_for(g, every)
            recs = [of_record[id(c.record)] for c in g.cells]
            lats = g.latency()
            best = min(lats, key=lats.get) if lats else ""
            lo, hi = mean_interval(g)
            level = chance.level(g.profile, g.task)
            out.append(ConfigRow(
                key="", group=g, machine=m, records=recs,
                block=(PROFILE_ORDER.get(g.profile, 9), g.profile, g.task, g.train_examples or 0, g.budget_factor,
                       g.budget),
                block_title=_block_title(g, level), mean=g.mean(), lo=lo, hi=hi, std=g.std(), base=base is g,
                delta=None if base is None or base is g else delta(g, base),
                at_chance=chance_mod.config_at_chance(g, lim), chance_level=level,
                compressed=g.sparsity_method != "dense" or g.quant_method != "fp32",
                compression=_mean(r.compression for r in recs), size_mb=_mean(r.size_mb for r in recs),
                latency=lats.get(best), latency_backend=best, metric=metric_name(g.first.record.get("metrics") or {}),
                dirty=any(r.dirty for r in recs), cell_ids=g.cell_ids))
    out.sort(key=lambda c: (c.block, c.at_chance, -(c.mean if math.isfinite(c.mean) else -math.inf), c.label,
                            c.variant, c.machine))
    for block in blocks(out):
        n = 0
        for c in block[1]:
            if not c.at_chance and math.isfinite(c.mean):
                n += 1
                c.rank = n
    for i, c in enumerate(out):
        c.key = f"c{i}"
    return out


def blocks(rows: Sequence[ConfigRow]) -> list[tuple[str, list[ConfigRow]]]:
    """[(block title, its rows)] in the rows' order."""
    out: dict[tuple, tuple[str, list[ConfigRow]]] = {}
    for r in rows:
        out.setdefault(r.block, (r.block_title, []))[1].append(r)
    return list(out.values())
