"""The block-row intrinsics shared by the AVX2 family and AVX-512 VNNI batched kernels, one
generator each for both widths: ``lanes`` = 8 (ymm; the exact sign-trick dot of
``avx2_intrinsics``, or VEX ``vpdpbusd`` on AVX-VNNI; int8 activations) or 16 (zmm,
``vpdpbusd`` on u8 activations = code + 128). A chunk is ``lanes`` activation rows x 4 inputs
(4 * lanes bytes of the [K/4][Mpad][4] layout).

The width is a literal argument (``prefer_literal``): a kernel written once (``tiles.py``) takes
``lanes`` through ``numba.literally`` and its 8- and 16-lane builds are separate, cacheable
specializations (a closure over per-width intrinsics would be re-compiled in every process: its
cache key pickles the intrinsics, whose ids are random per process).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .avx2_intrinsics import _V8, _VB, _bcast, _c, _data, _dot_acc, _i64, _loadv, _storev, _weights

_I8, _I32, _I64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
_V16 = ir.VectorType(_I32, 16)


def _literal(*args) -> bool:
    return all(isinstance(a, types.IntegerLiteral) for a in args)


class _Width:
    """Codegen of one vector width: the accumulator type, a block's weight operand and the
    dot-accumulate of one chunk of activations."""

    def __init__(self, builder, lanes: int):
        self.b, self.lanes = builder, lanes
        self.vacc = _V8 if lanes == 8 else _V16

    def weights(self, val):
        """The operand of one block's 4 int8 weights (an int32), broadcast to every lane."""
        if self.lanes == 8:
            return _weights(self.b, _bcast(self.b, val))
        v = self.b.insert_element(ir.Constant(_V16, ir.Undefined), val, ir.Constant(_I32, 0))
        return self.b.shuffle_vector(v, v, ir.Constant(_V16, [0] * 16))

    def load(self, xp, idx):
        return _loadv(self.b, xp, idx, _VB if self.lanes == 8 else _V16)

    def dot(self, acc, xv, w):
        if self.lanes == 8:
            return _dot_acc(self.b, acc, xv, *w)
        f = cgutils.get_or_insert_function(self.b.module, ir.FunctionType(_V16, [_V16] * 3),
                                           "llvm.x86.avx512.vpdpbusd.512")
        return self.b.call(f, [acc, xv, w])


@intrinsic(prefer_literal=True)
def rowdot(typingctx, xl, vals, cols, start, end, xoff, rowstride, out, ooff, nchunks,
           accumulate, lanes):
    """out[ooff + lanes*i + l] (+= when ``accumulate``) sum over blocks b in [start, end) of
    dot4(x chunk i of the group cols[b] (at cols[b] * rowstride + xoff + 4*lanes*i), vals[b])
    for i < nchunks. One chunk on 16 lanes keeps 4 accumulators in turn (``vpdpbusd``'s
    latency)."""
    if not _literal(nchunks, accumulate, lanes):
        return None
    nch, acc_in, w = nchunks.literal_value, accumulate.literal_value, lanes.literal_value
    unroll = 4 if (w == 16 and nch == 1) else 1
    sig = types.void(xl, vals, cols, start, end, xoff, rowstride, out, ooff, nchunks, accumulate,
                     lanes)

    def codegen(context, builder, signature, args):
        xa, va, ca, s_, e_, xoff_, rs_, oa, ooff_ = args[:9]
        t = signature.args
        xp, vp = _data(context, builder, t[0], xa, _I8), _data(context, builder, t[1], va, _I32)
        cp, op = _data(context, builder, t[2], ca, _I32), _data(context, builder, t[7], oa, _I32)
        wd = _Width(builder, w)
        accs = [cgutils.alloca_once_value(builder, ir.Constant(wd.vacc, None))
                for _ in range(nch * unroll)]
        if acc_in:
            for i in range(nch):
                builder.store(_loadv(builder, op, builder.add(ooff_, _c(w * i)), wd.vacc), accs[i])
        s64, e64 = _i64(builder, s_), _i64(builder, e_)

        def block(b, group):
            col = builder.sext(builder.load(builder.gep(cp, [b])), ir.IntType(64))
            wv = wd.weights(builder.load(builder.gep(vp, [b])))
            base = builder.add(builder.mul(col, rs_), xoff_)
            for i in range(nch):
                slot = accs[group * nch + i]
                xv = wd.load(xp, builder.add(base, _c(4 * w * i)))
                builder.store(wd.dot(builder.load(slot), xv, wv), slot)

        mid = builder.add(s64, builder.mul(builder.sdiv(builder.sub(e64, s64), _c(unroll)),
                                           _c(unroll)))
        with cgutils.for_range_slice(builder, s64, mid, _c(unroll), intp=ir.IntType(64)) as (b, _):
            for u in range(unroll):
                block(builder.add(b, _c(u)), u)
        with cgutils.for_range_slice(builder, mid, e64, _c(1), intp=ir.IntType(64)) as (b, _):
            block(b, 0)
        for i in range(nch):
            total = builder.load(accs[i])
            for u in range(1, unroll):
                total = builder.add(total, builder.load(accs[u * nch + i]))
            _storev(builder, total, op, builder.add(ooff_, _c(w * i)))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic(prefer_literal=True)
def multirow(typingctx, xl, wv, ngroups, wrow0, wstride, xoff, rowstride, out, ooff, ostride,
             nrows, nchunks, lanes):
    """Full (zero-filled) block rows: for g < ngroups, r < nrows, c < nchunks:
    acc[r][c] += dot4(x chunk c of group g (at g*rowstride + xoff + 4*lanes*c),
    w[wrow0 + r*wstride + g]); then out[ooff + r*ostride + lanes*c : +lanes] = acc[r][c].
    One activation load feeds ``nrows`` rows."""
    if not _literal(nrows, nchunks, lanes):
        return None
    nr, nch, w = nrows.literal_value, nchunks.literal_value, lanes.literal_value
    sig = types.void(xl, wv, ngroups, wrow0, wstride, xoff, rowstride, out, ooff, ostride, nrows,
                     nchunks, lanes)

    def codegen(context, builder, signature, args):
        xa, wa, ng_, w0_, ws_, xoff_, rs_, oa, ooff_, os_ = args[:10]
        t = signature.args
        xp, wp = _data(context, builder, t[0], xa, _I8), _data(context, builder, t[1], wa, _I32)
        op = _data(context, builder, t[7], oa, _I32)
        wd = _Width(builder, w)
        accs = [[cgutils.alloca_once_value(builder, ir.Constant(wd.vacc, None))
                 for _ in range(nch)] for _ in range(nr)]
        with cgutils.for_range_slice(builder, _c(0), ng_, _c(1), intp=ir.IntType(64)) as (g, _):
            base = builder.add(builder.mul(g, rs_), xoff_)
            xs = [wd.load(xp, builder.add(base, _c(4 * w * c))) for c in range(nch)]
            for r in range(nr):
                widx = builder.add(builder.add(w0_, builder.mul(ws_, _c(r))), g)
                wv_ = wd.weights(builder.load(builder.gep(wp, [widx])))
                for c in range(nch):
                    slot = accs[r][c]
                    builder.store(wd.dot(builder.load(slot), xs[c], wv_), slot)
        for r in range(nr):
            for c in range(nch):
                idx = builder.add(builder.add(ooff_, builder.mul(os_, _c(r))), _c(w * c))
                _storev(builder, builder.load(accs[r][c]), op, idx)
        return context.get_dummy_value()

    return sig, codegen


_F32 = ir.FloatType()
_VF16 = ir.VectorType(_F32, 16)
_LO = ir.Constant(_V16, [v for j in range(8) for v in (j, 16 + j)])
_HI = ir.Constant(_V16, [v for j in range(8, 16) for v in (j, 16 + j)])


@intrinsic
def epilogue16(typingctx, buf, boff, bstride, sc, off, y, yoff, ystride):
    """Transpose a 16x16 int32 tile buf[boff + j*bstride + l] (row j = output feature, lane l =
    activation row) in registers, dequantize with per-feature sc/off and store 16 contiguous
    floats to y[yoff + l*ystride : +16] for each l. Four interleave stages = a 16x16 transpose."""
    sig = types.void(buf, boff, bstride, sc, off, y, yoff, ystride)

    def codegen(context, builder, signature, args):
        ba, boff_, bs_, sa, oa, ya, yoff_, ys_ = args
        tys = signature.args
        bp = builder.bitcast(context.make_array(tys[0])(context, builder, ba).data,
                             _I32.as_pointer())
        sp = builder.bitcast(context.make_array(tys[3])(context, builder, sa).data,
                             _VF16.as_pointer())
        op = builder.bitcast(context.make_array(tys[4])(context, builder, oa).data,
                             _VF16.as_pointer())
        yp = builder.bitcast(context.make_array(tys[5])(context, builder, ya).data,
                             _F32.as_pointer())
        rows = []
        for j in range(16):
            idx = builder.add(boff_, builder.mul(bs_, ir.Constant(_I64, j)))
            p = builder.bitcast(builder.gep(bp, [idx]), _V16.as_pointer())
            rows.append(builder.load(p, align=1))
        for _ in range(4):
            new = []
            for i in range(8):
                new.append(builder.shuffle_vector(rows[i], rows[i + 8], _LO))
                new.append(builder.shuffle_vector(rows[i], rows[i + 8], _HI))
            rows = new
        scv = builder.load(sp, align=1)
        ofv = builder.load(op, align=1)
        for lane in range(16):
            f = builder.sitofp(rows[lane], _VF16)
            f = builder.fadd(builder.fmul(f, scv), ofv)
            idx = builder.add(yoff_, builder.mul(ys_, ir.Constant(_I64, lane)))
            p = builder.bitcast(builder.gep(yp, [idx]), _VF16.as_pointer())
            builder.store(f, p, align=1)
        return context.get_dummy_value()

    return sig, codegen
