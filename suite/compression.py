"""What compression buys: measured sparsity and the papers' nominal compression (pure functions).

Prunable weights are the encoder's Linear layers unless patterns say otherwise; embeddings, the
pooler and task heads are excluded by default, as in Prune OFA.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

import torch
from torch import nn

DEFAULT_INCLUDE = ("*encoder.layer.*", "*transformer.layer.*", "*encoder.layers.*")


def prunable_linears(model: nn.Module, include: Sequence[str] = DEFAULT_INCLUDE,
                     exclude: Sequence[str] = ()) -> dict[str, nn.Linear]:
    """Linear layers whose qualified name matches an include pattern and no exclude pattern."""
    return {name: module for name, module in model.named_modules()
            if isinstance(module, nn.Linear)
            and any(fnmatch.fnmatchcase(name, p) for p in include)
            and not any(fnmatch.fnmatchcase(name, p) for p in exclude)}


def weight_of(module: nn.Module) -> torch.Tensor:
    """The effective weight (parametrized or not) of a Linear."""
    return module.weight


def stored_weight(module: nn.Module) -> torch.Tensor:
    """The weight as trained, before any fake-quant parametrization (pruned entries are 0)."""
    from torch.nn.utils import parametrize

    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


def _zero_fraction(tensors) -> float:
    zeros = total = 0
    with torch.no_grad():
        for w in tensors:
            zeros += int((w == 0).sum())
            total += w.numel()
    return zeros / max(1, total)


def measured_sparsity(linears: dict[str, nn.Linear]) -> float:
    """Fraction of prunable weights removed by the pruning masks, before quantization (the masks
    are applied in place to the stored weight, so its zeros are the mask's zeros)."""
    return _zero_fraction(stored_weight(m) for m in linears.values())


def sparsity_after_quant(linears: dict[str, nn.Linear]) -> float:
    """Zeros of the effective (fake-quantized) weights: the masks' plus those rounding adds."""
    return _zero_fraction(weight_of(m) for m in linears.values())


def nominal_compression(sparsity: float, weight_bits: int) -> float:
    """Paper convention: 32/bits x 1/density, counting values only (no indices, no scales)."""
    return (32.0 / weight_bits) / max(1e-12, 1.0 - sparsity)


def dense_fp32_bytes(linears: dict[str, nn.Linear]) -> int:
    """Bytes of the prunable layers stored dense in fp32 (weights and biases)."""
    total = 0
    for module in linears.values():
        total += module.weight.numel() * 4
        if module.bias is not None:
            total += module.bias.numel() * 4
    return total
