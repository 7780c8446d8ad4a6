"""Per-example outcomes: the numpy metrics equal the shipped `evaluate` modules, the record round-trips."""

import numpy as np
import pytest

from suite import outcomes
from suite.config import TaskConfig
from suite.metrics import compute_metrics
from suite.record import Outcomes


def _task(metric_config: str, primary: str, metric: str = "glue") -> TaskConfig:
    return TaskConfig(name="t", kind="regression" if primary in ("pearson", "spearmanr") else "classification",
                      files={"eval": "dev.tsv"}, labels=["0", "1"], metric=metric, metric_config=metric_config,
                      primary=primary)


@pytest.mark.parametrize("metric_config,primary", [
    ("accuracy", "accuracy"), ("accuracy_f1", "f1"), ("mcc", "mcc"),
    ("pearson_spearmanr", "pearson"), ("pearson_spearmanr", "spearmanr")])
def test_numpy_metrics_equal_the_evaluate_modules(metric_config, primary):
    rng = np.random.default_rng(0)
    if primary in ("pearson", "spearmanr"):
        r = rng.uniform(0, 5, 200).round(2)
        p = (r + rng.normal(0, 1.5, 200)).round(3)
    else:
        r = rng.integers(0, 2, 200)
        p = np.where(rng.random(200) < 0.7, r, 1 - r)
    task = _task(metric_config, primary)
    want = compute_metrics(task, predictions=p.tolist(), references=r.tolist())["eval_primary"]
    got = outcomes.primary_percent(outcomes.primary_key(task), p, r)
    assert got == pytest.approx(want, abs=1e-9)


def test_metrics_work_on_a_batch_of_resamples():
    rng = np.random.default_rng(1)
    r = rng.integers(0, 2, 50)
    p = np.where(rng.random(50) < 0.8, r, 1 - r)
    idx = rng.integers(0, 50, (7, 50))
    batch = outcomes.primary_percent("mcc", p[idx], r[idx])
    one = [outcomes.primary_percent("mcc", p[i], r[i]) for i in idx]
    assert batch.shape == (7,) and np.allclose(batch, one)


def test_squad_scores_are_per_example_and_average_to_the_metric():
    from suite.metrics import squad_scores

    task = TaskConfig(name="squad", kind="qa", files={"eval": "dev.json"}, metric="squad", metric_config="squad",
                      primary="f1")
    preds = [{"id": "a", "prediction_text": "the Eiffel tower"}, {"id": "b", "prediction_text": "Paris"}]
    refs = [{"id": "a", "answers": {"text": ["Eiffel Tower", "tower"], "answer_start": [0, 7]}},
            {"id": "b", "answers": {"text": ["London"], "answer_start": [0]}}]
    scores = squad_scores(preds, refs, "squad_f1")
    assert scores == [100.0, 0.0]
    built = outcomes.build(task, {"predictions": preds, "references": refs}, ["a", "b"])
    want = compute_metrics(task, predictions=preds, references=refs)["eval_primary"]
    assert outcomes.primary_percent(built["metric"], np.array(built["predictions"]), None) == pytest.approx(want)


def test_outcomes_round_trip_through_the_record_and_check_lengths():
    task = _task("accuracy", "accuracy")
    built = outcomes.build(task, {"predictions": [1, 0, 1], "references": [1, 1, 1]}, ["x", "y", "z"])
    rec = Outcomes.model_validate(built)
    assert rec.predictions == "101" and rec.n == 3
    assert list(outcomes.decode_labels(rec.references)) == [1, 1, 1]
    with pytest.raises(ValueError, match="outcomes.predictions"):
        Outcomes.model_validate({**built, "predictions": "10"})
    # the same examples with other labels are another eval set
    other = outcomes.build(task, {"predictions": [1, 0, 1], "references": [0, 1, 1]}, ["x", "y", "z"])
    assert other["examples"] != built["examples"]
