"""AVX2 / AVX-VNNI 2:4 kernel with the output rows in the vector lanes (``nm_gemm``).

Every group of 4 weights holds at most 2 nonzeros, so the nonzeros of two groups (8 inputs) are
one 4-byte quad per output row. A ymm holds that quad for 8 output rows; for one activation row
the 16 bytes [x(8 inputs) | -x(8 inputs)] are broadcast to both 128-bit lanes and one
``vpshufb`` with a stored per-row mask picks, for every weight byte, the activation it meets
*with the weight's sign already applied* (index p or p + 8). So the sign trick costs nothing:
``vpmaddubsw(|w|, picked)`` + ``vpmaddwd`` + add (or one ``vpdpbusd``) per 8 rows x 4 MACs,
4 vector ops where the weight-broadcast pair kernel (``block_gemm_pairs``) needs 7-8.
Exact: |w| <= 128 (u8), picked codes in [-127, 127], pair sums <= 32512. Codes of -128 (static
scale with the default clamp) are flagged by ``quantize_signed`` (the caller falls back).

Weights of a block of 8 rows stay in L1 while a panel of activation rows streams past them;
R = 8/4/2/1 activation rows' accumulators sit in registers. The accumulators come out as
[activation row][8 outputs]: the dequantizing epilogue stores 8 contiguous floats, no transpose.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .avx2_gemm import dynamic_scale, quantize_rows
from .avx2_intrinsics import (
    _CACHE,
    _I8,
    _I32,
    _V8,
    _VB,
    _c,
    _data,
    _fn,
    _i64,
    _loadv,
    _quant8_signed,
    _storev,
    _udot_acc,
)
from .epilogue import gelu_block

ROWS = 8  # output rows per vector (lanes)
PANEL_BYTES = 192 * 1024  # activation panel ([rows][GP][16] int8) kept in L2


# ----------------------------------------------------------------------------- weight form
def nm_lane_form(q: np.ndarray):
    """(|w| uint8, masks uint8, GP) for ``nm_gemm``, or None when some group of 4 holds more
    than 2 nonzeros. Both arrays are [ceil(N/8)][GP][8 rows][4 slots] flattened; GP =
    ceil(ceil(K/4) / 2). Slots 0-1: group 2gp's two positions, 2-3: group 2gp+1's (nonzeros
    first); mask byte = input position in the 8-input window (0..7), + 8 for a negative weight."""
    n, k = q.shape
    g = (k + 3) // 4
    gp = (g + 1) // 2
    qp = np.zeros((n, gp * 2, 4), dtype=np.int16)
    qp.reshape(n, -1)[:, :k] = q
    nz = qp != 0
    if np.any(nz.sum(axis=2) > 2):
        return None
    pos = np.sort(np.argsort(~nz, axis=2, kind="stable")[:, :, :2], axis=2)  # [n, 2gp, 2]
    vals = np.take_along_axis(qp, pos, axis=2)
    window = pos + 4 * (np.arange(2 * gp) % 2)[None, :, None]  # group 2gp+1 -> inputs 4..7
    nb = (n + ROWS - 1) // ROWS
    aw = np.zeros((nb * ROWS, gp, 4), dtype=np.uint8)
    mk = np.zeros((nb * ROWS, gp, 4), dtype=np.uint8)
    aw[:n] = np.abs(vals).reshape(n, gp, 4).astype(np.uint8)
    mk[:n] = (window + 8 * (vals < 0)).reshape(n, gp, 4).astype(np.uint8)

    def lanes(a):  # [nb*8, gp, 4] -> [nb, gp, 8, 4]
        return np.ascontiguousarray(a.reshape(nb, ROWS, gp, 4).transpose(0, 2, 1, 3)).ravel()

    return lanes(aw), lanes(mk), gp


# ----------------------------------------------------------------------------- activations
@njit(parallel=True, cache=_CACHE)
def quantize_signed(x, inv, qlo, qhi, ngp):
    """float32 [M, K] -> (int8 [M][GP][16]: per 8 inputs the codes, then their negations, zero
    padded past K; True when some code is -128, whose negation int8 cannot hold). Blocks of 8
    rows: the inputs up to the last multiple of 8 in registers (``_quant8_signed``), the rest
    (and a block past the last row) in scalar code."""
    m, k = x.shape
    out = np.empty(m * ngp * 16, dtype=np.int8)
    nblk = (m + 7) // 8
    bad = np.zeros(nblk, dtype=np.bool_)
    for blk in prange(nblk):
        base = blk * 8
        kv = k // 8 if base + 8 <= m else 0
        lo = np.int32(0)
        if kv > 0:
            lo = _quant8_signed(x, np.int64(base) * k, np.int64(k), np.int64(kv), inv, qlo, qhi,
                                out, np.int64(base) * ngp * 16, np.int64(ngp) * 16)
        tmp = np.zeros((8, (ngp - kv) * 8), dtype=np.int8)
        lo = min(lo, quantize_rows(x, base, inv, qlo, qhi, tmp, kv * 8))
        for r in range(min(8, m - base)):
            o = np.int64(base + r) * ngp * 16
            for g in range(kv, ngp):
                for b in range(8):
                    v = tmp[r, (g - kv) * 8 + b]
                    out[o + g * 16 + b] = v
                    out[o + g * 16 + 8 + b] = -v
        bad[blk] = lo < -127
    return out, bad.any()


@njit(cache=_CACHE)
def quantize_signed_dynamic(x, qlo, qhi, ngp):
    """``quantize_signed`` with the dynamic scale max|x| / 127 computed in the same call.
    Returns (windows, bad, scale); scale -1: inf/nan in x."""
    sx = dynamic_scale(x)
    if sx < 0:
        return np.empty(0, np.int8), False, sx
    xs, bad = quantize_signed(x, np.float32(1.0 / sx), qlo, qhi, ngp)
    return xs, bad, sx


# ----------------------------------------------------------------------------- intrinsic
_BCAST16 = ir.Constant(ir.VectorType(_I32, 32), list(range(16)) * 2)


def _make_lanes(nrows: int):
    """out[ooff + 8r + l] = sum over gp < ngp of dot4(aw[woff + 32gp + 4l : +4],
    pshufb(bcast16(x[xoff + r*xstride + 16gp]), mk[woff + 32gp + 4l : +4])) for r < nrows."""

    @intrinsic
    def lanes(typingctx, xl, aw, mk, ngp, woff, xoff, xstride, out, ooff):
        sig = types.void(xl, aw, mk, ngp, woff, xoff, xstride, out, ooff)

        def codegen(context, builder, signature, args):
            xa, wa, ma, ng_, wo_, xo_, xs_, oa, oo_ = args
            t = signature.args
            xp, wp = _data(context, builder, t[0], xa, _I8), _data(context, builder, t[1], wa, _I8)
            mp, op = _data(context, builder, t[2], ma, _I8), _data(context, builder, t[7], oa, _I32)
            shuf = _fn(builder, "llvm.x86.avx2.pshuf.b", _VB, [_VB, _VB])
            v16 = ir.VectorType(_I8, 16)
            accs = [cgutils.alloca_once_value(builder, ir.Constant(_V8, None))
                    for _ in range(nrows)]
            xo_, xs_ = _i64(builder, xo_), _i64(builder, xs_)
            with cgutils.for_range_slice(builder, _c(0), _i64(builder, ng_), _c(1),
                                         intp=ir.IntType(64)) as (gp, _):
                wi = builder.add(_i64(builder, wo_), builder.mul(gp, _c(32)))
                wv, mv = _loadv(builder, wp, wi, _VB), _loadv(builder, mp, wi, _VB)
                xg = builder.add(xo_, builder.mul(gp, _c(16)))
                for r in range(nrows):
                    x16 = _loadv(builder, xp, builder.add(xg, builder.mul(xs_, _c(r))), v16)
                    xb = builder.shuffle_vector(x16, x16, _BCAST16)
                    s = builder.call(shuf, [xb, mv])
                    builder.store(_udot_acc(builder, builder.load(accs[r]), wv, s), accs[r])
            for r in range(nrows):
                _storev(builder, builder.load(accs[r]), op, builder.add(oo_, _c(8 * r)))
            return context.get_dummy_value()

        return sig, codegen

    return lanes


_lanes8, _lanes4, _lanes2, _lanes1 = (_make_lanes(r) for r in (8, 4, 2, 1))


# ----------------------------------------------------------------------------- kernel
@njit(parallel=True, cache=_CACHE)
def nm_gemm(xs, m, aw, mk, ngp, n_out, scale, bias, xscale, y, panel, tile, act=0):
    """y[:m] = dequant(x @ W.T) for the 2:4 lane form (``nm_lane_form``, activations from
    ``quantize_signed``). Tasks: (panel of activation rows) x (tile of 8-row blocks),
    panel-major; ``act`` 1 = GELU epilogue."""
    nblk = (n_out + ROWS - 1) // ROWS
    ntiles = (nblk + tile - 1) // tile
    npan = (m + panel - 1) // panel
    xstride = np.int64(ngp) * 16
    for t in prange(npan * ntiles):
        p0 = (t // ntiles) * panel
        p1 = min(m, p0 + panel)
        b0 = (t % ntiles) * tile
        buf = np.empty(8 * ROWS, dtype=np.int32)
        sc = np.empty(ROWS, dtype=np.float32)
        off = np.empty(ROWS, dtype=np.float32)
        for blk in range(b0, min(nblk, b0 + tile)):
            n0 = blk * ROWS
            nt = min(ROWS, n_out - n0)
            for j in range(nt):
                sc[j] = np.float32(xscale * scale[n0 + j])
                off[j] = bias[n0 + j]
            woff = np.int64(blk) * ngp * 32
            i = p0
            while i < p1:
                r = 8 if i + 8 <= p1 else (4 if i + 4 <= p1 else (2 if i + 2 <= p1 else 1))
                xo = np.int64(i) * xstride
                if r == 8:
                    _lanes8(xs, aw, mk, ngp, woff, xo, xstride, buf, np.int64(0))
                elif r == 4:
                    _lanes4(xs, aw, mk, ngp, woff, xo, xstride, buf, np.int64(0))
                elif r == 2:
                    _lanes2(xs, aw, mk, ngp, woff, xo, xstride, buf, np.int64(0))
                else:
                    _lanes1(xs, aw, mk, ngp, woff, xo, xstride, buf, np.int64(0))
                if nt == ROWS:
                    for rr in range(r):
                        for j in range(ROWS):
                            y[i + rr, n0 + j] = np.float32(buf[rr * ROWS + j]) * sc[j] + off[j]
                else:
                    for rr in range(r):
                        for j in range(nt):
                            y[i + rr, n0 + j] = np.float32(buf[rr * ROWS + j]) * sc[j] + off[j]
                i += r
            if act == 1:
                gelu_block(y, p0, p1 - p0, n0, n0 + nt)


def panel_rows(ngp: int) -> int:
    """Activation rows per panel: [rows][GP][16] bytes within ``PANEL_BYTES``, multiple of 8."""
    return max(8, PANEL_BYTES // (ngp * 16) // 8 * 8)
