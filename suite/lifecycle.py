"""Training-loop hooks. A compression method is a `Modifier`: lifecycle here, maths elsewhere.

The loop in suite/train.py calls, in order: `on_train_start` once; per step `on_step_start`,
`forward_kwargs` (extra model outputs it needs), `loss` (may replace the task loss, e.g. with a
distillation mix), `on_step_end` (after the optimizer step, e.g. re-apply masks); `on_train_end`
once (e.g. calibrate and quantize). All hooks default to doing nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done
    total_steps: int = 1
    epoch: int = 0
    logs: dict[str, float] = field(default_factory=dict)  # scalars a modifier wants logged
    stop_training: bool = False  # a modifier may end training (e.g. PTQ of the cached fp32 model)
    batch_index: Any = None  # positions of the current batch's examples in the train features (or None)

    @property
    def progress(self) -> float:
        return min(1.0, self.step / max(1, self.total_steps))


@dataclass
class RunContext:
    """What a method may need besides the model: the run config, data and a teacher provider."""

    cfg: Any  # RunConfig
    task: Any  # suite.tasks.Task
    train_loader: Any = None
    device: torch.device = torch.device("cpu")
    teacher: Any = None  # callable returning the dense fine-tuned teacher (lazy, cached)


class Modifier:
    def on_train_start(self, model: nn.Module, state: TrainState) -> None: ...

    def on_step_start(self, model: nn.Module, state: TrainState) -> None: ...

    def forward_kwargs(self) -> dict[str, Any]:
        return {}

    def loss(self, model: nn.Module, batch: dict, outputs: Any, task_loss: torch.Tensor,
             state: TrainState) -> torch.Tensor:
        return task_loss

    def on_step_end(self, model: nn.Module, state: TrainState) -> None: ...

    def on_train_end(self, model: nn.Module, state: TrainState) -> None: ...

    def metrics(self, model: nn.Module) -> dict[str, float]:
        """Figures to log once the run is done (e.g. measured sparsity)."""
        return {}
