"""Pruning methods: the `sparsity` config group. One module per method, registered on import;
every module of this package is imported here (suite.registry.import_members)."""

from suite.prune.base import PRUNERS, SparsityConfig
from suite.registry import import_members

import_members(__name__)

__all__ = ["PRUNERS", "SparsityConfig"]
