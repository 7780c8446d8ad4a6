"""GLUE metrics for `evaluate`, computed offline with NumPy.

Config names pick the metric set: accuracy, accuracy_f1 (MRPC, QQP), mcc (CoLA),
pearson_spearmanr (STS-B). Values are fractions in [0, 1] (correlations in [-1, 1]).
"""

import datasets
import evaluate
import numpy as np

SETS = {
    "accuracy": ("accuracy",),
    "accuracy_f1": ("accuracy", "f1"),
    "mcc": ("mcc",),
    "pearson_spearmanr": ("pearson", "spearmanr"),
}


def accuracy(p, r):
    return float(np.mean(p == r))


def f1(p, r):
    """Binary F1 of the positive class (label 1)."""
    tp = float(np.sum((p == 1) & (r == 1)))
    fp = float(np.sum((p == 1) & (r != 1)))
    fn = float(np.sum((p != 1) & (r == 1)))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def mcc(p, r):
    """Matthews correlation (binary); 0 when undefined, as scikit-learn does."""
    tp = float(np.sum((p == 1) & (r == 1)))
    tn = float(np.sum((p != 1) & (r != 1)))
    fp = float(np.sum((p == 1) & (r != 1)))
    fn = float(np.sum((p != 1) & (r == 1)))
    denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if denom == 0 else (tp * tn - fp * fn) / denom


def _ranks(x):
    """Average ranks with ties (as Spearman needs)."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1
        i = j + 1
    return ranks


def pearson(p, r):
    p, r = p - p.mean(), r - r.mean()
    denom = np.sqrt(np.sum(p * p) * np.sum(r * r))
    return 0.0 if denom == 0 else float(np.sum(p * r) / denom)


def spearmanr(p, r):
    return pearson(_ranks(p), _ranks(r))


class SparqGlue(evaluate.Metric):
    def _info(self):
        if self.config_name not in SETS:
            raise KeyError(f"unknown GLUE metric set '{self.config_name}'; allowed: {', '.join(SETS)}")
        dtype = "float64" if self.config_name == "pearson_spearmanr" else "int64"
        return evaluate.MetricInfo(
            description="GLUE metrics (accuracy, binary F1, Matthews correlation, Pearson, Spearman).",
            citation="Wang et al. 2018, GLUE.",
            inputs_description="predictions, references: class ids (or scores for STS-B)",
            features=datasets.Features({"predictions": datasets.Value(dtype),
                                        "references": datasets.Value(dtype)}),
        )

    def _compute(self, predictions, references):
        p, r = np.asarray(predictions), np.asarray(references)
        fns = {"accuracy": accuracy, "f1": f1, "mcc": mcc, "pearson": pearson, "spearmanr": spearmanr}
        return {name: float(fns[name](p, r)) for name in SETS[self.config_name]}
