"""One OpenMP runtime for torch and numba (no second pool fighting for the cores), and the
shared-input (Q/K/V) fusion of packed layers (numerically identical to the unfused layers)."""

import copy
import os

import numpy as np
import pytest
import torch
from torch import nn

import kernels
from kernels.linear import FusedSliceLinear, convert_model, fuse_shared_input


def test_numba_and_torch_share_one_openmp_runtime():
    """torch's libgomp is in the global symbol scope after ``import torch``, so numba's omp
    layer binds GOMP_parallel to it: both parallel regions run on the same worker thread(s)."""
    import numba
    from numba import njit, prange

    if not os.path.isdir("/proc/self/task") or (os.cpu_count() or 1) < 2:
        pytest.skip("needs Linux /proc and >= 2 cores")

    @njit(parallel=True)
    def spin(n):
        out = np.zeros(2)
        for i in prange(2):
            acc = 0.0
            for j in range(n):
                acc += np.sin(j * 1e-3)
            out[i] = acc
        return out

    old = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(2)
    numba.set_num_threads(2)
    try:
        spin(10)
        if numba.threading_layer() != "omp":
            pytest.skip(f"numba threading layer {numba.threading_layer()!r}")
        a = torch.randn(768, 768)
        t = kernels.cpu.worker_threads(lambda: [a @ a for _ in range(60)])
        n = kernels.cpu.worker_threads(lambda: spin(20_000_000))
    finally:
        torch.set_num_threads(old[0])
        numba.set_num_threads(old[1])
    if not t or not n:
        pytest.skip("workers got no measurable CPU time (machine too busy)")
    assert t == n, f"torch workers {t} != numba workers {n}: two OpenMP pools"


class _Attn(nn.Module):
    def __init__(self, d=24):
        super().__init__()
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, 2 * d)

    def forward(self, x):
        return torch.cat([self.query(x), self.key(x), self.value(x)], -1)


@pytest.mark.parametrize("fmt", ["csr", "block1x4", "nm", "dense"])
def test_fuse_shared_input_is_exact(fmt, monkeypatch):
    """Bit for bit on one kernel family (the fused layer's block density differs from its
    members', and on the default dispatch AMX takes full block rows, whose dequantize rounds
    differently from the VNNI kernels' +128-compensated one: ~1 ulp)."""
    from _kernels_helpers import to_nm

    from kernels import cpu

    monkeypatch.setenv("SPARQ_KERNEL_ISA", next(p for p in cpu.supported_paths() if p != "amx_int8"))
    torch.manual_seed(0)
    m = nn.Sequential()
    m.add_module("encoder", _Attn())
    with torch.no_grad():
        for lin in (m.encoder.query, m.encoder.key, m.encoder.value):
            w = lin.weight.numpy()
            w[:] = to_nm(w) if fmt == "nm" else w * (np.random.default_rng(1).random(w.shape) > 0.7)
    a = convert_model(copy.deepcopy(m), format=fmt, filter="encoder.*")
    b = copy.deepcopy(a)
    assert fuse_shared_input(b) == 1
    assert isinstance(b.encoder.key, FusedSliceLinear)
    x = torch.randn(3, 5, 24)
    with torch.inference_mode():
        torch.testing.assert_close(b(x), a(x), rtol=0, atol=0)
        torch.testing.assert_close(b(x * 2), a(x * 2), rtol=0, atol=0)  # new input, recomputed
    # one member called alone, twice on the same tensor, stays correct
    torch.testing.assert_close(b.encoder.value(x), a.encoder.value(x), rtol=0, atol=0)
    torch.testing.assert_close(b.encoder.value(x), a.encoder.value(x), rtol=0, atol=0)


def test_fuse_skips_mismatched_static_scales():
    m = nn.Sequential()
    m.add_module("encoder", _Attn())
    scales = {"encoder.query": 0.1, "encoder.key": 0.2, "encoder.value": 0.1}
    a = convert_model(m, format="csr", filter="encoder.*", act_scales=scales)
    assert fuse_shared_input(a) == 0


_ = os
