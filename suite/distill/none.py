"""`distill=none`: train on the task loss alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from suite.distill.base import DISTILLERS, DistillConfig


@dataclass
class NoDistillConfig(DistillConfig):
    method: str = "none"

    uses_teacher: ClassVar[bool] = False


@DISTILLERS.register("none", config=NoDistillConfig)
def build_none(cfg: NoDistillConfig, ctx) -> list:
    return []
