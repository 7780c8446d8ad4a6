"""Pruning masks as pure functions of weights (no modules, no state).

A mask is a bool tensor shaped like the weight: True = kept, False = pruned. Weights are
`[out_features, in_features]` (nn.Linear); blocks and N:M groups run along the input dim.
Counts are exact: a layer pruned to sparsity s has exactly round(s * numel) zeros (ties broken
by position), so per-layer sparsity is within one element of the target.

Public names (stable; reused by the Prune-OFA upstream pruning):
  n_pruned, magnitude_mask, block_scores, block_mask, nm_mask, nm_gradual_mask,
  global_magnitude_masks, global_block_masks, compute_masks, apply_masks, mask_sha256,
  mask_sparsity
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np
import torch

PATTERNS = ("unstructured", "block", "nm")


def n_pruned(numel: int, sparsity: float) -> int:
    """How many elements a tensor of `numel` loses at `sparsity` (exact, rounded)."""
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    return min(numel, int(round(sparsity * numel)))


def _mask_lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask (same shape as scores) with the k lowest scores False, the rest True."""
    flat = scores.detach().reshape(-1).float()
    mask = torch.ones(flat.numel(), dtype=torch.bool, device=flat.device)
    if k > 0:
        # stable sort: ties broken by position, so the count is exact and reproducible
        idx = torch.sort(flat, stable=True).indices[:k]
        mask[idx] = False
    return mask.reshape(scores.shape)


def magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Unstructured: prune the round(sparsity * numel) smallest |w|."""
    return _mask_lowest(weight.detach().abs(), n_pruned(weight.numel(), sparsity))


def _grouped(weight: torch.Tensor, size: int) -> torch.Tensor:
    """[out, in] -> [out, ceil(in/size), size], zero-padded along in."""
    w = weight.detach()
    out, k = w.shape
    pad = (-k) % size
    if pad:
        w = torch.cat([w, w.new_zeros(out, pad)], dim=1)
    return w.reshape(out, -1, size)


def block_scores(weight: torch.Tensor, block: int = 4) -> torch.Tensor:
    """L2 norm of each 1 x `block` block along the input dim: [out, ceil(in/block)]."""
    return _grouped(weight.float(), block).norm(dim=2)


def _expand_blocks(block_keep: torch.Tensor, block: int, in_features: int) -> torch.Tensor:
    return block_keep.repeat_interleave(block, dim=1)[:, :in_features]


def block_mask(weight: torch.Tensor, sparsity: float, block: int = 4) -> torch.Tensor:
    """1 x `block` blocks along the input dim, pruned by block norm: round(s * n_blocks) blocks."""
    scores = block_scores(weight, block)
    keep = _mask_lowest(scores, n_pruned(scores.numel(), sparsity))
    return _expand_blocks(keep, block, weight.shape[1])


def nm_mask(weight: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """N:M: in every group of m consecutive inputs of a row keep the n largest |w|.

    A trailing partial group (in_features not a multiple of m) is treated as zero-padded."""
    if not 0 < n < m:
        raise ValueError(f"N:M needs 0 < n < m, got {n}:{m}")
    g = _grouped(weight.abs().float(), m)
    # stable: among equal magnitudes keep the earliest positions
    order = torch.sort(-g, dim=2, stable=True).indices[:, :, :n]
    keep = torch.zeros_like(g, dtype=torch.bool).scatter_(2, order, True)
    return keep.reshape(weight.shape[0], -1)[:, : weight.shape[1]]


def nm_gradual_mask(weight: torch.Tensor, sparsity: float, n: int = 2, m: int = 4) -> torch.Tensor:
    """Gradual N:M: prune the smallest of the final N:M candidates so that `sparsity` of the
    layer is zero; at sparsity >= 1 - n/m this is exactly `nm_mask`."""
    final = nm_mask(weight, n, m)
    k = n_pruned(weight.numel(), sparsity)
    n_candidates = int((~final).sum())
    if k >= n_candidates:
        return final
    scores = weight.detach().abs().float().masked_fill(final, float("inf"))
    return _mask_lowest(scores, k)


def global_magnitude_masks(weights: Mapping[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """One magnitude threshold over all tensors: exactly round(s * total) zeros overall."""
    names = list(weights)
    flat = torch.cat([weights[n].detach().abs().reshape(-1).float().cpu() for n in names])
    keep = _mask_lowest(flat, n_pruned(flat.numel(), sparsity))
    return _split(keep, names, weights)


def global_block_masks(weights: Mapping[str, torch.Tensor], sparsity: float,
                       block: int = 4) -> dict[str, torch.Tensor]:
    """Global 1 x block pruning: one block-norm threshold over all tensors."""
    names = list(weights)
    scores = {n: block_scores(weights[n], block).cpu() for n in names}
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    keep = _mask_lowest(flat, n_pruned(flat.numel(), sparsity))
    out, offset = {}, 0
    for name in names:
        s = scores[name]
        part = keep[offset: offset + s.numel()].reshape(s.shape)
        offset += s.numel()
        out[name] = _expand_blocks(part, block, weights[name].shape[1]).to(weights[name].device)
    return out


def _split(flat_keep: torch.Tensor, names, weights) -> dict[str, torch.Tensor]:
    out, offset = {}, 0
    for name in names:
        w = weights[name]
        out[name] = flat_keep[offset: offset + w.numel()].reshape(w.shape).to(w.device)
        offset += w.numel()
    return out


def compute_masks(weights: Mapping[str, torch.Tensor], sparsity: float, pattern: str = "unstructured",
                  scope: str = "layer", block: int = 4, n: int = 2, m: int = 4) -> dict[str, torch.Tensor]:
    """Masks for named weights at `sparsity`. pattern: unstructured | block | nm; scope: layer | global
    (N:M is always per layer: its groups are local)."""
    if pattern not in PATTERNS:
        raise ValueError(f"pattern={pattern!r}; allowed: {', '.join(PATTERNS)}")
    if pattern == "nm":
        return {k: nm_gradual_mask(w, sparsity, n, m) for k, w in weights.items()}
    if scope == "global":
        if pattern == "block":
            return global_block_masks(weights, sparsity, block)
        return global_magnitude_masks(weights, sparsity)
    if scope != "layer":
        raise ValueError(f"scope={scope!r}; allowed: layer, global")
    if pattern == "block":
        return {k: block_mask(w, sparsity, block) for k, w in weights.items()}
    return {k: magnitude_mask(w, sparsity) for k, w in weights.items()}


@torch.no_grad()
def apply_masks(weights: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> None:
    """Zero pruned entries in place."""
    for name, mask in masks.items():
        weights[name].mul_(mask.to(weights[name].dtype))


def mask_sparsity(masks: Mapping[str, torch.Tensor]) -> float:
    total = sum(m.numel() for m in masks.values())
    return sum(int((~m).sum()) for m in masks.values()) / max(1, total)


def mask_sha256(masks: Mapping[str, torch.Tensor]) -> str:
    """sha256 over (name, shape, bit-packed mask) for every mask, in name order."""
    h = hashlib.sha256()
    for name in sorted(masks):
        m = masks[name].detach().to("cpu", torch.bool).contiguous()
        h.update(name.encode())
        h.update(str(tuple(m.shape)).encode())
        h.update(np.packbits(m.numpy().reshape(-1)).tobytes())
    return h.hexdigest()
