"""Typed views of the stored `result.json` records: one `Cell` per record, one `Group` per config
over seeds (grouped with pandas on the record's own axes; nothing here re-derives an axis).

Pure: records in, groups out; `load.py` is the only reader of MLflow.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

PROFILE_ORDER = {"full": 0, "quick": 1, "smoke": 2}
# eval_* metrics that are bookkeeping or derived (eval_examples, eval_primary_packed, eval_packed_delta)
NON_TASK_EVAL = ("examples", "samples", "seconds", "runtime", "loss", "steps", "primary", "packed", "delta")
# The group key: the record's axes (less the seed) plus the recipe's size (train examples), so
# cells of one row differ only in seed, and a dense baseline is looked up on the same recipe.
KEY_FIELDS = ("profile", "paper", "model", "task", "budget", "train_examples", "init", "sparsity_method",
              "sparsity_target", "sparsity_pattern", "quant_method", "weight_bits", "act_bits",
              "distill_method", "variant")
KEY_TASK = KEY_FIELDS.index("task")


def is_task_metric(key: str) -> bool:
    """eval_<metric> that is a task metric (eval_accuracy, eval_f1, ...)."""
    return key.startswith("eval_") and not any(w in key.removeprefix("eval_") for w in NON_TASK_EVAL)


def _num(value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v


def budget_factor(label: str | None) -> float:
    """'2x' -> 2.0; no label -> 1.0 (the recipe's own steps)."""
    if not label:
        return 1.0
    v = _num(str(label).rstrip("x"))
    return v if math.isfinite(v) else math.nan


@dataclass(frozen=True)
class Cell:
    """One stored record (CellRecord as a dict: result.json of a FINISHED cell run)."""

    record: dict
    start_time: int = 0

    # ---- identity
    @property
    def run_id(self) -> str:
        return self.record.get("run_id") or ""

    @property
    def cell_id(self) -> str:
        return self.record.get("cell_id") or ""

    @property
    def experiment(self) -> str:
        return self.record.get("experiment", "")

    @property
    def axes(self) -> dict:
        return self.record.get("axes") or {}

    @property
    def profile(self) -> str:
        return self.axes.get("profile", "")

    @property
    def paper(self) -> str:
        """The experiment (paper grid) without its profile suffix."""
        return self.experiment.removesuffix(f"-{self.profile}")

    @property
    def model(self) -> str:
        return self.axes.get("model", "?")

    model_label = model  # the record's model label names shrink options itself

    @property
    def task(self) -> str:
        return self.axes.get("task", "?")

    @property
    def seed(self) -> str:
        return str(self.axes.get("seed", ""))

    @property
    def init(self) -> str:
        return self.axes.get("init") or "pretrained"

    @property
    def budget(self) -> str:
        return self.axes.get("budget") or "1x"

    @property
    def budget_factor(self) -> float:
        return budget_factor(self.budget)

    @property
    def sparsity_method(self) -> str:
        return self.axes.get("sparsity_method", "dense")

    @property
    def sparsity_target(self) -> float:
        return round(_num(self.axes.get("sparsity_target", 0.0)), 6)

    @property
    def sparsity_pattern(self) -> str:
        return self.axes.get("sparsity_pattern") or ""

    @property
    def nm(self) -> tuple[int, int] | None:
        n, _, m = self.sparsity_pattern.partition(":")
        return (int(n), int(m)) if n.isdigit() and m.isdigit() else None

    @property
    def quant_method(self) -> str:
        return self.axes.get("quant_method", "fp32")

    @property
    def weight_bits(self) -> int:
        return int(self.axes.get("weight_bits", 32))

    @property
    def act_bits(self) -> int:
        return int(self.axes.get("act_bits", 32))

    @property
    def distill_method(self) -> str:
        return self.axes.get("distill_method", "none")

    @property
    def variant_items(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((str(k), str(v)) for k, v in (self.axes.get("variant") or {}).items()))

    @property
    def variant(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.variant_items)

    @property
    def ablated(self) -> tuple[str, ...]:
        """Technique switches the cell turns off, as its method class says (axes.ablated)."""
        return tuple(sorted(self.axes.get("ablated") or ()))

    @property
    def sparsity_label(self) -> str:
        """The sparsity option in its method's words ('gmp 90%', 'nm 2:4', 'dense')."""
        return method_label(self.record, "sparsity")

    @property
    def bits_label(self) -> str:
        """The quant option in its method's words ('fp32', 'qat w4a8')."""
        return method_label(self.record, "quant")

    @property
    def is_dense_baseline(self) -> bool:
        return self.sparsity_method == "dense" and self.quant_method == "fp32" and self.distill_method == "none"

    # ---- budget (what the numbers rest on)
    @property
    def steps(self) -> int | None:
        return (self.record.get("budget") or {}).get("steps")

    @property
    def batch_size(self) -> int | None:
        return (self.record.get("budget") or {}).get("batch_size")

    @property
    def train_examples(self) -> int | None:
        return (self.record.get("budget") or {}).get("train_examples")

    @property
    def eval_examples(self) -> int | None:
        return (self.record.get("budget") or {}).get("eval_examples")

    # ---- numbers
    @property
    def metrics(self) -> dict[str, float]:
        """Every number of the record, flat: metrics, compression, latency_ms_* (NaN for null)."""
        out = {k: _num(v) for k, v in (self.record.get("metrics") or {}).items()}
        out.update({k: _num(v) for k, v in (self.record.get("compression") or {}).items()})
        out.update({k: _num(v) for k, v in (self.record.get("latency") or {}).items() if k.startswith("latency_ms_")})
        return out

    @property
    def primary(self) -> float:
        return self.metrics.get("eval_primary", math.nan)

    @property
    def tags(self) -> dict[str, str]:
        return dict(self.record.get("tags") or {})

    @property
    def environment(self) -> dict:
        return dict(self.record.get("environment") or {})

    @property
    def timed_busy(self) -> bool:
        """Its latencies were timed while the machine was busy (`latency.quiet` false, suite/quiet.py)."""
        return (self.record.get("latency") or {}).get("quiet") is False

    def latencies(self) -> dict[str, float]:
        """latency_ms_* by backend; none when timed on a busy machine (not evidence of speed)."""
        if self.timed_busy:
            return {}
        return {k.removeprefix("latency_ms_"): v for k, v in self.metrics.items()
                if k.startswith("latency_ms_") and math.isfinite(v)}

    def stage_ratio(self, name: str, shape: str = "b1_s128") -> dict | None:
        """A speed ratio of the latency stage (suite/latency: median, lo, hi over timing rounds), e.g.
        'sparq_vs_torch_fp32' at batch 1, seq 128; None when the stage has not timed this cell."""
        return (self.record.get("latency_stage") or {}).get(f"{shape}/{name}")

    def metric_scale(self) -> float:
        """Factor that puts eval_<metric> in percent: the one that maps a task metric onto eval_primary."""
        task = {k: v for k, v in self.metrics.items() if is_task_metric(k) and math.isfinite(v)}
        p = self.primary
        if math.isfinite(p):
            if any(abs(v * 100 - p) < 1e-6 for v in task.values()):
                return 100.0
            if any(abs(v - p) < 1e-6 for v in task.values()):
                return 1.0
        return 100.0 if all(abs(v) <= 1 for v in task.values()) else 1.0

    def eval_percent(self) -> dict[str, float]:
        """Task metrics (without eval_primary) in percent."""
        s = self.metric_scale()
        return {k.removeprefix("eval_"): v * s for k, v in self.metrics.items() if is_task_metric(k)}

    def key(self) -> tuple:
        return tuple(getattr(self, f) for f in KEY_FIELDS)


def method_label(record: dict, group: str) -> str:
    """What tables call the cell's `group` option (sparsity | quant): the label its method class
    gave when the cell ran (axes.<group>_label); a record without one asks the method class,
    typed from the record's resolved config."""
    axes = record.get("axes") or {}
    if label := axes.get(f"{group}_label"):
        return label
    section = (record.get("config") or {}).get(group) or _section_from_axes(axes, group)
    return _label_of(group, json.dumps(section, sort_keys=True))


def _section_from_axes(axes: dict, group: str) -> dict:
    """The method options a record's axes state (a record without its resolved config)."""
    if group == "sparsity":
        out = {"method": axes.get("sparsity_method", "dense")}
        if out["method"] != "dense":
            out["target"] = axes.get("sparsity_target", 0.0)
        n, _, m = str(axes.get("sparsity_pattern") or "").partition(":")
        if n.isdigit() and m.isdigit():
            out.update(n=int(n), m=int(m))
        return out
    out = {"method": axes.get("quant_method", "fp32")}
    if out["method"] != "fp32":
        out.update(weight_bits=axes.get("weight_bits", 8), act_bits=axes.get("act_bits", 8))
    return out


@lru_cache(maxsize=512)
def _label_of(group: str, section: str) -> str:
    from suite.config import method_config
    from suite.errors import ConfigError

    data = json.loads(section)
    try:
        return method_config(group, data).label()
    except ConfigError:  # a method this code no longer knows: its name is all there is
        return str(data.get("method"))


@dataclass
class Group:
    """Cells that differ only in seed (one table row x task)."""

    key: tuple
    cells: list[Cell]

    @property
    def first(self) -> Cell:
        return self.cells[0]

    def __getattr__(self, name):  # axes shared by every cell of the group
        if name.startswith("_") or name in ("cells", "key"):
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

    def values(self, metric: str = "primary") -> list[float]:
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
    def budget_text(self) -> str:
        """What the numbers rest on: 'budget 2x: 126 steps x 32, 2000 train / 500 eval examples'."""
        c = self.first
        steps = f"{c.steps} steps x {c.batch_size}" if c.steps else "steps unknown"
        return f"{c.budget} ({steps}, {c.train_examples or '?'} train / {c.eval_examples or '?'} eval examples)"

    def latency(self) -> dict[str, float]:
        """Mean latency per backend over seeds."""
        acc: dict[str, list[float]] = defaultdict(list)
        for c in self.cells:
            for k, v in c.latencies().items():
                acc[k].append(v)
        return {k: statistics.fmean(v) for k, v in acc.items()}


def latest_per_cell(cells: Iterable[Cell]) -> list[Cell]:
    """Keep the newest record of each (experiment, cell_id); records without a cell_id are kept."""
    best: dict[tuple, Cell] = {}
    for c in cells:
        k = (c.experiment, c.cell_id or c.run_id or id(c))
        if k not in best or c.start_time > best[k].start_time:
            best[k] = c
    return list(best.values())


def frame(cells: Iterable[Cell]):
    """One pandas row per cell: the key fields, seed, eval_primary and the cell itself."""
    import pandas as pd

    rows = [{**dict(zip(KEY_FIELDS, c.key(), strict=True)), "seed": c.seed, "primary": c.primary, "cell": c}
            for c in cells]
    return pd.DataFrame(rows, columns=[*KEY_FIELDS, "seed", "primary", "cell"])


def group_cells(cells: Iterable[Cell]) -> list[Group]:
    """Groups over seeds (pandas groupby on the record's axes), sorted for tables."""
    df = frame(latest_per_cell(cells))
    if df.empty:
        return []
    df = df.sort_values(["seed"], kind="stable").astype({k: object for k in KEY_FIELDS})
    groups = [Group(tuple(key), list(part["cell"]))
              for key, part in df.groupby(list(KEY_FIELDS), sort=False, dropna=False)]
    return sorted(groups, key=sort_key)


def sort_key(g: Group) -> tuple:
    return (PROFILE_ORDER.get(g.profile, 9), g.profile, g.paper, g.model_label, g.task, g.budget_factor,
            g.train_examples or 0, g.sparsity_method != "dense", g.sparsity_method, g.sparsity_target,
            g.sparsity_pattern, g.quant_method != "fp32", g.quant_method, -g.weight_bits, -g.act_bits,
            g.distill_method != "none", g.distill_method, g.init, g.variant)


def same_recipe(a: Group, b: Group) -> bool:
    """Same model, task, profile, budget and train subset: numbers that may be compared."""
    return (a.task == b.task and a.profile == b.profile and a.model == b.model and a.budget == b.budget
            and a.train_examples == b.train_examples)


def baseline_for(group: Group, groups: Sequence[Group]) -> Group | None:
    """Our dense baseline: dense fp32 undistilled, same model, task, profile and train subset, trained
    for the same number of optimizer steps (a QAT cell's two phases are matched by a dense cell of the
    same total steps); without such a cell, the one at the same budget label.

    Preference among equals: the same experiment, then the default recipe (no variant), then the most seeds.
    """
    cands = [g for g in groups if g.first.is_dense_baseline and same_recipe_but_budget(g, group)]
    pool = [g for g in cands if group.steps and g.steps == group.steps] or \
        [g for g in cands if g.budget == group.budget]
    return min(pool, key=lambda g: (g.paper != group.paper, g.variant != "", -len(g.cells), g.paper, g.variant),
               default=None)


def same_recipe_but_budget(a: Group, b: Group) -> bool:
    return a.task == b.task and a.profile == b.profile and a.model == b.model and a.train_examples == b.train_examples


def budget_siblings(group: Group, groups: Sequence[Group]) -> list[Group]:
    """The group's twins at every budget (equal in every key field but the budget and the experiment
    that recorded it), one per budget (the most seeds, the group itself first), by budget."""
    free = {KEY_FIELDS.index("budget"), KEY_FIELDS.index("paper")}
    mine = tuple(v for i, v in enumerate(group.key) if i not in free)
    best: dict[float, Group] = {}
    for g in groups:
        if tuple(v for i, v in enumerate(g.key) if i not in free) != mine:
            continue
        old = best.get(g.budget_factor)
        if old is None or (old is not group and (g is group or len(g.cells) > len(old.cells))):
            best[g.budget_factor] = g
    return [best[b] for b in sorted(best)]


def delta(group: Group, base: Group | None) -> float:
    return math.nan if base is None else group.mean() - base.mean()


def fmt(value: float, digits: int = 2) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def fmt_pm(mean: float, std: float, digits: int = 2) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if math.isfinite(std) else f"{mean:.{digits}f}"
