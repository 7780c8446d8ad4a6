"""GLUE metrics for `evaluate`, computed offline with scikit-learn and scipy.

Config names pick the metric set: accuracy, accuracy_f1 (MRPC, QQP), mcc (CoLA),
pearson_spearmanr (STS-B). Values are fractions in [0, 1] (correlations in [-1, 1]).
"""

import datasets
import evaluate
import numpy as np
from scipy.stats import pearsonr
from scipy.stats import spearmanr as scipy_spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

SETS = {
    "accuracy": ("accuracy",),
    "accuracy_f1": ("accuracy", "f1"),
    "mcc": ("mcc",),
    "pearson_spearmanr": ("pearson", "spearmanr"),
}


def accuracy(p, r):
    return float(accuracy_score(r, p))


def f1(p, r):
    """Binary F1 of the positive class (label 1)."""
    return float(f1_score(r, p, pos_label=1, average="binary", zero_division=0.0))


def mcc(p, r):
    """Matthews correlation (binary); 0 when undefined."""
    return float(matthews_corrcoef(r, p))


def _correlation(fn, p, r):
    """0 when a side is constant (undefined), as before; scipy otherwise."""
    if np.ptp(p) == 0 or np.ptp(r) == 0:
        return 0.0
    return float(fn(p, r)[0])


def pearson(p, r):
    return _correlation(pearsonr, p.astype(np.float64), r.astype(np.float64))


def spearmanr(p, r):
    return _correlation(scipy_spearmanr, p.astype(np.float64), r.astype(np.float64))


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
