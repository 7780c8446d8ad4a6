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
    axis_keys = (*GmpConfig.axis_keys, "block")

    def pattern_label(self) -> str:
        return f"block1x{self.block}"

    def mask_args(self) -> dict:
        return {"block": self.block}

    def packed_format(self) -> str:
        return "block1x4"  # 1xB blocks with B a multiple of 4 are 1x4 blocks; others still pack exactly

    def layer_value_bytes(self, weight, bits: int) -> int:
        from suite.pack import block_bytes, dense_bytes

        return min(block_bytes(weight, bits, self.block), dense_bytes(*weight.shape, bits))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.block < 2:
            raise ConfigError("sparsity.block", f"{self.block}; must be >= 2")


@PRUNERS.register("block", config=BlockConfig)
def build_block(cfg: BlockConfig, ctx) -> list:
    from suite.prune.modifier import PruningModifier

    return [PruningModifier(cfg, warmup_ratio=ctx.cfg.train.warmup_ratio)]
