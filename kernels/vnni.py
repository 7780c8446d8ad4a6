"""AVX-512 VNNI kernels (``vpdpbusd``) emitted from Numba through llvmlite IR intrinsics.

Execution form (shared by every packed format, see ``PackedLinear.blocks``): 1x4 blocks along
K, block values as one int32 (4 x int8), group index per block, per-row compensation.

Activations are quantized per tensor and laid out [K/4][Mpad][4] as uint8 with a +128 offset
(vpdpbusd multiplies unsigned by signed bytes); the compensation 128 * sum(q_row) is subtracted
in the epilogue. One row of blocks is multiplied against R = 8/4/2/1 chunks of 16 activation
rows held in zmm registers (register blocking), so each block costs one broadcast plus R
(load, vpdpbusd) pairs. Quantization + layout is one fused pass.

Import this module only when ``cpu.has_vnni512()`` is true: compiling it elsewhere fails.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .avx2_gemm import dynamic_scale, quantize_layout_u8

_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_V16 = ir.VectorType(_I32, 16)


def _vpdpbusd(builder):
    """The AVX512-VNNI u8 x s8 -> s32 dot-accumulate intrinsic, declared in the builder's module."""
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V16, [_V16, _V16, _V16]),
                                          "llvm.x86.avx512.vpdpbusd.512")


def _make_rowdot(nchunks: int, unroll: int = 1, accumulate: bool = False):
    """Intrinsic: out[o + 16*i + l] = sum over blocks b in [start, end) of
    vpdpbusd(x[cols[b] * rowstride + xoff + 64*i], broadcast(vals[b])) for i < nchunks.
    ``unroll`` > 1 (only with nchunks == 1) keeps that many independent accumulators;
    ``accumulate`` adds to what ``out`` holds instead of overwriting it."""

    @intrinsic
    def rowdot(typingctx, xl, vals, cols, start, end, xoff, rowstride, out, ooff):
        sig = types.void(xl, vals, cols, start, end, xoff, rowstride, out, ooff)

        def codegen(context, builder, signature, args):
            xa, va, ca, start_, end_, xoff_, rs_, oa, ooff_ = args
            tys = signature.args
            xptr = context.make_array(tys[0])(context, builder, xa).data
            vptr = context.make_array(tys[1])(context, builder, va).data
            cptr = context.make_array(tys[2])(context, builder, ca).data
            optr = context.make_array(tys[7])(context, builder, oa).data
            fn = _vpdpbusd(builder)
            zero = ir.Constant(_V16, None)
            nacc = nchunks * unroll
            accs = [cgutils.alloca_once_value(builder, zero) for _ in range(nacc)]
            o = builder.bitcast(optr, _I32.as_pointer())
            if accumulate:
                for i in range(nchunks):
                    p = builder.gep(o, [builder.add(ooff_, ir.Constant(_I64, 16 * i))])
                    builder.store(builder.load(builder.bitcast(p, _V16.as_pointer()), align=1),
                                  accs[i])
            bcast_mask = ir.Constant(_V16, [0] * 16)
            start_ = builder.sext(start_, _I64) if start_.type.width < 64 else start_
            end_ = builder.sext(end_, _I64) if end_.type.width < 64 else end_
            vx = builder.bitcast(xptr, ir.IntType(8).as_pointer())

            def one_block(b, acc_group):
                col = builder.sext(builder.load(builder.gep(cptr, [b])), _I64)
                val = builder.load(builder.gep(vptr, [b]))
                wv = builder.insert_element(ir.Constant(_V16, ir.Undefined), val,
                                            ir.Constant(_I32, 0))
                wv = builder.shuffle_vector(wv, wv, bcast_mask)
                base = builder.add(builder.mul(col, rs_), xoff_)
                for i in range(nchunks):
                    p = builder.gep(vx, [builder.add(base, ir.Constant(_I64, 64 * i))])
                    xv = builder.load(builder.bitcast(p, _V16.as_pointer()), align=1)
                    slot = accs[acc_group * nchunks + i]
                    builder.store(builder.call(fn, [builder.load(slot), xv, wv]), slot)

            if unroll > 1:
                n = builder.sub(end_, start_)
                main = builder.mul(builder.sdiv(n, ir.Constant(_I64, unroll)),
                                   ir.Constant(_I64, unroll))
                mid = builder.add(start_, main)
                with cgutils.for_range_slice(builder, start_, mid, ir.Constant(_I64, unroll),
                                             intp=_I64) as (b, _):
                    for u in range(unroll):
                        one_block(builder.add(b, ir.Constant(_I64, u)), u)
                with cgutils.for_range_slice(builder, mid, end_, ir.Constant(_I64, 1), intp=_I64) as (b, _):
                    one_block(b, 0)
            else:
                with cgutils.for_range_slice(builder, start_, end_, ir.Constant(_I64, 1), intp=_I64) as (b, _):
                    one_block(b, 0)
            for i in range(nchunks):
                total = builder.load(accs[i])
                for u in range(1, unroll):
                    total = builder.add(total, builder.load(accs[u * nchunks + i]))
                p = builder.gep(o, [builder.add(ooff_, ir.Constant(_I64, 16 * i))])
                builder.store(total, builder.bitcast(p, _V16.as_pointer()), align=1)
            return context.get_dummy_value()

        return sig, codegen

    return rowdot


_F32 = ir.FloatType()
_VF16 = ir.VectorType(_F32, 16)
_LO = ir.Constant(_V16, [v for j in range(8) for v in (j, 16 + j)])
_HI = ir.Constant(_V16, [v for j in range(8, 16) for v in (j, 16 + j)])


@intrinsic
def _epilogue16(typingctx, buf, boff, bstride, sc, off, y, yoff, ystride):
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


_rowdot8 = _make_rowdot(8)
_rowdot4 = _make_rowdot(4)
_rowdot2 = _make_rowdot(2)
_rowdot1 = _make_rowdot(1, unroll=4)
_rowacc8 = _make_rowdot(8, accumulate=True)
_rowacc4 = _make_rowdot(4, accumulate=True)
_rowacc2 = _make_rowdot(2, accumulate=True)
_rowacc1 = _make_rowdot(1, unroll=4, accumulate=True)


@njit(cache=True)
def _store_tile(buf, mpad, m, n0, n1, tile, comp, scale, bias, xscale, y):
    """Epilogue of one output tile: int32 accumulators -> y = acc * scale + (bias - comp * scale)."""
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
            _epilogue16(buf, np.int64(done), np.int64(mpad), sc, off, y,
                        np.int64(done) * ystride + n0, ystride)
            done += 16
    for i in range(done, m):
        for j in range(nt):
            y[i, n0 + j] = np.float32(buf[j * mpad + i]) * sc[j] + off[j]


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


@njit(parallel=True, cache=True)
def block_gemm(xl, mpad, m, ptr, cols, vals, comp, scale, bias, xscale, y, tile):
    """y[:m, :] = dequant(x_layout @ blocks.T) ; one tile of output rows per parallel task."""
    n_out = ptr.shape[0] - 1
    ntiles = (n_out + tile - 1) // tile
    nch = mpad // 16
    rs = np.int64(mpad) * 4
    for t in prange(ntiles):
        n0 = t * tile
        n1 = min(n_out, n0 + tile)
        buf = np.empty(tile * mpad, dtype=np.int32)
        for n in range(n0, n1):
            o = np.int64(n - n0) * mpad
            s, e = ptr[n], ptr[n + 1]
            c = 0
            while c + 8 <= nch:
                _rowdot8(xl, vals, cols, s, e, np.int64(c * 64), rs, buf, o + c * 16)
                c += 8
            if c + 4 <= nch:
                _rowdot4(xl, vals, cols, s, e, np.int64(c * 64), rs, buf, o + c * 16)
                c += 4
            if c + 2 <= nch:
                _rowdot2(xl, vals, cols, s, e, np.int64(c * 64), rs, buf, o + c * 16)
                c += 2
            if c < nch:
                _rowdot1(xl, vals, cols, s, e, np.int64(c * 64), rs, buf, o + c * 16)
        _store_tile(buf, mpad, m, n0, n1, tile, comp, scale, bias, xscale, y)


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


@njit(parallel=True, cache=True)
def block_gemm_slab(xl, mpad, m, sp, cols, vals, comp, scale, bias, xscale, y, tile):
    """Like ``block_gemm`` but K is walked in slabs (``sp`` from ``slab_pointers``) so that one
    slab of activations stays in L1 while every row of the tile uses it."""
    n_out = sp.shape[0]
    nslab = sp.shape[1] - 1
    ntiles = (n_out + tile - 1) // tile
    nch = mpad // 16
    rs = np.int64(mpad) * 4
    for t in prange(ntiles):
        n0 = t * tile
        n1 = min(n_out, n0 + tile)
        buf = np.zeros(tile * mpad, dtype=np.int32)
        c0 = 0
        while c0 < nch:
            r = min(8, nch - c0)
            if r >= 8:
                r = 8
            elif r >= 4:
                r = 4
            elif r >= 2:
                r = 2
            else:
                r = 1
            xo = np.int64(c0 * 64)
            for s_ in range(nslab):
                for n in range(n0, n1):
                    o = np.int64(n - n0) * mpad + c0 * 16
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
        _store_tile(buf, mpad, m, n0, n1, tile, comp, scale, bias, xscale, y)


# ----------------------------------------------------------------------------- dense block rows
def _make_multirow(nrows: int, nchunks: int):
    """Intrinsic for full block rows (every 1x4 group present, zero-filled): rows share the
    activation loads. For g in [0, ngroups): for r < nrows, c < nchunks:
    acc[r][c] = vpdpbusd(acc[r][c], x[g * rowstride + xoff + 64c], broadcast(w[wrow0 + r*wstride + g]));
    then out[ooff + r*ostride + 16c : +16] = acc[r][c]. One activation load feeds ``nrows``
    vpdpbusd instead of one (the 1x4 row kernels), which is what dense-ish rows (2:4) need."""

    @intrinsic
    def multirow(typingctx, xl, wv, ngroups, wrow0, wstride, xoff, rowstride, out, ooff, ostride):
        sig = types.void(xl, wv, ngroups, wrow0, wstride, xoff, rowstride, out, ooff, ostride)

        def codegen(context, builder, signature, args):
            xa, wa, ng_, w0_, ws_, xoff_, rs_, oa, ooff_, os_ = args
            tys = signature.args
            xptr = context.make_array(tys[0])(context, builder, xa).data
            wptr = context.make_array(tys[1])(context, builder, wa).data
            optr = context.make_array(tys[7])(context, builder, oa).data
            fn = _vpdpbusd(builder)
            zero = ir.Constant(_V16, None)
            accs = [[cgutils.alloca_once_value(builder, zero) for _ in range(nchunks)]
                    for _ in range(nrows)]
            bcast_mask = ir.Constant(_V16, [0] * 16)
            vx = builder.bitcast(xptr, ir.IntType(8).as_pointer())
            wp = builder.bitcast(wptr, _I32.as_pointer())
            with cgutils.for_range_slice(builder, ir.Constant(_I64, 0), ng_, ir.Constant(_I64, 1),
                                         intp=_I64) as (g, _):
                base = builder.add(builder.mul(g, rs_), xoff_)
                xs = []
                for c in range(nchunks):
                    p = builder.gep(vx, [builder.add(base, ir.Constant(_I64, 64 * c))])
                    xs.append(builder.load(builder.bitcast(p, _V16.as_pointer()), align=1))
                for r in range(nrows):
                    widx = builder.add(builder.add(w0_, builder.mul(ws_, ir.Constant(_I64, r))), g)
                    val = builder.load(builder.gep(wp, [widx]))
                    wv_ = builder.insert_element(ir.Constant(_V16, ir.Undefined), val,
                                                 ir.Constant(_I32, 0))
                    wv_ = builder.shuffle_vector(wv_, wv_, bcast_mask)
                    for c in range(nchunks):
                        slot = accs[r][c]
                        builder.store(builder.call(fn, [builder.load(slot), xs[c], wv_]), slot)
            o = builder.bitcast(optr, _I32.as_pointer())
            for r in range(nrows):
                for c in range(nchunks):
                    idx = builder.add(builder.add(ooff_, builder.mul(os_, ir.Constant(_I64, r))),
                                      ir.Constant(_I64, 16 * c))
                    p = builder.bitcast(builder.gep(o, [idx]), _V16.as_pointer())
                    builder.store(builder.load(accs[r][c]), p, align=1)
            return context.get_dummy_value()

        return sig, codegen

    return multirow


_multirow44 = _make_multirow(4, 4)
_multirow42 = _make_multirow(4, 2)
_multirow41 = _make_multirow(4, 1)


def dense_blocks(ptr, cols, vals, n_out: int, groups: int, tile: int = 16) -> np.ndarray:
    """Zero-filled [ceil(N / tile) * tile, groups] int32 block matrix (flattened) of a block
    form: the input of ``block_gemm_dense``."""
    npad = (n_out + tile - 1) // tile * tile
    wd = np.zeros((npad, groups), dtype=np.int32)
    rows = np.repeat(np.arange(n_out), np.diff(ptr))
    wd[rows, cols] = vals
    return wd.ravel()


@njit(parallel=True, cache=True)
def block_gemm_dense(xl, mpad, m, wd, groups, n_out, comp, scale, bias, xscale, y, tile):
    """y[:m, :] = dequant(x_layout @ W.T) for full block rows (``dense_blocks``): 4 rows x up to
    4 chunks of 16 activation rows per register tile (16 accumulators)."""
    ntiles = (n_out + tile - 1) // tile
    nch = mpad // 16
    rs = np.int64(mpad) * 4
    g64 = np.int64(groups)
    for t in prange(ntiles):
        n0 = t * tile
        n1 = min(n_out, n0 + tile)
        buf = np.empty(tile * mpad, dtype=np.int32)
        c0 = 0
        while c0 < nch:
            r = 4 if c0 + 4 <= nch else (2 if c0 + 2 <= nch else 1)
            xo = np.int64(c0 * 64)
            for r0 in range(0, tile, 4):
                w0 = np.int64(n0 + r0) * g64
                oo = np.int64(r0) * mpad + c0 * 16
                if r == 4:
                    _multirow44(xl, wd, g64, w0, g64, xo, rs, buf, oo, np.int64(mpad))
                elif r == 2:
                    _multirow42(xl, wd, g64, w0, g64, xo, rs, buf, oo, np.int64(mpad))
                else:
                    _multirow41(xl, wd, g64, w0, g64, xo, rs, buf, oo, np.int64(mpad))
            c0 += r
        _store_tile(buf, mpad, m, n0, n1, tile, comp, scale, bias, xscale, y)
