"""Typed views of recorded runs: one `Cell` per MLflow run, one `Group` per config over seeds.

Everything here is pure: it turns stored params/metrics/tags into comparable records and never
touches MLflow (that is `load.py`'s job), so tables, claims and plots are functions of these.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# Params that define a row's axes (design.md) or are per-run / per-machine, never a "variant".
AXIS_PARAMS = ("model", "task", "profile", "seed", "sparsity.method", "sparsity.target",
               "quant.method", "quant.weight_bits", "quant.act_bits", "distill.method", "experiment")
IGNORED_PARAMS = {"force", "progress", "device", "threads", "data_dir", "cache_dir", "experiment_name",
                  "seed", "profile.name", "sparsity.n", "sparsity.m"}
# task/model options are part of those axes; measure.* (incl. measure.loadavg_1m) describe how
# latency was taken, not the cell. profile.* options (train_samples, lr, ...) are a recipe: cells
# that differ in one are different rows (a variant), never seeds of one row.
IGNORED_PREFIXES = ("task.", "model.", "measure.")
PROFILE_ORDER = {"full": 0, "quick": 1, "smoke": 2}
MISSING_VALUES = (None, "", "None", "null")
# eval_* metrics that are bookkeeping or derived (eval_examples, eval_primary_packed, eval_packed_delta)
NON_TASK_EVAL = ("examples", "samples", "seconds", "runtime", "loss", "steps", "primary", "packed", "delta")


def is_task_metric(key: str) -> bool:
    """eval_<metric> that is a task metric (eval_accuracy, eval_f1, ...)."""
    return key.startswith("eval_") and not any(w in key.removeprefix("eval_") for w in NON_TASK_EVAL)


def _float(value, default: float = math.nan) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _int(value, default: int = 0) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


@dataclass(frozen=True)
class Cell:
    """One recorded grid cell (a FINISHED MLflow run)."""

    run_id: str
    experiment: str  # MLflow experiment name, e.g. prune_ofa-quick
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str] = field(default_factory=dict)
    environment: dict = field(default_factory=dict)  # environment.json artifact, when loaded
    start_time: int = 0

    # ---- axes
    @property
    def cell_id(self) -> str:
        return self.tags.get("cell_id", "")

    @property
    def profile(self) -> str:
        p = self.params.get("profile")
        if p:
            return p
        return self.experiment.rsplit("-", 1)[-1] if "-" in self.experiment else ""

    @property
    def paper(self) -> str:
        """The experiment (paper grid) name without the profile suffix."""
        return self.params.get("experiment") or self.experiment.removesuffix(f"-{self.profile}")

    @property
    def model(self) -> str:
        return self.params.get("model", "?")

    @property
    def model_label(self) -> str:
        """Model plus its shrink options: a layer- or width-reduced model is another model."""
        label = self.model
        keep = _int(self.params.get("model.shrink_keep_every"), 1)
        inter = self.params.get("model.shrink_intermediate")
        if keep > 1:
            label += f" (1/{keep} layers)"
        if inter not in MISSING_VALUES:
            label += f" (ffn {inter})"
        return label

    @property
    def task(self) -> str:
        return self.params.get("task", "?")

    @property
    def seed(self) -> str:
        return self.params.get("seed", "")

    @property
    def sparsity_method(self) -> str:
        return self.params.get("sparsity.method", "dense")

    @property
    def nm(self) -> tuple[int, int] | None:
        n, m = _int(self.params.get("sparsity.n"), 0), _int(self.params.get("sparsity.m"), 0)
        return (n, m) if self.sparsity_method == "nm" and 0 < n < m else None

    @property
    def sparsity_target(self) -> float:
        if self.nm:
            n, m = self.nm
            return round(1 - n / m, 6)
        return _float(self.params.get("sparsity.target"), 0.0)

    @property
    def quant_method(self) -> str:
        return self.params.get("quant.method", "fp32")

    @property
    def weight_bits(self) -> int:
        return _int(self.params.get("quant.weight_bits"), 32)

    @property
    def act_bits(self) -> int:
        return _int(self.params.get("quant.act_bits"), 32)

    @property
    def distill_method(self) -> str:
        return self.params.get("distill.method", "none")

    @property
    def is_dense_baseline(self) -> bool:
        return (self.sparsity_method == "dense" and self.quant_method == "fp32"
                and self.distill_method == "none")

    @property
    def primary(self) -> float:
        return self.metrics.get("eval_primary", math.nan)

    @property
    def model_params(self) -> tuple:
        return tuple(sorted((k, v) for k, v in self.params.items() if k.startswith("model.")))

    def latencies(self) -> dict[str, float]:
        return {k.removeprefix("latency_ms_"): v for k, v in self.metrics.items()
                if k.startswith("latency_ms_") and math.isfinite(v)}

    def metric_scale(self) -> float:
        """Factor that puts eval_<metric> in percent, read off eval_primary / eval_<primary>."""
        prim = self.params.get("task.primary")
        raw = self.metrics.get(f"eval_{prim}") if prim else None
        if raw and math.isfinite(raw) and raw != 0 and math.isfinite(self.primary):
            ratio = self.primary / raw
            return 100.0 if abs(ratio - 100) < 1 else 1.0
        return 1.0 if self.params.get("task.kind") == "qa" else 100.0

    def eval_percent(self) -> dict[str, float]:
        """Task metrics (without eval_primary) in percent."""
        s = self.metric_scale()
        return {k.removeprefix("eval_"): v * s for k, v in self.metrics.items() if is_task_metric(k)}


def sparsity_label(method: str, target: float, nm: tuple[int, int] | None = None) -> str:
    if method == "dense":
        return "dense"
    if nm:
        return f"{method} {nm[0]}:{nm[1]}"
    return f"{method} {target * 100:g}%"


def bits_label(quant: str, wb: int, ab: int) -> str:
    if quant == "fp32" or (wb >= 32 and ab >= 32):
        return "fp32"
    return f"{quant} w{wb}a{ab}"


@dataclass
class Group:
    """Cells that differ only in seed (one table row x task)."""

    key: tuple
    cells: list[Cell]
    variant: str = ""
    variant_items: tuple = ()  # ((param, value), ...) behind `variant`

    @property
    def first(self) -> Cell:
        return self.cells[0]

    def __getattr__(self, name):  # axes shared by every cell of the group
        if name.startswith("_") or name in ("cells", "key", "variant", "variant_items"):
            raise AttributeError(name)
        return getattr(self.cells[0], name)

    @property
    def config_key(self) -> tuple:
        """Row key: the group key without the task."""
        return tuple(v for i, v in enumerate(self.key) if i != KEY_TASK)

    @property
    def seeds(self) -> list[str]:
        return sorted({c.seed for c in self.cells})

    @property
    def cell_ids(self) -> list[str]:
        return [c.cell_id for c in self.cells]

    def values(self, metric: str) -> list[float]:
        if metric == "primary":
            vals = [c.primary for c in self.cells]
        elif metric.startswith("%"):
            vals = [c.eval_percent().get(metric[1:], math.nan) for c in self.cells]
        else:
            vals = [c.metrics.get(metric, math.nan) for c in self.cells]
        return [v for v in vals if v is not None and math.isfinite(v)]

    def mean(self, metric: str = "primary") -> float:
        vals = self.values(metric)
        return statistics.fmean(vals) if vals else math.nan

    def std(self, metric: str = "primary") -> float:
        vals = self.values(metric)
        return statistics.stdev(vals) if len(vals) > 1 else math.nan

    @property
    def sparsity_label(self) -> str:
        return sparsity_label(self.sparsity_method, self.sparsity_target, self.nm)

    @property
    def bits_label(self) -> str:
        return bits_label(self.quant_method, self.weight_bits, self.act_bits)

    def latency(self) -> dict[str, float]:
        """Mean latency per backend over seeds."""
        acc: dict[str, list[float]] = defaultdict(list)
        for c in self.cells:
            for k, v in c.latencies().items():
                acc[k].append(v)
        return {k: statistics.fmean(v) for k, v in acc.items()}


KEY_FIELDS = ("profile", "paper", "model_label", "task", "sparsity_method", "sparsity_target", "nm",
              "quant_method", "weight_bits", "act_bits", "distill_method")
KEY_TASK = KEY_FIELDS.index("task")


def variant_keys(cells: Iterable[Cell]) -> list[str]:
    """Params that tell apart cells sharing every axis and seed (e.g. quant.calibration)."""
    buckets: dict[tuple, list[Cell]] = defaultdict(list)
    for c in cells:
        buckets[tuple(getattr(c, f) for f in KEY_FIELDS) + (c.seed,)].append(c)
    keys: set[str] = set()
    for bucket in buckets.values():
        if len(bucket) < 2:
            continue
        names = set().union(*(c.params for c in bucket))
        for k in names:
            if k in IGNORED_PARAMS or k in AXIS_PARAMS or k.startswith(IGNORED_PREFIXES):
                continue
            # only values both sides have: upstream.* of a stage=transfer cell is explained by
            # `stage`, a PTQ cell's quant.calibration by its quant method
            if len({c.params.get(k) for c in bucket} - set(MISSING_VALUES)) > 1:
                keys.add(k)
    return sorted(keys)


def variant_items(cell: Cell, keys: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """The cell's values of the variant keys it has (a key another method lacks is left out)."""
    return tuple((k, cell.params[k]) for k in keys if cell.params.get(k) not in MISSING_VALUES)


def variant_of(cell: Cell, keys: Sequence[str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in variant_items(cell, keys))


def latest_per_cell(cells: Iterable[Cell]) -> list[Cell]:
    """Keep the newest run of each (experiment, cell_id); runs without a cell_id are kept."""
    best: dict[tuple, Cell] = {}
    for c in cells:
        k = (c.experiment, c.cell_id or c.run_id)
        if k not in best or c.start_time > best[k].start_time:
            best[k] = c
    return list(best.values())


def group_cells(cells: Iterable[Cell]) -> list[Group]:
    """Groups over seeds; variants (params beyond the axes) split groups and are named."""
    cells = latest_per_cell(cells)
    tables: dict[tuple, list[Cell]] = defaultdict(list)  # variants are named per (profile, paper) table
    for c in cells:
        tables[(c.profile, c.paper)].append(c)
    keys = {t: variant_keys(cs) for t, cs in tables.items()}
    groups: dict[tuple, Group] = {}
    for c in sorted(cells, key=lambda c: (c.seed, c.run_id)):
        variant = variant_of(c, keys[(c.profile, c.paper)])
        items = variant_items(c, keys[(c.profile, c.paper)])
        k = tuple(getattr(c, f) for f in KEY_FIELDS) + (variant,)
        groups.setdefault(k, Group(k, [], variant, items)).cells.append(c)
    return sorted(groups.values(), key=sort_key)


def sort_key(g: Group) -> tuple:
    return (PROFILE_ORDER.get(g.profile, 9), g.profile, g.paper, g.model_label, g.task,
            g.sparsity_method != "dense", g.sparsity_method, g.sparsity_target, str(g.nm),
            g.quant_method != "fp32", g.quant_method, -g.weight_bits, -g.act_bits,
            g.distill_method != "none", g.distill_method, g.variant)


def baseline_for(group: Group, groups: Sequence[Group]) -> Group | None:
    """Our dense baseline: same model (incl. shrink), task, profile; fp32, dense, no distill.

    Preference: the same experiment, then any; within that, the fewest variant values differing from
    the group's (same recipe, e.g. profile.train_samples), the default variant, the most seeds.
    """
    cands = [g for g in groups if g.first.is_dense_baseline and g.task == group.task
             and g.profile == group.profile and g.model_label == group.model_label
             and g.first.model_params == group.first.model_params]
    if not cands:
        return None
    mine = dict(group.variant_items)

    def mismatches(base: Group) -> int:  # variant values (e.g. profile.train_samples) that differ
        return sum(1 for k, v in base.variant_items if mine.get(k, v) != v)

    return min(cands, key=lambda g: (g.paper != group.paper, mismatches(g), g.variant != "",
                                     -len(g.cells), g.variant))


def delta(group: Group, base: Group | None) -> float:
    if base is None:
        return math.nan
    return group.mean() - base.mean()


def fmt(value: float, digits: int = 2) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def fmt_pm(mean: float, std: float, digits: int = 2) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if math.isfinite(std) else f"{mean:.{digits}f}"
