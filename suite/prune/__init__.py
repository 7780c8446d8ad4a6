"""Pruning methods: the `sparsity` config group. One module per method, registered on import."""

from suite.prune import block, dense, gmp, nm  # noqa: E402,F401  (registers)
from suite.prune.base import PRUNERS, SparsityConfig

__all__ = ["PRUNERS", "SparsityConfig"]
