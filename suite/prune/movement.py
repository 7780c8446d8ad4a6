"""`sparsity=movement`: movement pruning (Sanh, Wolf & Rush, NeurIPS 2020), hard and soft.

The forward pass uses W' = W * M. The mask follows importance scores S, learned through the
mask with a straight-through estimator: dL/dS = dL/dW' * W, so a weight moving away from zero
gains score and one moving towards zero loses it. Pruned weights keep their value (`dense`)
and get no update; a pruned weight whose score climbs back comes back with that value.

- hard (`variant: hard`): S accumulates -W * dL/dW' after every backward (the paper's scores
  under plain gradient steps; the ranking does not depend on the step size) and M keeps the
  top v of S, v = 1 - s(t) on the cubic schedule: s(t) = s_f (1 - (1 - (t - t0) / (t1 - t0))^3)
  between `start` and `end` (the paper's initial and final warm-ups), per layer or global.
- soft (`variant: soft`): M = sigmoid(S) > tau, the scores learned with Adam (`score_lr`) on
  dL/dS plus a regularisation lambda * R(S), R = mean over layers of mean sigmoid(S), which
  pushes scores down; tau and lambda ramp on the same cubic schedule to `threshold` and
  `reg_lambda`. The sparsity it reaches comes from lambda, not from a target (target: null).

The scores see the whole loss, distillation included; the paper pairs movement pruning with
logits KD from the dense teacher (T = 2, 0.1 task + 0.9 KD; conf/sparsity/movement.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from suite.compression import DEFAULT_INCLUDE
from suite.errors import ConfigError
from suite.lifecycle import TrainState
from suite.prune import masks as M
from suite.prune import schedule as S
from suite.prune.base import PRUNERS, SparsityConfig
from suite.prune.modifier import LockedMaskModifier, raw_weight, resolve_linears

VARIANTS = ("hard", "soft")
SCOPES = ("layer", "global")


@dataclass
class MovementConfig(SparsityConfig):
    method: str = "movement"
    target: float | None = 0.9  # hard: fraction of prunable weights zero at the end; soft: null
    variant: str = "hard"  # hard: top-v of accumulated scores | soft: threshold on learned scores
    scope: str = "layer"  # hard: top-v per layer | one threshold over all layers
    start: float = 0.1  # fraction of training before the ramp (initial warm-up; never inside the lr warm-up)
    end: float = 0.7  # fraction where the ramp reaches its end (the rest: final warm-up at the target)
    every: int = 1  # optimizer steps between mask updates (the paper: every step)
    threshold: float = 0.1  # soft: final tau on sigmoid(S)
    reg_lambda: float = 400.0  # soft: final lambda of the score regularisation
    score_lr: float = 0.01  # soft: Adam lr of the scores
    include: list[str] = field(default_factory=lambda: list(DEFAULT_INCLUDE))  # module-name patterns
    exclude: list[str] = field(default_factory=list)

    pattern = "unstructured"
    version = 1

    @property
    def hard(self) -> bool:
        return self.variant == "hard"

    def nominal_density(self) -> float:
        """hard: 1 - target; soft guarantees no sparsity by construction (the record measures it)."""
        return 1.0 - self.target if self.hard else 1.0

    def label(self) -> str:
        if self.hard:
            return f"movement {self.target * 100:g}%"
        return f"soft movement λ{self.reg_lambda:g}"

    def packed_format(self) -> str:
        return "csr"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError("sparsity.variant", f"'{self.variant}'; allowed: {', '.join(VARIANTS)}")
        if self.hard and (self.target is None or not 0.0 <= self.target < 1.0):
            raise ConfigError("sparsity.target", f"{self.target}; hard movement needs a target in [0, 1)")
        if not self.hard and self.target is not None:
            raise ConfigError("sparsity.target", f"{self.target}; soft movement prunes by threshold and "
                              "regularisation (reg_lambda), not to a target: set sparsity.target=null")
        if self.scope not in SCOPES:
            raise ConfigError("sparsity.scope", f"'{self.scope}'; allowed: {', '.join(SCOPES)}")
        if not 0.0 <= self.start <= self.end <= 1.0:
            raise ConfigError("sparsity.start", f"start={self.start}, end={self.end}; need 0 <= start <= end <= 1")
        if self.every < 1:
            raise ConfigError("sparsity.every", f"{self.every}; must be >= 1")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError("sparsity.threshold", f"{self.threshold}; must be in (0, 1)")
        if self.reg_lambda < 0:
            raise ConfigError("sparsity.reg_lambda", f"{self.reg_lambda}; must be >= 0")
        if self.score_lr <= 0:
            raise ConfigError("sparsity.score_lr", f"{self.score_lr}; must be > 0")
        if not self.include:
            raise ConfigError("sparsity.include", "needs at least one module-name pattern")


# ---------------------------------------------------------------- the maths (pure)

def score_gradient(weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """dL/dS through the mask (straight-through): dL/dW' * W."""
    return (grad * weight).float()


def regulariser_gradient(scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """d/dS of R(S) = mean over layers of mean sigmoid(S)."""
    out = {}
    for name, s in scores.items():
        sig = torch.sigmoid(s)
        out[name] = sig * (1.0 - sig) / (s.numel() * len(scores))
    return out


def threshold_masks(scores: dict[str, torch.Tensor], tau: float) -> dict[str, torch.Tensor]:
    """Soft movement: keep sigmoid(S) > tau."""
    return {name: torch.sigmoid(s) > tau for name, s in scores.items()}


def ramp(step: int, total: int, final: float, start: float, end: float) -> float:
    """0 -> `final` on the cubic schedule between `start` and `end` (fractions of `total` steps)."""
    return S.cubic_sparsity(step, total, final, start, end)


# ---------------------------------------------------------------- the training-loop plumbing

class MovementModifier(LockedMaskModifier):
    """Scores after each backward, masks from the scores every `every` steps; W' = W * M after
    every optimizer step (pruned entries exactly 0), the unmasked W kept aside (`dense`)."""

    def __init__(self, cfg: MovementConfig, warmup_ratio: float = 0.0, linears=None):
        super().__init__({}, linears)
        self.cfg = cfg
        self.start = S.effective_start(cfg.start, warmup_ratio)
        self.scores: dict[str, torch.Tensor] = {}
        self.dense: dict[str, torch.Tensor] = {}
        self.level = 0.0  # sparsity (hard) or tau (soft) of the masks in force
        self._adam: torch.optim.Optimizer | None = None

    def lr_hold_until(self, total_steps: int) -> int | None:
        return S.window(total_steps, self.start, self.cfg.end)[1]

    def _final(self) -> float:
        return self.cfg.target if self.cfg.hard else self.cfg.threshold

    def _level_at(self, step: int, total: int) -> float:
        return ramp(step, total, self._final(), self.start, self.cfg.end)

    def _is_update(self, step: int, total: int) -> bool:
        t0, t1 = S.window(total, self.start, self.cfg.end)
        return step >= t0 and ((step - t0) % self.cfg.every == 0 or step == t1)

    def _remask(self) -> None:
        c = self.cfg
        if c.hard:
            self.masks = M.score_masks(self.scores, self.level, c.pattern, c.scope, **c.mask_args())
        else:
            self.masks = threshold_masks(self.scores, self.level)

    @torch.no_grad()
    def _sync(self, update: bool) -> None:
        """Keep the live weights' new values aside, and write W' = W * M into the model."""
        for name, mod in self.linears.items():
            self.dense[name] = torch.where(self.masks[name], raw_weight(mod).detach(), self.dense[name])
        if update:
            self._remask()
        for name, mod in self.linears.items():
            raw_weight(mod).copy_(self.dense[name] * self.masks[name])

    def on_train_start(self, model: nn.Module, state: TrainState) -> None:
        if self.linears is None:
            self.linears = resolve_linears(model, self.cfg.include, self.cfg.exclude)
        if not self.linears:
            raise ValueError("no prunable Linear layer matches sparsity.include / sparsity.exclude")
        weights = {name: raw_weight(mod) for name, mod in self.linears.items()}
        self.dense = {name: w.detach().clone() for name, w in weights.items()}
        self.scores = {name: torch.zeros(w.shape, device=w.device) for name, w in weights.items()}
        self.masks = {name: torch.ones(w.shape, dtype=torch.bool, device=w.device) for name, w in weights.items()}
        if not self.cfg.hard:
            self._adam = torch.optim.Adam(list(self.scores.values()), lr=self.cfg.score_lr)
        self.level = self._level_at(0, state.total_steps)
        self._sync(update=True)

    @torch.no_grad()
    def after_backward(self, model: nn.Module, state: TrainState) -> None:
        grads = {}
        for name, mod in self.linears.items():
            grad = raw_weight(mod).grad
            if grad is None:
                continue
            grads[name] = score_gradient(self.dense[name], grad)
            grad.mul_(self.masks[name].to(grad.dtype))  # pruned weights: no update, not clipped on
        if self.cfg.hard:
            for name, g in grads.items():
                self.scores[name].sub_(g)
            return
        lam = self.cfg.reg_lambda * self.level / self.cfg.threshold
        reg = regulariser_gradient(self.scores)
        for name, s in self.scores.items():
            s.grad = grads.get(name, torch.zeros_like(s)) + lam * reg[name]
        self._adam.step()
        state.logs["movement_lambda"] = lam

    def on_step_end(self, model: nn.Module, state: TrainState) -> None:
        update = self._is_update(state.step, state.total_steps)
        if update:
            self.level = self._level_at(state.step, state.total_steps)
        self._sync(update)
        if update:
            state.logs["sparsity_schedule" if self.cfg.hard else "movement_threshold"] = self.level
            state.logs["movement_sparsity"] = M.mask_sparsity(self.masks)

    def on_train_end(self, model: nn.Module, state: TrainState) -> None:
        final = self.level != self._final()  # training stopped before the ramp's end
        self.level = self._final()
        self._sync(update=final)
        self.dense, self.scores, self._adam = {}, {}, None  # the masks stay (a second phase locks them)
        super().on_train_end(model, state)


@PRUNERS.register("movement", config=MovementConfig)
def build_movement(cfg: MovementConfig, ctx) -> list:
    return [MovementModifier(cfg, warmup_ratio=ctx.cfg.train.warmup_ratio)]
