"""The AVX-512 VNNI batch-1 window kernel and the AMX tile kernel: exact against numpy on odd
shapes (tails of every tile and window), GELU epilogue, static scales with -128 codes."""

import numpy as np
import pytest
from _kernels_helpers import sparse_weight

import kernels
from kernels import cpu, ops

RNG = np.random.default_rng(7)
PATHS = cpu.supported_paths()


def _check(x, p, path, act_scale=None, epilogue=None):
    y = kernels.linear(x, p, act_scale=act_scale, path=path, epilogue=epilogue)
    ref = kernels.reference(x, p, act_scale=act_scale, epilogue=epilogue)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * (np.abs(ref).max() + 1))


@pytest.mark.skipif("avx512_vnni" not in PATHS, reason="no AVX-512 VNNI on this CPU")
@pytest.mark.parametrize("serial", [False, True])
@pytest.mark.parametrize("fmt,pattern,sparsity", [("block1x4", "block1x4", 0.9),
                                                  ("block1x4", "block1x4", 0.3),
                                                  ("csr", "unstructured", 0.99),
                                                  ("nm", "nm", 0.5), ("dense", "unstructured", 0.0)])
def test_vnni_batch1_window16_exact(fmt, pattern, sparsity, serial, monkeypatch):
    """M = 1 on the VNNI path: 16 rows per vpermd + vpdpbusd step, windows of 16 quads, u8
    activations with the per-row compensation; both the parallel kernel and its serial twin."""
    monkeypatch.setattr(ops, "WINDOW16_SERIAL_STEPS", 10**9 if serial else -1)
    for n, k in ((1, 3), (17, 64), (40, 70), (33, 523), (16, 1031)):
        w = sparse_weight(RNG, n, k, sparsity, pattern)
        w[n // 2] = 0
        p = kernels.pack(w, fmt, bias=RNG.standard_normal(n))
        x = RNG.standard_normal((1, k)).astype(np.float32) * 3
        _check(x, p, "avx512_vnni")
        _check(x, p, "avx512_vnni", epilogue="gelu")
        _check(-np.abs(x), p, "avx512_vnni", act_scale=0.01)  # codes of -128 (u8 0): exact
        np.testing.assert_array_equal(kernels.linear(np.zeros((1, k), np.float32), p,
                                                     path="avx512_vnni"),
                                      kernels.reference(np.zeros((1, k), np.float32), p))
        assert (p._cache["window16"][1].size > 0) == bool(np.any(w))


@pytest.mark.skipif("amx_int8" not in PATHS, reason="no AMX on this CPU/OS")
@pytest.mark.parametrize("fmt,pattern", [("nm", "nm"), ("dense", "unstructured")])
def test_amx_tiles_exact(fmt, pattern):
    """Full block rows on AMX tiles: M and N past every 16/32 boundary (a last panel of one A
    tile), K past 64, GELU, and a static scale whose codes reach -128 (exact: s8 x s8)."""
    for n, k in ((1, 5), (33, 64), (31, 65), (70, 200), (96, 3)):
        w = sparse_weight(RNG, n, k, 0.0, pattern)
        p = kernels.pack(w, fmt, bias=RNG.standard_normal(n))
        assert ops._own(p, "amx_int8") == "amx_int8"
        for m in (1, 15, 16, 17, 33, 48, 80):
            x = RNG.standard_normal((m, k)).astype(np.float32)
            _check(x, p, "amx_int8")
        _check(x, p, "amx_int8", epilogue="gelu")
        _check(-np.abs(x) * 5, p, "amx_int8", act_scale=0.01)


@pytest.mark.skipif("amx_int8" not in PATHS, reason="no AMX on this CPU/OS")
def test_amx_path_runs_vnni_kernels_on_sparse_rows():
    p = kernels.pack(sparse_weight(RNG, 40, 100, 0.9, "block1x4"), "block1x4")
    assert ops._own(p, "amx_int8") == "avx512_vnni"
    _check(RNG.standard_normal((20, 100)).astype(np.float32), p, "amx_int8")
