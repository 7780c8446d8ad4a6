"""Pruning masks as pure functions of scores (no modules, no state).

A mask is a bool tensor shaped like the weight: True = kept, False = pruned. Weights are
`[out_features, in_features]` (nn.Linear); blocks and N:M groups run along the input dim.
Counts are exact: a layer pruned to sparsity s has exactly round(s * numel) zeros (ties broken
by position), so per-layer sparsity is within one element of the target.

Two entries share the mask families (unstructured | block | nm, per layer or global):
`score_masks` keeps the highest scores of any per-weight score a method computes (e.g. movement
scores, which may be negative; a block's score is the sum of its weights' scores);
`compute_masks` is magnitude pruning: scores |w| (a block's score is its L2 norm).

Public names (stable; reused by the Prune-OFA upstream pruning):
  n_pruned, mask_lowest, magnitude_mask, block_scores, block_mask, nm_mask, nm_gradual_mask,
  global_magnitude_masks, global_block_masks, score_masks, compute_masks, apply_masks,
  mask_sha256, mask_sparsity
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


def mask_lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
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
    return mask_lowest(weight.detach().abs(), n_pruned(weight.numel(), sparsity))


def _grouped(weight: torch.Tensor, size: int, fill: float = 0.0) -> torch.Tensor:
    """[out, in] -> [out, ceil(in/size), size], padded with `fill` along in."""
    w = weight.detach()
    out, k = w.shape
    pad = (-k) % size
    if pad:
        w = torch.cat([w, w.new_full((out, pad), fill)], dim=1)
    return w.reshape(out, -1, size)


def block_scores(weight: torch.Tensor, block: int = 4) -> torch.Tensor:
    """L2 norm of each 1 x `block` block along the input dim: [out, ceil(in/block)]."""
    return _grouped(weight.float(), block).norm(dim=2)


def _expand_blocks(block_keep: torch.Tensor, block: int, in_features: int) -> torch.Tensor:
    return block_keep.repeat_interleave(block, dim=1)[:, :in_features]


def block_sums(scores: torch.Tensor, block: int = 4) -> torch.Tensor:
    """Sum of the per-weight scores of each 1 x `block` block along the input dim."""
    return _grouped(scores.float(), block).sum(dim=2)


def _block_keep(block_score: torch.Tensor, sparsity: float, block: int, in_features: int) -> torch.Tensor:
    keep = mask_lowest(block_score, n_pruned(block_score.numel(), sparsity))
    return _expand_blocks(keep, block, in_features)


def block_mask(weight: torch.Tensor, sparsity: float, block: int = 4) -> torch.Tensor:
    """1 x `block` blocks along the input dim, pruned by block norm: round(s * n_blocks) blocks."""
    return _block_keep(block_scores(weight, block), sparsity, block, weight.shape[1])


def nm_top(scores: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """N:M: in every group of m consecutive inputs of a row keep the n highest scores.

    A trailing partial group (in_features not a multiple of m) is padded with scores that lose."""
    if not 0 < n < m:
        raise ValueError(f"N:M needs 0 < n < m, got {n}:{m}")
    g = _grouped(scores.float(), m, fill=-float("inf"))
    # stable: among equal scores keep the earliest positions
    order = torch.sort(-g, dim=2, stable=True).indices[:, :, :n]
    keep = torch.zeros_like(g, dtype=torch.bool).scatter_(2, order, True)
    return keep.reshape(scores.shape[0], -1)[:, : scores.shape[1]]


def nm_mask(weight: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """N:M by magnitude: in every group of m consecutive inputs of a row keep the n largest |w|."""
    return nm_top(weight.detach().abs(), n, m)


def nm_gradual_top(scores: torch.Tensor, sparsity: float, n: int = 2, m: int = 4) -> torch.Tensor:
    """Gradual N:M: prune the lowest-scored of the final N:M candidates so that `sparsity` of the
    layer is zero; at sparsity >= 1 - n/m this is exactly `nm_top`."""
    final = nm_top(scores, n, m)
    k = n_pruned(scores.numel(), sparsity)
    n_candidates = int((~final).sum())
    if k >= n_candidates:
        return final
    return mask_lowest(scores.detach().float().masked_fill(final, float("inf")), k)


def nm_gradual_mask(weight: torch.Tensor, sparsity: float, n: int = 2, m: int = 4) -> torch.Tensor:
    """Gradual N:M by magnitude (`nm_gradual_top` of |w|)."""
    return nm_gradual_top(weight.detach().abs(), sparsity, n, m)


def _global_keep(scores: Mapping[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """One threshold over all score tensors: exactly round(s * total) lowest scores pruned overall."""
    names = list(scores)
    flat = torch.cat([scores[n].detach().reshape(-1).float().cpu() for n in names])
    keep = mask_lowest(flat, n_pruned(flat.numel(), sparsity))
    return _split(keep, names, scores)


def global_magnitude_masks(weights: Mapping[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """One magnitude threshold over all tensors: exactly round(s * total) zeros overall."""
    return _global_keep({k: w.detach().abs() for k, w in weights.items()}, sparsity)


def _global_blocks(block_score: Mapping[str, torch.Tensor], sparsity: float, block: int,
                   weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    keep = _global_keep(block_score, sparsity)
    return {n: _expand_blocks(keep[n].cpu(), block, weights[n].shape[1]).to(weights[n].device) for n in keep}


def global_block_masks(weights: Mapping[str, torch.Tensor], sparsity: float,
                       block: int = 4) -> dict[str, torch.Tensor]:
    """Global 1 x block pruning: one block-norm threshold over all tensors."""
    return _global_blocks({n: block_scores(w, block) for n, w in weights.items()}, sparsity, block, weights)


def _split(flat_keep: torch.Tensor, names, weights) -> dict[str, torch.Tensor]:
    out, offset = {}, 0
    for name in names:
        w = weights[name]
        out[name] = flat_keep[offset: offset + w.numel()].reshape(w.shape).to(w.device)
        offset += w.numel()
    return out


def _masks(scores: Mapping[str, torch.Tensor], sparsity: float, pattern: str, scope: str, block: int,
           n: int, m: int, block_score) -> dict[str, torch.Tensor]:
    """The mask families on per-weight scores; `block_score(scores, block)` scores the blocks."""
    if pattern not in PATTERNS:
        raise ValueError(f"pattern={pattern!r}; allowed: {', '.join(PATTERNS)}")
    if scope not in ("layer", "global"):
        raise ValueError(f"scope={scope!r}; allowed: layer, global")
    if pattern == "nm":  # always per layer: N:M groups are local
        return {k: nm_gradual_top(s, sparsity, n, m) for k, s in scores.items()}
    if pattern == "block":
        per_block = {k: block_score(s, block) for k, s in scores.items()}
        if scope == "global":
            return _global_blocks(per_block, sparsity, block, scores)
        return {k: _block_keep(b, sparsity, block, scores[k].shape[1]) for k, b in per_block.items()}
    if scope == "global":
        return _global_keep(scores, sparsity)
    return {k: mask_lowest(s, n_pruned(s.numel(), sparsity)) for k, s in scores.items()}


def score_masks(scores: Mapping[str, torch.Tensor], sparsity: float, pattern: str = "unstructured",
                scope: str = "layer", block: int = 4, n: int = 2, m: int = 4) -> dict[str, torch.Tensor]:
    """Masks that keep the highest of any per-weight scores (a method's own, e.g. movement) at
    `sparsity`, in the mask families of `compute_masks`; a block scores the sum of its weights'."""
    return _masks(scores, sparsity, pattern, scope, block, n, m, block_sums)


def compute_masks(weights: Mapping[str, torch.Tensor], sparsity: float, pattern: str = "unstructured",
                  scope: str = "layer", block: int = 4, n: int = 2, m: int = 4) -> dict[str, torch.Tensor]:
    """Magnitude masks for named weights at `sparsity`. pattern: unstructured | block (by block L2
    norm) | nm; scope: layer | global (N:M is always per layer: its groups are local)."""
    return _masks({k: w.detach().abs() for k, w in weights.items()}, sparsity, pattern, scope, block, n, m,
                  block_scores)


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
