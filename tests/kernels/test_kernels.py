import os
import subprocess
import sys

import numpy as np
import pytest
from _kernels_helpers import sparse_weight
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels
from kernels import cpu

RNG = np.random.default_rng(1)
PATHS = cpu.supported_paths()  # every path this CPU runs gets the same exactness tests
PATTERN = {"csr": "unstructured", "block1x4": "block1x4", "nm": "nm", "dense": "unstructured"}


def _check(x, p, path, act_scale=None):
    y = kernels.linear(x, p, act_scale=act_scale, path=path)
    ref = kernels.reference(x, p, act_scale=act_scale)
    assert y.shape == ref.shape and y.dtype == np.float32
    # integer accumulation is exact; only the float32 epilogue rounds
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * (np.abs(ref).max() + 1))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("fmt", ["csr", "block1x4", "nm", "dense"])
@pytest.mark.parametrize("m,k,n", [(1, 13, 7), (37, 70, 33), (16, 64, 16), (130, 101, 35),
                                   (3, 1, 2), (80, 523, 17), (8, 45, 40), (9, 200, 24)])
@pytest.mark.parametrize("sparsity", [0.0, 0.9, 0.99])
def test_kernel_matches_reference(path, fmt, m, k, n, sparsity):
    w = sparse_weight(RNG, n, k, sparsity, PATTERN[fmt])
    w[n // 2] = 0  # all-zero row
    p = kernels.pack(w, fmt, bias=RNG.standard_normal(n))
    _check(RNG.standard_normal((m, k)).astype(np.float32), p, path)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("fmt", ["csr", "block1x4", "nm"])
def test_int4_static_scale_and_zero_input(path, fmt):
    w = sparse_weight(RNG, 19, 45, 0.8, PATTERN[fmt])
    p = kernels.pack(w, fmt, bits=4)
    x = RNG.standard_normal((21, 45)).astype(np.float32) * 3
    _check(x, p, path, act_scale=0.01)  # static scale: many values clip at -128/127
    y = kernels.linear(np.zeros((4, 45), np.float32), p, path=path)
    np.testing.assert_array_equal(y, 0)


def test_quantization_error_is_small():
    w = RNG.standard_normal((64, 96)).astype(np.float32)
    x = RNG.standard_normal((8, 96)).astype(np.float32)
    y = kernels.linear(x, kernels.pack(w, "dense"))
    exact = x.astype(np.float64) @ w.T
    assert np.abs(y - exact).max() < 0.02 * np.abs(exact).max()


def test_bad_inputs():
    p = kernels.pack(np.ones((3, 8), np.float32), "csr")
    with pytest.raises(ValueError, match="features"):
        kernels.linear(np.ones((2, 7), np.float32), p)
    with pytest.raises(ValueError, match="act_scale"):
        kernels.linear(np.ones((2, 8), np.float32), p, act_scale=0.0)
    assert kernels.linear(np.ones((0, 8), np.float32), p).shape == (0, 3)


@settings(max_examples=15, deadline=None)
@given(m=st.integers(1, 40), k=st.integers(1, 40), n=st.integers(1, 20),
       sparsity=st.sampled_from([0.0, 0.5, 0.95]),
       fmt=st.sampled_from(["csr", "block1x4", "nm"]), seed=st.integers(0, 2**16))
def test_property_all_paths_agree(m, k, n, sparsity, fmt, seed):
    rng = np.random.default_rng(seed)
    p = kernels.pack(sparse_weight(rng, n, k, sparsity, PATTERN[fmt]), fmt,
                     bias=rng.standard_normal(n))
    x = rng.standard_normal((m, k)).astype(np.float32)
    for path in PATHS:
        _check(x, p, path)


_NOJIT = r"""
import numpy as np, kernels
from kernels import cpu
assert cpu.kernel_path() == "portable" and cpu.supported_paths() == ["portable"]
rng = np.random.default_rng(0)
for fmt in ["csr", "block1x4", "nm", "dense"]:
    w = rng.standard_normal((5, 10)).astype(np.float32)
    if fmt == "nm":
        w[:, 1::2] = 0
    else:
        w[rng.random(w.shape) < 0.6] = 0
    p = kernels.pack(w, fmt, bias=np.ones(5))
    x = rng.standard_normal((3, 10)).astype(np.float32)
    np.testing.assert_allclose(kernels.linear(x, p), kernels.reference(x, p), rtol=1e-5, atol=1e-5)
print("NOJIT-OK")
"""


def test_kernels_with_jit_disabled():
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([sys.executable, "-c", _NOJIT], env=env, cwd=root, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "NOJIT-OK" in r.stdout


def test_non_finite_input_rejected():
    p = kernels.pack(np.ones((3, 8), np.float32), "csr")
    x = np.ones((2, 8), np.float32)
    x[1, 3] = np.nan
    with pytest.raises(ValueError, match="inf/nan"):
        kernels.linear(x, p)
    from kernels import portable
    y = -np.arange(40, dtype=np.float32).reshape(5, 8) / 7
    assert portable.absmax(y) == pytest.approx(39 / 7)


_FORCED = r"""
import sys, numpy as np, kernels
from kernels import cpu
want = sys.argv[1]
assert cpu.kernel_path() == want, cpu.kernel_path()
rng = np.random.default_rng(0)
for fmt, pat in [("csr", "unstructured"), ("block1x4", "block1x4"), ("nm", "nm"), ("dense", "unstructured")]:
    for m in (1, 5, 8, 9, 64):
        from _kernels_helpers import sparse_weight
        p = kernels.pack(sparse_weight(rng, 40, 70, 0.9, pat), fmt, bias=np.ones(40))
        x = rng.standard_normal((m, 70)).astype(np.float32)
        ref = kernels.reference(x, p)
        np.testing.assert_allclose(kernels.linear(x, p), ref, rtol=1e-5,
                                   atol=1e-5 * (np.abs(ref).max() + 1))
print("FORCED-OK", want)
"""


def _run_forced(isa, code=_FORCED):
    env = dict(os.environ, SPARQ_KERNEL_ISA=isa)
    env.pop("SPARQ_KERNELS_PORTABLE", None)
    here = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(here)), here])
    return subprocess.run([sys.executable, "-c", code, isa], env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("isa", [p for p in ("amx_int8", "avx512_vnni", "avx2", "portable") if p in PATHS])
def test_forced_kernel_path_runs_exact(isa):
    """SPARQ_KERNEL_ISA forces a lower path (any AVX-512 machine also runs the AVX2 kernels)."""
    r = _run_forced(isa)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"FORCED-OK {isa}" in r.stdout


def test_forced_kernel_path_errors(monkeypatch):
    monkeypatch.setenv("SPARQ_KERNEL_ISA", "sse9")
    with pytest.raises(ValueError, match="SPARQ_KERNEL_ISA"):
        cpu.kernel_path()
    missing = [p for p in cpu.PATHS if p not in PATHS]
    if missing:
        monkeypatch.setenv("SPARQ_KERNEL_ISA", missing[0])
        with pytest.raises(RuntimeError, match="cannot run here"):
            cpu.kernel_path()
        with pytest.raises(RuntimeError, match="cannot run here"):
            kernels.linear(np.ones((1, 8), np.float32), kernels.pack(np.ones((2, 8)), "csr"),
                           path=missing[0])
    monkeypatch.setenv("SPARQ_KERNEL_ISA", "portable")
    assert cpu.kernel_path() == "portable"


def test_kernel_path_is_best_supported(monkeypatch):
    monkeypatch.delenv("SPARQ_KERNEL_ISA", raising=False)
    monkeypatch.delenv("SPARQ_KERNELS_PORTABLE", raising=False)
    assert cpu.kernel_path() == PATHS[0]
    assert PATHS[-1] == "portable"
    if "avx2" in cpu.cpuinfo_flags() and not cpu.jit_disabled():
        assert "avx2" in PATHS


def test_avx2_code_minus_128_falls_back_exactly():
    """A static scale with the default [-128, 127] clamp can produce the code -128, which the
    AVX2 sign trick cannot take: such calls must still be exact (portable fallback)."""
    p = kernels.pack(sparse_weight(RNG, 24, 40, 0.5), "csr", bias=np.ones(24))
    for m in (1, 20):
        x = -np.abs(RNG.standard_normal((m, 40)).astype(np.float32)) * 10
        for path in PATHS:
            _check(x, p, path, act_scale=0.01)


@pytest.mark.skipif("avx2" not in PATHS, reason="no AVX2 path on this CPU")
def test_avx2_24_runs_the_lane_kernel_exactly():
    """2:4 weights take the output-rows-in-lanes kernel (two groups per dot product, signs in
    the vpshufb), not the full rows; rows with 3 of 4 nonzeros (3:4) cannot and take the
    full-row kernel; all exact. M covers every register block (8/4/2/1 rows) and panel tails."""
    for n_keep, lanes in ((2, True), (1, True), (3, False)):
        w = sparse_weight(RNG, 37, 90, 0.0)
        g = np.zeros((37, 92), np.float32)
        g[:, :90] = w
        g4 = g.reshape(37, 23, 4)
        drop = np.argsort(np.abs(g4), axis=2)[:, :, : 4 - n_keep]
        np.put_along_axis(g4, drop, 0, axis=2)
        p = kernels.pack(g[:, :90], "nm", n=n_keep, bias=RNG.standard_normal(37))
        for m in (9, 15, 45):
            _check(RNG.standard_normal((m, 90)).astype(np.float32), p, "avx2")
        assert (p._cache["nm_lanes"] is not None) == lanes


@pytest.mark.skipif("avx2" not in PATHS, reason="no AVX2 path on this CPU")
def test_avx2_24_lane_kernel_edges():
    """The 2:4 lane kernel: K not a multiple of 8 (a half-empty last window), all-zero rows,
    weights of -127/127 against codes of -127/127 (the largest pair sums), the GELU epilogue,
    and a static scale whose codes reach -128 (portable fallback): all exact."""
    from kernels.avx2_nm import nm_lane_form, panel_rows

    q = np.zeros((19, 44), np.int8)
    q[:, 0::4], q[:, 3::4] = 127, -127  # two of every four, largest magnitudes
    q[5] = 0
    assert nm_lane_form(q) is not None and panel_rows(6) % 8 == 0
    w = q.astype(np.float32) / 127
    p = kernels.pack(w, "nm", bias=RNG.standard_normal(19))
    x = np.where(RNG.random((23, 44)) < 0.5, -1.0, 1.0).astype(np.float32)
    x[:, 1::4] *= -1
    _check(x, p, "avx2")
    y = kernels.linear(x, p, path="avx2", epilogue="gelu")
    ref = kernels.reference(x, p, epilogue="gelu")
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * (np.abs(ref).max() + 1))
    _check(-np.abs(x) * 3, p, "avx2", act_scale=0.01)  # codes of -128: fallback, still exact


def test_avx_vnni_dot_selects_vex_vpdpbusd():
    """The AVX-VNNI build of the AVX2 kernels (sign trick + ``llvm.x86.avx512.vpdpbusd.256``)
    compiles to the VEX ``vpdpbusd`` on a CPU with avxvnni and no AVX-512 (Alder Lake, Zen 5
    without AVX-512 use): checked with LLVM's code generator, no such CPU needed."""
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    ir_text = """
    declare <8 x i32> @llvm.x86.avx512.vpdpbusd.256(<8 x i32>, <8 x i32>, <8 x i32>)
    declare <32 x i8> @llvm.x86.avx2.psign.b(<32 x i8>, <32 x i8>)
    define <8 x i32> @f(<8 x i32> %acc, <32 x i8> %x, <32 x i8> %w, <32 x i8> %aw) {
      %s = call <32 x i8> @llvm.x86.avx2.psign.b(<32 x i8> %x, <32 x i8> %w)
      %a = bitcast <32 x i8> %aw to <8 x i32>
      %b = bitcast <32 x i8> %s to <8 x i32>
      %r = call <8 x i32> @llvm.x86.avx512.vpdpbusd.256(<8 x i32> %acc, <8 x i32> %a, <8 x i32> %b)
      ret <8 x i32> %r
    }"""
    mod = llvm.parse_assembly(ir_text)
    target = llvm.Target.from_triple("x86_64-unknown-linux-gnu")
    tm = target.create_target_machine(cpu="alderlake",
                                      features="+avx2,+avxvnni,-avx512f,-avx512vnni,-avx512vl")
    asm = tm.emit_assembly(mod)
    assert "{vex}" in asm and "vpdpbusd" in asm and "vpsignb" in asm


@pytest.mark.skipif("avx2" not in PATHS, reason="no AVX2 path on this CPU")
def test_avx2_k_slab_kernel_exact():
    """Dense-ish 1x4 block rows (block1x4 at 60%) over a long K take the L1 K-slab kernel at
    M >= 64: exact."""
    p = kernels.pack(sparse_weight(RNG, 21, 2101, 0.6, "block1x4"), "block1x4",
                     bias=RNG.standard_normal(21))
    _check(RNG.standard_normal((70, 2101)).astype(np.float32), p, "avx2")
    assert "slabs8" in p._cache
    _check(RNG.standard_normal((9, 2101)).astype(np.float32), p, "avx2")  # M < 64: block rows


@pytest.mark.skipif("avx2" not in PATHS, reason="no AVX2 path on this CPU")
@pytest.mark.parametrize("k", [7, 90, 301])
def test_avx2_unstructured_runs_pair_blocks_exactly(k):
    """Unstructured (scattered) weights take the two-input-pairs kernel at M > 8 (fewer blocks
    than 1x4), exact at any M (every chunk width and panel tail), odd K, rows with an odd
    number of pairs, empty rows, and with -128 activation codes (static scale: fallback)."""
    w = sparse_weight(RNG, 37, k, 0.9)
    w[3] = 0
    p = kernels.pack(w, "csr", bias=RNG.standard_normal(37))
    for m in (9, 17, 40, 70, 137, 300):
        _check(RNG.standard_normal((m, k)).astype(np.float32), p, "avx2")
    # K = 7: ~one nonzero per row, as many pair blocks as 1x4 groups: the 1x4 kernel
    assert (p._cache["pairpair"] is not None) == (k > 7)
    x = -np.abs(RNG.standard_normal((20, k)).astype(np.float32)) * 10
    _check(x, p, "avx2", act_scale=0.01)
    blk = kernels.pack(sparse_weight(RNG, 37, k, 0.9, "block1x4"), "block1x4")
    _check(RNG.standard_normal((20, k)).astype(np.float32), blk, "avx2")
    assert blk._cache["pairpair"] is None  # 1x4 blocks: one pair block each, the 1x4 kernel


def test_pairpair_form_packs_pairs_two_by_two():
    """``pairpair_form``: a row's occupied input pairs two by two in column order, an odd last
    one beside a zero pair, empty rows empty; the blocks give back the weight."""
    from kernels.avx2_gemm import pairpair_form

    q = RNG.integers(-127, 128, (9, 23)).astype(np.int8) * (RNG.random((9, 23)) < 0.2)
    q[4] = 0
    ptr, c1, c2, w4 = pairpair_form(q)
    back = np.zeros((9, 24), np.int8)
    quads = w4.view(np.int8).reshape(-1, 4)
    for r in range(9):
        for b in range(ptr[r], ptr[r + 1]):
            assert c1[b] <= c2[b]
            back[r, 2 * c2[b]:2 * c2[b] + 2] += quads[b, 2:]
            back[r, 2 * c1[b]:2 * c1[b] + 2] += quads[b, :2]
    np.testing.assert_array_equal(back[:, :23], q)
    assert ptr[5] == ptr[4]


@pytest.mark.parametrize("lanes", [8, 16])
def test_window_form_places_every_block_once(lanes):
    """``window_form``: every block of a group's rows in exactly one step, in its row's lane,
    inside that step's window of ``lanes`` quads, which never reaches past the padded row;
    windows slide (a step may start at any quad), so 90% block1x4 keeps about half of the
    lanes busy."""
    from kernels.avx2_latency import window_form

    w = sparse_weight(RNG, 37, 200, 0.9, "block1x4")
    w[lanes:2 * lanes] = 0
    p = kernels.pack(w, "block1x4")
    ptr, cols, vals, _ = p.blocks()
    groups = 50
    gptr, off, sel, wv = window_form(ptr, cols, vals, 37, groups, lanes)
    assert off.max() + lanes <= (groups + lanes - 1) // lanes * lanes and gptr[2] == gptr[1]
    got = {}
    for g in range(len(gptr) - 1):
        for s in range(gptr[g], gptr[g + 1]):
            step = slice(lanes * s, lanes * s + lanes)
            assert 0 <= sel[step].min() and sel[step].max() < lanes
            for lane in range(lanes):
                if wv[lanes * s + lane]:
                    key = (lanes * g + lane, off[s] + sel[lanes * s + lane])
                    assert key not in got
                    got[key] = wv[lanes * s + lane]
    want = {(r, cols[b]): vals[b] for r in range(37) for b in range(ptr[r], ptr[r + 1]) if vals[b]}
    assert got == want
    busy = {8: (0.3, 0.6), 16: (0.2, 0.55)}[lanes]  # 200 seeds: 0.36-0.52 / 0.26-0.45 (a group of
    assert busy[0] < cols.size / (lanes * len(off)) < busy[1]  # 5 rows of 16 at the end)


@pytest.mark.skipif("avx2" not in PATHS, reason="no AVX2 path on this CPU")
@pytest.mark.parametrize("sparsity", [0.3, 0.9, 0.995])
def test_avx2_batch1_window_kernel_exact(sparsity):
    """M = 1 on sparse rows takes the vpermd kernel (8 rows per step, sliding windows of 8
    activation quads, the last one clamped to the padded row): exact with many blocks per
    window (30%), few, and empty rows; GELU too."""
    w = sparse_weight(RNG, 45, 301, sparsity, "block1x4")
    w[3:11] = 0  # a whole group of 8 empty rows
    p = kernels.pack(w, "block1x4", bias=RNG.standard_normal(45))
    x = RNG.standard_normal((1, 301)).astype(np.float32)
    _check(x, p, "avx2")
    assert "window" in p._cache
    y = kernels.linear(x, p, path="avx2", epilogue="gelu")
    ref = kernels.reference(x, p, epilogue="gelu")
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * (np.abs(ref).max() + 1))


@pytest.mark.skipif("avx2" not in PATHS, reason="no AVX2 path on this CPU")
@pytest.mark.parametrize("m,k", [(1, 3), (7, 9), (8, 8), (9, 15), (17, 16), (130, 385)])
def test_avx2_vector_quantize_layouts_match_numpy(m, k):
    """The in-register quantize + layout passes (8 rows x 8 inputs, byte packs) give exactly
    numpy's codes in the [K/4][Mpad][4], [K/2][Mpad][2], 2:4 [M][GP][codes | -codes] and VNNI
    u8 layouts (vector part, the K % 8 tail and a block past the last row), flag a -128 code,
    and compute the dynamic scale."""
    from kernels import avx2

    x = RNG.standard_normal((m, k)).astype(np.float32) * 3
    x[-1, -1] = -10.0  # the static scale below takes it to -128 (in the tail or a partial block)

    def layout(inv, mpad, qlo, qhi, width):
        c = np.clip(np.rint(x * inv), qlo, qhi).astype(np.int8)
        units = (k + width - 1) // width
        cp = np.zeros((mpad, units * width), np.int8)
        cp[:m, :k] = c
        return cp.reshape(mpad, units, width).transpose(1, 0, 2).ravel(), c.min() < -127

    for inv, qlo, qhi in ((127 / np.abs(x).max(), -128, 127), (60.0, -128, 127), (2.0, -7, 7)):
        inv, qlo, qhi = np.float32(inv), np.float32(qlo), np.float32(qhi)
        for fn, mpad, width in ((avx2.quantize_layout, (m + 7) // 8 * 8, 4),
                                (avx2.quantize_pairs, (m + 15) // 16 * 16, 2)):
            got, bad = fn(x, inv, mpad, qlo, qhi)
            want, want_bad = layout(inv, mpad, qlo, qhi, width)
            np.testing.assert_array_equal(got, want)
            assert bad == want_bad
    assert layout(np.float32(60.0), (m + 7) // 8 * 8, -128, 127, 4)[1]  # -128 was flagged
    for ngp in ((k + 7) // 8, (k + 7) // 8 + 2):  # the 2:4 kernel's [M][GP][codes | -codes]
        for inv, qlo, qhi in ((127 / np.abs(x).max(), -128, 127), (60.0, -128, 127)):
            inv, qlo, qhi = np.float32(inv), np.float32(qlo), np.float32(qhi)
            got, bad = avx2.quantize_signed(x, inv, qlo, qhi, ngp)
            c = np.zeros((m, ngp * 8), np.int8)
            c[:, :k] = np.clip(np.rint(x * inv), qlo, qhi)
            assert bad == (c.min() < -127)
            if not bad:
                np.testing.assert_array_equal(got, np.concatenate(
                    [c.reshape(m, ngp, 8), -c.reshape(m, ngp, 8)], -1).ravel())
    xs, bad, sx = avx2.quantize_signed_dynamic(x, np.float32(-128), np.float32(127), (k + 7) // 8)
    assert sx == np.abs(x).max() / 127 and not bad
    from kernels import vnni  # its u8 operand (code + 128, padding 128) comes from the same pass

    mpad = (m + 15) // 16 * 16
    u8 = (layout(np.float32(60.0), mpad, -128, 127, 4)[0].view(np.uint8) ^ 0x80)
    np.testing.assert_array_equal(vnni.quantize_layout(x, np.float32(60.0), mpad, np.float32(-128),
                                                       np.float32(127)), u8)
    xl, bad, sx = avx2.quantize_layout_dynamic(x, (m + 7) // 8 * 8, np.float32(-128), np.float32(127), False)
    assert sx == np.abs(x).max() / 127 and not bad
    np.testing.assert_array_equal(xl, layout(np.float32(1 / sx), (m + 7) // 8 * 8, -128, 127, 4)[0])
    x[0, -1] = np.nan
    assert avx2.quantize_layout_dynamic(x, (m + 7) // 8 * 8, np.float32(-128), np.float32(127), True)[2] == -1.0
