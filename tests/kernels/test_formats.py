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


def _rewrite(data: bytes, edit) -> bytes:
    """Tamper with a packed file and re-checksum it: ``edit(header: dict, payload: bytearray)``
    changes them in place (a forged file that passes the sha256 check)."""
    import hashlib
    import json
    import struct

    from kernels.io import _PRE

    magic, version, hlen = _PRE.unpack_from(data)
    header = json.loads(data[_PRE.size:_PRE.size + hlen])
    payload = bytearray(data[_PRE.size + hlen:-32])
    edit(header, payload)
    header["payload_bytes"] = len(payload)
    h = json.dumps(header).encode()
    body = struct.pack("<8sHI", magic, version, len(h)) + h + bytes(payload)
    return body + hashlib.sha256(body).digest()


def _arr(header, key, layer=0):
    return header["layers"][layer]["arrays"][key]


def _neg_int16_index(h, pl):
    a = _arr(h, "indices")
    a["dtype"] = "<i2"  # the format says uint16: a signed header must not be believed
    pl[a["offset"]:a["offset"] + 2] = (-1).to_bytes(2, "little", signed=True)


def _index_past_k(h, pl):
    a = _arr(h, "indices")
    pl[a["offset"]:a["offset"] + 2] = (8).to_bytes(2, "little")  # K = 8


def _huge_shape(h, pl):
    h["layers"][0]["out_features"] = h["layers"][0]["in_features"] = 2**31


def _nbytes_past_payload(h, pl):
    a = _arr(h, "values")
    a["nbytes"], a["shape"] = 2**40, [2**40]


def _indptr_decreasing(h, pl):
    a = _arr(h, "indptr")
    pl[a["offset"] + 4:a["offset"] + 8] = (10**6).to_bytes(4, "little")


def _negative_offset(h, pl):
    _arr(h, "values")["offset"] = -5


def _unknown_array(h, pl):
    h["layers"][0]["arrays"]["extra"] = dict(_arr(h, "values"))


@pytest.mark.parametrize("edit,match", [
    (_neg_int16_index, "dtype"), (_index_past_k, "out of range"), (_huge_shape, "larger than"),
    (_nbytes_past_payload, "nbytes"), (_indptr_decreasing, "row pointers|entries"),
    (_negative_offset, "offset"), (_unknown_array, "stores"),
])
def test_tampered_rechecksummed_file_is_refused(tmp_path, edit, match):
    """A forged file with a valid checksum is refused with one PackedFormatError line before
    any kernel or large allocation runs (issue 17 item 7)."""
    f = tmp_path / "x.spk"
    w = np.zeros((4, 8), np.float32)
    w[:, 1] = 1.0
    w[2, 5] = -2.0
    kernels.save(f, kernels.pack(w, "csr"))
    assert kernels.load(f).indices.dtype == np.uint16
    g = tmp_path / "forged.spk"
    g.write_bytes(_rewrite(f.read_bytes(), edit))
    with pytest.raises(kernels.PackedFormatError, match=match) as ei:
        kernels.load(g)
    assert "\n" not in str(ei.value)


def test_tampered_nm_and_block_files_are_refused(tmp_path):
    w = sparse_weight(RNG, 6, 16, 0.0, "nm")
    f = tmp_path / "nm.spk"
    kernels.save(f, kernels.pack(w, "nm"))

    def dup_positions(h, pl):  # positions (1, 1) in every group: a weight the kernels misread
        a = _arr(h, "idx")
        pl[a["offset"]:a["offset"] + a["nbytes"]] = bytes([0b01010101]) * a["nbytes"]
    g = tmp_path / "bad.spk"
    g.write_bytes(_rewrite(f.read_bytes(), dup_positions))
    with pytest.raises(kernels.PackedFormatError, match="distinct"):
        kernels.load(g)
    f2 = tmp_path / "b.spk"
    kernels.save(f2, kernels.pack(sparse_weight(RNG, 6, 16, 0.5, "block1x4"), "block1x4"))

    def block_past_groups(h, pl):
        a = _arr(h, "blocks")
        pl[a["offset"]:a["offset"] + 2] = (4).to_bytes(2, "little")  # 16 / 4 = 4 groups
    g.write_bytes(_rewrite(f2.read_bytes(), block_past_groups))
    with pytest.raises(kernels.PackedFormatError, match="out of range"):
        kernels.load(g)
