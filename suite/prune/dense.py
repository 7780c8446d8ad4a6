"""`sparsity=dense`: no pruning."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from suite.prune.base import PRUNERS, SparsityConfig


@dataclass
class DenseConfig(SparsityConfig):
    method: str = "dense"
    target: float = 0.0

    pattern: ClassVar[str] = "dense"
    prunes: ClassVar[bool] = False

    def label(self) -> str:
        return "dense"

    def packed_format(self) -> str:
        return "dense"

    def layer_value_bytes(self, weight, bits: int) -> int:
        from suite.pack import dense_bytes

        return dense_bytes(*weight.shape, bits)

    def __post_init__(self) -> None:
        from suite.errors import ConfigError

        if self.target != 0.0:
            raise ConfigError("sparsity.target", "dense has target 0; choose sparsity=gmp|block|nm")


@PRUNERS.register("dense", config=DenseConfig)
def build_dense(cfg: DenseConfig, ctx) -> list:
    return []
