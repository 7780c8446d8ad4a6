"""Element-wise work fused into the kernels' output pass (``SparseInt8Linear.epilogue``):
GELU (the erf form BERT uses) on every path, and residual add + LayerNorm over whole rows.

``gelu`` is branch-free float32 (a clamp and a rational function), so LLVM vectorizes it inside
the kernels' tile stores (AVX2) and in ``gelu_`` (every other path): the same numbers on every
path. erf(z) ~ z * P(z^2) / Q(z^2) on |z| <= 4 (erf(4) = 1 - 1.5e-8), coefficients fitted here
by weighted least squares: max |error| 3.8e-7 in float32 (torch's erf GELU: <= 1e-6 absolute).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .cpu import jit_disabled

_CACHE = not jit_disabled()
EPILOGUES = {None: 0, "gelu": 1}  # name -> code the kernels take

ERF_P = (1.128378819235941, 0.2061091571066875, 0.051385418128827534, 0.003965437391253986,
         0.00014822105327911552, -1.977522359825762e-06, 1.9668396661343124e-08)  # t^0..t^6
ERF_Q = (1.0, 0.515988643443073, 0.11755149923731294, 0.014880282666531859,
         0.0010204327600571075)  # t^0..t^4
_P0, _P1, _P2, _P3, _P4, _P5, _P6 = (np.float32(c) for c in ERF_P)
_Q1, _Q2, _Q3, _Q4 = (np.float32(c) for c in ERF_Q[1:])


@njit(inline="always")
def gelu(v):
    """0.5 * v * (1 + erf(v / sqrt(2))) in float32."""
    z = min(max(v * np.float32(0.70710677), np.float32(-4.0)), np.float32(4.0))
    t = z * z
    p = (((((_P6 * t + _P5) * t + _P4) * t + _P3) * t + _P2) * t + _P1) * t + _P0
    q = (((_Q4 * t + _Q3) * t + _Q2) * t + _Q1) * t + np.float32(1.0)
    return np.float32(0.5) * v * (np.float32(1.0) + z * p / q)


@njit(inline="always")
def gelu_tile(y, row0, m, n0, n1):
    """y[row0:row0+m, n0:n1] = gelu(y[...]) in place (a kernel's output tile, still in L1)."""
    for i in range(row0, row0 + m):
        seg = y[i, n0:n1]  # a loop from 0 (and callers with error_model="numpy"): vectorized
        for j in range(seg.shape[0]):
            seg[j] = gelu(seg[j])


@njit(cache=_CACHE, error_model="numpy", fastmath={"contract"})
def gelu_block(y, row0, m, n0, n1):
    """``gelu_tile`` compiled on its own: vectorized (no division check, FMA contraction), so
    the kernels' own float arithmetic keeps its flags. Every path's GELU runs this code."""
    gelu_tile(y, row0, m, n0, n1)


@njit(parallel=True, cache=_CACHE)
def gelu_(y):
    """gelu over a float32 [M, N] array in place (the paths without a fused epilogue)."""
    m = y.shape[0]
    step = max(1, (m + 15) // 16)
    for t in prange((m + step - 1) // step):
        r0 = t * step
        gelu_block(y, r0, min(m, r0 + step) - r0, 0, y.shape[1])


@njit(parallel=True, cache=_CACHE, fastmath=True)
def add_layernorm_(y, res, weight, bias, eps):
    """y[i] = LayerNorm(y[i] + res[i]) * weight + bias in place, float32 [M, N] (mean and
    variance accumulated in float64)."""
    m, n = y.shape
    for i in prange(m):
        row, r = y[i], res[i]
        s = 0.0
        for j in range(n):
            v = row[j] + r[j]
            row[j] = v
            s += v
        mean = s / n
        ss = 0.0
        for j in range(n):
            d = row[j] - mean
            ss += d * d
        inv = np.float32(1.0 / np.sqrt(ss / n + eps))
        mu = np.float32(mean)
        for j in range(n):
            row[j] = (row[j] - mu) * inv * weight[j] + bias[j]
