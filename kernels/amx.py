"""AMX int8 kernels (``tdpbssd``) for full block rows (2:4 and dense weights), emitted from
Numba through llvmlite: the legacy AMX intrinsics (``llvm.x86.tileloadd64``, ``tdpbssd``, ...)
name the tile registers by immediate number, so no ``x86_amx`` IR type is needed.

One tile is 16 rows x 64 bytes. C (int32) = A (int8 activations, 16 rows x 64 inputs) . B
(int8 weights in the VNNI layout: 16 groups of 4 inputs x 16 outputs x 4). A task computes 32
activation rows x 32 outputs in four C tiles (2 A + 2 B loads feed 4 ``tdpbssd``), K in steps
of 64. Signed x signed: no +128 offset, no compensation, the code -128 is exact. The zeros of
2:4 weights are multiplied like any other weight: AMX has no sparsity, so 2:4 runs at the
speed of dense int8 here (measured ~650 GMAC/s per core on this project's Xeon, ~3x the VNNI
full-row kernel).

Linux gives a process the AMX tile state only after ``arch_prctl(ARCH_REQ_XCOMP_PERM,
XFEATURE_XTILEDATA)``: ``cpu.path_supported("amx_int8")`` asks for it (once). Import this module
only where that is true.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .avx2_gemm import dynamic_scale
from .avx2_intrinsics import _quant8_rows
from .epilogue import gelu_block

_I8, _I64 = ir.IntType(8), ir.IntType(64)
_P8 = _I8.as_pointer()
_VOID = ir.VoidType()
ROWS = 32  # activation rows per task (two A tiles; a last panel of 16 rows takes one)
COLS = 32  # outputs per task (two B tiles)
KSTEP = 64  # inputs per tile step
PANELS = 8  # panels of ROWS activation rows per task


def tile_config() -> np.ndarray:
    """The 64-byte tile configuration: palette 1, tiles 0-7 all 16 rows x 64 bytes."""
    cfg = np.zeros(64, np.uint8)
    cfg[0] = 1
    cfg[16:32].view(np.uint16)[:] = 64
    cfg[48:56] = 16
    return cfg


def _fn(builder, name, args):
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VOID, args), name)


def _c8(v):
    return ir.Constant(_I8, v)


def _c64(v):
    return ir.Constant(_I64, v)


def _make_tiles(arows: int):
    """Intrinsic: buf[16 * arows rows x 32 int32] = the activation rows at xq[xoff + r * lda]
    (``arows`` A tiles of 16 rows) times the weight tiles from wt[woff] (per K step two B tiles,
    1 KiB each, outputs 0-15 then 16-31), over ``nk`` steps of 64 inputs. The tiles must be
    configured (``_configure``) on this thread; ``cfg`` is unused (kept for the signature)."""

    @intrinsic
    def tiles(typingctx, cfg, xq, xoff, lda, wt, woff, nk, buf):
        sig = types.void(cfg, xq, xoff, lda, wt, woff, nk, buf)

        def codegen(context, builder, signature, args):
            t = signature.args
            cfg_, xq_, xoff_, lda_, wt_, woff_, nk_, buf_ = args

            def ptr(i, v):
                return builder.bitcast(context.make_array(t[i])(context, builder, v).data, _P8)

            xp, wp, bp = ptr(1, xq_), ptr(4, wt_), ptr(7, buf_)
            zero = _fn(builder, "llvm.x86.tilezero", [_I8])
            ctiles = [(a, b) for a in range(arows) for b in range(2)]  # C tile 2a + b
            for a, b in ctiles:
                builder.call(zero, [_c8(2 * a + b)])
            load = _fn(builder, "llvm.x86.tileloadd64", [_I8, _P8, _I64])
            dot = _fn(builder, "llvm.x86.tdpbssd", [_I8, _I8, _I8])
            arow = [builder.gep(xp, [builder.add(xoff_, builder.mul(lda_, _c64(16 * a)))])
                    for a in range(arows)]
            w0 = builder.gep(wp, [woff_])
            with cgutils.for_range(builder, nk_, intp=_I64) as loop:
                k = loop.index
                for a in range(arows):  # A tiles in registers 4, 5; B tiles in 6, 7
                    builder.call(load, [_c8(4 + a), builder.gep(arow[a], [builder.mul(k, _c64(64))]),
                                        lda_])
                wk = builder.gep(w0, [builder.mul(k, _c64(2048))])
                builder.call(load, [_c8(6), wk, _c64(64)])
                builder.call(load, [_c8(7), builder.gep(wk, [_c64(1024)]), _c64(64)])
                for a, b in ctiles:
                    builder.call(dot, [_c8(2 * a + b), _c8(4 + a), _c8(6 + b)])
            store = _fn(builder, "llvm.x86.tilestored64", [_I8, _P8, _I64])
            for a, b in ctiles:  # buf rows of 32 int32 (128 bytes)
                builder.call(store, [_c8(2 * a + b), builder.gep(bp, [_c64(16 * 128 * a + 64 * b)]),
                                     _c64(128)])
            return context.get_dummy_value()

        return sig, codegen

    return tiles


_tiles2, _tiles1 = _make_tiles(2), _make_tiles(1)


@intrinsic
def _configure(typingctx, cfg):
    """ldtilecfg: this thread's tiles as ``tile_config()`` describes them."""
    sig = types.void(cfg)

    def codegen(context, builder, signature, args):
        p = builder.bitcast(context.make_array(signature.args[0])(context, builder, args[0]).data, _P8)
        builder.call(_fn(builder, "llvm.x86.ldtilecfg", [_P8]), [p])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _release(typingctx):
    """tilerelease: back to the init state (the OS then saves no tile data for this thread)."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        builder.call(_fn(builder, "llvm.x86.tilerelease", []), [])
        return context.get_dummy_value()

    return sig, codegen


# ----------------------------------------------------------------------------- weight form
def amx_form(q: np.ndarray):
    """int8 weight [N, K] -> (B tiles int8 [ceil(N/32)][ceil(K/64)][2][16 groups][16 outputs][4],
    flattened; the number of K steps). Zero padded."""
    n, k = q.shape
    npad, nk = (n + COLS - 1) // COLS * COLS, (k + KSTEP - 1) // KSTEP
    qp = np.zeros((npad, nk * KSTEP), np.int8)
    qp[:n, :k] = q
    t = qp.reshape(npad // COLS, 2, 16, nk, 16, 4).transpose(0, 3, 1, 4, 2, 5)
    return np.ascontiguousarray(t).reshape(-1), nk


# ----------------------------------------------------------------------------- activations
@njit(parallel=True, cache=True)
def quantize_rows(x, inv, mpad, kpad, qlo, qhi):
    """float32 [M, K] -> int8 [mpad, kpad] row-major: clamp(rint(x * inv), qlo, qhi), zero
    padded (the A operand). Blocks of 8 rows: 8 rows x 8 inputs at a time in registers
    (``avx2_intrinsics._quant8_rows``), scalar code for the K % 8 tail and a block past the last
    row (``mpad``: a multiple of 8)."""
    m, k = x.shape
    out = np.empty((mpad, kpad), np.int8)
    flat = out.reshape(-1)
    for blk in prange(mpad // 8):
        base = blk * 8
        kv = k // 8 if base + 8 <= m else 0
        if kv > 0:
            _quant8_rows(x, np.int64(base) * k, np.int64(k), np.int64(kv), inv, qlo, qhi, flat,
                         np.int64(base) * kpad, np.int64(kpad))
        for r in range(8):
            i = base + r
            row = out[i]
            j0 = kv * 8
            if i < m:
                for j in range(j0, k):
                    row[j] = np.int8(np.int32(min(max(np.rint(x[i, j] * inv), qlo), qhi)))
                j0 = k
            for j in range(j0, kpad):
                row[j] = 0
    return out


@njit(cache=True)
def quantize_rows_dynamic(x, mpad, kpad, qlo, qhi):
    """``quantize_rows`` with the dynamic scale max|x| / 127 in the same call; (codes, scale),
    scale -1 flags inf/nan."""
    sx = dynamic_scale(x)
    if sx < 0:
        return np.empty((0, kpad), np.int8), sx
    return quantize_rows(x, np.float32(1.0 / sx), mpad, kpad, qlo, qhi), sx


# ----------------------------------------------------------------------------- kernel
@njit(parallel=True, cache=True)
def gemm(cfg, xq, m, wt, nk, n_out, scale, bias, xscale, y, act=0):
    """y[:m] = dequant(xq @ W.T) (+ GELU when ``act`` is 1). A task: 32 outputs x up to
    PANELS panels of 32 activation rows (the weight tiles stay in L1/L2 while the panels pass),
    one tile configuration per task."""
    mpad, kpad = xq.shape
    nb = (n_out + COLS - 1) // COLS
    mb = (mpad + ROWS - 1) // ROWS
    chunks = (mb + PANELS - 1) // PANELS
    lda = np.int64(kpad)
    xf = xq.reshape(-1)
    for t in prange(nb * chunks):
        b, c = t // chunks, t % chunks
        n0 = b * COLS
        nt = min(COLS, n_out - n0)
        woff = np.int64(b) * nk * 2 * 1024
        buf = np.empty((ROWS, COLS), np.int32)
        sc = np.empty(COLS, np.float32)
        off = np.empty(COLS, np.float32)
        for j in range(nt):
            sc[j] = np.float32(xscale * scale[n0 + j])
            off[j] = bias[n0 + j]
        _configure(cfg)
        for pnl in range(c * PANELS, min(mb, (c + 1) * PANELS)):
            i0 = pnl * ROWS
            if i0 + ROWS <= mpad:
                _tiles2(cfg, xf, np.int64(i0) * lda, lda, wt, woff, np.int64(nk), buf.reshape(-1))
            else:
                _tiles1(cfg, xf, np.int64(i0) * lda, lda, wt, woff, np.int64(nk), buf.reshape(-1))
            rows = min(ROWS, m - i0)
            for i in range(rows):
                yr = y[i0 + i, n0:n0 + nt]
                br = buf[i]
                for j in range(nt):
                    yr[j] = np.float32(br[j]) * sc[j] + off[j]
            if act == 1:
                gelu_block(y, i0, rows, n0, n0 + nt)
        _release()
