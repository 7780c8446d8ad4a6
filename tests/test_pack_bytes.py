"""Packed sizes: formulas agree byte for byte with kernels.formats; cheapest format chosen."""

import numpy as np
import pytest
import torch

from suite import pack as P
from suite.prune import masks as M
from suite.prune.dense import DenseConfig
from suite.prune.nm import NMConfig
from suite.quant.ptq import PtqConfig

NM24, DENSE = NMConfig(), DenseConfig()


def _q(bits: int, granularity: str = "channel", act_bits: int = 8) -> PtqConfig:
    q = PtqConfig(weight_bits=bits, granularity=granularity)
    q.act_bits = act_bits  # 32: weights-only quantization (no activation scale)
    return q


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
    extra = 4 * 32 + 4 * 32  # per-channel scales + fp32 bias (the kernels keep no activation scale)
    csr = formats.pack(sparse.numpy(), "csr", b.numpy(), bits=bits)
    assert P.csr_bytes(32, 64, int((sparse != 0).sum()), bits) + extra == csr.nbytes
    blocks = formats.pack(blk.numpy(), "block1x4", b.numpy(), bits=bits)
    assert P.block_bytes(blk, bits) + extra == blocks.nbytes
    nmf = formats.pack(nm.numpy(), "nm", b.numpy(), bits=bits, n=2, m=4)
    assert P.nm_bytes(32, 64, bits, 2, 4) + extra == nmf.nbytes
    assert P.layer_bytes(nm, b, NM24, _q(bits)) - 4 == nmf.nbytes
    dense = formats.pack(w.numpy(), "dense", b.numpy(), bits=bits)
    assert P.layer_bytes(w, b, DENSE, _q(bits)) - 4 == dense.nbytes


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
    assert P.layer_bytes(nm, None, NM24, _q(4, "tensor")) == 32 + 16 + 4 + 4
    # the pattern broken (e.g. non-zero-preserving quantizer): honest fallback
    assert P.layer_bytes(w, None, NM24, _q(8, act_bits=32)) == min(P.unstructured_bytes(w, 8)[0], 128) + 32


def test_nominal_vs_packed_convention():
    from suite.compression import nominal_compression

    assert nominal_compression(0.9, 8) == pytest.approx(40.0)
    assert nominal_compression(0.5, 4) == pytest.approx(16.0)
    assert np.isclose(nominal_compression(0.0, 32), 1.0)


def test_methods_answer_for_their_format_and_pattern():
    from suite.prune.block import BlockConfig
    from suite.prune.gmp import GmpConfig

    w = _w(8, 16)
    nm48 = NMConfig(n=4, m=8)
    assert (NM24.packed_format(), NM24.pattern_label(), NM24.nominal_density()) == ("nm", "2:4", 0.5)
    assert (nm48.packed_format(), nm48.pattern_label(), nm48.label()) == ("csr", "4:8", "nm 4:8")
    assert NM24.layer_format(w) == "csr" and NM24.layer_format(w * M.nm_mask(w, 2, 4)) == "nm"
    assert BlockConfig(block=8).pattern_label() == "block1x8" and GmpConfig().packed_format() == "csr"
    assert DENSE.label() == "dense" and not DENSE.prunes and GmpConfig(target=0.9).label() == "gmp 90%"
    fp32 = _q(8)
    fp32.weight_bits = fp32.act_bits = 32
    assert P.layer_bytes(w, None, DENSE, fp32) == 8 * 16 * 4  # dense fp32: the weights as they are
