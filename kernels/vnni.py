"""AVX-512 VNNI batched kernels (``vpdpbusd``): the 16-lane builds of the shared block-row
kernels (``tiles``), emitted from Numba through llvmlite IR intrinsics (``tile_intrinsics``).

Execution form (shared by every packed format, see ``PackedLinear.blocks``): 1x4 blocks along
K, block values as one int32 (4 x int8), group index per block, per-row compensation.

Activations are quantized per tensor and laid out [K/4][Mpad][4] as uint8 with a +128 offset
(vpdpbusd multiplies unsigned by signed bytes); the compensation 128 * sum(q_row) is subtracted
in the epilogue. One row of blocks is multiplied against R = 8/4/2/1 chunks of 16 activation
rows held in zmm registers (register blocking), so each block costs one broadcast plus R
(load, vpdpbusd) pairs. Quantization + layout is one fused pass. M = 1 runs on
``vnni_latency``.

Import this module only when ``cpu.has_vnni512()`` is true: compiling it elsewhere fails.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import tiles
from .avx2_gemm import dynamic_scale, quantize_layout_u8
from .tiles import dense_blocks, slab_pointers  # noqa: F401  (re-exported)


@njit(cache=True)
def quantize_layout(x, inv, mpad, qlo, qhi):
    """float32 [M, K] -> uint8 [ceil(K/4) * mpad * 4]: u8 = clamp(rint(x * inv), qlo, qhi) + 128
    at [k // 4][m][k % 4]; padding (k >= K, m >= M) is 128, i.e. zero. 8 rows x 8 inputs at a
    time in AVX2 registers, the byte packs giving the layout (``avx2_gemm.quantize_layout_u8``;
    was a scalar quantize, then one strided 32-bit store per 4 values)."""
    return quantize_layout_u8(x, inv, mpad, qlo, qhi)


@njit(cache=True)
def quantize_layout_dynamic(x, mpad, qlo, qhi):
    """``quantize_layout`` with the per-tensor dynamic scale max|x| / 127 computed in the same
    call (one dispatch instead of two). Returns (layout, scale); scale < 0 flags inf/nan."""
    sx = dynamic_scale(x)
    if sx < 0:
        return np.empty(0, dtype=np.uint8), -1.0
    return quantize_layout_u8(x, np.float32(1.0 / sx), mpad, qlo, qhi), sx


@njit(cache=True)
def block_gemm(xl, mpad, m, ptr, cols, vals, comp, scale, bias, xscale, y, tile, act=0):
    """``tiles.block_gemm`` on 16 lanes: y[:m] = dequant(x_layout @ blocks.T) (+ GELU)."""
    tiles.block_gemm(xl, mpad, m, ptr, cols, vals, comp, scale, bias, xscale, y, tile, act, 16)


@njit(cache=True)
def block_gemm_slab(xl, mpad, m, sp, cols, vals, comp, scale, bias, xscale, y, tile, act=0):
    """``tiles.block_gemm_slab`` on 16 lanes: K walked in L1 slabs (``slab_pointers``)."""
    tiles.block_gemm_slab(xl, mpad, m, sp, cols, vals, comp, scale, bias, xscale, y, tile, act,
                          16)


@njit(cache=True)
def block_gemm_dense(xl, mpad, m, wd, groups, n_out, comp, scale, bias, xscale, y, tile, act=0):
    """``tiles.block_gemm_dense`` on 16 lanes: full block rows (``dense_blocks``), 4 rows x 4
    chunks of 16 activation rows per register tile."""
    tiles.block_gemm_dense(xl, mpad, m, wd, groups, n_out, comp, scale, bias, xscale, y, tile,
                           act, 16)
