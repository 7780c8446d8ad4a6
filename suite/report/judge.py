"""What a verdict rests on: a cell against its reference (the dense baseline, an fp32 twin), with
every reason a pair may not be judged. Pure functions of groups.

A pair is inconclusive (never "does not hold") when its reference has not learned the task:
- the reference is at chance (its task's chance level, conf/claims/chance.yaml, + a margin);
- the reference is still gaining: more than `converged_gain` points from one budget to the next
  (1x -> 2x; at the largest budget, from the previous one);
- a failing cell whose gap to its reference is still closing: the gap shrank by more than
  `closing_gain` points from the previous budget to the largest;
- a failing cell whose reference has no budget twin at all (convergence unchecked), for claims
  that depend on training (`converged: true` in the claim YAML, the default).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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
    """(True/False, note) from the reference's budget twins; (None, note) without any."""
    sib = budget_siblings(ref, groups)
    i = next((k for k, g in enumerate(sib) if g is ref), None)
    if i is None or len(sib) < 2:
        return None, f"reference convergence unchecked: {ref.budget} only"
    a, b = (sib[i], sib[i + 1]) if i + 1 < len(sib) else (sib[i - 1], sib[i])
    gain = b.mean() - a.mean()
    return gain > limits.converged_gain + FLOAT_TOL, f"dense {a.budget} -> {b.budget}: {gain:+.2f} pt"


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


@dataclass
class PairResult:
    cell: Group
    ref: Group
    status: str  # HOLDS | FAILS | INCONCLUSIVE (for this pair)
    value: float  # what was compared (e.g. Δ to dense, points)
    note: str = ""


def judge_pair(g: Group, ref: Group, groups: Sequence[Group], passes: Callable[[Group, Group], bool],
               value: Callable[[Group, Group], float], limits: Limits,
               reference: Callable[[Group], Group | None] | None = None, converged: bool = True) -> PairResult:
    """One cell against its reference, with every inconclusive path. `converged`: a failure needs a
    reference shown converged (a budget twin within `converged_gain`); unchecked is inconclusive."""
    v = value(g, ref)
    if at_chance(ref, limits):
        return PairResult(g, ref, INCONCLUSIVE, v, f"reference at chance ({desc(ref)}: {ref.mean():.2f})")
    gaining, note = still_gaining(ref, groups, limits)
    if gaining:
        return PairResult(g, ref, INCONCLUSIVE, v, f"reference not converged ({note})")
    if passes(g, ref):
        return PairResult(g, ref, HOLDS, v, note)
    closing, trend = gap_trend(g, groups, reference or (lambda h: baseline_for(h, groups)))
    if closing is not None and closing > limits.closing_gain + FLOAT_TOL:
        return PairResult(g, ref, INCONCLUSIVE, v, f"gap still closing ({trend})")
    if gaining is None and converged:
        return PairResult(g, ref, INCONCLUSIVE, v, f"fails at {g.budget}, but {note} (no budget twin: "
                                                   "is it the method or the budget?)")
    return PairResult(g, ref, FAILS, v, "; ".join(x for x in (note, trend) if x))


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
    parts.append(f"worst {worst.value:+.2f} {unit} ({desc(worst.cell)} vs {desc(worst.ref)})")
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


def is_math(value: float) -> bool:
    return value is not None and math.isfinite(value)
