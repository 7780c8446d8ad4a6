"""AVX2 / AVX-VNNI batched kernels (M > 8; see ``kernels.avx2``): quantize + [K/4][Mpad][4]
layout, sparse block rows (``block_gemm``), its L1 K-slab variant (``block_gemm_slab``), full
block rows (``block_gemm_dense``), the tiled dequantizing epilogue, and the weight forms these
kernels take. 2:4 runs on ``avx2_nm``."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .avx2_intrinsics import (
    _CACHE,
    _epilogue8,
    _epilogue8_gelu,
    _multirow41,
    _multirow42,
    _multirow44,
    _ppdot1,
    _ppdot2,
    _ppdot4,
    _quant8_pairs,
    _quant8_quads,
    _quant8_u8,
    _rowacc1,
    _rowacc2,
    _rowacc4,
    _rowacc8,
    _rowdot1,
    _rowdot2,
    _rowdot4,
    _rowdot8,
)
from .epilogue import gelu_block
from .portable import absmax_bits, scale_from_bits


# ----------------------------------------------------------------------------- epilogue
@njit(cache=_CACHE)
def _store_tile(buf, mpad, m, n0, n1, tile, scale, bias, xscale, y, row0, act):
    """y[row0:row0+m, n0:n1] = buf (tile x mpad int32, row = feature) * xscale * scale + bias,
    then GELU on the tile when ``act`` is 1 (``epilogue.EPILOGUES``)."""
    nt = n1 - n0
    sc = np.zeros(tile, dtype=np.float32)
    off = np.zeros(tile, dtype=np.float32)
    for j in range(nt):
        sc[j] = np.float32(xscale * scale[n0 + j])
        off[j] = bias[n0 + j]
    ystride = np.int64(y.shape[1])
    j0 = 0
    while j0 + 8 <= nt:
        i0 = 0
        while i0 + 8 <= m:
            boff, yoff = np.int64(j0) * mpad + i0, np.int64(row0 + i0) * ystride + n0 + j0
            if act == 1:  # GELU on the 8x8 tile in registers
                _epilogue8_gelu(buf, boff, np.int64(mpad), sc, np.int64(j0), off, y, yoff, ystride)
            else:
                _epilogue8(buf, boff, np.int64(mpad), sc, np.int64(j0), off, y, yoff, ystride)
            i0 += 8
        for i in range(i0, m):
            for j in range(j0, j0 + 8):
                y[row0 + i, n0 + j] = np.float32(buf[j * mpad + i]) * sc[j] + off[j]
        if act == 1 and i0 < m:
            gelu_block(y, row0 + i0, m - i0, n0 + j0, n0 + j0 + 8)
        j0 += 8
    for i in range(m):
        for j in range(j0, nt):
            y[row0 + i, n0 + j] = np.float32(buf[j * mpad + i]) * sc[j] + off[j]
    if act == 1 and j0 < nt:
        gelu_block(y, row0, m, n0 + j0, n1)


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
PANEL = 128  # activation rows per task at large M (K x 128 int8 stays in L2)


@njit(inline="always")
def _ntasks(mpad, n_out, tile):
    """(tasks, tiles per panel, panel rows): tasks are (panel of <= PANEL activation rows) x
    (tile of output features), panel-major, so that a panel stays in L2 while weights stream."""
    ntiles = (n_out + tile - 1) // tile
    panel = min(mpad, PANEL)
    return (mpad + panel - 1) // panel * ntiles, ntiles, panel


@njit(inline="always")
def _task(t, ntiles, panel, mpad, n_out, tile):
    """(first activation row, panel rows, first and end output feature) of task t."""
    p0 = (t // ntiles) * panel
    n0 = (t % ntiles) * tile
    return p0, min(panel, mpad - p0), n0, min(n_out, n0 + tile)


@njit(parallel=True, cache=_CACHE)
def block_gemm(xl, mpad, m, ptr, cols, vals, scale, bias, xscale, y, tile, act=0):
    """y[:m] = dequant(x_layout @ blocks.T), tasks from ``_task``; each block row runs against
    up to 8 chunks of 8 rows held in registers."""
    n_out = ptr.shape[0] - 1
    ntasks, ntiles, panel = _ntasks(mpad, n_out, tile)
    rs = np.int64(mpad) * 4
    for t in prange(ntasks):
        p0, pr, n0, n1 = _task(t, ntiles, panel, mpad, n_out, tile)
        nch = pr // 8
        buf = np.empty(tile * pr, dtype=np.int32)
        for n in range(n0, n1):
            o = np.int64(n - n0) * pr
            s, e = ptr[n], ptr[n + 1]
            c = 0
            xo = np.int64(p0) * 4
            while c + 8 <= nch:
                _rowdot8(xl, vals, cols, s, e, xo + c * 32, rs, buf, o + c * 8)
                c += 8
            for r in (4, 2, 1):  # the remaining chunks: at most one call of each width
                if c + r <= nch:
                    oc, xc = o + c * 8, xo + c * 32
                    if r == 4:
                        _rowdot4(xl, vals, cols, s, e, xc, rs, buf, oc)
                    elif r == 2:
                        _rowdot2(xl, vals, cols, s, e, xc, rs, buf, oc)
                    else:
                        _rowdot1(xl, vals, cols, s, e, xc, rs, buf, oc)
                    c += r
        _store_tile(buf, pr, min(pr, m - p0), n0, n1, tile, scale, bias, xscale, y, p0, act)


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
        _store_tile(buf, pr, min(pr, m - p0), n0, n1, tile, scale, bias, xscale, y, p0, act)


@njit(parallel=True, cache=_CACHE)
def block_gemm_slab(xl, mpad, m, sp, cols, vals, scale, bias, xscale, y, tile, act=0):
    """``block_gemm`` with K walked in slabs (``sp`` from ``vnni.slab_pointers``): one slab of
    the activation panel stays in L1 while every row of the tile uses it (dense-ish block rows,
    e.g. unstructured 90% -> ~34% of the 1x4 groups occupied)."""
    n_out = sp.shape[0]
    nslab = sp.shape[1] - 1
    ntasks, ntiles, panel = _ntasks(mpad, n_out, tile)
    rs = np.int64(mpad) * 4
    for t in prange(ntasks):
        p0, pr, n0, n1 = _task(t, ntiles, panel, mpad, n_out, tile)
        nch = pr // 8
        buf = np.zeros(tile * pr, dtype=np.int32)
        c0 = 0
        while c0 < nch:
            r = 8 if c0 + 8 <= nch else (4 if c0 + 4 <= nch else (2 if c0 + 2 <= nch else 1))
            xo = np.int64(p0) * 4 + c0 * 32
            for s_ in range(nslab):
                for n in range(n0, n1):
                    o = np.int64(n - n0) * pr + c0 * 8
                    s, e = sp[n, s_], sp[n, s_ + 1]
                    if e > s:
                        if r == 8:
                            _rowacc8(xl, vals, cols, s, e, xo, rs, buf, o)
                        elif r == 4:
                            _rowacc4(xl, vals, cols, s, e, xo, rs, buf, o)
                        elif r == 2:
                            _rowacc2(xl, vals, cols, s, e, xo, rs, buf, o)
                        else:
                            _rowacc1(xl, vals, cols, s, e, xo, rs, buf, o)
            c0 += r
        _store_tile(buf, pr, min(pr, m - p0), n0, n1, tile, scale, bias, xscale, y, p0, act)


@njit(parallel=True, cache=_CACHE)
def block_gemm_dense(xl, mpad, m, wd, groups, n_out, scale, bias, xscale, y, tile, act=0):
    """Full block rows (``dense_blocks``, rows padded to a multiple of ``tile``): 4 rows x 4
    chunks of 8 activation rows per register tile (measured: 4x4 > 2x4 > 4x2 at 768x3072)."""
    ntiles = (n_out + tile - 1) // tile
    nch = mpad // 8
    rs = np.int64(mpad) * 4
    g64 = np.int64(groups)
    for t in prange(ntiles):
        n0 = t * tile
        n1 = min(n_out, n0 + tile)
        buf = np.empty(tile * mpad, dtype=np.int32)
        c0 = 0
        while c0 < nch:
            r = 4 if c0 + 4 <= nch else (2 if c0 + 2 <= nch else 1)
            xo = np.int64(c0 * 32)
            for r0 in range(0, tile, 4):
                w0 = np.int64(n0 + r0) * g64
                oo = np.int64(r0) * mpad + c0 * 8
                if r == 4:
                    _multirow44(xl, wd, g64, w0, g64, xo, rs, buf, oo, np.int64(mpad))
                elif r == 2:
                    _multirow42(xl, wd, g64, w0, g64, xo, rs, buf, oo, np.int64(mpad))
                else:
                    _multirow41(xl, wd, g64, w0, g64, xo, rs, buf, oo, np.int64(mpad))
            c0 += r
        _store_tile(buf, mpad, m, n0, n1, tile, scale, bias, xscale, y, 0, act)


# ----------------------------------------------------------------------------- weight forms
def dense_blocks(ptr, cols, vals, n_out: int, groups: int, tile: int = 16) -> np.ndarray:
    """Zero-filled [ceil(N / tile) * tile, groups] int32 block matrix (flattened)."""
    npad = (n_out + tile - 1) // tile * tile
    wd = np.zeros((npad, groups), dtype=np.int32)
    wd[np.repeat(np.arange(n_out), np.diff(ptr)), cols] = vals
    return wd.ravel()

