"""The quantizer registry and the config every quantization method extends.

A quant option is a typed config node that answers for its method: whether it quantizes, the
bytes its scales add to a packed layer, the value bits the kernels store, the report label and
which of its options are technique switches (ablations) with their "on" value.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from suite.registry import Registry

# name -> builder(config, RunContext) -> list[Modifier]
QUANTIZERS: Registry = Registry("quant.method")


@dataclass
class QuantConfig:
    method: str = "fp32"
    weight_bits: int = 32
    act_bits: int = 32

    # Config keys that are axes of a result, not a variant.
    axis_keys: ClassVar[tuple[str, ...]] = ("method", "weight_bits", "act_bits")
    version: ClassVar[int] = 1  # code version: bump when the method's code changes its results
    # Technique switches an ablation turns off: key -> value when on (claims read this, not strings).
    techniques: ClassVar[dict[str, object]] = {}

    @property
    def quantized(self) -> bool:
        return self.weight_bits < 32 or self.act_bits < 32

    def per_channel(self) -> bool:
        """Whether weight scales are per output channel (else one per tensor)."""
        return False

    def kernel_bits(self) -> int:
        """Value bits of the packed kernels: 4 for 4-bit weights, else int8 (fp32 cells re-quantize)."""
        return 4 if self.quantized and self.weight_bits == 4 else 8

    def scale_bytes(self, out_features: int) -> int:
        """Bytes the quantization adds to one packed layer (weight and activation scales)."""
        if self.weight_bits >= 32:
            return 0
        size = 4 * out_features if self.per_channel() else 4
        return size + (4 if self.act_bits < 32 else 0)

    def label(self) -> str:
        """What tables call this option: 'fp32' or '<method> w<bits>a<bits>'."""
        if not self.quantized:
            return "fp32"
        return f"{self.method} w{self.weight_bits}a{self.act_bits}"

    def ablated(self) -> dict[str, object]:
        """The technique switches this config turns off (key -> its value)."""
        values = dataclasses.asdict(self)
        return {k: values[k] for k, on in self.techniques.items() if values[k] != on}

    def check_run(self, run) -> None:
        """Cross-group rule on the whole run config (none by default)."""
