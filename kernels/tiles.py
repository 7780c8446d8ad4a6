"""The batched block-row kernels of the AVX2 family and AVX-512 VNNI paths, written once:
``lanes`` (8: ymm, int8 activations; 16: zmm, u8 activations with the per-row compensation) is
a literal argument (``numba.literally``), so each width is its own compiled and cached
specialization (``tile_intrinsics``); ``avx2_gemm`` and ``vnni`` call them with 8 and 16.

* ``block_gemm``: sparse 1x4 block rows against R = 8/4/2/1 chunks of ``lanes`` activation rows
  held in registers; tasks are (panel of <= PANEL activation rows) x (``tile`` outputs),
  panel-major, so that a panel stays in L2 while the weights stream.
* ``block_gemm_slab``: the same with K walked in L1 slabs (dense-ish block rows, long K).
* ``block_gemm_dense``: full (zero-filled) block rows, a 4 rows x 4 chunks register tile.
* the epilogues: transpose in registers (8x8 or 16x16), dequantize, GELU on the tile.

Measured against the two copies they replace (same process, 2 threads, BERT-base shapes; see
kernels/README.md): same speed, and a new process loads both widths from Numba's cache.
"""

from __future__ import annotations

import numpy as np
from numba import literally, njit, prange

from .avx2_intrinsics import _CACHE, _epilogue8, _epilogue8_gelu
from .epilogue import gelu_block
from .tile_intrinsics import epilogue16, multirow, rowdot

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


# ----------------------------------------------------------------------------- epilogues
@njit(cache=_CACHE)
def store8(buf, mpad, m, n0, n1, tile, scale, bias, xscale, y, row0, act):
    """y[row0:row0+m, n0:n1] = buf (tile x mpad int32, row = feature) * xscale * scale + bias,
    8x8 tiles transposed in registers, then GELU on the tile when ``act`` is 1."""
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


@njit(cache=_CACHE)
def store16(buf, mpad, m, n0, n1, tile, comp, scale, bias, xscale, y, row0, act):
    """The 16-lane epilogue: y[row0 + i, n] = buf * sc + (bias - comp * sc) (the u8 operand's
    128 * sum(w) taken off), 16x16 tiles transposed in registers; GELU on the tile."""
    nt = n1 - n0
    sc = np.zeros(tile, dtype=np.float32)
    off = np.zeros(tile, dtype=np.float32)
    for j in range(nt):
        sc[j] = np.float32(xscale * scale[n0 + j])
        off[j] = np.float32(bias[n0 + j] - np.float64(comp[n0 + j]) * sc[j])
    done = 0
    if tile == 16 and nt == 16:
        ystride = np.int64(y.shape[1])
        while done + 16 <= m:
            epilogue16(buf, np.int64(done), np.int64(mpad), sc, off, y,
                       np.int64(row0 + done) * ystride + n0, ystride)
            done += 16
    for i in range(done, m):
        for j in range(nt):
            y[row0 + i, n0 + j] = np.float32(buf[j * mpad + i]) * sc[j] + off[j]
    if act == 1:
        gelu_block(y, row0, m, n0, n1)


@njit(inline="always")
def _store(buf, pr, rows, n0, n1, tile, comp, scale, bias, xscale, y, row0, act, lanes):
    if lanes == 16:
        store16(buf, pr, rows, n0, n1, tile, comp, scale, bias, xscale, y, row0, act)
    else:
        store8(buf, pr, rows, n0, n1, tile, scale, bias, xscale, y, row0, act)


# ----------------------------------------------------------------------------- kernels
@njit(parallel=True, cache=_CACHE)
def block_gemm(xl, mpad, m, ptr, cols, vals, comp, scale, bias, xscale, y, tile, act, lanes):
    """y[:m] = dequant(x_layout @ blocks.T); each block row runs against up to 8 chunks of
    ``lanes`` rows held in registers. ``comp``: the 16-lane path's per-row compensation."""
    literally(lanes)
    n_out = ptr.shape[0] - 1
    ntasks, ntiles, panel = _ntasks(mpad, n_out, tile)
    rs = np.int64(mpad) * 4
    for t in prange(ntasks):
        p0, pr, n0, n1 = _task(t, ntiles, panel, mpad, n_out, tile)
        nch = pr // lanes
        buf = np.empty(tile * pr, dtype=np.int32)
        xo = np.int64(p0) * 4
        for n in range(n0, n1):
            o = np.int64(n - n0) * pr
            s, e = ptr[n], ptr[n + 1]
            c = 0
            while c + 8 <= nch:
                rowdot(xl, vals, cols, s, e, xo + c * 4 * lanes, rs, buf, o + c * lanes, 8, 0, lanes)
                c += 8
            for r in (4, 2, 1):  # the remaining chunks: at most one call of each width
                if c + r <= nch:
                    oc, xc = o + c * lanes, xo + c * 4 * lanes
                    if r == 4:
                        rowdot(xl, vals, cols, s, e, xc, rs, buf, oc, 4, 0, lanes)
                    elif r == 2:
                        rowdot(xl, vals, cols, s, e, xc, rs, buf, oc, 2, 0, lanes)
                    else:
                        rowdot(xl, vals, cols, s, e, xc, rs, buf, oc, 1, 0, lanes)
                    c += r
        _store(buf, pr, min(pr, m - p0), n0, n1, tile, comp, scale, bias, xscale, y, p0, act, lanes)


@njit(parallel=True, cache=_CACHE)
def block_gemm_slab(xl, mpad, m, sp, cols, vals, comp, scale, bias, xscale, y, tile, act, lanes):
    """``block_gemm`` with K walked in slabs (``sp`` from ``slab_pointers``): one slab of the
    activation panel stays in L1 while every row of the tile uses it (dense-ish block rows)."""
    literally(lanes)
    n_out = sp.shape[0]
    nslab = sp.shape[1] - 1
    ntasks, ntiles, panel = _ntasks(mpad, n_out, tile)
    rs = np.int64(mpad) * 4
    for t in prange(ntasks):
        p0, pr, n0, n1 = _task(t, ntiles, panel, mpad, n_out, tile)
        nch = pr // lanes
        buf = np.zeros(tile * pr, dtype=np.int32)
        c0 = 0
        while c0 < nch:
            r = 8 if c0 + 8 <= nch else (4 if c0 + 4 <= nch else (2 if c0 + 2 <= nch else 1))
            xo = np.int64(p0) * 4 + c0 * 4 * lanes
            for s_ in range(nslab):
                for n in range(n0, n1):
                    o = np.int64(n - n0) * pr + c0 * lanes
                    s, e = sp[n, s_], sp[n, s_ + 1]
                    if e > s:
                        if r == 8:
                            rowdot(xl, vals, cols, s, e, xo, rs, buf, o, 8, 1, lanes)
                        elif r == 4:
                            rowdot(xl, vals, cols, s, e, xo, rs, buf, o, 4, 1, lanes)
                        elif r == 2:
                            rowdot(xl, vals, cols, s, e, xo, rs, buf, o, 2, 1, lanes)
                        else:
                            rowdot(xl, vals, cols, s, e, xo, rs, buf, o, 1, 1, lanes)
            c0 += r
        _store(buf, pr, min(pr, m - p0), n0, n1, tile, comp, scale, bias, xscale, y, p0, act, lanes)


@njit(parallel=True, cache=_CACHE)
def block_gemm_dense(xl, mpad, m, wd, groups, n_out, comp, scale, bias, xscale, y, tile, act,
                     lanes):
    """Full block rows (``dense_blocks``, rows padded to a multiple of ``tile``): 4 rows x 4
    chunks of ``lanes`` activation rows per register tile (measured on AVX2: 4x4 > 2x4 > 4x2 at
    768x3072)."""
    literally(lanes)
    ntiles = (n_out + tile - 1) // tile
    nch = mpad // lanes
    rs = np.int64(mpad) * 4
    g64 = np.int64(groups)
    for t in prange(ntiles):
        n0 = t * tile
        n1 = min(n_out, n0 + tile)
        buf = np.empty(tile * mpad, dtype=np.int32)
        c0 = 0
        while c0 < nch:
            r = 4 if c0 + 4 <= nch else (2 if c0 + 2 <= nch else 1)
            xo = np.int64(c0 * 4 * lanes)
            for r0 in range(0, tile, 4):
                w0 = np.int64(n0 + r0) * g64
                oo = np.int64(r0) * mpad + c0 * lanes
                if r == 4:
                    multirow(xl, wd, g64, w0, g64, xo, rs, buf, oo, np.int64(mpad), 4, 4, lanes)
                elif r == 2:
                    multirow(xl, wd, g64, w0, g64, xo, rs, buf, oo, np.int64(mpad), 4, 2, lanes)
                else:
                    multirow(xl, wd, g64, w0, g64, xo, rs, buf, oo, np.int64(mpad), 4, 1, lanes)
            c0 += r
        _store(buf, mpad, m, n0, n1, tile, comp, scale, bias, xscale, y, 0, act, lanes)


# ----------------------------------------------------------------------------- weight forms
def dense_blocks(ptr, cols, vals, n_out: int, groups: int, tile: int = 16) -> np.ndarray:
    """Zero-filled [ceil(N / tile) * tile, groups] int32 block matrix (flattened) of a block
    form: the input of ``block_gemm_dense``."""
    npad = (n_out + tile - 1) // tile * tile
    wd = np.zeros((npad, groups), dtype=np.int32)
    wd[np.repeat(np.arange(n_out), np.diff(ptr)), cols] = vals
    return wd.ravel()


def slab_pointers(ptr, cols, slab_groups: int) -> np.ndarray:
    """sp[n, s] = first block of row n whose group index >= s * slab_groups (cols sorted)."""
    n = ptr.shape[0] - 1
    ns = int(cols.max()) // slab_groups + 1 if cols.size else 1
    sp = np.empty((n, ns + 1), dtype=np.int32)
    for r in range(n):
        seg = cols[ptr[r]:ptr[r + 1]] // slab_groups
        sp[r] = ptr[r] + np.searchsorted(seg, np.arange(ns + 1), side="left")
    sp[:, ns] = ptr[1:]
    return sp
