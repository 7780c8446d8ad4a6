"""`init=checkpoint`: a fine-tuned model of the user's own is evaluated as the dense reference of its
task (no training) and compressed cells start from it; a head that does not fit the task is one
`sparq: error:` line before anything runs."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from suite.config import compose


def _eval_set(cfg):
    from suite.models import load_tokenizer
    from suite.runtime import subset
    from suite.tasks import TASK_KINDS, load_task_data

    kind = TASK_KINDS.get(cfg.task.kind)
    tokenizer = load_tokenizer(cfg.model)
    data = load_task_data(cfg.task, cfg.data_dir)
    eval_ds = subset(data.eval, cfg.profile.eval_samples, cfg.seed)
    return kind, eval_ds, kind.featurize(eval_ds, tokenizer, cfg.task, train=False), kind.collator(tokenizer)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_model):
    """A tiny model fine-tuned on SST-2 by a dense smoke cell (its cached teacher), saved the way
    `save_pretrained` saves any fine-tuned model."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from suite.models import load_model
    from suite.run import run_cell
    from suite.teacher import teacher_path

    base = [f"model.name_or_path={tiny_model}", "model.name=tiny", "profile=smoke", "progress=false",
            "task=sst2", "seed=11", "experiment_name=ckpt-source"]
    cfg = compose(base)
    dense = run_cell(cfg)
    assert dense.status == "FINISHED" and dense.metrics["train_steps"] > 0
    model = load_model(cfg.model, cfg.task)
    model.load_state_dict(load_file(str(teacher_path(cfg) / "model.safetensors")))
    out = tmp_path_factory.mktemp("my-sst2-model")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(out)
    return out


def _overrides(path, *extra):
    return [f"model.name_or_path={path}", "model.name=mine", "profile=smoke", "progress=false", "task=sst2",
            "seed=11", "init=checkpoint", "experiment_name=ckpt", *extra]


def test_dense_row_is_the_checkpoints_own_accuracy_and_a_ptq_cell_starts_from_it(checkpoint, run_cell):
    import mlflow
    from transformers import AutoModelForSequenceClassification

    from suite.evaluation import evaluate_model

    cfg = compose(_overrides(checkpoint))
    kind, eval_ds, features, collate = _eval_set(cfg)
    own = AutoModelForSequenceClassification.from_pretrained(checkpoint)  # plain transformers
    accuracy = evaluate_model(own, kind, cfg.task, eval_ds, features, collate, 16, torch.device("cpu"))

    dense = run_cell(_overrides(checkpoint))
    assert dense.status == "FINISHED"
    assert dense.metrics["eval_primary"] == pytest.approx(accuracy["eval_primary"], abs=1e-9)
    assert "train_steps" not in dense.metrics  # evaluated as it is: no optimizer step
    tags = mlflow.get_run(dense.run_id).data.tags
    sha = hashlib.sha256((checkpoint / "model.safetensors").read_bytes()).hexdigest()
    assert tags["init_source"] == "local"
    assert json.loads(tags["init_weights_sha256"])["model.safetensors"] == sha
    record = mlflow.artifacts.load_dict(f"runs:/{dense.run_id}/result.json")
    assert record["axes"]["init"] == "checkpoint" and record["tags"]["init_source"] == "local"

    ptq = run_cell(_overrides(checkpoint, "quant=ptq", "quant.fp32_source=teacher"))
    assert ptq.status == "FINISHED" and ptq.cell_id != dense.cell_id
    assert 0.0 <= ptq.metrics["eval_primary"] <= 100.0
    pruned = run_cell(_overrides(checkpoint, "sparsity=block", "sparsity.target=0.5"))
    assert pruned.status == "FINISHED" and pruned.metrics["sparsity_measured"] > 0.4


def test_cell_identity_includes_the_checkpoint_weights(checkpoint, tmp_path):
    import shutil

    from suite.identity import config_hash

    copy = shutil.copytree(checkpoint, tmp_path / "copy")
    same = config_hash(compose(_overrides(copy)))
    weights = copy / "model.safetensors"
    from safetensors.torch import load_file, save_file

    state = load_file(str(weights))
    state["classifier.bias"] = state["classifier.bias"] + 1.0
    save_file(state, str(weights), metadata={"format": "pt"})
    assert config_hash(compose(_overrides(copy))) != same
    assert config_hash(compose(_overrides(copy))) != config_hash(compose(_overrides(copy)[:-2] + ["init=pretrained",
                                                                                                 "experiment_name=ckpt"]))


@pytest.mark.parametrize("change, task, says", [
    (None, "mnli", "has a 2-output head"),
    ({"id2label": {"0": "negative", "1": "positive"}}, "sst2", "labels (negative, positive) are not task sst2's"),
    (None, "squad", "has no ForQuestionAnswering head"),
    ({"architectures": ["BertModel"]}, "sst2", "has no ForSequenceClassification head"),
])
def test_a_head_that_does_not_fit_the_task_is_one_line_before_compute(checkpoint, tmp_path, capsys, change,
                                                                      task, says):
    import shutil

    from suite.run import precheck

    path = checkpoint
    if change:
        path = shutil.copytree(checkpoint, tmp_path / "changed")
        config = json.loads((path / "config.json").read_text())
        config.update(change)
        (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(SystemExit) as exit_:
        precheck([o for o in _overrides(path) if o != "task=sst2"] + [f"task={task}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sparq: error: init: checkpoint") and says in err and "\n" not in err


def test_a_model_without_its_head_weights_is_refused_when_loaded(checkpoint, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from suite.errors import SparqError
    from suite.models import load_model

    path = shutil.copytree(checkpoint, tmp_path / "headless")
    state = {k: v for k, v in load_file(str(path / "model.safetensors")).items() if not k.startswith("classifier")}
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    cfg = compose(_overrides(path))
    with pytest.raises(SparqError, match="lacks 2 weight"):
        load_model(cfg.model, cfg.task, keep_head=True)
