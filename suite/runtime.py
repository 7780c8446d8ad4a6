"""Helpers every stage shares (seeding, device choice, data subsets, a stage's outcome).

They live below `suite.run`, `suite.teacher` and `suite.upstream`, so those import them without
importing each other.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from suite.errors import SparqError


@dataclass
class CellResult:
    cell_id: str
    status: str  # FINISHED | SKIPPED | FAILED
    run_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SparqError("device: cuda requested but no GPU is available; allowed here: auto, cpu")
    return torch.device(name)


def subset(ds, n: int | None, seed: int):
    """A seeded random subset of `n` rows (all rows when n is None or larger)."""
    if n is None or n >= len(ds):
        return ds
    return ds.shuffle(seed=seed).select(range(n))


@contextmanager
def building(entry: Path) -> Iterator[None]:
    """Hold `<entry>.lock` (filelock: flock on POSIX) while a cache entry is checked and built, so
    parallel cells build it once; the kernel drops the lock of a killed process."""
    from filelock import FileLock

    entry.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(entry.parent / f"{entry.name}.lock"):
        yield
