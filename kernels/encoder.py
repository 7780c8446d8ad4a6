"""Encoder-level fusions around the packed layers (inference): GELU into the intermediate
layer's kernel epilogue, and residual add + LayerNorm right after the output layers' kernels
(one vectorized pass over rows instead of torch's add and layer_norm)."""

from __future__ import annotations

import inspect

import torch
from torch import nn

from .attention import fuse_attention
from .epilogue import add_layernorm_
from .linear import SparseInt8Linear, fuse_shared_input


def _is_erf_gelu(fn) -> bool:
    if isinstance(fn, nn.GELU):
        return fn.approximate == "none"
    # transformers' GELUActivation: torch's erf GELU unless it runs its Python twin
    return type(fn).__name__ == "GELUActivation" and getattr(fn, "act", None) is nn.functional.gelu


class DenseAddNorm(nn.Module):
    """``LayerNorm(dense(hidden_states) + input_tensor)`` (BERT's SelfOutput / Output in
    eval mode, dropout off) with the add and LayerNorm in one pass over the kernel's output."""

    def __init__(self, dense: SparseInt8Linear, norm: nn.LayerNorm):
        super().__init__()
        self.dense, self.LayerNorm = dense, norm
        self._affine = (norm.weight.detach().float().contiguous().numpy(),
                        norm.bias.detach().float().contiguous().numpy())

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        y = self.dense(hidden_states)
        res = input_tensor
        if (y.dtype is torch.float32 and res.dtype is torch.float32 and not res.requires_grad
                and not y.requires_grad and res.shape == y.shape and res.is_contiguous()
                and y.is_contiguous()):
            n = y.shape[-1]
            add_layernorm_(y.numpy().reshape(-1, n), res.numpy().reshape(-1, n), *self._affine,
                           self.LayerNorm.eps)
            return y
        return self.LayerNorm(y + res)


def fuse_epilogues(model: nn.Module) -> dict[str, int]:
    """In place, on a converted encoder: intermediate layers whose activation is the erf GELU
    take it as their kernel epilogue (the activation becomes Identity); output layers (dense
    -> dropout -> LayerNorm(x + residual)) become ``DenseAddNorm``. Returns the counts."""
    counts = {"gelu": 0, "add_layernorm": 0}
    for parent in list(model.modules()):
        for name, mod in list(parent.named_children()):
            dense = getattr(mod, "dense", None)
            if not isinstance(dense, SparseInt8Linear):
                continue
            act = getattr(mod, "intermediate_act_fn", None)
            if act is not None and _is_erf_gelu(act) and dense.epilogue is None:
                dense.epilogue = "gelu"
                mod.intermediate_act_fn = nn.Identity()
                counts["gelu"] += 1
            norm = getattr(mod, "LayerNorm", None)
            if (type(mod).__name__.endswith("Output") and isinstance(norm, nn.LayerNorm)
                    and norm.elementwise_affine and norm.bias is not None
                    and tuple(norm.normalized_shape) == (dense.out_features,)):
                setattr(parent, name, DenseAddNorm(dense, norm))
                counts["add_layernorm"] += 1
    return counts


class _FeedForward:
    """A BERT-style layer's ``feed_forward_chunk`` with its signature given, so that
    transformers' ``apply_chunking_to_forward`` (which asks ``inspect.signature`` on every
    call: ~40 us a layer on this VM) finds it at once. Deep copies follow the copied layer."""

    __signature__ = inspect.Signature([inspect.Parameter("attention_output",
                                                         inspect.Parameter.POSITIONAL_OR_KEYWORD)])

    def __init__(self, layer: nn.Module):
        self.layer = layer

    def __call__(self, attention_output):
        return type(self.layer).feed_forward_chunk(self.layer, attention_output)


def lean_feed_forward(model: nn.Module) -> int:
    """In place: every layer with a one-argument ``feed_forward_chunk`` method gets
    ``_FeedForward`` in its place (same computation). Returns how many (idempotent)."""
    count = 0
    for mod in model.modules():
        fn = getattr(type(mod), "feed_forward_chunk", None)
        if (callable(fn) and not isinstance(mod.__dict__.get("feed_forward_chunk"), _FeedForward)
                and len(inspect.signature(fn).parameters) == 2):
            mod.feed_forward_chunk = _FeedForward(mod)
            count += 1
    return count


def fuse_for_inference(model: nn.Module, attention: bool = True) -> dict[str, int]:
    """Every encoder fusion, in place, on a converted model (what the timed encoders run):
    Q/K/V as one kernel call (``fuse_shared_input``), GELU and residual + LayerNorm in the
    kernels' epilogues (``fuse_epilogues``), attention read from the fused Q/K/V output
    (``fuse_attention``, unless ``attention`` is False), the feed-forward call without its
    per-call signature lookup (``lean_feed_forward``). Returns the counts of each.
    Count ``packed_model_bytes`` before fusing."""
    counts = {"qkv": fuse_shared_input(model), **fuse_epilogues(model),
              "feed_forward": lean_feed_forward(model)}
    if attention:
        counts["attention"] = fuse_attention(model)
    return counts
