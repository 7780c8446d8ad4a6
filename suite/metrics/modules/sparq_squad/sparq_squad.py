"""SQuAD v1.1 exact match and F1 (percent) with the official answer normalisation, for `evaluate`.

Kept by hand: these are the official v1.1 script's dozen lines (hub `evaluate` squad needs a
download; scikit-learn has no bag-of-tokens F1 with this normalisation)."""

import collections
import re
import string

import datasets
import evaluate

_PUNCT = set(string.punctuation)


def normalize_answer(s):
    """Lower-case, drop punctuation, the articles a/an/the, and extra whitespace (official v1.1)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(prediction, truth):
    return float(normalize_answer(prediction) == normalize_answer(truth))


def f1(prediction, truth):
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = collections.Counter(pred) & collections.Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


class SparqSquad(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="SQuAD v1.1 exact match and F1 (max over the gold answers), in percent.",
            citation="Rajpurkar et al. 2016, SQuAD.",
            inputs_description="predictions: {id, prediction_text}; references: {id, answers{text, answer_start}}",
            features=datasets.Features({
                "predictions": {"id": datasets.Value("string"), "prediction_text": datasets.Value("string")},
                "references": {"id": datasets.Value("string"),
                               "answers": datasets.Sequence({"text": datasets.Value("string"),
                                                             "answer_start": datasets.Value("int32")})},
            }),
        )

    def _compute(self, predictions, references):
        pred = {p["id"]: p["prediction_text"] for p in predictions}
        em = f = 0.0
        for ref in references:
            truths = ref["answers"]["text"]
            guess = pred.get(ref["id"], "")
            em += max(exact_match(guess, t) for t in truths)
            f += max(f1(guess, t) for t in truths)
        n = max(1, len(references))
        return {"exact_match": 100.0 * em / n, "f1": 100.0 * f / n}
