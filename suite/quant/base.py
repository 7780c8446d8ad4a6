"""The quantizer registry and the config every quantization method extends."""

from __future__ import annotations

from dataclasses import dataclass

from suite.registry import Registry

# name -> builder(config, RunContext) -> list[Modifier]
QUANTIZERS: Registry = Registry("quant.method")


@dataclass
class QuantConfig:
    method: str = "fp32"
    weight_bits: int = 32
    act_bits: int = 32
