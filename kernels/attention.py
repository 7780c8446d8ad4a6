"""Self-attention straight from the fused Q/K/V kernel's output (inference, float32).

``fuse_shared_input`` leaves BERT's query/key/value as one packed layer whose output is
[B*S, 3H]; torch's attention then takes three strided head views of it, and the result comes
back through a transpose + contiguous copy. ``PackedSelfAttention`` instead runs one jitted
pass per (sequence, head) that reads Q, K and V where the packed layer wrote them and writes
the context rows [B*S, H] the output layer reads: scores, masked softmax and the weighted sum
of V in L1-sized scratch, no intermediate tensors.

The softmax's exp is a branch-free float32 Cody-Waite reduction + degree-6 polynomial (Cephes
expf's minimax coefficients) whose 2^n comes from the float's exponent bits, so LLVM vectorizes
it with the rest of the row (numba has no vector exp without SVML). Max relative error 8.2e-8
over the softmax's range (tests/kernels/test_attention.py).
"""

from __future__ import annotations

import numpy as np
import torch
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic
from torch import nn

from .cpu import jit_disabled

_CACHE = not jit_disabled()
# contract/reassoc let LLVM vectorize the max/sum reductions; no nnan/ninf: masked scores are
# large finite negatives, never inf
_FM = {"contract", "reassoc", "nsz", "arcp", "afn"}


@intrinsic
def _f32_from_bits(typingctx, bits):
    """The float32 whose IEEE bits are the int32 ``bits`` (a bitcast LLVM can vectorize)."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


_LOG2E, _LN2_HI, _LN2_LO = np.float32(1.44269504088896341), np.float32(0.693359375), np.float32(-2.12194440e-4)
_E0, _E1, _E2, _E3, _E4, _E5 = (np.float32(c) for c in (
    1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1,
    5.0000001201e-1))  # Cephes expf, highest power first
_LO = np.float32(-87.0)


@njit(inline="always", fastmath=_FM)
def exp_f32(x):
    """exp(x) in float32 for x <= 0 (the softmax's shifted scores); 0 below -87."""
    xc = max(x, _LO)
    n = np.floor(xc * _LOG2E + np.float32(0.5))
    r = xc - n * _LN2_HI - n * _LN2_LO
    p = (((((_E0 * r + _E1) * r + _E2) * r + _E3) * r + _E4) * r + _E5) * r * r + r + np.float32(1.0)
    scale = _f32_from_bits((np.int32(n) + np.int32(127)) << np.int32(23))
    return p * scale if x >= _LO else np.float32(0.0)


@njit(parallel=True, fastmath=_FM, cache=_CACHE)
def attention_(qkv, batch, seq, heads, dim, scale, bias, out):
    """out[b*seq + i, h*dim:(h+1)*dim] = softmax(q_i . K^T * scale + bias[b, i or 0]) V for
    every (b, h); ``qkv`` float32 [batch*seq, 3*heads*dim] (Q | K | V, head-major inside each),
    ``bias`` float32 [batch, 1 or seq, seq] additive (0 or a large negative), or [0, 0, 0]."""
    hid = heads * dim
    has_bias = bias.shape[0] > 0
    per_query = has_bias and bias.shape[1] > 1
    for t in prange(batch * heads):
        b, h = t // heads, t % heads
        row0 = b * seq
        kt = np.empty((dim, seq), dtype=np.float32)  # K^T of this head: scores vectorize over keys
        v = np.empty((seq, dim), dtype=np.float32)
        q = np.empty(dim, dtype=np.float32)
        s = np.empty(seq, dtype=np.float32)
        acc = np.empty(dim, dtype=np.float32)
        for j in range(seq):
            for e in range(dim):
                kt[e, j] = qkv[row0 + j, hid + h * dim + e]
                v[j, e] = qkv[row0 + j, 2 * hid + h * dim + e]
        for i in range(seq):
            for e in range(dim):
                q[e] = qkv[row0 + i, h * dim + e] * scale
            s[:] = 0.0
            for e in range(dim):
                qe = q[e]
                for j in range(seq):
                    s[j] += qe * kt[e, j]
            if has_bias:
                bi = i if per_query else 0
                for j in range(seq):
                    s[j] += bias[b, bi, j]
            mx = s[0]
            for j in range(1, seq):
                mx = max(mx, s[j])
            tot = np.float32(0.0)
            for j in range(seq):
                p = exp_f32(s[j] - mx)
                s[j] = p
                tot += p
            acc[:] = 0.0
            for j in range(seq):
                pj = s[j]
                for e in range(dim):
                    acc[e] += pj * v[j, e]
            inv = np.float32(1.0) / tot
            for e in range(dim):
                out[row0 + i, h * dim + e] = acc[e] * inv
    return out


_NEG = np.float32(-1e30)  # a masked score: exp underflows to exactly 0, stays finite


def mask_bias(mask: torch.Tensor | None, batch: int, seq: int) -> np.ndarray:
    """transformers' attention mask (None; bool, True = attend; or additive float), broadcastable
    to [B, 1, S, S], as the kernel's float32 bias [B, 1 or S, S] (or empty)."""
    if mask is None:
        return np.zeros((0, 0, 0), dtype=np.float32)
    m = mask.detach()
    if m.dim() == 4:
        if m.shape[1] != 1:
            raise ValueError(f"per-head attention masks are not supported (shape {tuple(m.shape)})")
        m = m[:, 0]
    elif m.dim() == 2:  # [B, S] padding mask
        m = m[:, None, :]
    rows = 1 if m.shape[1] == 1 else seq
    if m.dtype is torch.bool:
        bias = torch.where(m, 0.0, float(_NEG)).float()
    else:
        bias = m.float().clamp(min=float(_NEG))
    return np.ascontiguousarray(bias.expand(batch, rows, seq).numpy())


class PackedSelfAttention(nn.Module):
    """BERT-style self-attention on a fused Q/K/V packed layer: one kernel call for Q, K and V,
    one jitted attention pass, context rows written in the output layer's layout. Anything the
    pass does not cover (training, gradients, a KV cache, attention weights asked for, cross
    attention, JIT off) runs the replaced module instead."""

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
                or kwargs.get("output_attentions") or x.dtype is not torch.float32 or x.dim() != 3
                or (torch.is_grad_enabled() and x.requires_grad) or jit_disabled()):
            return self.original(hidden_states, attention_mask=attention_mask,
                                 past_key_values=past_key_values, **kwargs)
        batch, seq, _ = x.shape
        fused = self._qkv[0](x).reshape(batch * seq, -1)
        if not fused.is_contiguous():
            fused = fused.contiguous()
        hid = self.heads * self.head_dim
        out = torch.empty(batch * seq, hid, dtype=torch.float32)
        attention_(fused.numpy(), batch, seq, self.heads, self.head_dim, np.float32(self.scaling),
                   mask_bias(attention_mask, batch, seq), out.numpy())
        return out.view(batch, seq, hid), None


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
                    or len(members[0]._group.sizes) != 3
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
