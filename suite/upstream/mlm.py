"""The upstream stage's training: MLM on the corpus with gradual pruning and distillation from the
frozen dense encoder (hidden-state MSE, and KD on the MLM logits when the head is pretrained).
`train_upstream(cfg, device)` is what `suite.upstream.stage.ensure_upstream` runs inside its
recorded run."""

from __future__ import annotations

import math
import time
from types import SimpleNamespace

import torch
from torch import nn

from suite.config import ProfileConfig, RunConfig, TrainConfig
from suite.distill import losses as L
from suite.errors import SparqError
from suite.lifecycle import Modifier
from suite.upstream.config import effective_steps


def load_mlm_model(cfg: RunConfig) -> tuple[nn.Module, bool]:
    """(AutoModelForMaskedLM with the pretrained encoder, head_pretrained?)."""
    from transformers import AutoModelForMaskedLM

    from suite.models import resolve_model_dir

    where, local = resolve_model_dir(cfg.model)
    model, info = AutoModelForMaskedLM.from_pretrained(where, local_files_only=local, revision=cfg.model.revision,
                                                        trust_remote_code=False, output_loading_info=True)
    prefix = model.base_model_prefix + "."
    head_missing = [k for k in info["missing_keys"] if not k.startswith(prefix)]
    encoder_missing = [k for k in info["missing_keys"] if k.startswith(prefix) and "position_ids" not in k]
    if encoder_missing:
        raise SparqError(f"model: the MLM model misses encoder weights {encoder_missing[:3]}")
    model.tie_weights()
    return model, not head_missing


class MLMStudent(nn.Module):
    """Wraps an MLM model so the generic fine-tuning loop can train it: the loss is the MLM
    cross-entropy at the masked positions; the vocabulary projection runs only there (BERT's
    `cls` head), which saves most of the head's compute on a CPU."""

    def __init__(self, mlm: nn.Module):
        super().__init__()
        self.mlm = mlm

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None,
                output_hidden_states: bool = False):
        base = self.mlm.base_model
        kwargs = {"attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        out = base(input_ids=input_ids, output_hidden_states=output_hidden_states, **kwargs)
        selected = labels != -100
        if hasattr(self.mlm, "cls"):
            logits = self.mlm.cls(out.last_hidden_state[selected])
        else:
            logits = self.mlm(input_ids=input_ids, **kwargs).logits[selected]
        loss = nn.functional.cross_entropy(logits.float(), labels[selected]) if selected.any() \
            else logits.sum() * 0.0
        return SimpleNamespace(loss=loss, logits=logits, hidden_states=out.hidden_states, selected=selected)


class UpstreamDistillModifier(Modifier):
    """loss = alpha_mlm * MLM + alpha_kd * KD(logits at masked positions, T) [trained head only]
    + alpha_hidden * hidden-state MSE against the frozen dense encoder."""

    def __init__(self, teacher: MLMStudent, cfg, use_logits: bool):
        self.teacher, self.cfg, self.use_logits = teacher, cfg, use_logits
        self.history: dict[str, list[float]] = {"mlm": [], "hidden": [], "kd": []}

    def forward_kwargs(self) -> dict:
        return {"output_hidden_states": True} if self.cfg.alpha_hidden > 0 else {}

    def loss(self, model, batch, outputs, task_loss, state):
        c = self.cfg
        total = c.alpha_mlm * task_loss
        self.history["mlm"].append(float(task_loss.detach()))
        need_hidden = c.alpha_hidden > 0
        if need_hidden or self.use_logits:
            with torch.no_grad():
                t = self.teacher(**batch, output_hidden_states=need_hidden)
        if self.use_logits and c.alpha_kd > 0 and outputs.logits.shape[0]:
            kd = L.kd_logits(outputs.logits, t.logits, c.temperature)
            total = total + c.alpha_kd * kd
            self.history["kd"].append(float(kd.detach()))
        if need_hidden:
            h = L.hidden_mse(outputs.hidden_states, t.hidden_states, batch.get("attention_mask"))
            total = total + c.alpha_hidden * h
            self.history["hidden"].append(float(h.detach()))
        state.logs["upstream_mlm_loss"] = float(task_loss.detach())
        return total

    def metrics(self, model) -> dict[str, float]:
        out = {}
        for key, values in self.history.items():
            if values:
                out[f"upstream_{key}_loss"] = sum(values[-50:]) / len(values[-50:])
                out[f"upstream_{key}_loss_first"] = sum(values[:20]) / len(values[:20])
        return out


def tokenize_corpus(lines: list[str], tokenizer, max_length: int, pack: bool):
    """A Dataset of MLM examples: one per line, or lines packed into max_length chunks."""
    from datasets import Dataset

    enc = tokenizer(lines, truncation=True, max_length=max_length, return_special_tokens_mask=True)
    if not pack:
        return Dataset.from_dict({"input_ids": enc["input_ids"], "special_tokens_mask": enc["special_tokens_mask"]})
    ids = [t for seq in enc["input_ids"] for t in seq]
    special = [t for seq in enc["special_tokens_mask"] for t in seq]
    n = max(1, len(ids) // max_length) * max_length if len(ids) >= max_length else len(ids)
    return Dataset.from_dict({"input_ids": [ids[i:i + max_length] for i in range(0, n, max_length)],
                              "special_tokens_mask": [special[i:i + max_length] for i in range(0, n, max_length)]})


def upstream_pruners(cfg: RunConfig, device: torch.device) -> list:
    """The pruning modifiers of the upstream stage: its ramp starts after the upstream lr warm-up
    (`upstream.warmup_ratio`), not the task fine-tune's (`train.warmup_ratio`)."""
    import dataclasses

    from suite.lifecycle import RunContext
    from suite.prune import PRUNERS

    up = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, warmup_ratio=cfg.upstream.warmup_ratio))
    return PRUNERS.get(cfg.sparsity.method)(cfg.sparsity, RunContext(cfg=up, task=None, device=device))


def train_upstream(cfg: RunConfig, device: torch.device) -> tuple[nn.Module, dict, dict, dict, object]:
    """Train the sparse upstream model: (mlm model, masks (base-relative), metrics, tags, corpus)."""
    import copy

    from transformers import DataCollatorForLanguageModeling

    from suite import compression
    from suite.models import load_tokenizer
    from suite.prune import masks as M
    from suite.runtime import seed_everything
    from suite.train import fine_tune, train_loader
    from suite.upstream.corpus import load_corpus

    u = cfg.upstream
    start = time.perf_counter()
    seed_everything(cfg.seed)
    tokenizer = load_tokenizer(cfg.model)
    corpus = load_corpus(u, cfg.data_dir, cfg.seed)
    features = tokenize_corpus(corpus.lines, tokenizer, u.max_length, u.pack)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=u.mlm_probability, seed=cfg.seed)
    loader = train_loader(features, collator, u.batch_size, cfg.seed)
    seed_everything(cfg.seed)
    mlm, head_pretrained = load_mlm_model(cfg)
    teacher = MLMStudent(copy.deepcopy(mlm)).to(device).eval()  # the dense model, frozen
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = MLMStudent(mlm)
    pruners = upstream_pruners(cfg, device)
    distill = UpstreamDistillModifier(teacher, u, use_logits=head_pretrained)
    steps = effective_steps(cfg)
    train = TrainConfig(epochs=1.0, lr=u.lr, batch_size=u.batch_size, weight_decay=u.weight_decay,
                        warmup_ratio=u.warmup_ratio)
    profile = ProfileConfig(name="upstream", epochs=float(math.ceil(steps / max(1, len(loader)))), max_steps=steps)
    stats = fine_tune(student, loader, train, profile, [*pruners, distill], device, cfg.progress,
                      desc=f"upstream mlm {cfg.sparsity.method} {cfg.sparsity.target}")
    base_prefix = f"mlm.{mlm.base_model_prefix}."
    masks = {}
    for m in pruners:
        masks.update({k[len(base_prefix):]: v.cpu() for k, v in m.masks.items()})
    if not masks:
        raise SparqError("stage=upstream: the pruning method produced no masks")
    linears = compression.prunable_linears(mlm.base_model)
    metrics = {**{k: float(v) for k, v in stats.items()}, **distill.metrics(student)}
    metrics.update({
        "sparsity_measured": compression.measured_sparsity(linears), "mask_sparsity": M.mask_sparsity(masks),
        "mlm_examples": float(len(features)), "mlm_tokens": float(sum(len(x) for x in features["input_ids"])),
        **corpus.stats(), "wall_seconds": time.perf_counter() - start,
    })
    tags = {"mlm_head": "pretrained" if head_pretrained else "fresh",
            "kd_logits": str(head_pretrained and u.alpha_kd > 0).lower(), "mask_sha256": M.mask_sha256(masks),
            "corpus_sha256": corpus.sha256(), "corpus_source": corpus.source}
    return mlm, masks, metrics, tags, corpus


