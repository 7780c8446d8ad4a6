"""The distiller registry and the config every distillation method extends."""

from __future__ import annotations

from dataclasses import dataclass

from suite.registry import Registry

# name -> builder(config, RunContext) -> list[Modifier]
DISTILLERS: Registry = Registry("distill.method")


@dataclass
class DistillConfig:
    method: str = "none"
