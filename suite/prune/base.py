"""The pruner registry and the config every pruning method extends.

A sparsity option is a typed config node (stored in Hydra's ConfigStore as `sparsity/<method>`)
that answers for its method: the mask pattern it guarantees, the packed format the kernels
store it in, the bytes of one packed layer, its nominal density and what the report calls it.
Code asks the config (`cfg.sparsity.packed_format()`), never matches `cfg.sparsity.method`.
A subclass that cannot be packed leaves `packed_format` unimplemented: `check_run` then rejects
the cell at config time, before anything is trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from suite.errors import ConfigError
from suite.registry import Registry

# name -> builder(config, RunContext) -> list[Modifier]
PRUNERS: Registry = Registry("sparsity.method")


@dataclass
class SparsityConfig:
    method: str = "dense"
    target: float = 0.0  # fraction of prunable weights that are zero at the end

    # Facts (class attributes, not config keys).
    pattern: ClassVar[str] = "unstructured"  # mask family: dense | unstructured | block | nm (masks.py)
    # Config keys that are axes of a result (in the pattern label or the target), not a variant.
    axis_keys: ClassVar[tuple[str, ...]] = ("method", "target")
    version: ClassVar[int] = 1  # code version: bump when the method's code changes its results
    prunes: ClassVar[bool] = True  # False for the dense option (no masks)

    def nominal_density(self) -> float:
        """Fraction of prunable weights kept, by construction (1 - target)."""
        return 1.0 - self.target

    def pattern_label(self) -> str:
        """The mask pattern in the papers' words: dense, unstructured, block1x4, 2:4, ..."""
        return self.pattern

    def label(self) -> str:
        """What tables call this option, e.g. 'gmp 90%', 'nm 2:4', 'dense'."""
        return f"{self.method} {self.target * 100:g}%"

    def packed_format(self) -> str:
        """The kernels.formats name a model pruned by this method is packed in."""
        raise NotImplementedError

    def layer_format(self, weight) -> str:
        """The format of one layer: `packed_format()` unless the pattern did not survive."""
        return self.packed_format()

    def mask_args(self) -> dict:
        """Extra arguments of the mask family (suite.prune.masks), e.g. block or n and m."""
        return {}

    def format_args(self) -> dict:
        """Extra arguments of the packed format (kernels.formats.pack), e.g. n and m."""
        return {}

    def layer_value_bytes(self, weight, bits: int) -> int:
        """Bytes of one packed layer's values and indices (no scales, no bias); see suite/pack.py."""
        from suite.pack import unstructured_bytes

        return unstructured_bytes(weight, bits)[0]

    def check_run(self, run) -> None:
        """Cross-group rule: the cell's compressed model must have a packed format."""
        try:
            self.packed_format()
        except NotImplementedError:
            raise ConfigError("sparsity.method", f"'{self.method}' names no packed format "
                              f"(define {type(self).__name__}.packed_format)") from None
