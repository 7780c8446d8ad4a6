"""Issue 13 recipes end to end on the tiny random model: finetuned init, 2:4 + 4-bit reporting,
teacher-output cache, knowledge-aware distillation."""

import pytest
import torch


def test_finetuned_init_loads_exactly_the_teachers_weights(smoke_overrides, run_cell, monkeypatch):
    from safetensors.torch import load_file

    import suite.train as T
    from suite.config import compose
    from suite.teacher import teacher_path

    seen = {}
    original = T.fine_tune

    def spy(model, loader, *args, **kwargs):
        if not kwargs.get("desc", "").startswith("teacher"):
            seen.setdefault("state", {k: v.detach().clone() for k, v in model.state_dict().items()})
        return original(model, loader, *args, **kwargs)

    monkeypatch.setattr(T, "fine_tune", spy)
    overrides = smoke_overrides + ["sparsity=nm", "init=finetuned", "seed=7"]
    result = run_cell(overrides)
    assert result.status == "FINISHED"
    teacher = load_file(str(teacher_path(compose(overrides)) / "model.safetensors"))
    assert set(teacher) == set(seen["state"])
    for k, v in teacher.items():
        assert torch.equal(v, seen["state"][k]), k


def test_init_rejected_before_compute(smoke_overrides, run_cell):
    from suite.errors import ConfigError

    with pytest.raises(ConfigError, match="init"):
        run_cell(smoke_overrides + ["init=teacher"])


def test_sparsity_measured_is_half_for_2_4_plus_4_bit(smoke_overrides, run_cell):
    result = run_cell(smoke_overrides + ["sparsity=nm", "quant=qat4"])
    m = result.metrics
    assert m["sparsity_measured"] == pytest.approx(0.5, abs=1e-9)  # the masks, before quantization
    assert m["compression_nominal"] == pytest.approx(16.0)  # 32/4 x 1/0.5
    assert m["sparsity_after_quant"] >= m["sparsity_measured"]
    assert m["train_steps_phase2"] >= 1  # QAT ran after the masks locked


def test_logits_kd_reads_cached_teacher_logits(smoke_overrides, run_cell):
    first = run_cell(smoke_overrides + ["sparsity=gmp", "distill=logits", "seed=3"])
    second = run_cell(smoke_overrides + ["sparsity=gmp", "sparsity.target=0.5", "distill=logits", "seed=3"])
    assert first.metrics["teacher_reused_outputs"] == 0.0
    assert second.metrics["teacher_reused_outputs"] == 1.0


def test_cached_logits_equal_live_logits(smoke_overrides):
    from suite.config import compose
    from suite.distill.teacher_cache import teacher_logits
    from suite.models import load_tokenizer
    from suite.run import subset
    from suite.tasks import TASK_KINDS, load_task_data
    from suite.teacher import teacher_provider
    from suite.train import train_loader

    cfg = compose(smoke_overrides + ["distill=logits", "seed=5"])
    kind = TASK_KINDS.get(cfg.task.kind)
    tok = load_tokenizer(cfg.model)
    ds = subset(load_task_data(cfg.task, cfg.data_dir).train, cfg.profile.train_samples, cfg.seed)
    feats = kind.featurize(ds, tok, cfg.task, train=True)
    collate = kind.collator(tok)
    loader = train_loader(feats, collate, 8, cfg.seed, group_by_length=True, index=True)
    provider = teacher_provider(cfg, feats, collate, torch.device("cpu"))
    cached, reused = teacher_logits(cfg, provider, loader, torch.device("cpu"), 16)
    assert not reused and cached.shape == (len(feats), cfg.task.num_labels)
    teacher = provider()
    for batch in loader:
        idx = batch.pop("example_idx")
        batch.pop("labels")
        with torch.no_grad():
            live = teacher(**batch).logits
        assert torch.allclose(cached[idx], live, atol=1e-4)
    again, reused = teacher_logits(cfg, provider, loader, torch.device("cpu"), 16)
    assert reused and torch.equal(again, cached)


def test_knowledge_aware_cell_and_loss_terms(smoke_overrides, run_cell):
    result = run_cell(smoke_overrides + ["sparsity=gmp", "distill=knowledge_aware"])
    assert result.status == "FINISHED"
    for key in ("distill_attn_loss", "distill_hidden_loss", "distill_pred_loss"):
        assert key in result.metrics and result.metrics[key] >= 0


def test_knowledge_aware_terms_vanish_for_a_copy_of_the_teacher(tiny_model):
    import copy

    from transformers import AutoModelForSequenceClassification

    from suite.distill.knowledge_aware import KnowledgeAwareConfig, KnowledgeAwareModifier
    from suite.lifecycle import TrainState

    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2).eval()
    student = copy.deepcopy(teacher)
    mod = KnowledgeAwareModifier(KnowledgeAwareConfig(), "classification", lambda: teacher)
    state = TrainState()
    mod.on_train_start(student, state)
    batch = {"input_ids": torch.randint(5, 100, (3, 9)), "attention_mask": torch.ones(3, 9, dtype=torch.long)}
    batch["attention_mask"][0, 6:] = 0
    out = student(**batch, output_hidden_states=True)
    loss = mod.loss(student, {**batch, "labels": torch.tensor([0, 1, 0])}, out, torch.tensor(5.0), state)
    assert state.logs["distill_attn_loss"] == pytest.approx(0.0, abs=1e-10)
    assert state.logs["distill_hidden_loss"] == pytest.approx(0.0, abs=1e-10)
    # no hard labels: the task loss (5.0) is not in the total, only soft CE (= teacher entropy)
    assert float(loss.detach()) == pytest.approx(state.logs["distill_pred_loss"], rel=1e-5)
    mod.on_train_end(student, state)
