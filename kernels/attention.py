"""Self-attention straight from the fused Q/K/V kernel's output (inference, float32).

``fuse_shared_input`` leaves BERT's query/key/value as one packed layer whose output is
[B*S, 3H]; transformers then asks the shared layer three times for a slice, builds three head
views and goes through its attention interface. ``PackedSelfAttention`` calls the packed layer
once and hands the three head views of its output to torch's fused
``scaled_dot_product_attention`` (oneDNN/flash on CPU) with the mask as transformers built it.

Tried and not kept: a jitted Numba attention pass (scores vectorized over keys, a vectorized
float32 exp, weighted V) reading the fused output in place: exact, but 112 us per head and
sequence of 128 against ~40 for torch's SDPA (1 thread, Zen 3): torch's blocked GEMM
attention is already near the FMA peak at these sizes.
"""

from __future__ import annotations

import torch
from torch import nn


class PackedSelfAttention(nn.Module):
    """BERT-style self-attention on a fused Q/K/V packed layer: one kernel call for Q, K and V,
    torch's SDPA on the head views of its output, the context back as [B, S, H]. Anything this
    does not cover (training, gradients, a KV cache, attention weights asked for, cross
    attention) runs the replaced module."""

    def __init__(self, original: nn.Module, qkv: nn.Module):
        super().__init__()
        self.original = original
        self.train(original.training)
        self._qkv = (qkv,)  # not a child: the packed bytes stay counted once (in ``original``)
        self.heads = original.num_attention_heads
        self.head_dim = original.attention_head_size
        self.scaling = float(getattr(original, "scaling", self.head_dim ** -0.5))

    def forward(self, hidden_states, attention_mask=None, past_key_values=None, **kwargs):
        x = hidden_states
        if (self.training or past_key_values is not None or kwargs.get("encoder_hidden_states") is not None
                or kwargs.get("output_attentions") or x.dim() != 3
                or (torch.is_grad_enabled() and x.requires_grad)):
            return self.original(hidden_states, attention_mask=attention_mask,
                                 past_key_values=past_key_values, **kwargs)
        batch, seq, _ = x.shape
        q, k, v = self._qkv[0](x).view(batch, seq, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if attention_mask is not None and attention_mask.dtype is not torch.bool:
            attention_mask = attention_mask.to(q.dtype)
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask,
                                                               scale=self.scaling)
        return out.transpose(1, 2).reshape(batch, seq, self.heads * self.head_dim), None


def fuse_attention(model: nn.Module) -> int:
    """In place, after ``fuse_shared_input``: every BERT-style self-attention whose query, key
    and value are slices 0, 1, 2 of one fused packed layer becomes ``PackedSelfAttention``.
    Returns how many were replaced (idempotent)."""
    from .linear import FusedSliceLinear

    count = 0
    for parent in list(model.modules()):
        for name, mod in list(parent.named_children()):
            members = [getattr(mod, n, None) for n in ("query", "key", "value")]
            if (isinstance(parent, PackedSelfAttention) or not type(mod).__name__.endswith("SelfAttention")
                    or not all(isinstance(m, FusedSliceLinear) for m in members)
                    or len({id(m._group) for m in members}) != 1
                    or [m.idx for m in members] != [0, 1, 2]
                    or getattr(mod, "is_causal", False) or getattr(mod, "is_decoder", False)
                    or getattr(getattr(mod, "config", None), "position_embedding_type", "absolute")
                    not in ("absolute", None)):
                continue
            heads, dim = getattr(mod, "num_attention_heads", None), getattr(mod, "attention_head_size", None)
            if not heads or not dim or members[0]._group.sizes != [heads * dim] * 3:
                continue
            setattr(parent, name, PackedSelfAttention(mod, members[0]._group.layer))
            count += 1
    return count
