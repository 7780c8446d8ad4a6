"""Pruning plumbing: modifiers that compute masks on a schedule and keep them locked.

Usable on any nn.Module: pass the Linear layers to prune (`{name: module}`) or let the modifier
pick them by include/exclude patterns at train start. The maths is in masks.py / schedule.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from suite.lifecycle import Modifier, TrainState
from suite.prune import masks as M
from suite.prune import schedule as S


def raw_weight(module: nn.Module) -> torch.Tensor:
    """The trainable weight of a Linear, under any parametrization (e.g. QAT fake-quant)."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


def resolve_linears(model: nn.Module, include: Sequence[str] | None = None,
                    exclude: Sequence[str] = ()) -> dict[str, nn.Linear]:
    from suite.compression import DEFAULT_INCLUDE, prunable_linears

    return prunable_linears(model, tuple(include) if include else DEFAULT_INCLUDE, tuple(exclude or ()))


class LockedMaskModifier(Modifier):
    """Keep given masks (e.g. transferred from upstream pruning) applied after every step.

    `masks` maps module names (as in `model.named_modules()`) to bool masks of their weight.
    The gradient of every pruned weight is zeroed as it is computed (a hook on the trainable
    weight), so gradient clipping and the optimizer only see the live weights."""

    def __init__(self, masks: Mapping[str, torch.Tensor], linears: Mapping[str, nn.Module] | None = None):
        self.masks = {k: v.bool() for k, v in masks.items()}
        self.linears = dict(linears) if linears is not None else None
        self._hooks: list = []

    def _weights(self) -> dict[str, torch.Tensor]:
        return {name: raw_weight(self.linears[name]) for name in self.masks}

    def _mask_grads(self) -> None:
        """Zero the gradients of pruned weights (reads the masks in force at backward time)."""
        for name, mod in self.linears.items():
            def hook(grad: torch.Tensor, name: str = name) -> torch.Tensor:
                mask = self.masks.get(name)
                return grad if mask is None else grad * mask.to(grad.dtype)

            self._hooks.append(raw_weight(mod).register_hook(hook))

    def _release(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def on_train_start(self, model: nn.Module, state: TrainState) -> None:
        if self.linears is None:
            self.linears = {name: model.get_submodule(name) for name in self.masks}
        for name, mask in self.masks.items():
            w = raw_weight(self.linears[name])
            if tuple(mask.shape) != tuple(w.shape):
                raise ValueError(f"mask for {name} has shape {tuple(mask.shape)}, weight {tuple(w.shape)}")
            self.masks[name] = mask.to(w.device)
        M.apply_masks(self._weights(), self.masks)
        self._mask_grads()

    def on_step_end(self, model: nn.Module, state: TrainState) -> None:
        M.apply_masks(self._weights(), self.masks)

    def on_train_end(self, model: nn.Module, state: TrainState) -> None:
        M.apply_masks(self._weights(), self.masks)
        self._release()

    def sha256(self) -> str:
        return M.mask_sha256(self.masks)

    def metrics(self, model: nn.Module) -> dict[str, float]:
        return {"mask_sparsity": M.mask_sparsity(self.masks)}


class PruningModifier(LockedMaskModifier):
    """Magnitude pruning (unstructured, 1xB blocks or N:M) to `cfg.target`, gradual on the cubic
    schedule (`schedule: gradual`, `start`, `end`, `every`) or at train start (`oneshot`); the
    masks then stay locked: pruned weights are exactly 0 after every optimizer step.

    `cfg` is a `GmpConfig` (or a subclass: block, nm): its pattern, `mask_args()`, scope, the
    schedule keys (schedule, start, end, lock: masks recomputed at the target until this fraction,
    then locked; every / every_fraction) and include / exclude.
    `warmup_ratio`: the ramp starts after the lr warm-up."""

    def __init__(self, cfg, linears: Mapping[str, nn.Module] | None = None, warmup_ratio: float = 0.0):
        super().__init__({}, linears)
        self.cfg = cfg
        self.pattern = cfg.pattern
        self.current = 0.0
        self.start = S.effective_start(cfg.start, warmup_ratio)
        self.lock = cfg.lock
        self.every = cfg.every

    def lr_hold_until(self, total_steps: int) -> int | None:
        """Last step of the sparsity ramp (train.lr_schedule=rewind holds the lr until then)."""
        if self.cfg.schedule == "oneshot":
            return None
        return S.window(total_steps, self.start, self.cfg.end)[1]

    def lock_step(self, total_steps: int) -> int:
        if self.cfg.schedule == "oneshot":
            return 0
        return S.lock_step(total_steps, self.cfg.end, self.lock)

    def _compute(self, sparsity: float) -> None:
        c = self.cfg
        weights = {name: raw_weight(mod) for name, mod in self.linears.items()}
        self.masks = M.compute_masks(weights, sparsity, self.pattern, c.scope, **c.mask_args())
        self.current = sparsity
        M.apply_masks(weights, self.masks)

    def _target_at(self, step: int, total: int) -> float:
        c = self.cfg
        if c.schedule == "oneshot":
            return c.target
        return S.scheduled_sparsity(step, total, c.target, self.start, c.end, self.every)

    def on_train_start(self, model: nn.Module, state: TrainState) -> None:
        if self.linears is None:
            self.linears = resolve_linears(model, self.cfg.include, self.cfg.exclude)
        if not self.linears:
            raise ValueError("no prunable Linear layer matches sparsity.include / sparsity.exclude")
        self.every = S.resolve_every(self.cfg.every, state.total_steps, self.cfg.every_fraction)
        self._compute(self._target_at(0, state.total_steps))
        self._mask_grads()

    def on_step_end(self, model: nn.Module, state: TrainState) -> None:
        c = self.cfg
        if c.schedule != "oneshot" and S.is_update_step(state.step, state.total_steps, self.start, c.end,
                                                        self.every, self.lock):
            s = self._target_at(state.step, state.total_steps)
            if s != self.current or s > 0:
                self._compute(s)
                state.logs["sparsity_schedule"] = s
                return
        super().on_step_end(model, state)

    def on_train_end(self, model: nn.Module, state: TrainState) -> None:
        if self.current != self.cfg.target:  # training stopped before the schedule ended
            self._compute(self.cfg.target)
        super().on_train_end(model, state)
