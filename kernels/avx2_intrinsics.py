"""llvmlite IR building blocks of the AVX2 / AVX-VNNI kernels (see ``kernels.avx2``).

Vector types, the exact int8 4-way dot step (sign trick, or ``vpdpbusd`` on AVX-VNNI), the
pair-block intrinsic (``_make_pairpair``), the 8x8 transposing epilogue (``_epilogue8``) and the
in-register quantize + layout (``_make_quant8``); the block-row intrinsics shared with the VNNI
path are in ``tile_intrinsics``. Import only where ``cpu.kernel_path()`` allows it.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
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
    (aw = |w| as u8, sw = w): exact, see ``kernels.avx2``."""
    s = builder.call(_fn(builder, "llvm.x86.avx2.psign.b", _VB, [_VB, _VB]), [xv, sw])
    return _udot_acc(builder, acc, aw, s)


def _udot_acc(builder, acc, u, s):
    """acc (v8i32) += 4-way dot of u8 bytes u and s8 bytes s, exact when every pair sum of
    products fits int16 (|u| <= 128, |s| <= 127): ``vpmaddubsw`` + ``vpmaddwd`` with ones, or one
    ``vpdpbusd`` on AVX-VNNI."""
    if ISA == "avx_vnni":
        f = _fn(builder, "llvm.x86.avx512.vpdpbusd.256", _V8, [_V8, _V8, _V8])
        return builder.call(f, [acc, builder.bitcast(u, _V8), builder.bitcast(s, _V8)])
    p = builder.call(_fn(builder, "llvm.x86.avx2.pmadd.ub.sw", _VH, [_VB, _VB]), [u, s])
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


# ----------------------------------------------------------------------------- pairs of pairs
_UNPCKL = ir.Constant(ir.VectorType(_I32, 16), [0, 16, 1, 17, 2, 18, 3, 19, 8, 24, 9, 25, 10, 26, 11, 27])
_UNPCKH = ir.Constant(ir.VectorType(_I32, 16), [4, 20, 5, 21, 6, 22, 7, 23, 12, 28, 13, 29, 14, 30, 15, 31])
_HALVES = (ir.Constant(ir.VectorType(_I32, 4), [0, 1, 2, 3]), ir.Constant(ir.VectorType(_I32, 4), [4, 5, 6, 7]))


def _make_pairpair(nchunks: int):
    """Scattered nonzeros as blocks of two input pairs (c1, c2) of one row (``pairpair_form``):
    activations int8 [K/2][Mpad][2], a chunk = 16 rows x 2 bytes = one ymm per pair. For blocks b
    in [start, end) and chunks i < nchunks: A, B = the chunk at pairs c1[b], c2[b];
    ``vpunpcklwd`` / ``vpunpckhwd`` make the 4-byte quads (x[c1], x[c1+1], x[c2], x[c2+1]) of rows
    0-3, 8-11 / 4-7, 12-15, which meet the weight quad w4[b] in the exact 4-way dot (sign
    trick). out[ooff + 16i + r] = row r's sum, in row order."""

    @intrinsic
    def pairpair(typingctx, xl, w4, c1, c2, start, end, xoff, rowstride, out, ooff):
        sig = types.void(xl, w4, c1, c2, start, end, xoff, rowstride, out, ooff)

        def codegen(context, builder, signature, args):
            xa, wa, c1a, c2a, s_, e_, xoff_, rs_, oa, ooff_ = args
            t = signature.args
            xp, wp = _data(context, builder, t[0], xa, _I8), _data(context, builder, t[1], wa, _I32)
            p1, p2 = _data(context, builder, t[2], c1a, _I32), _data(context, builder, t[3], c2a, _I32)
            op = _data(context, builder, t[8], oa, _I32)
            accs = [[cgutils.alloca_once_value(builder, ir.Constant(_V8, None)) for _ in range(2)]
                    for _ in range(nchunks)]
            with cgutils.for_range_slice(builder, _i64(builder, s_), _i64(builder, e_), _c(1),
                                         intp=_I64) as (b, _):
                def base(p):
                    col = builder.sext(builder.load(builder.gep(p, [b])), _I64)
                    return builder.add(builder.mul(col, rs_), xoff_)

                b1, b2 = base(p1), base(p2)
                aw, sw = _weights(builder, _bcast(builder, builder.load(builder.gep(wp, [b]))))
                for i in range(nchunks):
                    xa_ = builder.bitcast(_loadv(builder, xp, builder.add(b1, _c(32 * i)), _VB), _VH)
                    xb_ = builder.bitcast(_loadv(builder, xp, builder.add(b2, _c(32 * i)), _VB), _VH)
                    for half, mask in enumerate((_UNPCKL, _UNPCKH)):
                        q = builder.bitcast(builder.shuffle_vector(xa_, xb_, mask), _VB)
                        slot = accs[i][half]
                        builder.store(_dot_acc(builder, builder.load(slot), q, aw, sw), slot)
            for i in range(nchunks):  # lanes 0-3 / 4-7 of the low acc: rows 0-3 / 8-11; high: 4-7 / 12-15
                for half, (r0, r1) in enumerate(((0, 8), (4, 12))):
                    v = builder.load(accs[i][half])
                    for sel, r in zip(_HALVES, (r0, r1), strict=True):
                        _storev(builder, builder.shuffle_vector(v, v, sel), op,
                                builder.add(ooff_, _c(16 * i + r)))
            return context.get_dummy_value()

        return sig, codegen

    return pairpair


_ppdot4, _ppdot2, _ppdot1 = (_make_pairpair(c) for c in (4, 2, 1))


# ----------------------------------------------------------------------------- epilogue
_LO = ir.Constant(_V8, [v for j in range(4) for v in (j, 8 + j)])
_HI = ir.Constant(_V8, [v for j in range(4, 8) for v in (j, 8 + j)])


def _gelu8(builder, v):
    """``epilogue.gelu`` on 8 floats: the same clamp and rational function, in vector form."""
    from .epilogue import ERF_P, ERF_Q

    def k(c):
        return ir.Constant(_VF8, [float(c)] * 8)

    fma = _fn(builder, "llvm.fma.v8f32", _VF8, [_VF8, _VF8, _VF8])
    lo = _fn(builder, "llvm.maxnum.v8f32", _VF8, [_VF8, _VF8])
    hi = _fn(builder, "llvm.minnum.v8f32", _VF8, [_VF8, _VF8])
    z = builder.call(hi, [builder.call(lo, [builder.fmul(v, k(0.70710677)), k(-4.0)]), k(4.0)])
    t = builder.fmul(z, z)

    def horner(coefs):
        acc = k(coefs[-1])
        for c in coefs[-2::-1]:
            acc = builder.call(fma, [acc, t, k(c)])
        return acc

    erf = builder.fdiv(builder.fmul(z, horner(ERF_P)), horner(ERF_Q))
    return builder.fmul(builder.fmul(k(0.5), v), builder.fadd(k(1.0), erf))


def _make_epilogue8(gelu: bool):
    """Transpose the 8x8 int32 tile buf[boff + j*bstride + l] (j = output feature, l =
    activation row) in registers and store y[yoff + l*ystride + j] = acc * sc[soff+j] +
    off[soff+j] (then GELU when ``gelu``)."""

    @intrinsic
    def epilogue8(typingctx, buf, boff, bstride, sc, soff, off, y, yoff, ystride):
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
                if gelu:
                    f = _gelu8(builder, f)
                _storev(builder, f, yp, builder.add(yoff_, builder.mul(ys_, _c(lane))))
            return context.get_dummy_value()

        return sig, codegen

    return epilogue8


_epilogue8, _epilogue8_gelu = _make_epilogue8(False), _make_epilogue8(True)


# ----------------------------------------------------------------------------- quantize + layout
_PACK_LO = ir.Constant(_V8, list(range(4)) + list(range(8, 12)))  # the low 128-bit lanes of a, b
_PACK_HI = ir.Constant(_V8, list(range(4, 8)) + list(range(12, 16)))


def _pair_sel(p: int):
    """Byte indices into (b0 | b1) (rows 0-3 | 4-7 after the packs) of pair p's two codes
    for rows 0..7: b0/b1 lane p // 2 holds inputs 4(p // 2)..+3 of row i at bytes 4i..4i+3."""
    lane, at = p // 2, 2 * (p % 2)
    return ir.Constant(ir.VectorType(_I32, 16), [32 * (i // 4) + 16 * lane + 4 * (i % 4) + at + d
                                                 for i in range(8) for d in (0, 1)])


def _signed_sel(i: int):
    """Byte indices into (b | -b) of row i's (i < 4 in b) 8 codes (lane 0 bytes 4i..4i+3, lane 1
    bytes 16+4i..) and then their negations."""
    codes = [4 * i + d for d in range(4)] + [16 + 4 * i + d for d in range(4)]
    return ir.Constant(ir.VectorType(_I32, 16), codes + [32 + c for c in codes])


def _make_quant8(layout: str):
    """Quantize 8 rows x 8j inputs of float32 x (row r at x[xoff + r*kstride], j < nchunks):
    codes = round-half-even(clamp(x * inv, qlo, qhi)) (``vcvtps2dq``), packed to bytes with
    ``vpackssdw`` / ``vpacksswb`` (exact: the codes are in range) and stored in a kernel's
    layout: "quads" (int32 out, [K/4][Mpad]): the 8 rows' codes of inputs 4g..4g+3 at
    out[ooff + g*ostride]; "u8": the same with code + 128 as unsigned bytes (the VNNI path's
    operand); "pairs" (int16 out, [K/2][Mpad]): of inputs 2p, 2p+1 at out[ooff + p*ostride];
    "signed" (int8 out, [M][K/8][16], the 2:4 lane kernel's): row r's 8 codes of inputs
    8j..8j+7, then their negations, at out[ooff + r*ostride + 16j]; "rows" (int8 out, row-major,
    the AMX kernel's A operand): row r's 8 codes at out[ooff + r*ostride + 8j]. Returns the
    smallest code."""
    pairs, u8, signed, rows_ = (layout == k for k in ("pairs", "u8", "signed", "rows"))

    @intrinsic
    def quant8(typingctx, x, xoff, kstride, nchunks, inv, qlo, qhi, out, ooff, ostride):
        sig = types.int32(x, xoff, kstride, nchunks, inv, qlo, qhi, out, ooff, ostride)

        def codegen(context, builder, signature, args):
            xa, xoff_, ks_, nc_, inv_, lo_, hi_, oa, ooff_, os_ = args
            t = signature.args
            xp = _data(context, builder, t[0], xa, _F32)
            op = _data(context, builder, t[7], oa, _I8 if signed or rows_ else _I16 if pairs else _I32)

            def splat(v):
                w = builder.insert_element(ir.Constant(_VF8, ir.Undefined), v, ir.Constant(_I32, 0))
                return builder.shuffle_vector(w, w, ir.Constant(_V8, [0] * 8))

            inv_v, lo_v, hi_v = splat(inv_), splat(lo_), splat(hi_)
            fmax = _fn(builder, "llvm.x86.avx.max.ps.256", _VF8, [_VF8, _VF8])
            fmin = _fn(builder, "llvm.x86.avx.min.ps.256", _VF8, [_VF8, _VF8])
            cvt = _fn(builder, "llvm.x86.avx.cvt.ps2dq.256", _V8, [_VF8])
            pdw = _fn(builder, "llvm.x86.avx2.packssdw", _VH, [_V8, _V8])
            pwb = _fn(builder, "llvm.x86.avx2.packsswb", _VB, [_VH, _VH])
            mn = cgutils.alloca_once_value(builder, ir.Constant(_V8, [127] * 8))
            with cgutils.for_range_slice(builder, _c(0), nc_, _c(1), intp=_I64) as (j, _):
                codes = []
                for r in range(8):
                    at = builder.add(builder.add(xoff_, builder.mul(ks_, _c(r))), builder.mul(j, _c(8)))
                    v = builder.fmul(_loadv(builder, xp, at, _VF8), inv_v)
                    c = builder.call(cvt, [builder.call(fmin, [builder.call(fmax, [v, lo_v]), hi_v])])
                    m0 = builder.load(mn)
                    builder.store(builder.select(builder.icmp_signed("<", c, m0), c, m0), mn)
                    codes.append(c)
                w = [builder.call(pdw, [codes[2 * i], codes[2 * i + 1]]) for i in range(4)]
                b0, b1 = builder.call(pwb, [w[0], w[1]]), builder.call(pwb, [w[2], w[3]])
                if u8:  # code + 128 = code ^ 0x80 on the byte
                    b0, b1 = (builder.xor(b, ir.Constant(_VB, [-128] * 32)) for b in (b0, b1))
                if signed:  # rows 0-3 in b0, 4-7 in b1; a row's window = codes, then -codes
                    for b, rows in ((b0, range(4)), (b1, range(4, 8))):
                        neg = builder.sub(ir.Constant(_VB, None), b)
                        for r in rows:
                            v = builder.shuffle_vector(b, neg, _signed_sel(r % 4))
                            _storev(builder, v, op, builder.add(builder.add(
                                ooff_, builder.mul(os_, _c(r))), builder.mul(j, _c(16))))
                elif rows_:  # row i of b: bytes 4i..4i+3 (inputs 0-3) and 16+4i.. (4-7)
                    for b, rows in ((b0, range(4)), (b1, range(4, 8))):
                        for r in rows:
                            i = r % 4
                            v = builder.shuffle_vector(b, b, ir.Constant(
                                ir.VectorType(_I32, 8), [4 * i + d for d in range(4)]
                                + [16 + 4 * i + d for d in range(4)]))
                            _storev(builder, v, op, builder.add(builder.add(
                                ooff_, builder.mul(os_, _c(r))), builder.mul(j, _c(8))))
                elif pairs:
                    for p in range(4):
                        v = builder.shuffle_vector(b0, b1, _pair_sel(p))
                        _storev(builder, v, op, builder.add(ooff_, builder.mul(
                            builder.add(builder.mul(j, _c(4)), _c(p)), os_)))
                else:
                    q0, q1 = builder.bitcast(b0, _V8), builder.bitcast(b1, _V8)
                    for h, sel in enumerate((_PACK_LO, _PACK_HI)):
                        _storev(builder, builder.shuffle_vector(q0, q1, sel), op, builder.add(
                            ooff_, builder.mul(builder.add(builder.mul(j, _c(2)), _c(h)), os_)))
            red = _fn(builder, "llvm.vector.reduce.smin.v8i32", _I32, [_V8])
            return builder.call(red, [builder.load(mn)])

        return sig, codegen

    return quant8


_quant8_quads, _quant8_pairs, _quant8_u8, _quant8_signed, _quant8_rows = (
    _make_quant8(kind) for kind in ("quads", "pairs", "u8", "signed", "rows"))
