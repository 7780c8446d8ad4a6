"""Sparsity schedules as pure functions of the step (Zhu & Gupta 2017, "To prune, or not to prune").

s(t) = s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0))^3 for t0 <= t <= t1, s_i before t0,
s_f after t1; t0 = start * total, t1 = end * total (fractions of training). Masks are updated
every `every` steps between t0 and t1 and once more at t1, then locked.
"""

from __future__ import annotations

import math


def window(total_steps: int, start: float, end: float) -> tuple[int, int]:
    """(first, last) pruning step for fractions start <= end of `total_steps`."""
    t0 = int(math.floor(start * total_steps))
    t1 = max(t0, int(math.ceil(end * total_steps)))
    return t0, t1


def cubic_sparsity(step: int, total_steps: int, target: float, start: float = 0.0, end: float = 0.8,
                   initial: float = 0.0) -> float:
    """Sparsity at optimizer step `step` on the cubic schedule."""
    t0, t1 = window(total_steps, start, end)
    if step < t0:
        return initial
    if step >= t1:
        return target
    frac = (step - t0) / (t1 - t0)
    return target + (initial - target) * (1.0 - frac) ** 3


def is_update_step(step: int, total_steps: int, start: float = 0.0, end: float = 0.8, every: int = 1) -> bool:
    """Whether masks are recomputed after optimizer step `step` (every `every` steps in [t0, t1])."""
    t0, t1 = window(total_steps, start, end)
    if step < t0 or step > t1:
        return False
    return step == t1 or (step - t0) % max(1, every) == 0


def scheduled_sparsity(step: int, total_steps: int, target: float, start: float = 0.0, end: float = 0.8,
                       every: int = 1, initial: float = 0.0) -> float:
    """Sparsity in force after step `step`: the cubic value at the last update step <= step."""
    t0, t1 = window(total_steps, start, end)
    if step < t0:
        return initial
    if step >= t1:
        return target
    last = t0 + ((step - t0) // max(1, every)) * max(1, every)
    return cubic_sparsity(last, total_steps, target, start, end, initial)


def linear_anneal(progress: float, initial: float, end: float = 1.0) -> float:
    """initial -> 0 linearly as progress goes 0 -> end (scheduled dropout)."""
    if end <= 0:
        return 0.0
    return initial * max(0.0, 1.0 - progress / end)
