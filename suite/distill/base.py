"""The distiller registry and the config every distillation method extends.

A distill option is a typed config node that answers for its method: whether it needs the dense
teacher and what the report calls it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from suite.registry import Registry

# name -> builder(config, RunContext) -> list[Modifier]
DISTILLERS: Registry = Registry("distill.method")


@dataclass
class DistillConfig:
    method: str = "none"

    axis_keys: ClassVar[tuple[str, ...]] = ("method",)
    version: ClassVar[int] = 1  # code version: bump when the method's code changes its results
    uses_teacher: ClassVar[bool] = True  # training reads the cached dense teacher's outputs

    def label(self) -> str:
        return self.method

    def check_run(self, run) -> None:
        """Cross-group rule on the whole run config (none by default)."""
