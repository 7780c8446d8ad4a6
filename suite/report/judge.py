"""What a verdict rests on: a cell against its reference (the dense baseline, an fp32 twin), judged
on the 95% interval of their difference (suite/report/intervals.py), with one symmetric rule:

- holds when the interval's lower bound clears the claim's line (>= -X for "within X");
- does not hold when its upper bound is below the line;
- both only against a reference shown converged (a budget twin within `converged_gain`) unless the
  claim says `converged: false`; otherwise, or when the interval straddles the line, inconclusive.

An inconclusive pair says what would decide it, as data (`Need`): a budget twin at a larger
budget (the reference is at chance, still gaining, has no budget twin, or a failing gap is still
closing), more seeds or eval examples (the interval straddles the line), or per-example outcomes
(a record made before they were kept). `suite.verdicts` plans cells from these needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from suite.report.intervals import Interval, delta
from suite.report.records import KEY_FIELDS, Group, baseline_for, budget_siblings

HOLDS, FAILS, INCONCLUSIVE, NOT_RUN = "holds", "does not hold", "inconclusive", "not run"
FLOAT_TOL = 1e-9


@dataclass(frozen=True)
class Limits:
    """Thresholds of the inconclusive paths (conf/claims/chance.yaml: `limits`)."""

    chance: dict[str, float] = field(default_factory=dict)  # task -> eval_primary at chance (percent)
    chance_margin: float = 2.0  # a reference within this many points of chance is "at chance"
    converged_gain: float = 1.0  # a reference gaining more than this from one budget to the next
    closing_gain: float = 1.0  # a failing gap shrinking more than this from the previous budget


def desc(g: Group) -> str:
    return f"{g.model_label} {g.task} {g.sparsity_label} {g.bits_label} {g.distill_method} @{g.budget}".strip()


def chance_level(ref: Group, limits: Limits) -> float | None:
    """eval_primary of a constant predictor: the record's eval_primary_chance (its own eval set) when
    recorded, else the task's level in conf/claims/chance.yaml; the higher of the two."""
    levels = [v for v in (limits.chance.get(ref.task), ref.mean("eval_primary_chance")) if v is not None
              and math.isfinite(v)]
    return max(levels) if levels else None


def at_chance(ref: Group, limits: Limits) -> bool:
    level = chance_level(ref, limits)
    return level is not None and ref.mean() <= level + limits.chance_margin + FLOAT_TOL


def still_gaining(ref: Group, groups: Sequence[Group], limits: Limits) -> tuple[bool | None, str]:
    """(True/False, note) from the reference's budget twins; (None, note) without any. The gain is a fact
    of the config, not of the group that asks: each budget's mean pools every record of the config at
    that budget (whichever experiment recorded it), so every claim quotes the same gain."""
    sib = budget_siblings(ref, groups)
    i = next((k for k, g in enumerate(sib) if g is ref), None)
    if i is None:
        i = next((k for k, g in enumerate(sib) if g.budget_factor == ref.budget_factor), None)
    if i is None or len(sib) < 2:
        return None, f"reference convergence unchecked: {ref.budget} only"
    a, b = (sib[i], sib[i + 1]) if i + 1 < len(sib) else (sib[i - 1], sib[i])
    gain = pooled_mean(b, groups) - pooled_mean(a, groups)
    return gain > limits.converged_gain + FLOAT_TOL, f"dense {a.budget} -> {b.budget}: {gain:+.2f} pt"


def pooled_mean(g: Group, groups: Sequence[Group]) -> float:
    """Mean eval_primary of every record of g's config at g's budget, over all experiments (each cell once)."""
    fam = family(g)
    cells = {c.cell_id or c.run_id: c for h in groups if family(h) == fam and h.budget_factor == g.budget_factor
             for c in h.cells}
    vals = [c.primary for c in cells.values() if math.isfinite(c.primary)]
    return sum(vals) / len(vals) if vals else math.nan


def largest_budget(selected: Sequence[Group], groups: Sequence[Group]) -> list[Group]:
    """Each selected config once (whatever experiment recorded it), at its largest selected budget."""
    ids = {id(g) for g in selected}
    out: list[Group] = []
    for g in selected:
        sib = [h for h in budget_siblings(g, groups) if id(h) in ids]
        top = sib[-1] if sib else g
        if all(top is not h for h in out):
            out.append(top)
    return out


def family(g: Group) -> tuple:
    """A config whatever its budget and the experiment that recorded it."""
    return tuple(v for f, v in zip(KEY_FIELDS, g.key, strict=True) if f not in ("budget", "paper"))


def top_pairs(pairs: Sequence[tuple[Group, Group]]) -> list[tuple[Group, Group]]:
    """Of the (cell, reference) pairs of one reference config at several budgets, the largest budget's."""
    top: dict[tuple, float] = {}
    for _, b in pairs:
        top[family(b)] = max(top.get(family(b), 0.0), b.budget_factor)
    return [(a, b) for a, b in pairs if b.budget_factor == top[family(b)]]


def gap_trend(g: Group, groups: Sequence[Group],
              reference: Callable[[Group], Group | None]) -> tuple[float | None, str]:
    """Change of the gap (cell - reference) from the previous budget to this one."""
    sib = budget_siblings(g, groups)
    i = next((k for k, h in enumerate(sib) if h is g), 0)
    if i == 0:
        return None, ""
    prev = sib[i - 1]
    r0, r1 = reference(prev), reference(g)
    if r0 is None or r1 is None:
        return None, ""
    d0, d1 = prev.mean() - r0.mean(), g.mean() - r1.mean()
    return d1 - d0, f"gap {prev.budget} {d0:+.2f} -> {g.budget} {d1:+.2f} pt"


@dataclass
class Outcome:
    """What a rule returns for one point of view (claims.py turns it into a ClaimVerdict)."""

    status: str
    reason: str
    evidence: list[Group] = field(default_factory=list)
    ours: str = ""
    at: str = ""  # e.g. "paper's scale", "knee on minilm: 80%", "gmp 50% vs minilm (1/2 layers)"
    needs: list = field(default_factory=list)  # [Need]: what would decide an inconclusive outcome


@dataclass(frozen=True)
class Need:
    """What would decide an inconclusive pair: a cell to run (the config of `cell_id` at `factor` x its
    budget's steps, or with `count` seeds in all), or a fact no budget buys (kind 'unavailable')."""

    kind: str  # budget | seeds | outcomes | unavailable
    cell_id: str = ""
    factor: float | None = None  # budget factor wanted for the config of cell_id
    count: int | None = None  # seeds wanted in all
    text: str = ""

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in (None, "")}


@dataclass
class PairResult:
    cell: Group
    ref: Group
    status: str  # HOLDS | FAILS | INCONCLUSIVE (for this pair)
    value: float  # what was compared (cell - reference, points)
    note: str = ""
    interval: Interval | None = None
    needs: list[Need] = field(default_factory=list)


def next_budget(g: Group, groups: Sequence[Group]) -> float:
    """The budget factor past the largest one this config was recorded at (doubling)."""
    return 2 * max(h.budget_factor for h in budget_siblings(g, groups))


def budget_needs(cell: Group, ref: Group, groups: Sequence[Group], why: str) -> list[Need]:
    """Budget twins of the reference at the next doubling, and of the cell at the matching budget."""
    want = next_budget(ref, groups)
    scale = want / ref.budget_factor
    return [Need("budget", ref.cell_ids[0], want, text=f"{desc(ref)} at {want:g}x ({why})"),
            Need("budget", cell.cell_ids[0], cell.budget_factor * scale, text=f"{desc(cell)} at "
                 f"{cell.budget_factor * scale:g}x")]


def precision_needs(cell: Group, ref: Group, iv: Interval, line: float) -> tuple[str, list[Need]]:
    """How many more seeds (or eval examples) would shrink the interval off the line (width ~ 1/sqrt)."""
    margin = abs(iv.value - line)
    seeds = max(len(cell.seeds), len(ref.seeds))
    if not (math.isfinite(margin) and math.isfinite(iv.half_width)):  # a metric missing, or one seed and no outcomes
        return f"{iv.text()}: a metric is missing, or one seed each and no per-example outcomes", [
            Need("seeds", g.cell_ids[0], count=seeds + 1, text=f"{desc(g)}: {seeds + 1} seeds") for g in (cell, ref)]
    if margin < 1e-6:
        return f"interval {iv.text()} sits on the line {line:+.2f}", [
            Need("unavailable", cell.cell_ids[0], text="the difference equals the line: no sample size decides it")]
    ratio = (iv.half_width / margin) ** 2
    want_seeds = max(seeds + 1, math.ceil(seeds * ratio))
    want_n = math.ceil(iv.n * ratio) if iv.n else None
    text = (f"interval {iv.text()} straddles {line:+.2f}: ~{want_seeds} seeds"
            + (f" or ~{want_n} eval examples (have {iv.n})" if want_n else ""))
    return text, [Need("seeds", g.cell_ids[0], count=want_seeds, text=f"{desc(g)}: {want_seeds} seeds")
                  for g in (cell, ref)]


def judge_pair(g: Group, ref: Group, groups: Sequence[Group], line: float, limits: Limits, *,
               strict: bool = False, reference: Callable[[Group], Group | None] | None = None,
               converged: bool = True, anchor: Group | None = None) -> PairResult:
    """Is `g - ref` (points) above `line` (at least; strictly with `strict`)? On the 95% interval, against
    a reference shown converged unless `converged` is False (`anchor`: the config whose convergence counts,
    default the reference); every other case is inconclusive with its needs."""
    iv = delta(g, ref)
    anchor = anchor or ref
    v = iv.value

    def inconclusive(note: str, needs: list[Need]) -> PairResult:
        return PairResult(g, ref, INCONCLUSIVE, v, note, iv, needs)

    other = g if anchor is ref else ref
    if at_chance(anchor, limits):
        return inconclusive(f"reference at chance ({desc(anchor)}: {anchor.mean():.2f})",
                            budget_needs(other, anchor, groups, "reference at chance"))
    gaining, note = still_gaining(anchor, groups, limits) if converged else (False, "")
    if gaining:
        return inconclusive(f"reference not converged ({note})", budget_needs(other, anchor, groups, "not converged"))
    if gaining is None:
        return inconclusive(f"{note} (no budget twin: is it the method or the budget?)",
                            budget_needs(other, anchor, groups, "no budget twin"))
    if not math.isfinite(iv.lo):
        return inconclusive("no per-example outcomes (recorded before they were kept): no interval",
                            [Need("outcomes", x.cell_ids[0], text=f"re-run {desc(x)}") for x in (g, ref)])
    if (iv.lo > line + FLOAT_TOL) if strict else (iv.lo >= line - FLOAT_TOL):
        return PairResult(g, ref, HOLDS, v, note, iv)
    if (iv.hi <= line + FLOAT_TOL) if strict else (iv.hi < line - FLOAT_TOL):
        if converged:
            closing, trend = gap_trend(g, groups, reference or (lambda h: baseline_for(h, groups)))
            if closing is not None and closing > limits.closing_gain + FLOAT_TOL:
                return inconclusive(f"gap still closing ({trend})", budget_needs(g, ref, groups, "gap closing"))
        else:
            trend = ""
        return PairResult(g, ref, FAILS, v, "; ".join(x for x in (note, trend) if x), iv)
    text, needs = precision_needs(g, ref, iv, line)
    return inconclusive(text, needs)


def combine(results: Sequence[PairResult]) -> str:
    """Any conclusive failure fails the claim; else any inconclusive pair makes it inconclusive."""
    if not results:
        return NOT_RUN
    statuses = {r.status for r in results}
    if FAILS in statuses:
        return FAILS
    if INCONCLUSIVE in statuses:
        return INCONCLUSIVE
    return HOLDS


def summary(results: Sequence[PairResult], what: str, unit: str = "pt") -> str:
    """'2/3 pairs pass, 1 inconclusive (reason); worst -7.56 pt (desc)'."""
    n_ok = sum(r.status == HOLDS for r in results)
    bad = [r for r in results if r.status == FAILS]
    inc = [r for r in results if r.status == INCONCLUSIVE]
    parts = [f"{n_ok}/{len(results)} {what} pass"]
    if inc:
        parts.append(f"{len(inc)} inconclusive: {inc[0].note}")
    judged = [r for r in results if r.status != INCONCLUSIVE] or list(results)
    worst = min(judged, key=lambda r: r.value)
    shown = worst.interval.text(unit) if worst.interval is not None else f"{worst.value:+.2f} {unit}"
    parts.append(f"worst {shown} ({desc(worst.cell)} vs {desc(worst.ref)})")
    if bad and bad[0].note:
        parts.append(bad[0].note)
    return "; ".join(parts)


def evidence(results: Sequence[PairResult]) -> list[Group]:
    out: list[Group] = []
    for r in results:
        for g in (r.cell, r.ref):
            if all(g is not h for h in out):
                out.append(g)
    return out


def needs_of(results: Sequence[PairResult]) -> list[Need]:
    """The needs of the inconclusive pairs, each once."""
    out: list[Need] = []
    for r in results:
        out += [n for n in r.needs if n not in out]
    return out
