"""AVX2 / AVX-VNNI latency path for M <= 8 (see ``kernels.avx2``): the weight rows are walked
once, 8 blocks at a time (``vpgatherdd`` of the activation quads, or a plain load for full rows),
with the few activation rows' accumulators held in registers; quantization, kernel and epilogue
run in one jitted call (one dispatch)."""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .avx2_intrinsics import (
    _CACHE,
    _I8,
    _I32,
    _I64,
    _V8,
    _VB,
    _c,
    _data,
    _dot_acc,
    _fn,
    _i64,
    _loadv,
    _storev,
    _weights,
)
from .epilogue import gelu_block
from .portable import scale_from_bits


# ----------------------------------------------------------------------------- M <= 8 (latency)
def _make_gemv(mrows: int, gather: bool):
    """For b in [start, end) step 8 (a multiple of 8 blocks): acc[m] += dot4 over 8 blocks at a
    time of the weight quads vals[b:b+8] and the activation quads of row m: gathered at
    xq[m*xstride + cols[b:b+8]] (``gather``) or loaded at xq[m*xstride + b - start].
    out[ooff + m] = horizontal sum of acc[m]."""

    @intrinsic
    def gemv(typingctx, xq, xstride, cols, vals, start, end, out, ooff):
        sig = types.void(xq, xstride, cols, vals, start, end, out, ooff)

        def codegen(context, builder, signature, args):
            xa, xs_, ca, va, s_, e_, oa, ooff_ = args
            t = signature.args
            xp, cp = _data(context, builder, t[0], xa, _I32), _data(context, builder, t[2], ca, _I32)
            vp, op = _data(context, builder, t[3], va, _I32), _data(context, builder, t[6], oa, _I32)
            s64 = _i64(builder, s_)
            accs = [cgutils.alloca_once_value(builder, ir.Constant(_V8, None)) for _ in range(mrows)]
            gfn = _fn(builder, "llvm.x86.avx2.gather.d.d.256", _V8, [_V8, _I8.as_pointer(), _V8, _V8, _I8])
            rows = [builder.gep(xp, [builder.mul(xs_, _c(m))]) for m in range(mrows)]
            with cgutils.for_range_slice(builder, s64, _i64(builder, e_), _c(8), intp=_I64) as (b, _):
                aw, sw = _weights(builder, _loadv(builder, vp, b, _V8))
                if gather:
                    idx = _loadv(builder, cp, b, _V8)
                for m in range(mrows):
                    if gather:
                        xv = builder.call(gfn, [ir.Constant(_V8, None),
                                                builder.bitcast(rows[m], _I8.as_pointer()), idx,
                                                ir.Constant(_V8, [-1] * 8), ir.Constant(_I8, 4)])
                        xv = builder.bitcast(xv, _VB)
                    else:
                        xv = _loadv(builder, rows[m], builder.sub(b, s64), _VB)
                    builder.store(_dot_acc(builder, builder.load(accs[m]), xv, aw, sw), accs[m])
            red = _fn(builder, "llvm.vector.reduce.add.v8i32", _I32, [_V8])
            for m in range(mrows):
                builder.store(builder.call(red, [builder.load(accs[m])]),
                              builder.gep(op, [builder.add(ooff_, _c(m))]))
            return context.get_dummy_value()

        return sig, codegen

    return gemv


_GEMV_G = tuple(_make_gemv(m, True) for m in range(1, 9))
_GEMV_D = tuple(_make_gemv(m, False) for m in range(1, 9))


def _gemv_dispatch(table):
    """One jitted call site per M (intrinsics are compile-time specialised)."""
    g1, g2, g3, g4, g5, g6, g7, g8 = table

    @njit(inline="always")
    def call(m, xq, xs, cols, vals, s, e, out, last):
        if m == 1:
            g1(xq, xs, cols, vals, s, e, out, last)
        elif m == 2:
            g2(xq, xs, cols, vals, s, e, out, last)
        elif m == 3:
            g3(xq, xs, cols, vals, s, e, out, last)
        elif m == 4:
            g4(xq, xs, cols, vals, s, e, out, last)
        elif m == 5:
            g5(xq, xs, cols, vals, s, e, out, last)
        elif m == 6:
            g6(xq, xs, cols, vals, s, e, out, last)
        elif m == 7:
            g7(xq, xs, cols, vals, s, e, out, last)
        else:
            g8(xq, xs, cols, vals, s, e, out, last)
    return call


_gemv_gather = _gemv_dispatch(_GEMV_G)
_gemv1_gather, _gemv1_dense = _GEMV_G[0], _GEMV_D[0]
_gemv_dense = _gemv_dispatch(_GEMV_D)


@njit(cache=_CACHE)
def _absmax_scale(x):
    """max|x| / 127 (1.0 for an all-zero x); -1.0 flags inf/nan."""
    b = np.int32(0)
    xi = x.reshape(-1).view(np.int32) if x.size else np.zeros(1, np.int32)
    for j in range(xi.shape[0]):
        b = max(b, xi[j] & np.int32(0x7FFFFFFF))
    return scale_from_bits(b)


@njit(cache=_CACHE)
def _quantize_rows(x, iv, qlo, qhi, kpad):
    """float32 [M, K] -> int8 codes [M, kpad] (zero padded), serial (a separate function so
    that the allocation does not become a parallel region of the caller); an empty array when
    a code is < -127. Branch-free inner loop (the -127 check after it), so LLVM vectorizes it:
    ~1.5 us less than an early-exit loop at K = 3072."""
    m, k = x.shape
    xq = np.zeros((m, kpad), dtype=np.int8)
    lo = np.int32(0)
    for i in range(m):
        for kk in range(k):
            v = np.rint(x[i, kk] * iv)
            v = qlo if v < qlo else v
            v = qhi if v > qhi else v
            c = np.int32(v)
            lo = min(lo, c)
            xq[i, kk] = np.int8(c)
    if lo < -127:
        return np.empty((0, kpad), dtype=np.int8)
    return xq


@njit(cache=_CACHE)
def _quantize_quads(x, sx, dynamic, qlo, qhi):
    """(int32 activation quads [M * G8], zero padded; G8; the scale): the dynamic max|x|/127
    scale or the static ``sx``. Scale -1: inf/nan in x; -2: a code < -127 (nothing computed)."""
    g8 = ((x.shape[1] + 3) // 4 + 7) // 8 * 8
    if dynamic:
        sx = _absmax_scale(x)
        if sx < 0:
            return np.zeros(0, np.int32), g8, -1.0
    xq = _quantize_rows(x, np.float32(1.0 / sx), qlo, qhi, g8 * 4)
    if xq.shape[0] == 0:
        return np.zeros(0, np.int32), g8, -2.0
    return xq.reshape(-1).view(np.int32), g8, sx


@njit(parallel=True, cache=_CACHE)
def gemv(x, sx, dynamic, qlo, qhi, ptr8, cols8, vals8, gather, scale, bias, y, rows_per_task,
         act=0):
    """M <= 8 in one call: quantize x (dynamic max|x|/127 scale, or the static ``sx``) to int8
    quads [M][G8], walk each (8-block padded) weight row once for all M rows, dequantize.
    Returns the activation scale (-1: inf/nan in x; -2: a code < -127, nothing computed)."""
    m = x.shape[0]
    x32, g8, sx = _quantize_quads(x, sx, dynamic, qlo, qhi)
    if sx < 0:
        return sx
    n_out = ptr8.shape[0] - 1
    ntasks = (n_out + rows_per_task - 1) // rows_per_task
    for t in prange(ntasks):
        acc = np.empty(8, dtype=np.int32)
        for n in range(t * rows_per_task, min(n_out, (t + 1) * rows_per_task)):
            s, e = np.int64(ptr8[n]), np.int64(ptr8[n + 1])
            if gather:
                _gemv_gather(m, x32, np.int64(g8), cols8, vals8, s, e, acc, np.int64(0))
            else:
                _gemv_dense(m, x32, np.int64(g8), cols8, vals8, s, e, acc, np.int64(0))
            sc = np.float32(sx * scale[n])
            for i in range(m):
                y[i, n] = np.float32(acc[i]) * sc + bias[n]
        if act == 1:
            r0 = t * rows_per_task
            gelu_block(y, 0, m, r0, min(n_out, r0 + rows_per_task))
    return sx


@njit(parallel=True, cache=_CACHE)
def gemv1(x, sx, dynamic, qlo, qhi, ptr8, cols8, vals8, gather, scale, bias, y, rows_per_task,
          act=0):
    """``gemv`` for M = 1 (batch-1 latency): the same, with the one-row kernel called directly
    (no per-row dispatch on M: ~15-25% faster at BERT-base shapes)."""
    x32, g8, sx = _quantize_quads(x, sx, dynamic, qlo, qhi)
    if sx < 0:
        return sx
    n_out = ptr8.shape[0] - 1
    ntasks = (n_out + rows_per_task - 1) // rows_per_task
    accs = np.empty(n_out, dtype=np.int32)
    for t in prange(ntasks):
        r0, r1 = t * rows_per_task, min(n_out, (t + 1) * rows_per_task)
        for n in range(r0, r1):  # the kernel stores row n's sum at accs[n]
            if gather:
                _gemv1_gather(x32, np.int64(g8), cols8, vals8, np.int64(ptr8[n]),
                              np.int64(ptr8[n + 1]), accs, np.int64(n))
            else:
                _gemv1_dense(x32, np.int64(g8), cols8, vals8, np.int64(ptr8[n]),
                             np.int64(ptr8[n + 1]), accs, np.int64(n))
        for n in range(r0, r1):  # contiguous: vectorized dequantize
            y[0, n] = np.float32(accs[n]) * np.float32(sx * scale[n]) + bias[n]
        if act == 1:
            gelu_block(y, 0, 1, r0, r1)
    return sx



# ----------------------------------------------------------------------------- weight form
def gemv_form(ptr, cols, vals, n_out: int, groups: int, dense: bool):
    """Rows padded to a multiple of 8 blocks (zero blocks at group 0) for ``gemv``: (ptr8,
    cols8, vals8). ``dense``: every row holds all ceil(G/8)*8 groups in order (no gather).
    (Tried: no padding, 8 blocks of any rows per gather, then per-row segment sums: 2x slower.)"""
    g8 = (groups + 7) // 8 * 8
    if dense:
        wd = np.zeros((n_out, g8), dtype=np.int32)
        wd[np.repeat(np.arange(n_out), np.diff(ptr)), cols] = vals
        return (np.arange(n_out + 1, dtype=np.int64) * g8, np.zeros(8, np.int32), wd.ravel())
    counts = np.diff(ptr)
    padded = (counts + 7) // 8 * 8
    ptr8 = np.zeros(n_out + 1, dtype=np.int64)
    np.cumsum(padded, out=ptr8[1:])
    cols8 = np.zeros(int(ptr8[-1]) + 8, dtype=np.int32)
    vals8 = np.zeros(int(ptr8[-1]) + 8, dtype=np.int32)
    dst = np.repeat(ptr8[:-1] - ptr[:-1], counts) + np.arange(int(ptr[-1]))
    cols8[dst], vals8[dst] = cols, vals
    return ptr8, cols8, vals8


# ----------------------------------------------------------------------------- M = 1, no gathers
@intrinsic
def _gemv1_window(typingctx, xq, off, sel, wv, s0, s1, out, ooff):
    """8 weight rows at once, one lane per row: for s in [s0, s1), the 8 activation quads (one
    ymm) from quad off[s] on are permuted to the lanes (``vpermd`` by sel[8s:8s+8], int8) and
    dotted with the 8 rows' weight quads wv[8s:8s+8]; out[ooff:ooff+8] = the 8 rows' sums. No
    gather (~12 cycles each on Zen 3), no per-row reduction."""
    sig = types.void(xq, off, sel, wv, s0, s1, out, ooff)

    def codegen(context, builder, signature, args):
        xa, fa, sa, va, s0_, s1_, oa, ooff_ = args
        t = signature.args
        xp, fp = _data(context, builder, t[0], xa, _I32), _data(context, builder, t[1], fa, _I32)
        sp, vp = _data(context, builder, t[2], sa, _I8), _data(context, builder, t[3], va, _I32)
        op = _data(context, builder, t[6], oa, _I32)
        perm = _fn(builder, "llvm.x86.avx2.permd", _V8, [_V8, _V8])
        acc = cgutils.alloca_once_value(builder, ir.Constant(_V8, None))
        with cgutils.for_range_slice(builder, _i64(builder, s0_), _i64(builder, s1_), _c(1),
                                     intp=_I64) as (s, _):
            b = builder.mul(s, _c(8))
            xwin = _loadv(builder, xp, builder.sext(builder.load(builder.gep(fp, [s])), _I64), _V8)
            sel = builder.zext(_loadv(builder, sp, b, ir.VectorType(_I8, 8)), _V8)
            xv = builder.bitcast(builder.call(perm, [xwin, sel]), _VB)
            aw, sw = _weights(builder, _loadv(builder, vp, b, _V8))
            builder.store(_dot_acc(builder, builder.load(acc), xv, aw, sw), acc)
        _storev(builder, builder.load(acc), op, _i64(builder, ooff_))
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=_CACHE)
def _schedule(ptr, cols, vals, n_out, last, lanes):
    """Greedy steps of the window kernels: per group of ``lanes`` rows (one lane each, blocks
    in column order), a step's window of ``lanes`` quads starts at the smallest next column of
    the group's lanes (clamped to ``last``) and every lane whose next block falls inside takes
    it."""
    ngroups = (n_out + lanes - 1) // lanes
    cap = cols.size + ngroups
    gptr = np.zeros(ngroups + 1, np.int64)
    off = np.empty(cap, np.int32)
    sel = np.zeros((cap, lanes), np.int8)
    wv = np.zeros((cap, lanes), np.int32)
    pos = np.empty(lanes, np.int64)
    s = 0
    for g in range(ngroups):
        r0, r1 = g * lanes, min(n_out, g * lanes + lanes)
        for r in range(r0, r1):
            pos[r - r0] = ptr[r]
        while True:
            lo = np.int64(1) << 40
            for r in range(r0, r1):
                if pos[r - r0] < ptr[r + 1]:
                    lo = min(lo, np.int64(cols[pos[r - r0]]))
            if lo == np.int64(1) << 40:
                break
            o = min(lo, last)
            off[s] = o
            for r in range(r0, r1):
                b = pos[r - r0]
                if b < ptr[r + 1] and cols[b] < o + lanes:
                    sel[s, r - r0] = cols[b] - o
                    wv[s, r - r0] = vals[b]
                    pos[r - r0] = b + 1
            s += 1
        gptr[g + 1] = s
    return gptr, off[:s].copy(), sel[:s].copy().ravel(), wv[:s].copy().ravel()


def window_form(ptr, cols, vals, n_out: int, groups: int, lanes: int = 8):
    """Sparse block rows for the window kernels (``gemv1_window``: 8 lanes, ymm; the VNNI
    path's ``vnni_latency.gemv1_window16``: 16): rows in groups of ``lanes`` (one lane each),
    each group's blocks packed greedily into steps over a sliding window of ``lanes``
    activation quads: ~0.49 of the lanes busy at 90% block1x4 with 8 (windows fixed at
    multiples of 8 quads: ~0.38, 1.3-1.6x slower; a 16-quad window on 8 lanes, two ``vpermd``
    + ``vblendvps``: 0.62 busy, no faster on Zen 3). Returns (gptr int64 [groups + 1], off
    int32 [steps], sel int8 [steps * lanes], wv int32 [steps * lanes]); the activations must
    hold ceil(groups / lanes) * lanes quads."""
    gpad = (groups + lanes - 1) // lanes * lanes
    return _schedule(np.asarray(ptr, np.int64), np.asarray(cols, np.int32),
                     np.asarray(vals, np.int32), n_out, gpad - lanes, lanes)


@njit(parallel=True, cache=_CACHE)
def gemv1_window(x, sx, dynamic, qlo, qhi, gptr, off, sel, wv, scale, bias, y, groups_per_task,
                 act=0):
    """M = 1 on ``window_form`` weights: quantize, ``_gemv1_window`` per group of 8 rows,
    dequantize (+ GELU), in one call. Returns the activation scale (-1 / -2 as ``gemv``)."""
    x32, g8, sx = _quantize_quads(x, sx, dynamic, qlo, qhi)
    if sx < 0:
        return sx
    n_out = y.shape[1]
    ngroups = gptr.shape[0] - 1
    ntasks = (ngroups + groups_per_task - 1) // groups_per_task
    accs = np.empty(ngroups * 8, dtype=np.int32)
    for t in prange(ntasks):
        g0, g1 = t * groups_per_task, min(ngroups, (t + 1) * groups_per_task)
        for g in range(g0, g1):
            _gemv1_window(x32, off, sel, wv, gptr[g], gptr[g + 1], accs, np.int64(g * 8))
        r0, r1 = g0 * 8, min(n_out, g1 * 8)
        for n in range(r0, r1):
            y[0, n] = np.float32(accs[n]) * np.float32(sx * scale[n]) + bias[n]
        if act == 1:
            gelu_block(y, 0, 1, r0, r1)
    return sx
