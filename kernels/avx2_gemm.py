"""AVX2 / AVX-VNNI batched kernels (M > 8; see ``kernels.avx2``): quantize + [K/4][Mpad][4]
layout, the 8-lane builds of the shared block-row kernels (``tiles``: sparse block rows
``block_gemm``, its L1 K-slab variant ``block_gemm_slab``, full block rows
``block_gemm_dense``), the pair-block kernel for unstructured rows (``block_gemm_pp``) and the
weight forms. 2:4 runs on ``avx2_nm``."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import tiles
from .avx2_intrinsics import (
    _CACHE,
    _ppdot1,
    _ppdot2,
    _ppdot4,
    _quant8_pairs,
    _quant8_quads,
    _quant8_u8,
)
from .portable import absmax_bits, scale_from_bits
from .tiles import PANEL, _ntasks, _task, dense_blocks, store8  # noqa: F401  (PANEL, dense_blocks: re-exported)

_NOCOMP = np.zeros(1, np.int32)  # the 8-lane kernels take no compensation


# ----------------------------------------------------------------------------- quantize + layout
@njit(inline="always")
def quantize_rows(x, i0, inv, qlo, qhi, tmp, k0=0):
    """tmp[r, :K-k0] = int8 codes of x[i0 + r, k0:] (round half even, clamp to [qlo, qhi]) for
    the rows of tmp that x has (the rest stay as they are); returns the smallest code."""
    m, k = x.shape
    lo = np.int32(0)
    for r in range(min(tmp.shape[0], m - i0)):
        row = tmp[r]
        for kk in range(k0, k):
            c = np.int32(min(max(np.rint(x[i0 + r, kk] * inv), qlo), qhi))
            lo = min(lo, c)
            row[kk - k0] = np.int8(c)
    return lo


@njit(inline="always")
def _quantize_block8(x, base, inv, qlo, qhi, out, mpad, width, u8=False):
    """Rows base..base+7 of x into the layout of ``width``-byte units (4: quads, out int32
    [K/4][mpad]; 2: pairs, out int16 [K/2][mpad]): the vector pass (``_quant8_*``, 8 inputs at a
    time) for whole 8-row blocks, scalar code for the last K % 8 inputs and for a block that
    runs past the last row (zeros there). ``u8``: quads of code + 128 (VNNI; padding 128).
    Returns the smallest code."""
    m, k = x.shape
    units = (k + width - 1) // width
    kv = k // 8 if base + 8 <= m else 0
    lo = np.int32(0)
    if kv > 0:
        if u8:
            lo = _quant8_u8(x, np.int64(base) * k, np.int64(k), np.int64(kv), inv, qlo, qhi,
                            out, np.int64(base), np.int64(mpad))
        elif width == 4:
            lo = _quant8_quads(x, np.int64(base) * k, np.int64(k), np.int64(kv), inv, qlo, qhi,
                               out, np.int64(base), np.int64(mpad))
        else:
            lo = _quant8_pairs(x, np.int64(base) * k, np.int64(k), np.int64(kv), inv, qlo, qhi,
                               out, np.int64(base), np.int64(mpad))
    u0 = kv * 8 // width
    if u0 < units:
        w = units - u0
        tmp = np.zeros((8, w * width), dtype=np.int8)
        lo = min(lo, quantize_rows(x, base, inv, qlo, qhi, tmp, u0 * width))
        if u8:
            tmp ^= np.int8(-128)
        tw = tmp.reshape(-1).view(out.dtype)
        for uu in range(w):
            o = (u0 + uu) * mpad + base
            for r in range(8):
                out[o + r] = tw[r * w + uu]
    return lo


@njit(parallel=True, cache=_CACHE)
def quantize_layout(x, inv, mpad, qlo, qhi):
    """float32 [M, K] -> (int8 [ceil(K/4) * mpad * 4] laid out [k // 4][m][k % 4], zero padded;
    True when some code is < -127, which the sign trick cannot take). Blocks of 8 rows; 8 rows x
    8 inputs quantized in registers and transposed by the byte packs (``_quant8_quads``):
    2.5-3x the scalar quantize-then-transpose it replaces."""
    m, k = x.shape
    out = np.empty((k + 3) // 4 * mpad, dtype=np.int32)
    nblk = mpad // 8
    bad = np.zeros(nblk, dtype=np.bool_)
    for blk in prange(nblk):
        bad[blk] = _quantize_block8(x, blk * 8, inv, qlo, qhi, out, mpad, 4) < -127
    return out.view(np.int8), bad.any()


@njit(parallel=True, cache=_CACHE)
def quantize_layout_u8(x, inv, mpad, qlo, qhi):
    """``quantize_layout`` with unsigned bytes code + 128 (padding 128, i.e. zero): the VNNI
    path's [K/4][Mpad][4] operand (``vnni.quantize_layout``; the AVX2 instructions are on
    every AVX-512 CPU)."""
    m, k = x.shape
    out = np.empty((k + 3) // 4 * mpad, dtype=np.int32)
    for blk in prange(mpad // 8):
        _quantize_block8(x, blk * 8, inv, qlo, qhi, out, mpad, 4, True)
    return out.view(np.uint8)


@njit(parallel=True, cache=_CACHE)
def quantize_pairs(x, inv, mpad, qlo, qhi):
    """float32 [M, K] -> (int8 [ceil(K/2)][mpad][2], zero padded, for ``block_gemm_pp``; True
    when some code is < -127). ``mpad``: a multiple of 16 (one ymm = 16 rows x 2 inputs)."""
    m, k = x.shape
    out = np.empty((k + 1) // 2 * mpad, dtype=np.int16)
    nblk = mpad // 8
    bad = np.zeros(nblk, dtype=np.bool_)
    for blk in prange(nblk):
        bad[blk] = _quantize_block8(x, blk * 8, inv, qlo, qhi, out, mpad, 2) < -127
    return out.view(np.int8), bad.any()


@njit(cache=_CACHE)
def dynamic_scale(x):
    """max|x| / 127 (1.0 for an all-zero x) from ``portable.absmax_bits`` (parallel over rows);
    -1.0 flags inf/nan."""
    return scale_from_bits(absmax_bits(x))


@njit(cache=_CACHE)
def quantize_layout_dynamic(x, mpad, qlo, qhi, pairs):
    """``quantize_layout`` (``pairs``: ``quantize_pairs``) with the dynamic scale max|x| / 127
    computed in the same call (one dispatch). Returns (layout, bad, scale); scale -1: inf/nan."""
    sx = dynamic_scale(x)
    if sx < 0:
        return np.empty(0, np.int8), False, sx
    if pairs:
        xl, bad = quantize_pairs(x, np.float32(1.0 / sx), mpad, qlo, qhi)
    else:
        xl, bad = quantize_layout(x, np.float32(1.0 / sx), mpad, qlo, qhi)
    return xl, bad, sx


def pairpair_form(q: np.ndarray):
    """Scattered nonzeros of an int8 weight [N, K] as blocks of two input pairs per row, for
    ``block_gemm_pp``: (ptr int64 [N+1], c1 int32, c2 int32, w4 int32 = the 4 weights
    (q[c1], q[c1+1], q[c2], q[c2+1]) as bytes). A row's occupied pairs go two by two in column
    order; an odd last one meets a zero pair. Unstructured 90% keeps ~19% of the pairs, so
    ~0.56 blocks per 1x4 group that the 1x4 form would occupy, each at about a 1x4 block's cost."""
    n, k = q.shape
    qp = np.zeros((n, (k + 1) // 2 * 2), dtype=np.int8)
    qp[:, :k] = q
    w16 = qp.view(np.int16)  # [n, npair]: both weights of a pair
    rows, cols = np.nonzero(w16)
    counts = np.bincount(rows, minlength=n)
    at = np.cumsum(counts)[counts % 2 == 1]  # a zero pair closes every odd row (its last column)
    vals = np.insert(w16[rows, cols], at, 0).astype(np.int16)
    cols = np.insert(cols, at, cols[at - 1]).astype(np.int32)
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum((counts + 1) // 2, out=ptr[1:])
    w4 = np.stack([vals[0::2], vals[1::2]], axis=1).reshape(-1).view(np.int32).copy()
    return ptr, cols[0::2].copy(), cols[1::2].copy(), w4


# ----------------------------------------------------------------------------- GEMM kernels
@njit(cache=_CACHE)
def block_gemm(xl, mpad, m, ptr, cols, vals, scale, bias, xscale, y, tile, act=0):
    """``tiles.block_gemm`` on 8 lanes: sparse 1x4 block rows, up to 8 chunks of 8 rows in
    registers."""
    tiles.block_gemm(xl, mpad, m, ptr, cols, vals, _NOCOMP, scale, bias, xscale, y, tile, act, 8)


@njit(parallel=True, cache=_CACHE)
def block_gemm_pp(xl, mpad, m, ptr, c1, c2, w4, scale, bias, xscale, y, tile, act=0):
    """``block_gemm`` for blocks of two input pairs (``pairpair_form``) on int8 pair activations
    (``quantize_pairs``, ``mpad`` a multiple of 16): each block row runs against up to 4 chunks
    of 16 rows in registers (two accumulators per chunk)."""
    n_out = ptr.shape[0] - 1
    ntasks, ntiles, panel = _ntasks(mpad, n_out, tile)
    rs = np.int64(mpad) * 2
    for t in prange(ntasks):
        p0, pr, n0, n1 = _task(t, ntiles, panel, mpad, n_out, tile)
        nch = pr // 16
        buf = np.empty(tile * pr, dtype=np.int32)
        for n in range(n0, n1):
            o = np.int64(n - n0) * pr
            s, e = ptr[n], ptr[n + 1]
            xo = np.int64(p0) * 2
            c = 0
            while c + 4 <= nch:
                _ppdot4(xl, w4, c1, c2, s, e, xo + c * 32, rs, buf, o + c * 16)
                c += 4
            if c + 2 <= nch:
                _ppdot2(xl, w4, c1, c2, s, e, xo + c * 32, rs, buf, o + c * 16)
                c += 2
            if c < nch:
                _ppdot1(xl, w4, c1, c2, s, e, xo + c * 32, rs, buf, o + c * 16)
        store8(buf, pr, min(pr, m - p0), n0, n1, tile, scale, bias, xscale, y, p0, act)


@njit(cache=_CACHE)
def block_gemm_slab(xl, mpad, m, sp, cols, vals, scale, bias, xscale, y, tile, act=0):
    """``tiles.block_gemm_slab`` on 8 lanes (K in L1 slabs, ``tiles.slab_pointers``)."""
    tiles.block_gemm_slab(xl, mpad, m, sp, cols, vals, _NOCOMP, scale, bias, xscale, y, tile,
                          act, 8)


@njit(cache=_CACHE)
def block_gemm_dense(xl, mpad, m, wd, groups, n_out, scale, bias, xscale, y, tile, act=0):
    """``tiles.block_gemm_dense`` on 8 lanes: full block rows (``dense_blocks``), 4 rows x 4
    chunks of 8 activation rows per register tile."""
    tiles.block_gemm_dense(xl, mpad, m, wd, groups, n_out, _NOCOMP, scale, bias, xscale, y,
                           tile, act, 8)
