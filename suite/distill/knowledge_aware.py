"""`distill=knowledge_aware`: SparseBERT's knowledge-aware distillation (Xu et al., NAACL 2021,
arXiv:2104.08682, which takes its loss from TinyBERT, Jiao et al. 2020):

  loss = alpha_attn * sum_l MSE(A_s^l, A_t^l)            attention scores, every layer
       + alpha_hidden * sum_l MSE(H_s^l, H_t^l)          hidden states, l = 0 (embeddings) .. L
       + alpha_pred * soft_CE(z_s / T, z_t / T)          T = 1, no hard labels

A is TinyBERT's unnormalised attention score Q K^T / sqrt(d_head) (per head, before softmax and
the padding mask), captured from the query / key projections (so it works under any attention
implementation and sees the student's fake-quant); MSE means are over real (unpadded) tokens.
Students with fewer layers map layer i to the teacher's round((i+1) Lt/Ls) - 1 (as `hidden`).
The teacher runs live (hidden states and scores are not cached: see teacher_cache.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from suite.distill import losses as L
from suite.distill.base import DISTILLERS, DistillConfig
from suite.errors import ConfigError
from suite.lifecycle import Modifier

TARGET_KEYS = ("labels", "start_positions", "end_positions")
QK_NAMES = (("attention.self.query", "attention.self.key"), ("attention.q_lin", "attention.k_lin"))


@dataclass
class KnowledgeAwareConfig(DistillConfig):
    method: str = "knowledge_aware"
    temperature: float = 1.0  # soft cross-entropy temperature (SparseBERT / TinyBERT: 1)
    alpha_attn: float = 1.0
    alpha_hidden: float = 1.0
    alpha_pred: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ConfigError("distill.temperature", f"{self.temperature}; must be > 0")
        for key, alpha in (("alpha_attn", self.alpha_attn), ("alpha_hidden", self.alpha_hidden),
                           ("alpha_pred", self.alpha_pred)):
            if alpha < 0:
                raise ConfigError(f"distill.{key}", f"{alpha}; must be >= 0")


def soft_cross_entropy(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """-sum softmax(t/T) log softmax(s/T), batch mean."""
    t = F.softmax(teacher.detach() / temperature, dim=-1)
    return -(t * F.log_softmax(student / temperature, dim=-1)).sum(-1).mean()


def attention_scores(q: torch.Tensor, k: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, T, H*d] projections -> unnormalised scores [B, H, T, T] = Q K^T / sqrt(d)."""
    b, t, width = q.shape
    d = width // heads
    qh = q.view(b, t, heads, d).transpose(1, 2)
    kh = k.view(b, t, heads, d).transpose(1, 2)
    return qh @ kh.transpose(-1, -2) / math.sqrt(d)


def masked_mse(s: torch.Tensor, t: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean squared error; `weight` (broadcastable, 0/1) selects the real positions."""
    err = (s - t.detach()).pow(2)
    if weight is None:
        return err.mean()
    w = weight.to(err.dtype).expand_as(err)
    return (err * w).sum() / w.sum().clamp_min(1)


class ScoreTap:
    """Forward hooks on every layer's query / key projections; `scores()` after a forward."""

    def __init__(self, model: nn.Module):
        modules = dict(model.named_modules())
        pairs = []
        for q_name, k_name in QK_NAMES:
            pairs = [(n, n[: -len(q_name)] + k_name) for n in modules if n.endswith(q_name)]
            if pairs:
                break
        if not pairs:
            raise ValueError("knowledge_aware distillation needs BERT- or DistilBERT-style attention "
                             "(query/key or q_lin/k_lin projections)")
        self.heads = model.config.num_attention_heads
        self.outputs: dict[str, torch.Tensor] = {}
        self.pairs = pairs
        self.handles = [modules[n].register_forward_hook(self._keep(n)) for pair in pairs for n in pair]

    def _keep(self, name: str):
        def hook(module, args, output):
            self.outputs[name] = output

        return hook

    def scores(self) -> list[torch.Tensor]:
        out = [attention_scores(self.outputs[q], self.outputs[k], self.heads) for q, k in self.pairs]
        self.outputs = {}
        return out

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


class KnowledgeAwareModifier(Modifier):
    carry = True  # goes on in a cell's second (QAT after lock) phase

    def __init__(self, cfg: KnowledgeAwareConfig, kind: str, teacher):
        self.cfg, self.kind, self.teacher = cfg, kind, teacher
        self.tap = self.teacher_tap = None

    def on_train_start(self, model, state) -> None:
        teacher = self.teacher()
        if self.tap is None:
            self.tap, self.teacher_tap = ScoreTap(model), ScoreTap(teacher)

    def forward_kwargs(self) -> dict:
        return {"output_hidden_states": True}

    def on_train_end(self, model, state) -> None:
        if self.tap is not None:
            self.tap.remove()
            self.teacher_tap.remove()
            self.tap = self.teacher_tap = None

    def loss(self, model, batch, outputs, task_loss, state):
        c = self.cfg
        s_scores = self.tap.scores()
        inputs = {k: v for k, v in batch.items() if k not in TARGET_KEYS}
        with torch.no_grad():
            t_out = self.teacher()(**inputs, output_hidden_states=True)
        t_scores = self.teacher_tap.scores()
        mask = batch.get("attention_mask")
        tokens = mask.unsqueeze(-1) if mask is not None else None  # [B, T, 1]
        pairs = mask[:, None, :, None] * mask[:, None, None, :] if mask is not None else None  # [B,1,T,T]
        mapping = L.layer_map(len(s_scores), len(t_scores))
        attn = sum(masked_mse(s_scores[i], t_scores[j], pairs) for i, j in enumerate(mapping))
        s_hidden, t_hidden = outputs.hidden_states, t_out.hidden_states
        hidden = masked_mse(s_hidden[0], t_hidden[0], tokens)  # embeddings
        for i, j in enumerate(L.layer_map(len(s_hidden) - 1, len(t_hidden) - 1)):
            hidden = hidden + masked_mse(s_hidden[i + 1], t_hidden[j + 1], tokens)
        if self.kind == "qa":
            pred = 0.5 * (soft_cross_entropy(outputs.start_logits, t_out.start_logits, c.temperature)
                          + soft_cross_entropy(outputs.end_logits, t_out.end_logits, c.temperature))
        elif self.kind == "regression":
            pred = L.kd_regression(outputs.logits, t_out.logits)
        else:
            pred = soft_cross_entropy(outputs.logits, t_out.logits, c.temperature)
        state.logs.update({"distill_attn_loss": float(attn.detach()), "distill_hidden_loss": float(hidden.detach()),
                           "distill_pred_loss": float(pred.detach())})
        return c.alpha_attn * attn + c.alpha_hidden * hidden + c.alpha_pred * pred  # no hard labels


@DISTILLERS.register("knowledge_aware", config=KnowledgeAwareConfig)
def build_knowledge_aware(cfg: KnowledgeAwareConfig, ctx) -> list:
    if ctx.teacher is None:
        raise ValueError("distillation needs a teacher provider in the run context")
    return [KnowledgeAwareModifier(cfg, ctx.cfg.task.kind, ctx.teacher)]
