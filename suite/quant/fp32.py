"""`quant=fp32`: full precision, no quantization."""

from __future__ import annotations

from dataclasses import dataclass

from suite.errors import ConfigError
from suite.quant.base import QUANTIZERS, QuantConfig


@dataclass
class Fp32Config(QuantConfig):
    method: str = "fp32"
    weight_bits: int = 32
    act_bits: int = 32

    def __post_init__(self) -> None:
        if (self.weight_bits, self.act_bits) != (32, 32):
            raise ConfigError("quant.weight_bits", "fp32 keeps 32 bits; choose quant=ptq|qat for fewer")


@QUANTIZERS.register("fp32", config=Fp32Config)
def build_fp32(cfg: Fp32Config, ctx) -> list:
    return []
