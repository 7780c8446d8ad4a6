"""Per-example outcomes of an eval, and the task metrics as vectorized numpy functions of them.

A record keeps what its model predicted on every eval example (`Outcomes`), so any two cells
evaluated on the same examples can be paired: the report resamples examples (and seeds) and
recomputes the primary metric on each resample (suite/report/intervals.py). The functions here
give the same numbers as the `evaluate` modules the eval reports (a test checks it) and work on a
batch of resamples at once: `values[..., n]` in, one metric per leading index out.

Numpy only (no torch), so report readers stay light.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence

import numpy as np

DECIMALS = 4  # regression predictions and per-example QA scores are stored rounded


# ---------------------------------------------------------------- metrics on [..., n] arrays

def accuracy(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    return (p == r).mean(axis=-1)


def f1(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Binary F1 of the positive class 1 (0 where there is no positive at all, as sklearn's zero_division=0)."""
    tp = ((p == 1) & (r == 1)).sum(axis=-1)
    fp = ((p == 1) & (r != 1)).sum(axis=-1)
    fn = ((p != 1) & (r == 1)).sum(axis=-1)
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)


def mcc(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Matthews correlation of binary labels (0 when a marginal is constant, as sklearn)."""
    tp = ((p == 1) & (r == 1)).sum(axis=-1).astype(np.float64)
    tn = ((p != 1) & (r != 1)).sum(axis=-1).astype(np.float64)
    fp = ((p == 1) & (r != 1)).sum(axis=-1).astype(np.float64)
    fn = ((p != 1) & (r == 1)).sum(axis=-1).astype(np.float64)
    den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return np.where(den > 0, (tp * tn - fp * fn) / np.where(den > 0, den, 1.0), 0.0)


def pearson(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    p = p - p.mean(axis=-1, keepdims=True)
    r = r - r.mean(axis=-1, keepdims=True)
    den = np.sqrt((p * p).sum(axis=-1) * (r * r).sum(axis=-1))
    return np.where(den > 0, (p * r).sum(axis=-1) / np.where(den > 0, den, 1.0), 0.0)


def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, axis=-1)


def spearmanr(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    return pearson(_ranks(p), _ranks(r))


def mean_score(p: np.ndarray, r: np.ndarray | None = None) -> np.ndarray:
    """Per-example scores already in percent (SQuAD EM / F1): their mean."""
    return p.mean(axis=-1)


METRICS: dict[str, Callable[..., np.ndarray]] = {
    "accuracy": accuracy, "f1": f1, "mcc": mcc, "pearson": pearson, "spearmanr": spearmanr,
    "exact_match": mean_score, "squad_f1": mean_score,
}
PERCENT = {"exact_match", "squad_f1"}  # already percent; the others are fractions (x 100 for eval_primary)


def primary_key(task) -> str:
    """The METRICS key of a task's primary metric (SQuAD's f1 is a per-example mean, not binary F1)."""
    return "squad_f1" if task.metric == "squad" and task.primary == "f1" else task.primary


def primary_percent(metric: str, p: np.ndarray, r: np.ndarray | None) -> np.ndarray:
    """eval_primary (percent) of predictions `p` against references `r`, over the last axis."""
    v = METRICS[metric](p, r)
    return v if metric in PERCENT else 100.0 * v


# ---------------------------------------------------------------- building a record's outcomes

def examples_digest(ids: Sequence) -> str:
    """Identity of an eval set in order: sha256 (16 hex) of its example ids / texts and labels."""
    return hashlib.sha256(json.dumps(list(ids), default=str).encode()).hexdigest()[:16]


def encode_labels(values: Sequence) -> str | list[float]:
    """Class ids 0-9 as one digit each (compact); anything else as a list of rounded floats."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iub" and (arr.size == 0 or (arr.min() >= 0 and arr.max() <= 9)):
        return "".join(str(int(v)) for v in arr)
    return [round(float(v), DECIMALS) for v in arr]


def decode_labels(values: str | Sequence[float]) -> np.ndarray:
    if isinstance(values, str):
        return np.frombuffer(values.encode(), dtype=np.uint8).astype(np.int64) - ord("0")
    return np.asarray(values, dtype=np.float64)


def build(task, inputs: dict, example_keys: Sequence) -> dict:
    """The `outcomes` section of a record from the metric inputs of an eval (suite/tasks)."""
    metric = primary_key(task)
    if task.metric == "squad":
        from suite.metrics import squad_scores

        per_example = squad_scores(inputs["predictions"], inputs["references"], metric)
        return {"metric": metric, "examples": examples_digest(example_keys), "n": len(per_example),
                "predictions": [round(float(v), DECIMALS) for v in per_example], "references": None}
    preds, refs = inputs["predictions"], inputs["references"]
    return {"metric": metric, "examples": examples_digest(list(example_keys) + [list(refs)]), "n": len(refs),
            "predictions": encode_labels(preds), "references": encode_labels(refs)}
