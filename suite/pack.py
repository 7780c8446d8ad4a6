"""Packed sizes of the encoder's Linear layers: real bytes, sparse + quantized (pure functions).
Each sparsity method picks its layout from these (`SparsityConfig.layer_value_bytes`) and each
quant method adds its scales (`QuantConfig.scale_bytes`); `layer_bytes` sums the parts.

Layouts match kernels.formats (int32 row pointers, uint16 indices, fp32 per-channel scales,
fp32 bias), with values at the cell's weight bits (fp32: 4 bytes; 8-bit: 1 byte; 4-bit: two per
byte). Per layer:
  dense   values
  gmp     cheapest of CSR (row ptr + uint16 column index per nonzero), bitmap (1 bit per weight)
          and dense
  block   row ptr + one uint16 index per kept 1xB block + B values per block
  nm      n values per group of m + ceil(log2 m) index bits per value (2:4: 2 bits)
plus, when quantized, the weight scales (per channel: 4 bytes a row; per tensor: 4) and one fp32
activation scale per layer when activations are quantized; plus the fp32 bias.
The zero pattern is read from the effective (fake-quantized) weight, so a non-zero-preserving
quantizer honestly loses its sparsity.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def value_bytes(count: int, bits: int) -> int:
    return math.ceil(count * bits / 8)


def _index_bytes(limit: int) -> int:
    return 2 if limit <= 65536 else 4


def dense_bytes(out: int, inp: int, bits: int) -> int:
    return value_bytes(out * inp, bits)


def csr_bytes(out: int, inp: int, nnz: int, bits: int) -> int:
    return 4 * (out + 1) + _index_bytes(inp) * nnz + value_bytes(nnz, bits)


def bitmap_bytes(out: int, inp: int, nnz: int, bits: int) -> int:
    return math.ceil(out * inp / 8) + value_bytes(nnz, bits)


def unstructured_bytes(weight: torch.Tensor, bits: int) -> tuple[int, str]:
    """(bytes, format) of the cheapest of csr / bitmap / dense for this weight."""
    out, inp = weight.shape
    nnz = int((weight != 0).sum())
    options = {"csr": csr_bytes(out, inp, nnz, bits), "bitmap": bitmap_bytes(out, inp, nnz, bits),
               "dense": dense_bytes(out, inp, bits)}
    fmt = min(options, key=options.get)
    return options[fmt], fmt


def block_bytes(weight: torch.Tensor, bits: int, block: int = 4) -> int:
    out, inp = weight.shape
    g = math.ceil(inp / block)
    pad = g * block - inp
    w = torch.cat([weight, weight.new_zeros(out, pad)], 1) if pad else weight
    nblocks = int((w.reshape(out, g, block) != 0).any(-1).sum())
    return 4 * (out + 1) + _index_bytes(g) * nblocks + value_bytes(nblocks * block, bits)


def nm_holds(weight: torch.Tensor, n: int, m: int) -> bool:
    out, inp = weight.shape
    g = math.ceil(inp / m)
    pad = g * m - inp
    w = torch.cat([weight, weight.new_zeros(out, pad)], 1) if pad else weight
    return bool(((w.reshape(out, g, m) != 0).sum(-1) <= n).all())


def nm_bytes(out: int, inp: int, bits: int, n: int, m: int) -> int:
    kept = out * math.ceil(inp / m) * n
    return value_bytes(kept, bits) + math.ceil(kept * math.ceil(math.log2(m)) / 8)


def layer_bytes(weight: torch.Tensor, bias: torch.Tensor | None, sparsity, quant) -> int:
    """Packed bytes of one Linear (values + indices + scales + bias) for the cell's sparsity and
    quant configs: each method answers for its own part (`layer_value_bytes`, `scale_bytes`)."""
    weight = weight.detach()
    size = sparsity.layer_value_bytes(weight, quant.weight_bits) + quant.scale_bytes(weight.shape[0])
    if bias is not None:
        size += 4 * bias.numel()
    return size


def packed_bytes(linears: dict[str, nn.Module], cfg) -> int:
    """Packed bytes of all prunable Linears (effective weights: fake-quantized when quantized)."""
    with torch.no_grad():
        return sum(layer_bytes(mod.weight, mod.bias, cfg.sparsity, cfg.quant) for mod in linears.values())
