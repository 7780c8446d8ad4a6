"""Self-attention on the fused Q/K/V output (``kernels.attention``): the fused encoder against
the unfused one (sdpa and eager masks, padding), and the fallback to the replaced module."""

import copy

import pytest
import torch
from test_linear import _tiny_bert

import kernels
from kernels.attention import PackedSelfAttention, fuse_attention


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_fused_attention_keeps_encoder_outputs(attn):
    model = _tiny_bert().eval()
    model.config._attn_implementation = attn
    kernels.convert_model(model, format="block1x4")
    fused = copy.deepcopy(model)
    kernels.fuse_shared_input(fused)
    kernels.fuse_epilogues(fused)
    before = kernels.packed_model_bytes(fused)
    assert fuse_attention(fused) == 2
    assert fuse_attention(fused) == 0  # idempotent
    assert isinstance(fused.encoder.layer[1].attention.self, PackedSelfAttention)
    assert kernels.packed_model_bytes(fused) == before  # the fused Q/K/V layer is not counted twice
    for bsz, seq, pad in ((1, 1, 0), (1, 16, 0), (3, 11, 4)):
        ids = torch.randint(0, 50, (bsz, seq))
        mask = torch.ones(bsz, seq, dtype=torch.long)
        mask[1:, seq - pad:] = 0  # padded rows beside a full one
        with torch.inference_mode():
            want = model(input_ids=ids, attention_mask=mask).last_hidden_state
            got = fused(input_ids=ids, attention_mask=mask).last_hidden_state
        keep = mask.bool()
        torch.testing.assert_close(got[keep], want[keep], rtol=1e-4, atol=1e-4)


def test_fused_attention_falls_back_where_it_does_not_apply():
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
    assert calls == []
    att.train()
    with torch.no_grad():
        slow = att(x)[0]
    assert calls  # training (dropout) runs the original module
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


def test_fuse_for_inference_runs_every_fusion_once():
    model = _tiny_bert().eval()
    kernels.convert_model(model, format="block1x4")
    fused = copy.deepcopy(model)
    assert kernels.fuse_for_inference(fused) == {"qkv": 2, "gelu": 2, "add_layernorm": 4,
                                                 "feed_forward": 2, "attention": 2}
    assert kernels.fuse_for_inference(fused) == {"qkv": 0, "gelu": 0, "add_layernorm": 0,
                                                 "feed_forward": 0, "attention": 0}
    ids = torch.randint(0, 50, (2, 9))
    with torch.inference_mode():
        torch.testing.assert_close(fused(input_ids=ids).last_hidden_state,
                                   model(input_ids=ids).last_hidden_state, rtol=1e-4, atol=1e-4)
    twin = copy.deepcopy(fused)  # the lean feed-forward follows the copied layer, not the original
    layer = twin.encoder.layer[0]
    assert layer.feed_forward_chunk.layer is layer
    with torch.inference_mode():
        torch.testing.assert_close(twin(input_ids=ids).last_hidden_state,
                                   model(input_ids=ids).last_hidden_state, rtol=1e-4, atol=1e-4)
