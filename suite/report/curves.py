"""Sparsity and budget curves as pure functions: the points, and the knee of a sparsity curve.

The knee at t points is the highest sparsity whose accuracy is within t points of dense, read off
the curve by linear interpolation between the last point inside and the first point outside.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from suite.report.records import Group, baseline_for, budget_siblings


@dataclass(frozen=True)
class Knee:
    value: float  # sparsity (fraction); 0.0 when not even the lowest point is within the threshold
    low: float  # knee of the mean - std curve (seeds' spread); == value with one seed
    high: float  # knee of the mean + std curve
    reached: bool  # False: every point is within the threshold (the knee lies beyond the curve)
    threshold: float

    def text(self) -> str:
        if self.value <= 0:
            return f"< lowest point (none within {self.threshold:g} pt)"
        core = f"{self.value * 100:.0f}%" + ("" if self.reached else "+")
        if abs(self.high - self.low) > 1e-9:
            core += f" ({self.low * 100:.0f}-{self.high * 100:.0f}%)"
        return core


def knee_of(points: Sequence[tuple[float, float]], threshold: float) -> tuple[float, bool]:
    """Highest x with y >= -threshold on the curve through (0, 0) and `points` (x, Δ to dense).

    Returns (knee, reached); reached is False when every point is within the threshold.
    """
    pts = sorted([(0.0, 0.0)] + [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)])
    prev = pts[0]
    for x, y in pts[1:]:
        if y < -threshold:
            (x0, y0) = prev
            if y0 < -threshold:  # already outside (cannot happen after the origin, kept for safety)
                return x0, True
            frac = (y0 + threshold) / (y0 - y) if y0 != y else 0.0
            return x0 + (x - x0) * frac, True
        prev = (x, y)
    return pts[-1][0], False


def knee(curve: Sequence[tuple[Group, Group]], threshold: float) -> Knee:
    """Knee of [(sparse group, its dense baseline)]; the spread from the seeds' std of each point."""
    mean = [(g.sparsity_target, g.mean() - b.mean()) for g, b in curve]
    std = [g.std() if math.isfinite(g.std()) else 0.0 for g, _ in curve]
    k, reached = knee_of(mean, threshold)
    lo, _ = knee_of([(x, y - s) for (x, y), s in zip(mean, std, strict=True)], threshold)
    hi, _ = knee_of([(x, y + s) for (x, y), s in zip(mean, std, strict=True)], threshold)
    first_ok = bool(mean) and min(mean)[1] >= -threshold
    if not any(y >= -threshold for _, y in mean):
        k = lo = hi = 0.0
    elif not first_ok and k < min(x for x, _ in mean):
        k = 0.0
    return Knee(k, min(lo, k), max(hi, k), reached, threshold)


def curve_key(g: Group) -> tuple:
    """What makes one curve: everything but the sparsity level (and the seeds)."""
    return (g.profile, g.model, g.task, g.budget, g.train_examples, g.sparsity_method, g.quant_method,
            g.weight_bits, g.act_bits, g.distill_method, g.init, g.variant)


def sparsity_curves(groups: Sequence[Group], all_groups: Sequence[Group] | None = None,
                    min_points: int = 2) -> dict[tuple, list[tuple[Group, Group]]]:
    """Curves of sparse groups with a dense baseline: curve key -> [(group, baseline)] by sparsity.

    One point per sparsity level (several experiments may hold the same cell: the one with most
    seeds wins). Curves with fewer than `min_points` levels are left out.
    """
    all_groups = all_groups if all_groups is not None else groups
    by: dict[tuple, dict[float, tuple[Group, Group]]] = defaultdict(dict)
    for g in groups:
        if g.sparsity_method == "dense":
            continue
        b = baseline_for(g, all_groups)
        if b is None:
            continue
        level = by[curve_key(g)]
        old = level.get(g.sparsity_target)
        if old is None or len(g.cells) > len(old[0].cells):
            level[g.sparsity_target] = (g, b)
    return {k: [v[s] for s in sorted(v)] for k, v in by.items() if len(v) >= min_points}


def reference_dense(group: Group, groups: Sequence[Group]) -> Group | None:
    """The group's dense baseline; for a smaller model without one (a layer- or width-reduced dense
    model), the largest dense baseline of the same task and recipe: what a small model is compared to."""
    base = baseline_for(group, groups)
    if base is not None:
        return base
    cands = [g for g in groups if g.first.is_dense_baseline and g.task == group.task and g.profile == group.profile
             and g.budget == group.budget and g.train_examples == group.train_examples]
    return max(cands, key=lambda g: (g.mean("encoder_bytes_dense_fp32"), len(g.cells)), default=None)


def budget_curve(group: Group, groups: Sequence[Group]) -> list[tuple[Group, Group | None]]:
    """The group's twins at every budget, each with its dense reference at that budget."""
    return [(g, reference_dense(g, groups)) for g in budget_siblings(group, groups)]
