"""``SparseInt8Linear``: a drop-in ``nn.Linear`` (inference only) running on packed int8 kernels,
and ``convert_model`` which swaps a model's compressed Linear layers for it."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from . import ops
from .formats import FORMATS, PackedLinear, pack

DEFAULT_FILTER = ("encoder.*", "*.encoder.*")


class SparseInt8Linear(nn.Module):
    """y = x @ W.T + b with int8 weights in a packed format and int8 activations (per-tensor
    scale: dynamic max|x|/127, or static ``act_scale``). Forward takes float tensors of any
    leading shape; no autograd."""

    def __init__(self, packed: PackedLinear, act_scale: float | None = None,
                 path: str | None = None, act_qmax: int | None = None):
        super().__init__()
        self.packed = packed
        self.in_features = packed.in_features
        self.out_features = packed.out_features
        self.act_scale = act_scale
        self.act_qmax = act_qmax
        self.path = path

    @classmethod
    def from_linear(cls, linear: nn.Linear, format: str = "csr", bits: int = 8,
                    weight_scale=None, act_scale: float | None = None, n: int = 2, m: int = 4,
                    path: str | None = None, act_qmax: int | None = None) -> SparseInt8Linear:
        """Pack a (pruned, optionally QAT-trained) ``nn.Linear``.

        weight_scale: per-output-channel (or scalar) scales to reuse, e.g. a fake-quant
        observer's, so results match a fake-quant model; act_scale: static activation scale;
        act_qmax: clamp activation codes to [-act_qmax, act_qmax] (a zero-preserving fake-quant
        grid: 127 at 8 bits, 7 at 4 bits); default [-128, 127].
        n, m: the N:M pattern for ``format="nm"``. A parametrized Linear (e.g. fake-quant weight)
        is packed from its effective weight: with the fake-quant scale, codes are exact.
        """
        if format not in FORMATS:
            raise ValueError(f"format={format!r}: choose one of {sorted(FORMATS)}")
        w = linear.weight.detach().to(torch.float32).cpu().numpy()
        b = None if linear.bias is None else linear.bias.detach().to(torch.float32).cpu().numpy()
        if weight_scale is not None and isinstance(weight_scale, torch.Tensor):
            weight_scale = weight_scale.detach().cpu().numpy()
        kw = {"n": n, "m": m} if format == "nm" else {}
        packed = pack(w, format, bias=b, bits=bits, scale=weight_scale, **kw)
        return cls(packed, act_scale=act_scale, path=path, act_qmax=act_qmax)

    @property
    def packed_bytes(self) -> int:
        return self.packed.nbytes

    @property
    def weight(self) -> torch.Tensor:
        """Dequantized weight (for inspection / compatibility; not a parameter)."""
        return torch.from_numpy(self.packed.dequantize())

    @property
    def bias(self) -> torch.Tensor | None:
        return None if self.packed.bias is None else torch.from_numpy(self.packed.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.detach().reshape(-1, self.in_features).to(torch.float32).contiguous()
        y = ops.linear(x2.numpy(), self.packed, self.act_scale, self.path, self.act_qmax)
        return torch.from_numpy(y).reshape(*lead, self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        p = self.packed
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"format={p.format}, bits={p.bits}, sparsity={p.sparsity:.3f}, "
                f"packed_bytes={p.nbytes}")


def _default_filter(name: str, module: nn.Linear) -> bool:
    if any(fnmatch.fnmatch(name, pat) for pat in DEFAULT_FILTER):
        return True
    return bool((module.weight == 0).any())


def convert_model(model: nn.Module, format: str = "csr",
                  filter: str | Callable[[str, nn.Linear], bool] | None = None, bits: int = 8,
                  weight_scales: dict | None = None, act_scales: dict | None = None,
                  path: str | None = None, formats: dict | None = None,
                  act_qmax: dict | None = None, **kw) -> nn.Module:
    """Replace (in place) every selected ``nn.Linear`` with ``SparseInt8Linear``; returns model.

    filter: None (default: names matching ``*.encoder.*`` / ``encoder.*`` or any Linear with
    zeros in its weight), a glob on the qualified module name, or ``f(name, linear) -> bool``.
    weight_scales / act_scales / act_qmax: optional {qualified name: value} to match a
    fake-quant model; formats: optional {qualified name: format} overriding ``format``.
    Parametrized Linears (torch.nn.utils.parametrize) are selected too and packed from their
    effective weight; their hooks (e.g. input fake-quant) go with the replaced module.
    """
    if format not in FORMATS:
        raise ValueError(f"format={format!r}: choose one of {sorted(FORMATS)}")
    if filter is None:
        sel = _default_filter
    elif isinstance(filter, str):
        pat = filter

        def sel(name, mod):
            return fnmatch.fnmatch(name, pat)
    else:
        sel = filter
    weight_scales, act_scales = weight_scales or {}, act_scales or {}
    formats, act_qmax = formats or {}, act_qmax or {}
    targets = [(n, m) for n, m in model.named_modules()
               if isinstance(m, nn.Linear) and sel(n, m)]
    for name, lin in targets:
        new = SparseInt8Linear.from_linear(lin, format=formats.get(name, format), bits=bits,
                                           weight_scale=weight_scales.get(name),
                                           act_scale=act_scales.get(name), path=path,
                                           act_qmax=act_qmax.get(name), **kw)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, new)
    return model


def packed_model_bytes(model: nn.Module) -> int:
    """Sum of exact packed bytes over all SparseInt8Linear layers of a model."""
    return sum(m.packed.nbytes for m in model.modules() if isinstance(m, SparseInt8Linear))


def packed_layers(model: nn.Module) -> dict[str, PackedLinear]:
    """{qualified name: PackedLinear} of a converted model (what ``kernels.save`` stores)."""
    return {n: m.packed for n, m in model.named_modules() if isinstance(m, SparseInt8Linear)}


def load_packed_into(model: nn.Module, layers: dict[str, PackedLinear]) -> nn.Module:
    """Swap the named Linear layers of ``model`` for the packed ones read by ``kernels.load``."""
    for name, p in layers.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        old = getattr(parent, child)
        if (old.in_features, old.out_features) != (p.in_features, p.out_features):
            raise ValueError(f"{name}: packed shape {p.shape} does not match the model")
        setattr(parent, child, SparseInt8Linear(p))
    return model


def weight_sparsity(linear: nn.Linear) -> float:
    return float(np.mean(linear.weight.detach().cpu().numpy() == 0))
