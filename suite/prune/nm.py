"""`sparsity=nm`: N:M fine-grained structured sparsity along the input dim (2:4 by default).

The target is 1 - n/m (set automatically). Gradual: the smallest of the final N:M candidates are
pruned on the cubic schedule, so the N:M pattern holds exactly once the target is reached."""

from __future__ import annotations

from dataclasses import dataclass

from suite.errors import ConfigError
from suite.prune.base import PRUNERS
from suite.prune.gmp import GmpConfig


@dataclass
class NMConfig(GmpConfig):
    method: str = "nm"
    target: float | None = None  # derived: 1 - n/m (a different explicit value is an error)
    n: int = 2
    m: int = 4

    pattern = "nm"
    axis_keys = (*GmpConfig.axis_keys, "n", "m")

    def pattern_label(self) -> str:
        return f"{self.n}:{self.m}"

    def label(self) -> str:
        return f"nm {self.n}:{self.m}"

    def packed_format(self) -> str:
        return "nm" if self.m == 4 else "csr"  # the kernels' nm format has groups of 4

    def format_args(self) -> dict:
        return {"n": self.n, "m": self.m}

    def mask_args(self) -> dict:
        return {"n": self.n, "m": self.m}

    def layer_format(self, weight) -> str:
        from suite.pack import nm_holds

        return "nm" if self.m == 4 and nm_holds(weight, self.n, self.m) else "csr"

    def layer_value_bytes(self, weight, bits: int) -> int:
        from suite.pack import nm_bytes, nm_holds

        if nm_holds(weight, self.n, self.m):
            return nm_bytes(*weight.shape, bits, self.n, self.m)
        return super().layer_value_bytes(weight, bits)  # pattern broken: cheapest generic format

    def __post_init__(self) -> None:
        if not (self.m >= 2 and 1 <= self.n < self.m):
            raise ConfigError("sparsity.n", f"{self.n}:{self.m}; need 1 <= n < m (e.g. 2:4, 1:4)")
        derived = 1.0 - self.n / self.m
        if self.target is not None and abs(self.target - derived) > 1e-9:
            raise ConfigError("sparsity.target", f"{self.target}; N:M {self.n}:{self.m} fixes it at {derived}")
        self.target = derived
        if self.scope != "layer":
            raise ConfigError("sparsity.scope", f"'{self.scope}'; N:M groups are local: allowed: layer")
        super().__post_init__()


@PRUNERS.register("nm", config=NMConfig)
def build_nm(cfg: NMConfig, ctx) -> list:
    from suite.prune.modifier import PruningModifier

    return [PruningModifier(cfg, warmup_ratio=ctx.cfg.train.warmup_ratio)]
