"""Chance level per task and which configurations are at it, for the board and the plots.

The level and the test are the judge's (`suite.report.judge.chance_level` / `at_chance`: the
record's eval_primary_chance or conf/claims/chance.yaml, whichever is higher, plus the margin of
chance.yaml), so a configuration the verdicts call "at chance" is the one the board leaves out of
its ranking, Pareto fronts and best-under answers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

from suite.report.judge import Limits, at_chance, chance_level
from suite.report.records import Group


@cache
def limits() -> Limits:
    from suite.report.claims import load_limits

    return load_limits()


@dataclass(frozen=True)
class Chance:
    """levels: (profile, task) -> eval_primary (%) at chance; cells: cell ids of configs at chance."""

    levels: dict[tuple[str, str], float] = field(default_factory=dict)
    cells: frozenset[str] = frozenset()

    def level(self, profile: str, task: str) -> float | None:
        return self.levels.get((profile, task))

    def holds_any(self, cell_ids: Sequence[str]) -> bool:
        return any(c in self.cells for c in cell_ids)


def config_at_chance(g: Group, lim: Limits | None = None) -> bool:
    return math.isfinite(g.mean()) and at_chance(g, lim or limits())


def of_groups(groups: Sequence[Group], lim: Limits | None = None) -> Chance:
    """The highest chance level of each (profile, task) and the cells of every config at chance."""
    lim = lim or limits()
    levels: dict[tuple[str, str], float] = {}
    cells: set[str] = set()
    for g in groups:
        level = chance_level(g, lim)
        if level is not None:
            key = (g.profile, g.task)
            levels[key] = max(level, levels.get(key, -math.inf))
        if config_at_chance(g, lim):
            cells.update(g.cell_ids)
    return Chance(levels, frozenset(cells))
