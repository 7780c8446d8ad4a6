"""Portable kernels: plain Numba loops, one per packed format (any x86/ARM CPU; also run
with NUMBA_DISABLE_JIT=1). Activations are quantized per tensor to int8 and laid out [K][M] so
the inner loop over M is contiguous and vectorizable.

All kernels compute y[m, n] = (sum_k xq[m, k] * q[n, k]) * xscale * wscale[n] + bias[n].
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def absmax_bits(x):
    """Bit pattern (int32) of max |x| over a C-contiguous 2-D float32 array. Integer max over
    the sign-cleared bits orders finite floats correctly and vectorizes well; a result >=
    0x7F800000 means inf/nan was present."""
    m = x.shape[0]
    part = np.zeros(max(m, 1), dtype=np.int32)
    for i in prange(m):
        row = x[i].view(np.int32)
        r = np.int32(0)
        for j in range(row.shape[0]):
            v = row[j] & np.int32(0x7FFFFFFF)
            r = v if v > r else r
        part[i] = r
    return part.max()


@njit(cache=True)
def scale_from_bits(bits):
    """The dynamic activation scale max|x| / 127 from ``absmax_bits`` (1.0 for an all-zero x;
    -1.0 flags inf/nan)."""
    if bits >= np.int32(0x7F800000):
        return -1.0
    a = np.float64(np.array([bits], dtype=np.int32).view(np.float32)[0])
    return a / 127.0 if a > 0 else 1.0


def absmax(x) -> float:
    """max |x| (float); inf when x holds inf or nan."""
    bits = int(absmax_bits(np.ascontiguousarray(x, dtype=np.float32)))
    if bits >= 0x7F800000:
        return float("inf")
    return float(np.array([bits], dtype=np.int32).view(np.float32)[0])


@njit(parallel=True, cache=True)
def quantize_t(x, inv, qlo, qhi):
    """float32 [M, K] -> int8 [K, M] with round-half-even and clamp to [qlo, qhi]."""
    m, k = x.shape
    out = np.empty((k, m), dtype=np.int8)
    for kk in prange(k):
        for i in range(m):
            v = np.rint(x[i, kk] * inv)
            v = min(max(v, qlo), qhi)
            out[kk, i] = np.int8(v)
    return out


@njit(cache=True, inline="always")
def _store(y, acc, n, sc, off):
    for i in range(acc.shape[0]):
        y[i, n] = np.float32(acc[i] * sc + off)


@njit(parallel=True, cache=True)
def dense_kernel(xt, q, scale, bias, xscale, y):
    k, m = xt.shape
    for n in prange(q.shape[0]):
        acc = np.zeros(m, dtype=np.int32)
        for kk in range(k):
            w = np.int32(q[n, kk])
            if w != 0:
                for i in range(m):
                    acc[i] += w * np.int32(xt[kk, i])
        _store(y, acc, n, np.float64(xscale) * scale[n], np.float64(bias[n]))


@njit(parallel=True, cache=True)
def csr_kernel(xt, indptr, indices, values, scale, bias, xscale, y):
    m = xt.shape[1]
    for n in prange(indptr.shape[0] - 1):
        acc = np.zeros(m, dtype=np.int32)
        for p in range(indptr[n], indptr[n + 1]):
            w = np.int32(values[p])
            kk = np.int64(indices[p])
            for i in range(m):
                acc[i] += w * np.int32(xt[kk, i])
        _store(y, acc, n, np.float64(xscale) * scale[n], np.float64(bias[n]))


@njit(parallel=True, cache=True)
def block1x4_kernel(xt, indptr, blocks, values, scale, bias, xscale, y):
    k, m = xt.shape
    for n in prange(indptr.shape[0] - 1):
        acc = np.zeros(m, dtype=np.int32)
        for p in range(indptr[n], indptr[n + 1]):
            k0 = np.int64(blocks[p]) * 4
            for j in range(4):
                w = np.int32(values[4 * p + j])
                if w != 0 and k0 + j < k:
                    for i in range(m):
                        acc[i] += w * np.int32(xt[k0 + j, i])
        _store(y, acc, n, np.float64(xscale) * scale[n], np.float64(bias[n]))


@njit(parallel=True, cache=True)
def nm_kernel(xt, values, idx, nkeep, scale, bias, xscale, y):
    """values/idx: [N, G * nkeep] (int8 values, in-group positions 0..3)."""
    k, m = xt.shape
    per_row = values.shape[1]
    for n in prange(values.shape[0]):
        acc = np.zeros(m, dtype=np.int32)
        for p in range(per_row):
            w = np.int32(values[n, p])
            kk = (p // nkeep) * 4 + np.int64(idx[n, p])
            if w != 0 and kk < k:
                for i in range(m):
                    acc[i] += w * np.int32(xt[kk, i])
        _store(y, acc, n, np.float64(xscale) * scale[n], np.float64(bias[n]))
