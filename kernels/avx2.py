"""AVX2 (and AVX-VNNI) int8 kernels emitted from Numba through llvmlite IR intrinsics.

Dot product without VNNI: ``vpmaddubsw`` (u8 x s8 pairs -> saturating int16) + ``vpmaddwd``
(int16 pairs x 1 -> int32). Saturation is avoided by the *sign trick*, not by 7-bit activations
or split pairs: the unsigned operand is |w| (<= 128) and the signed one is psign(x, w) =
x * sign(w), so every product is |w| * |x| <= 128 * 127 = 16256 and a pair sum <= 32512 fits
int16: exact for full 8-bit weights and activation codes in [-127, 127]. (An activation code of
-128, possible only with a static scale and the default [-128, 127] clamp, is flagged by the
quantize pass and that call runs on the portable kernels.) Activations stay signed: no +128
offset and no compensation term. On AVX-VNNI (``isa="avx_vnni"``) one VEX ``vpdpbusd`` does the
same u8 x s8 4-way dot-accumulate.

Kernels (one intrinsic generator each, register-blocked):
* ``block_gemm``: sparse 1x4 block rows x R = 8/4/2/1 chunks of 8 activation rows in ymm
  registers; activations laid out [K/4][Mpad][4] int8 (one 32-bit quad per row and group).
* ``block_gemm_dense``: full block rows (2:4, dense): a 4 rows x 2 chunks register tile, one
  activation load feeds 4 weight rows.
* ``gemv``: the latency path for M <= 8: the weight rows are walked once, 8 blocks at a time
  (``vpgatherdd`` of the activation quads, or a plain load for full rows), with the few
  activation rows' accumulators held in registers. Quantization, kernel and epilogue run in one
  jitted call (one dispatch).

Import only where ``cpu.kernel_path()`` allows it (compiling AVX2 code elsewhere fails).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .cpu import kernel_path

_I1, _I8, _I16 = ir.IntType(1), ir.IntType(8), ir.IntType(16)
_I32, _I64 = ir.IntType(32), ir.IntType(64)
_VB = ir.VectorType(_I8, 32)
_VH = ir.VectorType(_I16, 16)
_V8 = ir.VectorType(_I32, 8)
_F32 = ir.FloatType()
_VF8 = ir.VectorType(_F32, 8)
ISA = "avx_vnni" if kernel_path() == "avx_vnni" else "avx2"
_CACHE = ISA == "avx2"  # the AVX-VNNI build is not cached: it would share avx2's cache entries


def _fn(builder, name, ret, args):
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(ret, args), name)


def _dot_acc(builder, acc, xv, aw, sw):
    """acc (v8i32) += 4-way dot of the bytes of xv (activation codes, s8) and the weights
    (aw = |w| as u8, sw = w): exact, see the module docstring."""
    s = builder.call(_fn(builder, "llvm.x86.avx2.psign.b", _VB, [_VB, _VB]), [xv, sw])
    if ISA == "avx_vnni":
        f = _fn(builder, "llvm.x86.avx512.vpdpbusd.256", _V8, [_V8, _V8, _V8])
        return builder.call(f, [acc, builder.bitcast(aw, _V8), builder.bitcast(s, _V8)])
    p = builder.call(_fn(builder, "llvm.x86.avx2.pmadd.ub.sw", _VH, [_VB, _VB]), [aw, s])
    q = builder.call(_fn(builder, "llvm.x86.avx2.pmadd.wd", _V8, [_VH, _VH]),
                     [p, ir.Constant(_VH, [1] * 16)])
    return builder.add(acc, q)


def _weights(builder, w32):
    """(|w| bytes, w bytes) of a v8i32 of weight quads."""
    sw = builder.bitcast(w32, _VB)
    aw = builder.call(_fn(builder, "llvm.abs.v32i8", _VB, [_VB, _I1]), [sw, ir.Constant(_I1, 0)])
    return aw, sw


def _bcast(builder, val):
    v = builder.insert_element(ir.Constant(_V8, ir.Undefined), val, ir.Constant(_I32, 0))
    return builder.shuffle_vector(v, v, ir.Constant(_V8, [0] * 8))


def _data(context, builder, ty, val, elt):
    return builder.bitcast(context.make_array(ty)(context, builder, val).data, elt.as_pointer())


def _i64(builder, v):
    return builder.sext(v, _I64) if v.type.width < 64 else v


def _loadv(builder, base, idx, vty):
    return builder.load(builder.bitcast(builder.gep(base, [idx]), vty.as_pointer()), align=1)


def _storev(builder, val, base, idx):
    builder.store(val, builder.bitcast(builder.gep(base, [idx]), val.type.as_pointer()), align=1)


def _c(v):
    return ir.Constant(_I64, v)


# ----------------------------------------------------------------------------- sparse block rows
def _make_rowdot(nchunks: int, accumulate: bool = False):
    """out[ooff + 8i + l] (+)= sum over blocks b in [start, end) of dot4(x[cols[b]*rs + xoff + 32i
    + 4l : +4], vals[b]) for i < nchunks (chunk i = activation rows 8i..8i+7 after xoff)."""

    @intrinsic
    def rowdot(typingctx, xl, vals, cols, start, end, xoff, rowstride, out, ooff):
        sig = types.void(xl, vals, cols, start, end, xoff, rowstride, out, ooff)

        def codegen(context, builder, signature, args):
            xa, va, ca, s_, e_, xoff_, rs_, oa, ooff_ = args
            t = signature.args
            xp, vp = _data(context, builder, t[0], xa, _I8), _data(context, builder, t[1], va, _I32)
            cp, op = _data(context, builder, t[2], ca, _I32), _data(context, builder, t[7], oa, _I32)
            accs = [cgutils.alloca_once_value(builder, ir.Constant(_V8, None))
                    for _ in range(nchunks)]
            if accumulate:
                for i in range(nchunks):
                    builder.store(_loadv(builder, op, builder.add(ooff_, _c(8 * i)), _V8), accs[i])
            with cgutils.for_range_slice(builder, _i64(builder, s_), _i64(builder, e_), _c(1),
                                         intp=_I64) as (b, _):
                col = builder.sext(builder.load(builder.gep(cp, [b])), _I64)
                aw, sw = _weights(builder, _bcast(builder, builder.load(builder.gep(vp, [b]))))
                base = builder.add(builder.mul(col, rs_), xoff_)
                for i in range(nchunks):
                    xv = _loadv(builder, xp, builder.add(base, _c(32 * i)), _VB)
                    builder.store(_dot_acc(builder, builder.load(accs[i]), xv, aw, sw), accs[i])
            for i in range(nchunks):
                _storev(builder, builder.load(accs[i]), op, builder.add(ooff_, _c(8 * i)))
            return context.get_dummy_value()

        return sig, codegen

    return rowdot


_rowdot8, _rowdot4, _rowdot2, _rowdot1 = (_make_rowdot(c) for c in (8, 4, 2, 1))
_rowacc8, _rowacc4, _rowacc2, _rowacc1 = (_make_rowdot(c, True) for c in (8, 4, 2, 1))


# ----------------------------------------------------------------------------- full block rows
def _make_multirow(nrows: int, nchunks: int):
    """Full (zero-filled) block rows: for g < ngroups, r < nrows, c < nchunks:
    acc[r][c] += dot4(x[g*rs + xoff + 32c], w[wrow0 + r*wstride + g]); then
    out[ooff + r*ostride + 8c : +8] = acc[r][c]. One activation load feeds nrows rows."""

    @intrinsic
    def multirow(typingctx, xl, wv, ngroups, wrow0, wstride, xoff, rowstride, out, ooff, ostride):
        sig = types.void(xl, wv, ngroups, wrow0, wstride, xoff, rowstride, out, ooff, ostride)

        def codegen(context, builder, signature, args):
            xa, wa, ng_, w0_, ws_, xoff_, rs_, oa, ooff_, os_ = args
            t = signature.args
            xp, wp = _data(context, builder, t[0], xa, _I8), _data(context, builder, t[1], wa, _I32)
            op = _data(context, builder, t[7], oa, _I32)
            accs = [[cgutils.alloca_once_value(builder, ir.Constant(_V8, None))
                     for _ in range(nchunks)] for _ in range(nrows)]
            with cgutils.for_range_slice(builder, _c(0), ng_, _c(1), intp=_I64) as (g, _):
                base = builder.add(builder.mul(g, rs_), xoff_)
                xs = [_loadv(builder, xp, builder.add(base, _c(32 * c)), _VB) for c in range(nchunks)]
                for r in range(nrows):
                    widx = builder.add(builder.add(w0_, builder.mul(ws_, _c(r))), g)
                    aw, sw = _weights(builder, _bcast(builder, builder.load(builder.gep(wp, [widx]))))
                    for c in range(nchunks):
                        slot = accs[r][c]
                        builder.store(_dot_acc(builder, builder.load(slot), xs[c], aw, sw), slot)
            for r in range(nrows):
                for c in range(nchunks):
                    idx = builder.add(builder.add(ooff_, builder.mul(os_, _c(r))), _c(8 * c))
                    _storev(builder, builder.load(accs[r][c]), op, idx)
            return context.get_dummy_value()

        return sig, codegen

    return multirow


_multirow44, _multirow42, _multirow41 = (_make_multirow(4, c) for c in (4, 2, 1))


# ----------------------------------------------------------------------------- 2:4 (<= 2 of 4)
def _make_pairsel(nrows: int, nchunks: int):
    """Rows with at most 2 nonzeros in every group of 4 (2:4): the nonzeros of two groups are
    one weight quad, so one (vpmaddubsw, vpmaddwd) pair does the work of two groups. The
    activation bytes each row needs are picked per row and group pair with two ``vpshufb`` (masks
    from a 36-entry table indexed by the pair's pattern), which run on the shuffle ports, not the
    multiply ports that bound the full-row kernel. For gp < ngp: x_sel = pshufb(x[2gp], ma) |
    pshufb(x[2gp+1], mb); acc[r][c] += dot4(x_sel, wq[w0 + r*ws + gp])."""

    @intrinsic
    def pairsel(typingctx, xl, wq, combo, masks, ngp, wrow0, wstride, xoff, rowstride, out, ooff,
                ostride):
        sig = types.void(xl, wq, combo, masks, ngp, wrow0, wstride, xoff, rowstride, out, ooff,
                         ostride)

        def codegen(context, builder, signature, args):
            xa, wa, ca, ma, ng_, w0_, ws_, xoff_, rs_, oa, ooff_, os_ = args
            t = signature.args
            xp, wp = _data(context, builder, t[0], xa, _I8), _data(context, builder, t[1], wa, _I32)
            cp, mp = _data(context, builder, t[2], ca, _I32), _data(context, builder, t[3], ma, _I8)
            op = _data(context, builder, t[9], oa, _I32)
            shuf = _fn(builder, "llvm.x86.avx2.pshuf.b", _VB, [_VB, _VB])
            accs = [[cgutils.alloca_once_value(builder, ir.Constant(_V8, None))
                     for _ in range(nchunks)] for _ in range(nrows)]
            with cgutils.for_range_slice(builder, _c(0), ng_, _c(1), intp=_I64) as (gp, _):
                base = builder.add(builder.mul(builder.mul(gp, _c(2)), rs_), xoff_)
                xa_ = [_loadv(builder, xp, builder.add(base, _c(32 * c)), _VB) for c in range(nchunks)]
                xb_ = [_loadv(builder, xp, builder.add(builder.add(base, rs_), _c(32 * c)), _VB)
                       for c in range(nchunks)]
                for r in range(nrows):
                    widx = builder.add(builder.add(w0_, builder.mul(ws_, _c(r))), gp)
                    aw, sw = _weights(builder, _bcast(builder, builder.load(builder.gep(wp, [widx]))))
                    moff = builder.mul(builder.sext(builder.load(builder.gep(cp, [widx])), _I64), _c(64))
                    mska = _loadv(builder, mp, moff, _VB)
                    mskb = _loadv(builder, mp, builder.add(moff, _c(32)), _VB)
                    for c in range(nchunks):
                        xs = builder.or_(builder.call(shuf, [xa_[c], mska]),
                                         builder.call(shuf, [xb_[c], mskb]))
                        slot = accs[r][c]
                        builder.store(_dot_acc(builder, builder.load(slot), xs, aw, sw), slot)
            for r in range(nrows):
                for c in range(nchunks):
                    idx = builder.add(builder.add(ooff_, builder.mul(os_, _c(r))), _c(8 * c))
                    _storev(builder, builder.load(accs[r][c]), op, idx)
            return context.get_dummy_value()

        return sig, codegen

    return pairsel


_pairsel42, _pairsel41 = _make_pairsel(4, 2), _make_pairsel(4, 1)
_PAIRS = [(i, j) for i in range(4) for j in range(i + 1, 4)]  # 6 in-group position pairs


def _pair_masks() -> np.ndarray:
    """[36 * 64] uint8: for pattern pa * 6 + pb, the vpshufb masks that move bytes (i, j) of each
    4-byte activation quad of group 2gp to bytes 0, 1 and bytes (k, l) of group 2gp+1 to 2, 3."""
    out = np.full((36, 2, 32), 0x80, dtype=np.uint8)
    for pa, (i, j) in enumerate(_PAIRS):
        for pb, (k, kk) in enumerate(_PAIRS):
            for slot in range(8):
                q = 4 * (slot % 4)  # vpshufb indexes within each 128-bit lane
                out[pa * 6 + pb, 0, 4 * slot:4 * slot + 2] = (q + i, q + j)
                out[pa * 6 + pb, 1, 4 * slot + 2:4 * slot + 4] = (q + k, q + kk)
    return out.ravel()


PAIR_MASKS = _pair_masks()


def pair_form(q: np.ndarray, tile: int = 16):
    """(wq int32 [Npad * GP], combo int32 [Npad * GP], GP) for ``block_gemm_pairs``, or None
    when some group of 4 holds more than 2 nonzeros. GP = ceil(ceil(K/4) / 2) group pairs."""
    n, k = q.shape
    g = (k + 3) // 4
    gp = (g + 1) // 2
    qp = np.zeros((n, gp * 2, 4), dtype=np.int8)
    qp.reshape(n, -1)[:, :k] = q
    nz = qp != 0
    if np.any(nz.sum(axis=2) > 2):
        return None
    # two positions per group: the nonzeros first (in order), then zero positions
    order = np.sort(np.argsort(~nz, axis=2, kind="stable")[:, :, :2], axis=2)
    vals = np.take_along_axis(qp, order, axis=2)  # [n, 2gp, 2]
    pid = {p: t for t, p in enumerate(_PAIRS)}
    pat = np.vectorize(lambda a, b: pid[(a, b)])(order[:, :, 0], order[:, :, 1])
    npad = (n + tile - 1) // tile * tile
    wq = np.zeros((npad, gp, 4), dtype=np.int8)
    wq[:n] = vals.reshape(n, gp, 4)
    combo = np.zeros((npad, gp), dtype=np.int32)
    combo[:n] = pat[:, 0::2] * 6 + pat[:, 1::2]
    return wq.reshape(-1).view(np.int32).copy(), combo.ravel(), gp


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


# ----------------------------------------------------------------------------- epilogue
_LO = ir.Constant(_V8, [v for j in range(4) for v in (j, 8 + j)])
_HI = ir.Constant(_V8, [v for j in range(4, 8) for v in (j, 8 + j)])


@intrinsic
def _epilogue8(typingctx, buf, boff, bstride, sc, soff, off, y, yoff, ystride):
    """Transpose the 8x8 int32 tile buf[boff + j*bstride + l] (j = output feature, l =
    activation row) in registers and store y[yoff + l*ystride + j] = acc * sc[soff+j] + off[soff+j]."""
    sig = types.void(buf, boff, bstride, sc, soff, off, y, yoff, ystride)

    def codegen(context, builder, signature, args):
        ba, boff_, bs_, sa, so_, oa, ya, yoff_, ys_ = args
        t = signature.args
        bp, sp = _data(context, builder, t[0], ba, _I32), _data(context, builder, t[3], sa, _F32)
        fp, yp = _data(context, builder, t[5], oa, _F32), _data(context, builder, t[6], ya, _F32)
        rows = [_loadv(builder, bp, builder.add(boff_, builder.mul(bs_, _c(j))), _V8)
                for j in range(8)]
        for _ in range(3):
            rows = [builder.shuffle_vector(rows[i], rows[i + 4], m)
                    for i in range(4) for m in (_LO, _HI)]
        scv, ofv = _loadv(builder, sp, so_, _VF8), _loadv(builder, fp, so_, _VF8)
        for lane in range(8):
            f = builder.fadd(builder.fmul(builder.sitofp(rows[lane], _VF8), scv), ofv)
            _storev(builder, f, yp, builder.add(yoff_, builder.mul(ys_, _c(lane))))
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=_CACHE)
def _store_tile(buf, mpad, m, n0, n1, tile, scale, bias, xscale, y, row0):
    """y[row0:row0+m, n0:n1] = buf (tile x mpad int32, row = feature) * xscale * scale + bias."""
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
            _epilogue8(buf, np.int64(j0) * mpad + i0, np.int64(mpad), sc, np.int64(j0), off, y,
                       np.int64(row0 + i0) * ystride + n0 + j0, ystride)
            i0 += 8
        for i in range(i0, m):
            for j in range(j0, j0 + 8):
                y[row0 + i, n0 + j] = np.float32(buf[j * mpad + i]) * sc[j] + off[j]
        j0 += 8
    for i in range(m):
        for j in range(j0, nt):
            y[row0 + i, n0 + j] = np.float32(buf[j * mpad + i]) * sc[j] + off[j]


# ----------------------------------------------------------------------------- quantize + layout
@njit(parallel=True, cache=_CACHE)
def quantize_layout(x, inv, mpad, qlo, qhi, galign=1):
    """float32 [M, K] -> (int8 [ceil(K/4) * mpad * 4] laid out [k // 4][m][k % 4], zero padded;
    True when some code is < -127, which the sign trick cannot take). Blocks of 8 rows: quantize
    them into a small scratch, then one 32-byte store per group (no strided 4-byte writes).
    ``galign``: round the number of groups up to a multiple of it (zero groups)."""
    m, k = x.shape
    g = ((k + 3) // 4 + galign - 1) // galign * galign
    out = np.empty(g * mpad, dtype=np.int32)
    nblk = mpad // 8
    bad = np.zeros(nblk, dtype=np.bool_)
    for blk in prange(nblk):
        tmp = np.zeros((8, g * 4), dtype=np.int8)
        lo = np.int32(0)
        for r in range(8):
            i = blk * 8 + r
            if i < m:
                row = tmp[r]
                for kk in range(k):
                    c = np.int32(min(max(np.rint(x[i, kk] * inv), qlo), qhi))
                    lo = min(lo, c)
                    row[kk] = np.int8(c)
        bad[blk] = lo < -127
        t32 = tmp.reshape(-1).view(np.int32)
        base = blk * 8
        for gg in range(g):
            o = gg * mpad + base
            for r in range(8):
                out[o + r] = t32[r * g + gg]
    return out.view(np.int8), bad.any()


@njit(cache=_CACHE)
def _absmax_scale(x):
    """max|x| / 127 (1.0 for an all-zero x); -1.0 flags inf/nan."""
    b = np.int32(0)
    xi = x.reshape(-1).view(np.int32) if x.size else np.zeros(1, np.int32)
    for j in range(xi.shape[0]):
        v = xi[j] & np.int32(0x7FFFFFFF)
        b = v if v > b else b
    if b >= np.int32(0x7F800000):
        return -1.0
    a = np.float64(np.array([b], dtype=np.int32).view(np.float32)[0])
    return a / 127.0 if a > 0 else 1.0


@njit(cache=_CACHE)
def _quantize_rows(x, iv, qlo, qhi, kpad):
    """float32 [M, K] -> int8 codes [M, kpad] (zero padded), serial (a separate function so
    that the allocation does not become a parallel region of the caller); an empty array when
    a code is < -127."""
    m, k = x.shape
    xq = np.empty((m, kpad), dtype=np.int8)
    for i in range(m):
        for kk in range(k):
            c = min(max(np.rint(x[i, kk] * iv), qlo), qhi)
            if c < -127:
                return np.empty((0, kpad), dtype=np.int8)
            xq[i, kk] = np.int8(c)
        for kk in range(k, kpad):
            xq[i, kk] = 0
    return xq


# ----------------------------------------------------------------------------- GEMM kernels
PANEL = 128  # activation rows per task at large M (K x 128 int8 stays in L2)


@njit(parallel=True, cache=_CACHE)
def block_gemm(xl, mpad, m, ptr, cols, vals, scale, bias, xscale, y, tile):
    """y[:m] = dequant(x_layout @ blocks.T). Tasks are (panel of <= PANEL activation rows) x
    (tile of output features), panel-major, so that a panel stays in L2 while the weights
    stream; each block row runs against up to 8 chunks of 8 rows held in registers."""
    n_out = ptr.shape[0] - 1
    ntiles = (n_out + tile - 1) // tile
    panel = min(mpad, PANEL)
    npan = (mpad + panel - 1) // panel
    rs = np.int64(mpad) * 4
    for t in prange(npan * ntiles):
        p0 = (t // ntiles) * panel
        pr = min(panel, mpad - p0)
        nch = pr // 8
        n0 = (t % ntiles) * tile
        n1 = min(n_out, n0 + tile)
        buf = np.empty(tile * pr, dtype=np.int32)
        for n in range(n0, n1):
            o = np.int64(n - n0) * pr
            s, e = ptr[n], ptr[n + 1]
            c = 0
            xo = np.int64(p0) * 4
            while c + 8 <= nch:
                _rowdot8(xl, vals, cols, s, e, xo + c * 32, rs, buf, o + c * 8)
                c += 8
            if c + 4 <= nch:
                _rowdot4(xl, vals, cols, s, e, xo + c * 32, rs, buf, o + c * 8)
                c += 4
            if c + 2 <= nch:
                _rowdot2(xl, vals, cols, s, e, xo + c * 32, rs, buf, o + c * 8)
                c += 2
            if c < nch:
                _rowdot1(xl, vals, cols, s, e, xo + c * 32, rs, buf, o + c * 8)
        _store_tile(buf, pr, min(pr, m - p0), n0, n1, tile, scale, bias, xscale, y, p0)


@njit(parallel=True, cache=_CACHE)
def block_gemm_slab(xl, mpad, m, sp, cols, vals, scale, bias, xscale, y, tile):
    """``block_gemm`` with K walked in slabs (``sp`` from ``vnni.slab_pointers``): one slab of
    the activation panel stays in L1 while every row of the tile uses it (dense-ish block rows,
    e.g. unstructured 90% -> ~34% of the 1x4 groups occupied)."""
    n_out = sp.shape[0]
    nslab = sp.shape[1] - 1
    ntiles = (n_out + tile - 1) // tile
    panel = min(mpad, PANEL)
    npan = (mpad + panel - 1) // panel
    rs = np.int64(mpad) * 4
    for t in prange(npan * ntiles):
        p0 = (t // ntiles) * panel
        pr = min(panel, mpad - p0)
        nch = pr // 8
        n0 = (t % ntiles) * tile
        n1 = min(n_out, n0 + tile)
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
        _store_tile(buf, pr, min(pr, m - p0), n0, n1, tile, scale, bias, xscale, y, p0)


@njit(parallel=True, cache=_CACHE)
def block_gemm_dense(xl, mpad, m, wd, groups, n_out, scale, bias, xscale, y, tile):
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
        _store_tile(buf, mpad, m, n0, n1, tile, scale, bias, xscale, y, 0)


@njit(parallel=True, cache=_CACHE)
def gemv(x, sx, dynamic, qlo, qhi, ptr8, cols8, vals8, gather, scale, bias, y, rows_per_task):
    """M <= 8 in one call: quantize x (dynamic max|x|/127 scale, or the static ``sx``) to int8
    quads [M][G8], walk each (8-block padded) weight row once for all M rows, dequantize.
    Returns the activation scale (-1: inf/nan in x; -2: a code < -127, nothing computed)."""
    m, k = x.shape
    if dynamic:
        sx = _absmax_scale(x)
        if sx < 0:
            return -1.0
    g8 = ((k + 3) // 4 + 7) // 8 * 8
    xq = _quantize_rows(x, np.float32(1.0 / sx), qlo, qhi, g8 * 4)
    if xq.shape[0] == 0:
        return -2.0
    x32 = xq.reshape(-1).view(np.int32)
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
    return sx


@njit(parallel=True, cache=_CACHE)
def block_gemm_pairs(xl, mpad, m, wq, combo, masks, ngp, n_out, scale, bias, xscale, y, tile):
    """2:4 rows (``pair_form``; activations laid out with an even number of groups): 4 rows x 2
    chunks of 8 activation rows per register tile, two groups per dot product."""
    ntiles = (n_out + tile - 1) // tile
    nch = mpad // 8
    rs = np.int64(mpad) * 4
    g64 = np.int64(ngp)
    for t in prange(ntiles):
        n0 = t * tile
        n1 = min(n_out, n0 + tile)
        buf = np.empty(tile * mpad, dtype=np.int32)
        c0 = 0
        while c0 < nch:
            xo = np.int64(c0 * 32)
            for r0 in range(0, tile, 4):
                w0 = np.int64(n0 + r0) * g64
                oo = np.int64(r0) * mpad + c0 * 8
                if c0 + 2 <= nch:
                    _pairsel42(xl, wq, combo, masks, g64, w0, g64, xo, rs, buf, oo, np.int64(mpad))
                else:
                    _pairsel41(xl, wq, combo, masks, g64, w0, g64, xo, rs, buf, oo, np.int64(mpad))
            c0 += 2
        _store_tile(buf, mpad, m, n0, n1, tile, scale, bias, xscale, y, 0)


@njit(parallel=True, cache=_CACHE)
def gemv1(x, sx, dynamic, qlo, qhi, ptr8, cols8, vals8, gather, scale, bias, y, rows_per_task):
    """``gemv`` for M = 1 (batch-1 latency): the same, with the one-row kernel called directly
    (no per-row dispatch on M: ~15-25% faster at BERT-base shapes)."""
    k = x.shape[1]
    if dynamic:
        sx = _absmax_scale(x)
        if sx < 0:
            return -1.0
    g8 = ((k + 3) // 4 + 7) // 8 * 8
    xq = _quantize_rows(x, np.float32(1.0 / sx), qlo, qhi, g8 * 4)
    if xq.shape[0] == 0:
        return -2.0
    x32 = xq.reshape(-1).view(np.int32)
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
    return sx


# ----------------------------------------------------------------------------- weight forms
def dense_blocks(ptr, cols, vals, n_out: int, groups: int, tile: int = 16) -> np.ndarray:
    """Zero-filled [ceil(N / tile) * tile, groups] int32 block matrix (flattened)."""
    npad = (n_out + tile - 1) // tile * tile
    wd = np.zeros((npad, groups), dtype=np.int32)
    wd[np.repeat(np.arange(n_out), np.diff(ptr)), cols] = vals
    return wd.ravel()


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
