import numpy as np
import pytest
from _kernels_helpers import sparse_weight
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels
from kernels.formats import (
    FORMATS,
    pack_2bit,
    pack_nibbles,
    quantize_weight,
    unpack_2bit,
    unpack_nibbles,
)

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("shape", [(7, 13), (1, 1), (16, 65), (5, 4)])
def test_roundtrip_int_weight(fmt, bits, shape):
    w = sparse_weight(RNG, *shape, 0.7, "nm" if fmt == "nm" else "unstructured")
    w[0] = 0  # an all-zero row
    p = kernels.pack(w, fmt, bias=np.arange(shape[0]), bits=bits)
    q, s = quantize_weight(w, bits)
    np.testing.assert_array_equal(p.int_weight(), q)
    np.testing.assert_allclose(p.dequantize(), q * s[:, None], rtol=1e-6)
    assert p.shape == shape


def test_quantize_weight_ranges_and_given_scale():
    w = RNG.standard_normal((4, 9)).astype(np.float32)
    q, s = quantize_weight(w, 8)
    assert np.abs(q).max() == 127
    np.testing.assert_allclose(s, np.abs(w).max(1) / 127, rtol=1e-6)
    q4, _ = quantize_weight(w, 4)
    assert q4.min() >= -8 and q4.max() == 7
    q2, s2 = quantize_weight(w, 8, scale=np.full(4, 1e-3))
    assert q2.min() == -128 and q2.max() == 127  # clamped
    np.testing.assert_allclose(s2, 1e-3)
    with pytest.raises(ValueError, match="bits"):
        quantize_weight(w, 3)


def test_nbytes_exact():
    w = sparse_weight(RNG, 10, 40, 0.9)
    w[0, :3] = 1.0
    w[w != 0] = np.sign(w[w != 0]) * (1 + np.abs(w[w != 0]))  # no value rounds to 0 in 4 bits
    nnz = int((w != 0).sum())
    csr = kernels.pack(w, "csr", bias=np.zeros(10))
    # indptr int32 (N+1) + uint16 indices + int8 values + f32 scale + f32 bias
    assert kernels.packed_bytes(csr) == 4 * 11 + 2 * nnz + nnz + 4 * 10 + 4 * 10
    csr4 = kernels.pack(w, "csr", bits=4)
    assert csr4.nbytes == 4 * 11 + 2 * nnz + (nnz + 1) // 2 + 4 * 10
    nm = kernels.pack(sparse_weight(RNG, 8, 16, 0, "nm"), "nm")
    # 2 values per group of 4 (8*4*2 bytes) + 2-bit indices (64 / 4 bytes) + scales
    assert nm.nbytes == 64 + 16 + 32
    blk = kernels.pack(w, "block1x4")
    nb = int((np.abs(w).reshape(10, 10, 4).sum(2) > 0).sum())
    assert blk.nbytes == 4 * 11 + 2 * nb + 4 * nb + 40


def test_nm_rejects_dense_groups():
    with pytest.raises(ValueError, match="not 2:4 sparse"):
        kernels.pack(np.ones((2, 8), np.float32), "nm")
    with pytest.raises(ValueError, match="supported"):
        kernels.pack(np.ones((2, 8), np.float32), "nm", n=2, m=8)


def test_unknown_format():
    with pytest.raises(ValueError, match="choose one of"):
        kernels.pack(np.ones((2, 8), np.float32), "coo")


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(-8, 7), max_size=33))
def test_nibbles_roundtrip(vals):
    a = np.array(vals, dtype=np.int8)
    np.testing.assert_array_equal(unpack_nibbles(pack_nibbles(a), a.size), a)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 3), max_size=33))
def test_2bit_roundtrip(vals):
    a = np.array(vals, dtype=np.uint8)
    np.testing.assert_array_equal(unpack_2bit(pack_2bit(a), a.size), a)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_save_load_roundtrip(tmp_path, fmt):
    w = sparse_weight(RNG, 9, 21, 0.5, "nm" if fmt == "nm" else "unstructured")
    p = kernels.pack(w, fmt, bias=RNG.standard_normal(9), bits=4)
    f = tmp_path / "x.spk"
    size = kernels.save(f, p)
    assert size == f.stat().st_size
    q = kernels.load(f)
    assert type(q) is type(p) and q.bits == 4 and q.nbytes == p.nbytes
    np.testing.assert_array_equal(q.int_weight(), p.int_weight())
    np.testing.assert_array_equal(q.bias, p.bias)
    kernels.save(f, {"a": p, "b.c": kernels.pack(w, "dense")})
    d = kernels.load(f)
    assert set(d) == {"a", "b.c"} and d["b.c"].bias is None


def _corrupt_cases(data):
    yield "truncated", data[: len(data) // 2]
    yield "truncated", data[:10]
    flipped = bytearray(data)
    flipped[-40] ^= 0xFF  # inside the payload
    yield "checksum", bytes(flipped)
    flipped = bytearray(data)
    flipped[20] ^= 0xFF  # inside the header
    yield "corrupt", bytes(flipped)
    yield "bad magic", b"NOTSPARQ" + data[8:]
    ver = bytearray(data)
    ver[8] = 99
    yield "version 99", bytes(ver)
    yield "oversized", data + b"\0"


def test_load_errors(tmp_path):
    f = tmp_path / "x.spk"
    kernels.save(f, kernels.pack(RNG.standard_normal((4, 8)), "csr"))
    data = f.read_bytes()
    for expect, bad in _corrupt_cases(data):
        g = tmp_path / "bad.spk"
        g.write_bytes(bad)
        with pytest.raises(kernels.PackedFormatError, match=expect) as ei:
            kernels.load(g)
        assert "\n" not in str(ei.value)
    with pytest.raises(kernels.PackedFormatError, match="cannot read"):
        kernels.load(tmp_path / "missing.spk")
