"""GELU epilogue (every path) and the encoder fusions (GELU into the intermediate layer,
residual add + LayerNorm after the output layers)."""

import copy

import numpy as np
import pytest
import torch
from _kernels_helpers import sparse_weight
from test_linear import _tiny_bert

import kernels
from kernels import cpu
from kernels.epilogue import add_layernorm_, gelu_

PATHS = cpu.supported_paths()
RNG = np.random.default_rng(7)


def test_gelu_matches_torch_erf_gelu():
    x = np.linspace(-12, 12, 20001, dtype=np.float32).reshape(1, -1)
    want = torch.nn.functional.gelu(torch.from_numpy(x).double()).numpy()
    y = x.copy()
    gelu_(y)
    assert np.abs(y - want).max() < 2e-6
    assert np.array_equal(y[x > 6], x[x > 6])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("fmt", ["csr", "block1x4", "nm", "dense"])
@pytest.mark.parametrize("m", [1, 5, 9, 130])
def test_gelu_epilogue_every_kernel(path, fmt, m):
    pattern = {"csr": "unstructured", "dense": "unstructured"}.get(fmt, fmt)
    w = sparse_weight(RNG, 37, 90, 0.9 if fmt != "dense" else 0.0, pattern)
    p = kernels.pack(w, fmt, bias=RNG.standard_normal(37))
    x = RNG.standard_normal((m, 90)).astype(np.float32)
    y = kernels.linear(x, p, path=path, epilogue="gelu")
    ref = kernels.reference(x, p, epilogue="gelu")
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * (np.abs(ref).max() + 1))
    with pytest.raises(ValueError, match="epilogue"):
        kernels.linear(x, p, path=path, epilogue="relu")


def test_add_layernorm_matches_torch():
    ln = torch.nn.LayerNorm(48, eps=1e-12)
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    y, r = (RNG.standard_normal((13, 48)).astype(np.float32) for _ in range(2))
    want = ln(torch.from_numpy(y) + torch.from_numpy(r)).detach().numpy()
    add_layernorm_(y, r, ln.weight.detach().numpy(), ln.bias.detach().numpy(), ln.eps)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_fuse_epilogues_keeps_encoder_outputs():
    model = _tiny_bert().eval()
    kernels.convert_model(model, format="block1x4")
    fused = copy.deepcopy(model)
    assert kernels.fuse_epilogues(fused) == {"gelu": 2, "add_layernorm": 4}
    assert kernels.fuse_epilogues(fused) == {"gelu": 0, "add_layernorm": 0}  # idempotent
    kernels.fuse_shared_input(fused)
    for bsz, seq in ((1, 1), (2, 11)):
        ids = torch.randint(0, 50, (bsz, seq))
        with torch.inference_mode():
            want = model(input_ids=ids).last_hidden_state
            got = fused(input_ids=ids).last_hidden_state
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    out = fused.encoder.layer[0].output
    assert isinstance(out, kernels.DenseAddNorm)
    h, res = torch.randn(3, 64), torch.randn(3, 32)
    want = out.LayerNorm(out.dense(h) + res).detach()
    torch.testing.assert_close(out(h, res), want, rtol=1e-5, atol=1e-5)  # fused pass
    torch.testing.assert_close(out(h, res.requires_grad_()).detach(), want)  # torch's ops
