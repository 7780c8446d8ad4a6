"""`distill=logits|hidden`: knowledge distillation from the cached dense fine-tuned teacher.

loss = alpha_task * task + alpha_kd * KD(+ alpha_hidden * hidden MSE). Classification: KL at
temperature T; regression: MSE on the outputs; QA: KD on start and end logits (mean).
Prune OFA: T = 2, 0.5 task + 0.5 KD. `hidden` is ours (logits KD + per-layer hidden MSE, the
embeddings excluded); SparseBERT's knowledge-aware distillation is `distill=knowledge_aware`.
The teacher's logits are read from the teacher-output cache (suite/distill/teacher_cache.py) when
`cache_teacher_outputs` and the loader carries example positions; hidden states run the teacher.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch

from suite.distill import losses as L
from suite.distill.base import DISTILLERS, DistillConfig
from suite.errors import ConfigError
from suite.lifecycle import Modifier

TARGET_KEYS = ("labels", "start_positions", "end_positions")


@dataclass
class LogitsConfig(DistillConfig):
    method: str = "logits"
    temperature: float = 2.0
    alpha_task: float = 0.5
    alpha_kd: float = 0.5
    cache_teacher_outputs: bool = True  # teacher logits computed once per teacher x train subset

    version = 2  # 2: teacher logits from the teacher-output cache

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ConfigError("distill.temperature", f"{self.temperature}; must be > 0")
        if self.alpha_task < 0 or self.alpha_kd < 0:
            raise ConfigError("distill.alpha_kd", "alpha_task and alpha_kd must be >= 0")


@dataclass
class HiddenConfig(LogitsConfig):
    method: str = "hidden"
    alpha_hidden: float = 1.0  # weight of the per-layer hidden-state MSE

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.alpha_hidden < 0:
            raise ConfigError("distill.alpha_hidden", f"{self.alpha_hidden}; must be >= 0")


class DistillModifier(Modifier):
    carry = True  # goes on in a cell's second (QAT after lock) phase, suite/train.py

    def __init__(self, cfg: LogitsConfig, kind: str, teacher, ctx=None):
        self.cfg, self.kind, self.teacher, self.ctx = cfg, kind, teacher, ctx
        self.hidden = isinstance(cfg, HiddenConfig) and cfg.alpha_hidden > 0
        self.cached: torch.Tensor | None = None
        self.reused: bool | None = None

    def _cacheable(self) -> bool:
        loader = self.ctx.train_loader if self.ctx is not None else None
        return (self.cfg.cache_teacher_outputs and not self.hidden and self.kind != "qa"
                and hasattr(getattr(loader, "dataset", None), "features"))

    def on_train_start(self, model, state) -> None:
        if self.cached is None and self._cacheable():
            from suite.distill.teacher_cache import teacher_logits

            c = self.ctx.cfg
            self.cached, self.reused = teacher_logits(c, self.teacher, self.ctx.train_loader, self.ctx.device,
                                                      c.train.eval_batch_size)
        elif self.cached is None:
            self.teacher()  # build or load it before the clock of the first step

    def forward_kwargs(self) -> dict:
        return {"output_hidden_states": True} if self.hidden else {}

    def _teacher_logits(self, batch, state):
        if self.cached is not None and state.batch_index is not None:
            return SimpleNamespace(logits=self.cached[state.batch_index.cpu()].to(batch["input_ids"].device))
        inputs = {k: v for k, v in batch.items() if k not in TARGET_KEYS}
        with torch.no_grad():
            return self.teacher()(**inputs, output_hidden_states=self.hidden)

    def metrics(self, model) -> dict[str, float]:
        return {} if self.reused is None else {"teacher_reused_outputs": float(self.reused)}

    def loss(self, model, batch, outputs, task_loss, state):
        t_out = self._teacher_logits(batch, state)
        c = self.cfg
        if self.kind == "qa":
            kd = 0.5 * (L.kd_logits(outputs.start_logits, t_out.start_logits, c.temperature)
                        + L.kd_logits(outputs.end_logits, t_out.end_logits, c.temperature))
        elif self.kind == "regression":
            kd = L.kd_regression(outputs.logits, t_out.logits)
        else:
            kd = L.kd_logits(outputs.logits, t_out.logits, c.temperature)
        total = c.alpha_task * task_loss + c.alpha_kd * kd
        state.logs["distill_kd_loss"] = float(kd.detach())
        if self.hidden:
            h = L.hidden_mse(outputs.hidden_states, t_out.hidden_states, batch.get("attention_mask"))
            total = total + c.alpha_hidden * h
            state.logs["distill_hidden_loss"] = float(h.detach())
        return total


def _build(cfg, ctx) -> list:
    if ctx.teacher is None:
        raise ValueError("distillation needs a teacher provider in the run context")
    return [DistillModifier(cfg, ctx.cfg.task.kind, ctx.teacher, ctx)]


DISTILLERS.register("logits", config=LogitsConfig)(_build)
DISTILLERS.register("hidden", config=HiddenConfig)(_build)
