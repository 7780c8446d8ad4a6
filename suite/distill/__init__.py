"""Distillation methods: the `distill` config group. One module per method, registered on import."""

from suite.distill import kd, none  # noqa: E402,F401  (registers)
from suite.distill.base import DISTILLERS, DistillConfig

__all__ = ["DISTILLERS", "DistillConfig"]
