"""Quantization methods: the `quant` config group. One module per method, registered on import."""

from suite.quant import fp32, ptq, qat  # noqa: E402,F401  (registers)
from suite.quant.base import QUANTIZERS, QuantConfig

__all__ = ["QUANTIZERS", "QuantConfig"]
