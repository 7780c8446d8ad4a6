"""Dispatch: y = x @ W.T + b on a packed layer, activation quantization fused.

``linear(x, packed, act_scale=None)``: x float32 [M, K] -> float32 [M, N]. Per-tensor dynamic
activation scale (max|x| / 127) unless a static ``act_scale`` is given. Runs the path
``SPARQ_KERNEL_ISA`` forces, else the one ``dispatch.choose`` found fastest for the layer's
shape, format and M bucket (timed once, cached per CPU), else ``cpu.kernel_path()``.
"""

from __future__ import annotations

import numpy as np

from . import cpu, dispatch, portable
from .epilogue import EPILOGUES, gelu_
from .formats import PackedLinear, unpack_2bit

_VNNI = None
GEMV_MAX_M = 8  # AVX2: M <= 8 runs the latency kernel (weights walked once, rows in registers)
GEMV_ROWS = 16  # output rows per parallel task of the latency kernel
SLAB_GROUPS = 64  # K/4 groups per L1 slab (64 groups x 128 rows x 4 B = 32 KiB)
SLAB_MIN_DENSITY = 0.2
AVX2_SLAB_MIN_GROUPS = 512  # AVX2: K slabs only for long K (>= 2048)
DENSE_MIN_DENSITY = 0.75  # block density from which full zero-filled block rows win (2:4, dense)
NM_TILE = 4  # AVX2 2:4: blocks of 8 output rows per parallel task
WINDOW16_SERIAL_STEPS = 2000  # VNNI M = 1: window steps up to which one thread runs the layer
PAIRPAIR_MAX_RATIO = 0.8  # AVX2: blocks of two input pairs when #blocks < this x #(1x4 blocks);
# unstructured 90% (~0.56) measured 1.05-1.4x faster than int16 1x2 blocks at M=128


def vnni_available() -> bool:
    global _VNNI
    if _VNNI is None:
        _VNNI = cpu.has_vnni512()
    return _VNNI and not cpu.jit_disabled()


_ALIAS = {"vnni": "avx512_vnni"}


def resolve_path(path: str | None) -> str:
    """The kernel path a call runs: ``cpu.kernel_path()`` by default; an explicit one must be
    supported here (one-line error otherwise)."""
    if path is None:
        return cpu.kernel_path()
    if path in _OK:
        return path
    path = _ALIAS.get(path, path)
    if path not in cpu.PATHS:
        raise ValueError(f"path={path!r}: choose one of {', '.join(cpu.PATHS)}")
    if not cpu.path_supported(path):
        raise RuntimeError(f"kernel path {path} cannot run here; supported: "
                           f"{', '.join(cpu.supported_paths())}")
    _OK.add(path)
    return path


_OK: set = set()


def act_scale_of(x: np.ndarray, act_scale: float | None) -> float:
    if act_scale is not None:
        if not act_scale > 0:
            raise ValueError(f"act_scale must be > 0, got {act_scale}")
        return float(act_scale)
    a = float(portable.absmax(x)) if x.size else 0.0
    if not np.isfinite(a):
        raise ValueError("input contains inf/nan")
    return a / 127.0 if a > 0 else 1.0


def _bias(p: PackedLinear) -> np.ndarray:
    if "bias0" not in p._cache:
        p._cache["bias0"] = p.bias if p.bias is not None else np.zeros(p.out_features, np.float32)
    return p._cache["bias0"]


def act_range(act_qmax: int | None) -> tuple[np.float32, np.float32]:
    """Clamp range of the int8 activation codes: [-128, 127] by default; [-q, q] for a
    zero-preserving fake-quant grid with ``act_qmax=q`` (127 at 8 bits, 7 at 4 bits)."""
    if act_qmax is None:
        return np.float32(-128.0), np.float32(127.0)
    if not 1 <= act_qmax <= 127:
        raise ValueError(f"act_qmax must be in [1, 127], got {act_qmax}")
    return np.float32(-act_qmax), np.float32(act_qmax)


def linear(x: np.ndarray, p: PackedLinear, act_scale: float | None = None,
           path: str | None = None, act_qmax: int | None = None,
           epilogue: str | None = None) -> np.ndarray:
    """x: float32 [M, K] (C-contiguous). ``path``: None (``cpu.kernel_path()``), or one of
    ``cpu.PATHS`` that this machine supports ("vnni" = "avx512_vnni").
    ``act_qmax``: clamp activation codes to [-act_qmax, act_qmax] (default [-128, 127]).
    ``epilogue``: None or "gelu" (applied to the output in the kernel's store pass)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    m, k = x.shape
    if k != p.in_features:
        raise ValueError(f"input has {k} features, layer expects {p.in_features}")
    if path is not None:
        resolve_path(path)
    y = np.empty((m, p.out_features), dtype=np.float32)
    if m == 0:
        act_range(act_qmax)
        act_scale_of(x, act_scale)
        _epilogue_code(epilogue)
        return y
    runner(p, m, act_scale, path, act_qmax, epilogue)(x, y)
    return y


def _epilogue_code(epilogue: str | None) -> int:
    if epilogue not in EPILOGUES:
        raise ValueError(f"epilogue={epilogue!r}: choose one of {list(EPILOGUES)}")
    return EPILOGUES[epilogue]


def runner(p: PackedLinear, m: int, act_scale: float | None = None, path: str | None = None,
           act_qmax: int | None = None, epilogue: str | None = None):
    """The cached ``run(x, y)`` that ``linear`` calls for ``m`` (> 0) rows: built and validated
    once per (path, size class, activation quantization); x float32 [m, K] C-contiguous, y
    float32 [m, N]. ``SparseInt8Linear.forward`` calls it directly (batch-1 latency).
    ``path`` None: the forced path, or the autotuned one of ``m``'s bucket (``dispatch``)."""
    if path is None:
        key = ("auto", cpu._path_state(), dispatch.bucket(m), act_scale, act_qmax, epilogue)
        run = p._cache.get(key)
        if run is None:
            _epilogue_code(epilogue)
            kind = _own(p, dispatch.choose(p, m, lambda q: _build(p, q, m), _candidates(p)))
            run = p._cache[key] = _build(p, kind, m, act_scale, act_qmax, epilogue)
            p._cache.setdefault("paths", {})[dispatch.bucket(m)] = kind
        return run
    kind = _own(p, resolve_path(path))
    key = ("run", kind, m <= GEMV_MAX_M, act_scale, act_qmax, epilogue)
    run = p._cache.get(key)
    if run is None:
        run = p._cache[key] = _build(p, kind, m, act_scale, act_qmax, epilogue)
    return run


def _build(p: PackedLinear, kind: str, m: int, act_scale=None, act_qmax=None, epilogue=None):
    return _RUNNERS[kind](p, m <= GEMV_MAX_M, act_scale, act_qmax, _epilogue_code(epilogue))


def chosen_path(p: PackedLinear, m: int) -> str | None:
    """The path the last ``runner(p, m)`` without an explicit path runs (None before one)."""
    return p._cache.get("paths", {}).get(dispatch.bucket(m))


def _full_rows(p: PackedLinear) -> bool:
    """Block density >= DENSE_MIN_DENSITY (2:4, dense): the layers the AMX kernel takes."""
    if "full_rows" not in p._cache:
        ptr, cols, _, _ = p.blocks()
        groups = (p.in_features + 3) // 4
        p._cache["full_rows"] = cols.size / max(1, p.out_features * groups) >= DENSE_MIN_DENSITY
    return p._cache["full_rows"]


def _own(p: PackedLinear, kind: str) -> str:
    """The path whose kernels run: amx_int8 runs the avx512_vnni kernels on sparse rows."""
    return "avx512_vnni" if kind == "amx_int8" and not _full_rows(p) else kind


def _candidates(p: PackedLinear) -> list[str]:
    return list(dict.fromkeys(_own(p, q) for q in dispatch.tunable_paths()))


def _portable_runner(p: PackedLinear, small, act_scale, act_qmax, act=0):
    qlo, qhi = act_range(act_qmax)
    if act_scale is not None:
        act_scale_of(None, act_scale)

    def run(x, y):
        sx = act_scale_of(x, act_scale)
        _portable(p, portable.quantize_t(x, np.float32(1.0 / sx), qlo, qhi), sx, y)
        if act:
            gelu_(y)
    return run


def _vnni_runner(p: PackedLinear, small, act_scale, act_qmax, act=0):
    run = _vnni_gemm_runner(p, act_scale, act_qmax, act)
    if not small:
        return run
    from . import vnni_latency as vl
    from .avx2_latency import window_form

    qlo, qhi = act_range(act_qmax)
    static = act_scale_of(None, act_scale) if act_scale is not None else 0.0
    ptr, cols, vals, comp = p.blocks()
    if "window16" not in p._cache:
        p._cache["window16"] = window_form(ptr, cols, vals, p.out_features,
                                           (p.in_features + 3) // 4, vl.LANES)
    gptr, off, sel, wv = p._cache["window16"]
    serial = off.size <= WINDOW16_SERIAL_STEPS
    kernel = vl.gemv1_window16_serial if serial else vl.gemv1_window16
    scale, bias, batched = p.scale, _bias(p), run

    def run1(x, y):
        if x.shape[0] > 1:  # M = 2..8: the batched kernels
            batched(x, y)
            return
        if kernel(x, static, act_scale is None, qlo, qhi, gptr, off, sel, wv, comp, scale, bias,
                  y, 1, act) == -1.0:
            raise ValueError("input contains inf/nan")
    return run1


def _vnni_gemm_runner(p: PackedLinear, act_scale, act_qmax, act=0):
    from . import vnni

    qlo, qhi = act_range(act_qmax)
    if act_scale is not None:
        act_scale_of(None, act_scale)
    ptr, cols, vals, comp = p.blocks()
    groups = (p.in_features + 3) // 4
    density = cols.size / max(1, p.out_features * groups)
    bias = _bias(p)

    def run(x, y):
        m = x.shape[0]
        mpad = (m + 15) // 16 * 16
        if act_scale is None:  # dynamic scale and quantization in one call
            xl, sx = vnni.quantize_layout_dynamic(x, mpad, qlo, qhi)
            if sx < 0:
                raise ValueError("input contains inf/nan")
        else:
            sx = act_scale_of(x, act_scale)
            xl = vnni.quantize_layout(x, np.float32(1.0 / sx), mpad, qlo, qhi)
        if density >= DENSE_MIN_DENSITY:
            # full block rows (2:4 -> every 1x4 group holds 2 values; dense): rows share the
            # activation loads (4 rows x 4 chunks register tile), zero-filled where a group is empty
            if "dense" not in p._cache:
                p._cache["dense"] = vnni.dense_blocks(ptr, cols, vals, p.out_features, groups, 16)
            vnni.block_gemm_dense(xl, mpad, m, p._cache["dense"], groups, p.out_features, comp,
                                  p.scale, bias, sx, y, 16, act)
        elif mpad >= 64 and density >= SLAB_MIN_DENSITY and groups > SLAB_GROUPS:
            # dense-ish block rows (e.g. unstructured 90% -> ~34% of 1x4 groups): walk K in
            # L1-sized slabs; measured 20-25% faster there, slower for sparse block rows.
            if "slabs" not in p._cache:
                p._cache["slabs"] = vnni.slab_pointers(ptr, cols, SLAB_GROUPS)
            vnni.block_gemm_slab(xl, mpad, m, p._cache["slabs"], cols, vals, comp, p.scale,
                                 bias, sx, y, 16, act)
        else:
            vnni.block_gemm(xl, mpad, m, ptr, cols, vals, comp, p.scale, bias, sx, y, 16, act)
    return run


def _avx2_runner(p: PackedLinear, small, act_scale, act_qmax, act=0):
    """AVX2 / AVX-VNNI kernels (``avx2.py``). A call whose activation codes reach -128 (static
    scale, default clamp), which the sign trick cannot take, runs on the portable kernels."""
    from . import avx2

    qlo, qhi = act_range(act_qmax)
    static = act_scale_of(None, act_scale) if act_scale is not None else 0.0
    fallback = _portable_runner(p, small, act_scale, act_qmax, act)
    ptr, cols, vals, _ = p.blocks()
    groups = (p.in_features + 3) // 4
    density = cols.size / max(1, p.out_features * groups)
    dense = density >= DENSE_MIN_DENSITY
    scale, bias = p.scale, _bias(p)
    lanes = None
    if dense:  # 2:4 (<= 2 nonzeros in every group of 4): output rows in the vector lanes, two
        if "nm_lanes" not in p._cache:  # groups per dot product, signs folded into the vpshufb
            p._cache["nm_lanes"] = avx2.nm_lane_form(p.int_weight())
        lanes = p._cache["nm_lanes"]

    def run_lanes(x, y):
        if act_scale is None:  # scale and quantization in one call
            xs, bad, sx = avx2.quantize_signed_dynamic(x, qlo, qhi, lanes[2])
            if sx < 0:
                raise ValueError("input contains inf/nan")
        else:
            sx = static
            xs, bad = avx2.quantize_signed(x, np.float32(1.0 / sx), qlo, qhi, lanes[2])
        if bad:
            fallback(x, y)
        else:
            avx2.nm_gemm(xs, x.shape[0], *lanes, p.out_features, scale, bias, sx, y,
                         avx2.nm_panel_rows(lanes[2]), NM_TILE, act)
    if small:  # latency kernel: quantize + kernel + epilogue in one jitted call
        key = "gemv_dense" if dense else "gemv"
        if key not in p._cache:
            p._cache[key] = avx2.gemv_form(ptr, cols, vals, p.out_features, groups, dense)
        ptr8, cols8, vals8 = p._cache[key]
        gemv, gemv1, gather = avx2.gemv, avx2.gemv1, not dense
        if not dense and "window" not in p._cache:
            p._cache["window"] = avx2.window_form(ptr, cols, vals, p.out_features, groups)
        window = p._cache.get("window") if not dense else None
        gptr, off, sel, wv = window if window is not None else (None,) * 4

        def run(x, y):
            if lanes is not None and x.shape[0] > 1:  # 2:4 at M = 2..8: measured 1.6x gemv
                run_lanes(x, y)
                return
            if window is not None and x.shape[0] == 1:  # batch 1: 8 rows per vpermd step
                sx = avx2.gemv1_window(x, static, act_scale is None, qlo, qhi, gptr, off, sel,
                                       wv, scale, bias, y, GEMV_ROWS // 8, act)
            else:
                sx = (gemv1 if x.shape[0] == 1 else gemv)(x, static, act_scale is None, qlo,
                                                            qhi, ptr8, cols8, vals8, gather,
                                                            scale, bias, y, GEMV_ROWS, act)
            if sx == -1.0:
                raise ValueError("input contains inf/nan")
            if sx == -2.0:
                fallback(x, y)
        return run
    if lanes is not None:
        return run_lanes
    if dense and "dense8" not in p._cache:
        p._cache["dense8"] = avx2.dense_blocks(ptr, cols, vals, p.out_features, groups, 16)
    wd = p._cache.get("dense8")
    slabs = pp = None
    if not dense:
        # scattered nonzeros (unstructured): blocks of two occupied input pairs when they are
        # fewer than PAIRPAIR_MAX_RATIO x the occupied 1x4 groups (unstructured 90%: ~0.56;
        # block1x4 weights: 1, they keep the 1x4 kernel)
        if "pairpair" not in p._cache:
            form = avx2.pairpair_form(p.int_weight())
            p._cache["pairpair"] = form if form[1].size < PAIRPAIR_MAX_RATIO * cols.size else None
        pp = p._cache["pairpair"]
    if pp is None and not dense and density >= SLAB_MIN_DENSITY and groups >= AVX2_SLAB_MIN_GROUPS:
        # dense-ish 1x4 block rows over a long K (e.g. block1x4 at 50-70%, K = 3072): L1 slabs
        # of K, measured +17% at 3072x768 M=128; at K = 768 it was within noise or slower
        if "slabs8" not in p._cache:
            from .tiles import slab_pointers

            p._cache["slabs8"] = slab_pointers(ptr, cols, SLAB_GROUPS)
        slabs = p._cache["slabs8"]

    def run(x, y):
        m = x.shape[0]
        mpad = (m + 15) // 16 * 16 if pp is not None else (m + 7) // 8 * 8
        if act_scale is None:  # scale, quantization and layout in one call
            xl, bad, sx = avx2.quantize_layout_dynamic(x, mpad, qlo, qhi, pp is not None)
            if sx < 0:
                raise ValueError("input contains inf/nan")
        else:
            sx = static
            quantize = avx2.quantize_pairs if pp is not None else avx2.quantize_layout
            xl, bad = quantize(x, np.float32(1.0 / sx), mpad, qlo, qhi)
        if pp is not None:
            if bad:
                fallback(x, y)
            else:
                avx2.block_gemm_pp(xl, mpad, m, *pp, scale, bias, sx, y, 16, act)
            return
        if bad:
            fallback(x, y)
        elif dense:
            avx2.block_gemm_dense(xl, mpad, m, wd, groups, p.out_features, scale, bias, sx, y, 16,
                                  act)
        elif slabs is not None and mpad >= 64:
            avx2.block_gemm_slab(xl, mpad, m, slabs, cols, vals, scale, bias, sx, y, 16, act)
        else:
            avx2.block_gemm(xl, mpad, m, ptr, cols, vals, scale, bias, sx, y, 16, act)
    return run


def _amx_runner(p: PackedLinear, small, act_scale, act_qmax, act=0):
    """AMX tiles (``amx.py``) for full block rows (2:4, dense); other layers: the VNNI kernels."""
    if not _full_rows(p):
        return _vnni_runner(p, small, act_scale, act_qmax, act)
    from . import amx

    qlo, qhi = act_range(act_qmax)
    static = act_scale_of(None, act_scale) if act_scale is not None else 0.0
    if "amx" not in p._cache:
        p._cache["amx"] = amx.amx_form(p.int_weight())
    wt, nk = p._cache["amx"]
    cfg, bias, kpad = amx.tile_config(), _bias(p), nk * amx.KSTEP

    def run(x, y):
        mpad = (x.shape[0] + 15) // 16 * 16
        if act_scale is None:  # scale and quantization in one call
            xq, sx = amx.quantize_rows_dynamic(x, mpad, kpad, qlo, qhi)
            if sx < 0:
                raise ValueError("input contains inf/nan")
        else:
            sx = static
            xq = amx.quantize_rows(x, np.float32(1.0 / sx), mpad, kpad, qlo, qhi)
        amx.gemm(cfg, xq, x.shape[0], wt, nk, p.out_features, p.scale, bias, sx, y, act)
    return run


_RUNNERS = {"portable": _portable_runner, "avx512_vnni": _vnni_runner, "avx2": _avx2_runner,
            "avx_vnni": _avx2_runner, "amx_int8": _amx_runner}


def _portable(p: PackedLinear, xt, sx, y) -> None:
    b = _bias(p)
    fmt = p.format
    if fmt == "dense":
        q = p._cache.setdefault("q", p.int_weight())
        portable.dense_kernel(xt, q, p.scale, b, sx, y)
    elif fmt == "csr":
        vals = p._cache.setdefault("vals8", p._values_load(p.values, p.nnz))
        portable.csr_kernel(xt, p.indptr, p.indices, vals, p.scale, b, sx, y)
    elif fmt == "block1x4":
        vals = p._cache.setdefault("vals8", p._values_load(p.values, p.nblocks * 4))
        portable.block1x4_kernel(xt, p.indptr, p.blocks_idx, vals, p.scale, b, sx, y)
    elif fmt == "nm":
        if "nm" not in p._cache:
            g = (p.in_features + 3) // 4
            cnt = p.out_features * g * p.n
            p._cache["nm"] = (p._values_load(p.values, cnt).reshape(p.out_features, -1),
                              unpack_2bit(p.idx, cnt).reshape(p.out_features, -1))
        vals, idx = p._cache["nm"]
        portable.nm_kernel(xt, vals, idx, p.n, p.scale, b, sx, y)
    else:  # pragma: no cover - registry guards formats
        raise ValueError(f"no kernel for format {fmt!r}")


def reference(x: np.ndarray, p: PackedLinear, act_scale: float | None = None,
              act_qmax: int | None = None, epilogue: str | None = None) -> np.ndarray:
    """float64 reference of exactly what the kernels compute (same quantization of x); the
    "gelu" epilogue with the exact erf."""
    x = np.asarray(x, dtype=np.float32)
    sx = act_scale_of(x, act_scale) if x.size else 1.0
    qlo, qhi = act_range(act_qmax)
    xq = np.clip(np.rint(x * np.float32(1.0 / sx)), qlo, qhi).astype(np.float64)
    y = (xq @ p.int_weight().astype(np.float64).T) * sx * p.scale.astype(np.float64)
    y = y + (0.0 if p.bias is None else p.bias.astype(np.float64))
    if _epilogue_code(epilogue) == 1:
        from math import erf

        y = 0.5 * y * (1.0 + np.vectorize(erf, otypes=[np.float64])(y / np.sqrt(2.0)))
    return y
