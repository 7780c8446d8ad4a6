"""Distillation methods: the `distill` config group. One module per method, registered on import;
every module of this package is imported here (suite.registry.import_members)."""

from suite.distill.base import DISTILLERS, DistillConfig
from suite.registry import import_members

import_members(__name__)

__all__ = ["DISTILLERS", "DistillConfig"]
