"""Teacher cache: trained once per model x task x seed x train config, reused, and a corrupt or
partial entry is detected and rebuilt, never used."""

from __future__ import annotations

import pytest
import torch

from suite.config import compose
from suite.teacher import get_teacher, teacher_key, teacher_path

EVAL_KEYS_IGNORED = ("seconds", "latency", "teacher_reused", "wall")


def _features(cfg):
    from suite.models import load_tokenizer
    from suite.run import subset
    from suite.tasks import TASK_KINDS, load_task_data

    kind = TASK_KINDS.get(cfg.task.kind)
    tokenizer = load_tokenizer(cfg.model)
    data = load_task_data(cfg.task, cfg.data_dir)
    features = kind.featurize(subset(data.train, cfg.profile.train_samples, cfg.seed), tokenizer, cfg.task, train=True)
    return features, kind.collator(tokenizer)


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def teacher_cfg(smoke_overrides, tmp_path):
    return compose(smoke_overrides + ["task=mrpc", "seed=7", f"cache_dir={tmp_path / 'cache'}"])


def test_teacher_trained_once_then_reused_and_corrupt_entries_rebuilt(teacher_cfg):
    cfg, device = teacher_cfg, torch.device("cpu")
    features, collate = _features(cfg)
    entry = teacher_path(cfg)
    weights, checksum = entry / "model.safetensors", entry / "model.sha256"

    first, reused = get_teacher(cfg, features, collate, device)
    assert not reused and weights.is_file() and checksum.is_file()
    reference = _state(first)

    again, reused = get_teacher(cfg, features, collate, device)
    assert reused and _same(_state(again), reference)

    # Corruption inside the file (same size): the checksum catches it; rebuilt bit-identically.
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    weights.write_bytes(bytes(blob))
    rebuilt, reused = get_teacher(cfg, features, collate, device)
    assert not reused and _same(_state(rebuilt), reference)
    assert get_teacher(cfg, features, collate, device)[1]  # the rebuilt entry is trusted again

    # A partial write: truncated weights, and weights whose checksum never got written.
    weights.write_bytes(weights.read_bytes()[:1000])
    assert not get_teacher(cfg, features, collate, device)[1]
    checksum.unlink()
    model, reused = get_teacher(cfg, features, collate, device)
    assert not reused and checksum.is_file() and _same(_state(model), reference)
    assert not list(entry.glob("*.tmp*")), "temporary files must not be left behind"


def test_teacher_key_is_model_task_seed_train(smoke_overrides):
    base = compose(smoke_overrides)
    key = teacher_key(base)
    same = [["sparsity=gmp", "sparsity.target=0.5"], ["quant=qat"], ["distill=logits"],
            ["model.shrink_keep_every=2"], ["force=true", "threads=1"]]
    for extra in same:
        assert teacher_key(compose(smoke_overrides + extra)) == key, extra
    for extra in (["seed=1"], ["task=mrpc"], ["train.lr=1e-4"], ["profile.train_samples=16"]):
        assert teacher_key(compose(smoke_overrides + extra)) != key, extra


def test_distilling_cells_log_teacher_reuse_with_identical_results(smoke_overrides, run_cell, tmp_path):
    """The first distilling cell trains the teacher, the re-run reads it from the cache: same
    student, bit for bit, and the runs say which happened (metric + tag teacher_reused)."""
    import mlflow

    overrides = smoke_overrides + ["distill=logits", "task=sst2", "seed=3", f"cache_dir={tmp_path / 'c'}",
                                   "experiment_name=teacher-reuse"]
    trained = run_cell(overrides)
    reused = run_cell(overrides + ["force=true"])
    assert trained.status == reused.status == "FINISHED"
    assert trained.metrics["teacher_reused"] == 0.0 and reused.metrics["teacher_reused"] == 1.0
    same = {k: v for k, v in trained.metrics.items() if not any(s in k for s in EVAL_KEYS_IGNORED)}
    assert same == {k: reused.metrics[k] for k in same}
    assert mlflow.get_run(reused.run_id).data.tags["teacher_reused"] == "true"


def test_the_dense_cell_is_its_own_teacher_trained_once(smoke_overrides, run_cell, tmp_path):
    """A dense fp32 cell and the teacher of every KD cell of its config are one model, trained once:
    whichever runs first trains and caches it, the other reuses it (and says so)."""
    import dataclasses

    from suite.teacher import is_teacher_cell, train_stats

    base = smoke_overrides + ["task=sst2", "seed=19", f"cache_dir={tmp_path / 'c'}", "experiment_name=dense-teacher"]
    cfg = compose(base)
    assert is_teacher_cell(cfg)
    for other in (["sparsity=gmp", "sparsity.target=0.5"], ["distill=logits"], ["train.lr_schedule=rewind"],
                  ["profile.budget=2"], ["init=finetuned"], ["debug.step_sleep=0.01"]):
        assert not is_teacher_cell(compose(base + other)), other

    dense = run_cell(base)
    assert dense.status == "FINISHED" and dense.metrics["teacher_reused"] == 0.0
    stats = train_stats(cfg)
    assert stats["train_steps"] == dense.metrics["train_steps"] > 0
    kd = run_cell(base + ["distill=logits"])
    assert kd.metrics["teacher_reused"] == 1.0  # the dense cell's model is the KD teacher

    again = run_cell(base + ["force=true"])  # the dense cell again: read, not trained; same results
    assert again.metrics["teacher_reused"] == 1.0
    same = {k: v for k, v in dense.metrics.items() if not any(s in k for s in EVAL_KEYS_IGNORED)}
    assert same == {k: again.metrics[k] for k in same}
    assert dataclasses.replace(cfg, profile=dataclasses.replace(cfg.profile, budget=3.0)) != cfg
    assert teacher_key(compose(base + ["profile.budget=2"])) == teacher_key(cfg)  # one teacher, every budget
