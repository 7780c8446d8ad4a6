"""`sparsity=dense`: no pruning."""

from __future__ import annotations

from dataclasses import dataclass

from suite.prune.base import PRUNERS, SparsityConfig


@dataclass
class DenseConfig(SparsityConfig):
    method: str = "dense"
    target: float = 0.0

    def __post_init__(self) -> None:
        from suite.errors import ConfigError

        if self.target != 0.0:
            raise ConfigError("sparsity.target", "dense has target 0; choose sparsity=gmp|block|nm")


@PRUNERS.register("dense", config=DenseConfig)
def build_dense(cfg: DenseConfig, ctx) -> list:
    return []
