"""Sparsity schedules as pure functions of the step (Zhu & Gupta 2017, "To prune, or not to prune").

s(t) = s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0))^3 for t0 <= t <= t1, s_i before t0,
s_f after t1; t0 = start * total, t1 = end * total (fractions of training). Masks are updated
every `every` steps between t0 and t1 and once more at t1; with `lock` > end (Prune OFA: ramp ends at
50% of the steps, masks are recomputed at the target until 80%, then locked) updates go on every
`every` steps until the lock step. `effective_start` keeps the first update out of the lr warm-up
and `resolve_every` scales the update interval with the number of steps.
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


def lock_step(total_steps: int, end: float, lock: float | None = None) -> int:
    """Step after which masks never change: the ramp's end, or the later `lock` fraction."""
    t1 = window(total_steps, 0.0, end)[1]
    return t1 if lock is None else max(t1, int(math.ceil(lock * total_steps)))


def is_update_step(step: int, total_steps: int, start: float = 0.0, end: float = 0.8, every: int = 1,
                   lock: float | None = None) -> bool:
    """Whether masks are recomputed after optimizer step `step`: every `every` steps in [t0, t1]
    and at t1; then (lock > end) every `every` steps at the target until the lock step."""
    t0, t1 = window(total_steps, start, end)
    last = max(t1, lock_step(total_steps, end, lock))
    if step < t0 or step > last:
        return False
    return step == t1 or (step - t0) % max(1, every) == 0


def effective_start(start: float, warmup_ratio: float) -> float:
    """The ramp never starts inside the lr warm-up (short runs: no mask update while lr ramps up)."""
    return max(start, warmup_ratio)


def resolve_every(every: int, total_steps: int, every_fraction: float | None = None) -> int:
    """Steps between mask updates: `every_fraction` of the run when set (scales with the number of
    steps, like Prune OFA's 1000 of ~22k steps), else the fixed `every`."""
    if every_fraction is None:
        return max(1, every)
    return max(1, int(round(every_fraction * total_steps)))


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
