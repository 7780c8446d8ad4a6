"""Self-attention on the fused Q/K/V output (``kernels.attention``): its exp, the kernel against
torch's softmax attention (with and without padding masks), and the fused encoder end to end."""

import copy

import numpy as np
import pytest
import torch
from test_linear import _tiny_bert

import kernels
from kernels import cpu
from kernels.attention import PackedSelfAttention, attention_, exp_f32, fuse_attention, mask_bias

RNG = np.random.default_rng(11)
needs_jit = pytest.mark.skipif(cpu.jit_disabled(), reason="the attention pass runs jitted only")


@needs_jit
def test_exp_f32_relative_error_over_the_softmax_range():
    from numba import njit

    @njit
    def many(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = exp_f32(x[i])
        return out

    x = np.concatenate([np.linspace(-87, 0, 200001), [-0.0, -1e-8, -86.99]]).astype(np.float32)
    got = many(x).astype(np.float64)
    want = np.exp(x.astype(np.float64))
    assert np.max(np.abs(got / want - 1)) < 2e-7
    assert many(np.array([-87.5, -1e30], np.float32)).tolist() == [0.0, 0.0]  # masked: exactly 0


def _torch_attention(qkv, batch, seq, heads, dim, bias):
    q, k, v = torch.from_numpy(qkv).view(batch, seq, 3, heads, dim).permute(2, 0, 3, 1, 4).double()
    s = q @ k.transpose(-1, -2) * dim ** -0.5
    if bias.size:
        s = s + torch.from_numpy(bias).double()[:, None]
    out = torch.softmax(s, -1) @ v  # [b, h, s, d]
    return out.permute(0, 2, 1, 3).reshape(batch * seq, heads * dim).numpy()


@needs_jit
@pytest.mark.parametrize("batch,seq,heads,dim", [(1, 128, 12, 32), (2, 7, 3, 5), (3, 1, 2, 8)])
@pytest.mark.parametrize("masking", ["none", "keys", "full"])
def test_attention_matches_float64_softmax_attention(batch, seq, heads, dim, masking):
    qkv = (RNG.standard_normal((batch * seq, 3 * heads * dim)) * 2).astype(np.float32)
    if masking == "none":
        bias = np.zeros((0, 0, 0), np.float32)
    else:
        keep = RNG.random((batch, 1 if masking == "keys" else seq, seq)) < 0.7
        keep[..., 0] = True  # every query attends to something
        bias = mask_bias(torch.from_numpy(keep)[:, None], batch, seq)
    out = np.empty((batch * seq, heads * dim), np.float32)
    attention_(qkv, batch, seq, heads, dim, np.float32(dim ** -0.5), bias, out)
    np.testing.assert_allclose(out, _torch_attention(qkv, batch, seq, heads, dim, bias),
                               rtol=2e-5, atol=2e-5)


def test_mask_bias_takes_every_transformers_form():
    keep = torch.tensor([[1, 1, 0], [1, 0, 0]])
    from_bool = mask_bias(keep.bool()[:, None, None, :], 2, 3)
    from_float = mask_bias((1 - keep.float())[:, None, None, :] * torch.finfo(torch.float32).min, 2, 3)
    from_2d = mask_bias(keep.bool(), 2, 3)
    for b in (from_bool, from_float, from_2d):
        assert b.shape == (2, 1, 3) and b.dtype == np.float32
        np.testing.assert_array_equal(b == 0, keep.numpy()[:, None, :] == 1)
        assert np.all(np.isfinite(b))
    assert mask_bias(None, 2, 3).size == 0
    with pytest.raises(ValueError, match="per-head"):
        mask_bias(torch.ones(2, 4, 3, 3, dtype=torch.bool), 2, 3)


@needs_jit
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_fused_attention_keeps_encoder_outputs(attn):
    model = _tiny_bert().eval()
    model.config._attn_implementation = attn
    kernels.convert_model(model, format="block1x4")
    fused = copy.deepcopy(model)
    kernels.fuse_shared_input(fused)
    kernels.fuse_epilogues(fused)
    assert fuse_attention(fused) == 2
    assert fuse_attention(fused) == 0  # idempotent
    assert isinstance(fused.encoder.layer[1].attention.self, PackedSelfAttention)
    for bsz, seq, pad in ((1, 1, 0), (1, 16, 0), (3, 11, 4)):
        ids = torch.randint(0, 50, (bsz, seq))
        mask = torch.ones(bsz, seq, dtype=torch.long)
        mask[1:, seq - pad:] = 0  # padded rows beside a full one
        with torch.inference_mode():
            want = model(input_ids=ids, attention_mask=mask).last_hidden_state
            got = fused(input_ids=ids, attention_mask=mask).last_hidden_state
        keep = mask.bool()
        torch.testing.assert_close(got[keep], want[keep], rtol=1e-4, atol=1e-4)


def test_fused_attention_falls_back_where_the_pass_does_not_apply():
    model = _tiny_bert().eval()
    kernels.convert_model(model, format="csr")
    kernels.fuse_shared_input(model)
    fuse_attention(model)
    att = model.encoder.layer[0].attention.self
    calls = []
    att.original.register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        fast = att(x)[0]
    assert calls == [] or cpu.jit_disabled()
    att.train()
    with torch.no_grad():
        slow = att(x)[0]
    assert calls  # training (dropout) runs the original module
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-4)
