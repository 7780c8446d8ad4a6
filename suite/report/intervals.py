"""95% intervals of the differences the claims compare, from the records' per-example outcomes.

A difference between two configs (each a `Group` of cells over seeds) is resampled in two stages:
seeds (with replacement, jointly when both configs ran the same seeds), then eval examples (the
same resampled examples for both when they were evaluated on the same examples: a paired
bootstrap). On each resample the primary metric is recomputed per cell (suite/outcomes.py), averaged
over the resampled seeds, and differenced. The interval is the 2.5 / 97.5 percentiles; the point is
the difference of the recorded means. The generator is seeded from the cells' ids, so a report is
deterministic whatever order it asks in.

Pure functions of the records (numpy).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from suite.outcomes import decode_labels, primary_percent
from suite.report.records import Cell, Group

RESAMPLES = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A difference (points of eval_primary) with its 95% interval."""

    value: float
    lo: float
    hi: float
    paired: bool = False  # examples resampled jointly (same eval set)
    n: int = 0  # eval examples per cell
    seeds: tuple[int, int] = (0, 0)  # seeds of each side

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2

    def text(self, unit: str = "pt") -> str:
        if not math.isfinite(self.lo):
            return f"{self.value:+.2f} {unit} (no interval)"
        return f"{self.value:+.2f} {unit} [{self.lo:+.2f}, {self.hi:+.2f}]"


@dataclass(frozen=True)
class _Outcomes:
    metric: str
    examples: str
    predictions: np.ndarray
    references: np.ndarray | None


def _outcomes(cell: Cell) -> _Outcomes | None:
    o = cell.record.get("outcomes")
    if not o or not o.get("n"):
        return None
    refs = o.get("references")
    return _Outcomes(o["metric"], o["examples"], decode_labels(o["predictions"]),
                     None if refs is None else decode_labels(refs))


def has_outcomes(g: Group) -> bool:
    return all(_outcomes(c) is not None for c in g.cells)


def _rng(*groups: Group) -> np.random.Generator:
    ids = "|".join(",".join(sorted(c.cell_id or c.run_id for c in g.cells)) for g in groups)
    return np.random.default_rng(int(hashlib.sha256(ids.encode()).hexdigest()[:16], 16))


def _per_cell(outs: list[_Outcomes], idx: np.ndarray) -> np.ndarray:
    """[cells, resamples]: each cell's primary metric on each resample of its examples."""
    rows = []
    for o in outs:
        p = o.predictions[idx]
        r = None if o.references is None else o.references[idx]
        rows.append(primary_percent(o.metric, p, r))
    return np.stack(rows)


def _seed_means(values: np.ndarray, pick: np.ndarray) -> np.ndarray:
    """values [cells, B], pick [B, k] cell indices -> the mean over the picked cells per resample [B]."""
    return np.take_along_axis(values.T, pick, axis=1).mean(axis=1)


def _resample_delta(a: list[_Outcomes], b: list[_Outcomes], seeds_a: list[str], seeds_b: list[str],
                    rng: np.random.Generator, resamples: int) -> tuple[np.ndarray, bool]:
    same_examples = len({o.examples for o in a + b}) == 1 and len({len(o.predictions) for o in a + b}) == 1
    if same_examples:
        n = len(a[0].predictions)
        idx = rng.integers(0, n, (resamples, n), dtype=np.int32)
        va, vb = _per_cell(a, idx), _per_cell(b, idx)
    else:  # different eval sets: each side resampled on its own
        va = np.concatenate([_per_cell([o], rng.integers(0, len(o.predictions), (resamples, len(o.predictions))))
                             for o in a])
        vb = np.concatenate([_per_cell([o], rng.integers(0, len(o.predictions), (resamples, len(o.predictions))))
                             for o in b])
    if seeds_a == seeds_b:  # the same seeds on both sides: resample them jointly
        pick = rng.integers(0, len(a), (resamples, len(a)))
        return _seed_means(va, pick) - _seed_means(vb, pick), same_examples
    pa = rng.integers(0, len(a), (resamples, len(a)))
    pb = rng.integers(0, len(b), (resamples, len(b)))
    return _seed_means(va, pa) - _seed_means(vb, pb), same_examples


def delta(a: Group, b: Group, resamples: int = RESAMPLES, paired: bool = True) -> Interval:
    """a - b in points of eval_primary, with its 95% interval (no interval without per-example outcomes)."""
    value = a.mean() - b.mean()
    oa, ob = [_outcomes(c) for c in a.cells], [_outcomes(c) for c in b.cells]
    if any(o is None for o in oa + ob) or len({o.metric for o in oa + ob}) != 1:
        return Interval(value, math.nan, math.nan, seeds=(len(a.cells), len(b.cells)))
    if not paired:  # the same sides, but no example is shared between them (for comparison)
        ob = [_Outcomes(o.metric, o.examples + "~unpaired", o.predictions, o.references) for o in ob]
    d, was_paired = _resample_delta(oa, ob, [c.seed for c in a.cells], [c.seed for c in b.cells], _rng(a, b),
                                    resamples)
    tail = (1 - LEVEL) / 2 * 100
    lo, hi = np.percentile(d, [tail, 100 - tail])
    return Interval(value, float(lo), float(hi), was_paired, len(oa[0].predictions), (len(a.cells), len(b.cells)))


def delta_text(g: Group, base: Group | None) -> str:
    """'-1.20 [-2.03, -0.41]' (g - base with its interval), '+0.30' without outcomes, '–' without a base."""
    if base is None or not math.isfinite(g.mean() - base.mean()):
        return "–"
    iv = delta(g, base)
    return f"{iv.value:+.2f}" + (f" [{iv.lo:+.2f}, {iv.hi:+.2f}]" if math.isfinite(iv.lo) else "")
