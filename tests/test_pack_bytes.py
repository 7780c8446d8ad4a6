"""Packed sizes: formulas agree byte for byte with kernels.formats; cheapest format chosen."""

import numpy as np
import pytest
import torch

from suite import pack as P
from suite.prune import masks as M


def _w(out=32, inp=64, seed=0):
    return torch.randn(out, inp, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("bits", [8, 4])
def test_matches_kernel_formats(bits):
    formats = pytest.importorskip("kernels.formats")
    w = _w()
    b = torch.randn(32)
    sparse = w * M.magnitude_mask(w, 0.9)
    blk = w * M.block_mask(w, 0.9)
    nm = w * M.nm_mask(w, 2, 4)
    extra = 4 * 32 + 4 * 32  # per-channel scales + fp32 bias
    csr = formats.pack(sparse.numpy(), "csr", b.numpy(), bits=bits)
    assert P.csr_bytes(32, 64, int((sparse != 0).sum()), bits) + extra == csr.nbytes
    blocks = formats.pack(blk.numpy(), "block1x4", b.numpy(), bits=bits)
    assert P.block_bytes(blk, bits) + extra == blocks.nbytes
    nmf = formats.pack(nm.numpy(), "nm", b.numpy(), bits=bits, n=2, m=4)
    assert P.nm_bytes(32, 64, bits, 2, 4) + extra == nmf.nbytes
    assert P.layer_bytes(nm, b, "nm", bits, "channel") == nmf.nbytes
    dense = formats.pack(w.numpy(), "dense", b.numpy(), bits=bits)
    assert P.layer_bytes(w, b, "dense", bits, "channel") == dense.nbytes


def test_cheapest_unstructured_format():
    w = _w(64, 64)
    assert P.unstructured_bytes(w, 32)[1] == "dense"
    assert P.unstructured_bytes(w * M.magnitude_mask(w, 0.99), 8)[1] == "csr"
    assert P.unstructured_bytes(w * M.magnitude_mask(w, 0.5), 8)[1] == "bitmap"


def test_fp32_sparse_and_4bit_nm():
    w = _w(8, 16)
    nm = w * M.nm_mask(w, 2, 4)
    # fp32 2:4: 4-byte values + 2-bit indices; 4-bit: two values a byte
    assert P.nm_bytes(8, 16, 32, 2, 4) == 64 * 4 + 16
    assert P.nm_bytes(8, 16, 4, 2, 4) == 32 + 16
    assert P.layer_bytes(nm, None, "nm", 4, "tensor", act_quant=True) == 32 + 16 + 4 + 4
    # the pattern broken (e.g. non-zero-preserving quantizer): honest fallback
    assert P.layer_bytes(w, None, "nm", 8, "channel") == min(P.unstructured_bytes(w, 8)[0], 128) + 32


def test_nominal_vs_packed_convention():
    from suite.compression import nominal_compression

    assert nominal_compression(0.9, 8) == pytest.approx(40.0)
    assert nominal_compression(0.5, 4) == pytest.approx(16.0)
    assert np.isclose(nominal_compression(0.0, 32), 1.0)
