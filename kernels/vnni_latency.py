"""AVX-512 VNNI batch-1 kernel (M = 1): the sliding-window idea of ``avx2_latency`` on 16 lanes.

Output rows go in groups of 16, one zmm lane each; a group's blocks are packed into steps over a
sliding window of 16 activation quads (``avx2_latency.window_form(..., lanes=16)``): a step
loads the window (64 bytes from quad off[s]), ``vpermd`` moves each lane's quad into place
(int8 selectors, zero-extended) and one ``vpdpbusd`` multiplies it with the 16 rows' weight
quads. The activations are unsigned (code + 128) as ``vpdpbusd`` wants them, so there is no
sign work at all (AVX-512 has no ``vpsignb``); the 128 * sum(w) each row picks up is the
per-row compensation of ``PackedLinear.blocks``, taken off in the dequantize. Several
accumulators take the steps in turn (``vpdpbusd``'s latency is ~5 cycles, a step ~1-2).
Quantization, kernel and dequantize (+ GELU) run in one jitted call; a serial twin (no
parallel region: its launch and barrier cost more than small layers' work) is the other
candidate the M = 1 runner picks from.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .avx2_latency import _absmax_scale
from .epilogue import gelu_block

LANES = 16
UNROLL = 4  # accumulators taking the steps in turn
_I8, _I32, _I64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
_V16 = ir.VectorType(_I32, 16)


def _fn(builder, name, ret, args):
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(ret, args), name)


def _data(context, builder, ty, val, elt):
    return builder.bitcast(context.make_array(ty)(context, builder, val).data, elt.as_pointer())


def _load(builder, base, idx, vty):
    return builder.load(builder.bitcast(builder.gep(base, [idx]), vty.as_pointer()), align=1)


@intrinsic
def _window16(typingctx, xq, off, sel, wv, s0, s1, out, ooff):
    """out[ooff:ooff+16] = for the 16 rows of a group, the sum over steps s in [s0, s1) of
    vpdpbusd(vpermd(x quads off[s]..off[s]+15, sel[16s:16s+16]), wv[16s:16s+16])."""
    sig = types.void(xq, off, sel, wv, s0, s1, out, ooff)

    def codegen(context, builder, signature, args):
        xa, fa, sa, va, s0_, s1_, oa, ooff_ = args
        t = signature.args
        xp, fp = _data(context, builder, t[0], xa, _I32), _data(context, builder, t[1], fa, _I32)
        sp, vp = _data(context, builder, t[2], sa, _I8), _data(context, builder, t[3], va, _I32)
        op = _data(context, builder, t[6], oa, _I32)
        perm = _fn(builder, "llvm.x86.avx512.permvar.si.512", _V16, [_V16, _V16])
        dot = _fn(builder, "llvm.x86.avx512.vpdpbusd.512", _V16, [_V16, _V16, _V16])
        accs = [cgutils.alloca_once_value(builder, ir.Constant(_V16, None)) for _ in range(UNROLL)]
        s0_, s1_ = builder.sext(s0_, _I64), builder.sext(s1_, _I64)

        def step(s, acc):
            b = builder.mul(s, ir.Constant(_I64, LANES))
            xwin = _load(builder, xp, builder.sext(builder.load(builder.gep(fp, [s])), _I64), _V16)
            idx = builder.zext(_load(builder, sp, b, ir.VectorType(_I8, LANES)), _V16)
            xv = builder.call(perm, [xwin, idx])
            builder.store(builder.call(dot, [builder.load(acc), xv, _load(builder, vp, b, _V16)]),
                          acc)

        n = builder.sub(s1_, s0_)
        mid = builder.add(s0_, builder.mul(builder.sdiv(n, ir.Constant(_I64, UNROLL)),
                                           ir.Constant(_I64, UNROLL)))
        with cgutils.for_range_slice(builder, s0_, mid, ir.Constant(_I64, UNROLL),
                                     intp=_I64) as (s, _):
            for u in range(UNROLL):
                step(builder.add(s, ir.Constant(_I64, u)), accs[u])
        with cgutils.for_range_slice(builder, mid, s1_, ir.Constant(_I64, 1), intp=_I64) as (s, _):
            step(s, accs[0])
        total = builder.load(accs[0])
        for u in range(1, UNROLL):
            total = builder.add(total, builder.load(accs[u]))
        dst = builder.gep(op, [builder.sext(ooff_, _I64) if ooff_.type.width < 64 else ooff_])
        builder.store(total, builder.bitcast(dst, _V16.as_pointer()), align=1)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True)
def _quantize_u8(x, sx, dynamic, qlo, qhi, nquads):
    """(u8 codes + 128 of row 0 of x as int32 quads [nquads], padding 128; the scale: the
    dynamic max|x| / 127, or the static ``sx``; -1 flags inf/nan)."""
    if dynamic:
        sx = _absmax_scale(x)
        if sx < 0:
            return np.zeros(0, np.int32), sx
    inv = np.float32(1.0 / sx)
    out = np.full(nquads * 4, 128, dtype=np.uint8)
    k = x.shape[1]
    for j in range(k):  # branch-free: vectorized
        out[j] = np.uint8(np.int32(min(max(np.rint(x[0, j] * inv), qlo), qhi)) + 128)
    return out.view(np.int32), sx


@njit(inline="always")
def _groups(t, groups_per_task, xq, gptr, off, sel, wv, comp, scale, bias, sx, y, accs, act):
    """Task t: the window steps of its groups of 16 rows, then dequantize (+ GELU)."""
    n_out = y.shape[1]
    ngroups = gptr.shape[0] - 1
    g0, g1 = t * groups_per_task, min(ngroups, (t + 1) * groups_per_task)
    for g in range(g0, g1):
        _window16(xq, off, sel, wv, gptr[g], gptr[g + 1], accs, np.int64(g * LANES))
    r0, r1 = g0 * LANES, min(n_out, g1 * LANES)
    for n in range(r0, r1):
        y[0, n] = np.float32(accs[n] - comp[n]) * np.float32(sx * scale[n]) + bias[n]
    if act == 1:
        gelu_block(y, 0, 1, r0, r1)


@njit(parallel=True, cache=True)
def gemv1_window16(x, sx, dynamic, qlo, qhi, gptr, off, sel, wv, comp, scale, bias, y,
                   groups_per_task, act=0):
    """M = 1 on ``window_form(..., lanes=16)`` weights, tasks of ``groups_per_task`` groups of
    16 rows in parallel. Returns the activation scale (-1: inf/nan in x, nothing computed)."""
    ngroups = gptr.shape[0] - 1
    xq, sx = _quantize_u8(x, sx, dynamic, qlo, qhi, (x.shape[1] + 63) // 64 * 16)
    if sx < 0:
        return sx
    accs = np.empty(ngroups * LANES, dtype=np.int32)
    for t in prange((ngroups + groups_per_task - 1) // groups_per_task):
        _groups(t, groups_per_task, xq, gptr, off, sel, wv, comp, scale, bias, sx, y, accs, act)
    return sx


@njit(cache=True)
def gemv1_window16_serial(x, sx, dynamic, qlo, qhi, gptr, off, sel, wv, comp, scale, bias, y,
                          groups_per_task, act=0):
    """``gemv1_window16`` on the calling thread only (no parallel region)."""
    ngroups = gptr.shape[0] - 1
    xq, sx = _quantize_u8(x, sx, dynamic, qlo, qhi, (x.shape[1] + 63) // 64 * 16)
    if sx < 0:
        return sx
    accs = np.empty(ngroups * LANES, dtype=np.int32)
    _groups(0, ngroups, xq, gptr, off, sel, wv, comp, scale, bias, sx, y, accs, act)
    return sx
