"""`sparsity=gmp`: unstructured gradual magnitude pruning (Zhu & Gupta; Prune OFA; SparseBERT)."""

from __future__ import annotations

from dataclasses import dataclass, field

from suite.compression import DEFAULT_INCLUDE
from suite.errors import ConfigError
from suite.prune.base import PRUNERS, SparsityConfig

SCOPES = ("layer", "global")
SCHEDULES = ("gradual", "oneshot")


@dataclass
class GmpConfig(SparsityConfig):
    method: str = "gmp"
    target: float = 0.9  # fraction of prunable weights that are zero at the end
    scope: str = "layer"  # layer: every layer at target | global: one threshold over all layers
    schedule: str = "gradual"  # gradual (cubic) | oneshot (prune at train start, then fine-tune)
    start: float = 0.0  # fraction of training where gradual pruning starts (never inside the lr warm-up)
    end: float = 0.5  # ... and where the cubic ramp reaches the target (Prune OFA: 50% of the steps)
    lock: float | None = 0.8  # masks recomputed at the target until here, then locked (Prune OFA: 80%)
    every: int = 10  # optimizer steps between mask updates (when every_fraction is null)
    every_fraction: float | None = None  # update interval as a fraction of the steps (scales with them)
    include: list[str] = field(default_factory=lambda: list(DEFAULT_INCLUDE))  # module-name patterns
    exclude: list[str] = field(default_factory=list)

    pattern = "unstructured"  # class attribute: the mask pattern (not a config key)
    version = 2  # 2: ramp ends at `end` after the warm-up, masks locked at `lock`, pruned weights' gradients zeroed

    def packed_format(self) -> str:
        return "csr"

    def __post_init__(self) -> None:
        if not 0.0 <= self.target < 1.0:
            raise ConfigError("sparsity.target", f"{self.target}; must be in [0, 1)")
        if self.scope not in SCOPES:
            raise ConfigError("sparsity.scope", f"'{self.scope}'; allowed: {', '.join(SCOPES)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError("sparsity.schedule", f"'{self.schedule}'; allowed: {', '.join(SCHEDULES)}")
        if not 0.0 <= self.start <= self.end <= 1.0:
            raise ConfigError("sparsity.start", f"start={self.start}, end={self.end}; need 0 <= start <= end <= 1")
        if self.lock is not None and not self.end <= self.lock <= 1.0:
            raise ConfigError("sparsity.lock", f"{self.lock}; need end <= lock <= 1 (or null: lock at end)")
        if self.every_fraction is not None and not 0.0 < self.every_fraction <= 1.0:
            raise ConfigError("sparsity.every_fraction", f"{self.every_fraction}; must be in (0, 1] or null")
        if self.every < 1:
            raise ConfigError("sparsity.every", f"{self.every}; must be >= 1")
        if not self.include:
            raise ConfigError("sparsity.include", "needs at least one module-name pattern")


@PRUNERS.register("gmp", config=GmpConfig)
def build_gmp(cfg: GmpConfig, ctx) -> list:
    from suite.prune.modifier import PruningModifier

    return [PruningModifier(cfg, warmup_ratio=ctx.cfg.train.warmup_ratio)]
