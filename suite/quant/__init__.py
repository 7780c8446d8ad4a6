"""Quantization methods: the `quant` config group. One module per method, registered on import;
every module of this package is imported here (suite.registry.import_members)."""

from suite.quant.base import QUANTIZERS, QuantConfig
from suite.registry import import_members

import_members(__name__)

__all__ = ["QUANTIZERS", "QuantConfig"]
