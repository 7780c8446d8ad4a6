"""Training-loop hooks. A compression method is a `Modifier`: lifecycle here, maths elsewhere.

The loop in suite/train.py calls, in order: `on_train_start` once; per step `on_step_start`,
`forward_kwargs` (extra model outputs it needs), `loss` (may replace the task loss, e.g. with a
distillation mix), `after_backward` (gradients computed, before clipping and the optimizer step,
e.g. accumulate gradient-based scores), `on_step_end` (after the optimizer step, e.g. re-apply
masks); `on_train_end` once (e.g. calibrate and quantize). All hooks default to doing nothing.

Everything the loop and the cell read from a modifier is declared on `Modifier` with its
default (`phase`, `carry`, `scale_lr_ratio`, `lr_hold_until`, `phase_steps`, `tags`, `metrics`),
so a subclass overrides what it needs and the loop never guesses.
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
    # "after_lock": trains in the cell's second phase, on the first phase's locked masks (QAT on a
    # pruned model); None: the first (only) phase.
    phase: str | None = None
    carry: bool = False  # also trains in the second phase (e.g. the distiller)
    scale_lr_ratio: float = 1.0  # lr of LSQ scale parameters, x the weights' lr (the loop takes the min)

    def lr_hold_until(self, total_steps: int) -> int | None:
        """Last step of a ramp the lr is held through (train.lr_schedule=rewind); None: no ramp."""
        return None

    def phase_steps(self, first_phase_steps: int) -> int | None:
        """Optimizer steps of the second phase (for a `phase = "after_lock"` modifier); None: no say."""
        return None

    def tags(self) -> dict[str, str]:
        """Tags the cell records for this modifier (e.g. transfer: the upstream it stands on)."""
        return {}

    def on_train_start(self, model: nn.Module, state: TrainState) -> None: ...

    def on_step_start(self, model: nn.Module, state: TrainState) -> None: ...

    def forward_kwargs(self) -> dict[str, Any]:
        return {}

    def loss(self, model: nn.Module, batch: dict, outputs: Any, task_loss: torch.Tensor,
             state: TrainState) -> torch.Tensor:
        return task_loss

    def after_backward(self, model: nn.Module, state: TrainState) -> None:
        """Gradients of this step are in `.grad`; clipping and the optimizer step come next."""

    def on_step_end(self, model: nn.Module, state: TrainState) -> None: ...

    def on_train_end(self, model: nn.Module, state: TrainState) -> None: ...

    def metrics(self, model: nn.Module) -> dict[str, float]:
        """Figures to log once the run is done (e.g. measured sparsity)."""
        return {}
