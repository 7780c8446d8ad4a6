"""The shipped evaluate modules against hand-computed values and scikit-learn."""

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from suite.metrics import load_metric

PRED = [1, 0, 1, 1, 0, 1, 0, 0, 1, 1]
REF = [1, 0, 0, 1, 0, 1, 1, 0, 1, 0]


def test_accuracy_and_f1_hand_computed():
    out = load_metric("glue", "accuracy_f1").compute(predictions=PRED, references=REF)
    # 7 of 10 right; tp=4, fp=2, fn=1 -> f1 = 8 / 11
    assert out["accuracy"] == pytest.approx(0.7)
    assert out["f1"] == pytest.approx(8 / 11)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_glue_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    p, r = rng.integers(0, 2, 200).tolist(), rng.integers(0, 2, 200).tolist()
    acc_f1 = load_metric("glue", "accuracy_f1").compute(predictions=p, references=r)
    mcc = load_metric("glue", "mcc").compute(predictions=p, references=r)
    assert acc_f1["accuracy"] == pytest.approx(accuracy_score(r, p))
    assert acc_f1["f1"] == pytest.approx(f1_score(r, p))
    assert mcc["mcc"] == pytest.approx(matthews_corrcoef(r, p))


def test_mcc_degenerate_is_zero():
    assert load_metric("glue", "mcc").compute(predictions=[1, 1, 1], references=[0, 1, 1])["mcc"] == 0.0


def test_correlations_match_scipy_with_ties():
    rng = np.random.default_rng(3)
    r = rng.integers(0, 6, 100).astype(float)  # many ties, like STS-B's 0-5 scores
    p = r + rng.normal(0, 1.5, 100)
    out = load_metric("glue", "pearson_spearmanr").compute(predictions=p.tolist(), references=r.tolist())
    assert out["pearson"] == pytest.approx(stats.pearsonr(p, r)[0])
    assert out["spearmanr"] == pytest.approx(stats.spearmanr(p, r)[0])


def test_squad_official_normalisation():
    squad = load_metric("squad")
    refs = [{"id": "a", "answers": {"text": ["The Denver Broncos", "Broncos"], "answer_start": [0, 4]}},
            {"id": "b", "answers": {"text": ["1,000 years"], "answer_start": [3]}},
            {"id": "c", "answers": {"text": ["Paris"], "answer_start": [0]}}]
    preds = [{"id": "a", "prediction_text": "denver broncos!"},  # EM after dropping 'the' and '!'
             {"id": "b", "prediction_text": "about 1000 years"},  # F1: 'years' shared; '1000' != '1000'? see below
             {"id": "c", "prediction_text": "London"}]
    out = squad.compute(predictions=preds, references=refs)
    # b: pred tokens [about, 1000, years], gold [1000, years] (comma removed) -> p=2/3, r=1, f1=0.8
    assert out["exact_match"] == pytest.approx(100 / 3)
    assert out["f1"] == pytest.approx(100 * (1 + 0.8 + 0) / 3)
