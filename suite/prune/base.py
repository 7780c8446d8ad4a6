"""The pruner registry and the config every pruning method extends."""

from __future__ import annotations

from dataclasses import dataclass

from suite.registry import Registry

# name -> builder(config, RunContext) -> list[Modifier]
PRUNERS: Registry = Registry("sparsity.method")


@dataclass
class SparsityConfig:
    method: str = "dense"
    target: float = 0.0  # fraction of prunable weights that are zero at the end
