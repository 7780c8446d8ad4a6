"""`sparsity=block`: gradual magnitude pruning of whole 1 x `block` blocks along the input dim."""

from __future__ import annotations

from dataclasses import dataclass

from suite.errors import ConfigError
from suite.prune.base import PRUNERS
from suite.prune.gmp import GmpConfig


@dataclass
class BlockConfig(GmpConfig):
    method: str = "block"
    block: int = 4  # block length along the input dim (1x4: one index per 4 weights)

    pattern = "block"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.block < 2:
            raise ConfigError("sparsity.block", f"{self.block}; must be >= 2")


@PRUNERS.register("block", config=BlockConfig)
def build_block(cfg: BlockConfig, ctx) -> list:
    from suite.prune.modifier import PruningModifier

    return [PruningModifier(cfg)]
