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
                 path: str | None = None, act_qmax: int | None = None,
                 epilogue: str | None = None):
        super().__init__()
        self.packed = packed
        self.in_features = packed.in_features
        self.out_features = packed.out_features
        self.act_scale = act_scale
        self.act_qmax = act_qmax
        self.path = path
        self.epilogue = epilogue  # None or "gelu": applied in the kernel's output pass

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
        # lean on purpose (batch-1 latency): every torch call here costs ~0.2-2 us
        if x.dtype is torch.float32 and not x.requires_grad and x.is_contiguous():
            xn = x.numpy()
            if xn.ndim != 2:
                xn = xn.reshape(-1, xn.shape[-1])
            m = xn.shape[0]
            if m and xn.shape[1] == self.in_features:  # the common case: straight to the kernel
                y = np.empty((m, self.out_features), dtype=np.float32)
                ops.runner(self.packed, m, self.act_scale, self.path, self.act_qmax,
                           self.epilogue)(xn, y)
                if x.ndim != 2:
                    y = y.reshape(*x.shape[:-1], self.out_features)
                return torch.from_numpy(y)
        shape, dtype = x.shape, x.dtype
        if x.requires_grad:
            x = x.detach()
        if dtype != torch.float32:
            x = x.to(torch.float32)
        if len(shape) != 2:
            x = x.reshape(-1, self.in_features)
        y = torch.from_numpy(ops.linear(x.numpy(), self.packed, self.act_scale, self.path,
                                        self.act_qmax, self.epilogue))
        if len(shape) != 2:
            y = y.view(*shape[:-1], self.out_features)
        return y if dtype == torch.float32 else y.to(dtype)

    def extra_repr(self) -> str:
        p = self.packed
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"format={p.format}, bits={p.bits}, sparsity={p.sparsity:.3f}, "
                f"packed_bytes={p.nbytes}" + (f", epilogue={self.epilogue}" if self.epilogue else ""))


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


# ----------------------------------------------------------------------------- shared-input fusion
SIBLINGS = (("query", "key", "value"), ("q_lin", "k_lin", "v_lin"), ("q_proj", "k_proj", "v_proj"))


class _SharedInput:
    """One packed layer for several Linears that read the same input (Q/K/V): one activation
    quantization and one kernel call instead of three. The fused output is kept until every
    member has taken its slice of it for that input (same tensor object, same version)."""

    def __init__(self, layer: SparseInt8Linear, sizes: list[int]):
        self.layer, self.sizes = layer, sizes
        self.key, self.outs, self.taken = None, None, set()

    def get(self, x: torch.Tensor, idx: int) -> torch.Tensor:
        version = -1 if x.is_inference() else x._version  # inference tensors have no counter
        key = (id(x), version, x.data_ptr(), tuple(x.shape))
        if self.outs is None or key != self.key or idx in self.taken:
            self.outs = torch.split(self.layer(x), self.sizes, dim=-1)
            self.key, self.taken = key, set()
        self.taken.add(idx)
        out = self.outs[idx]
        if len(self.taken) == len(self.sizes):
            self.key, self.outs, self.taken = None, None, set()
        return out


class FusedSliceLinear(nn.Module):
    """Member ``idx`` of a shared-input fusion: same interface as the Linear it replaces."""

    def __init__(self, group: _SharedInput, idx: int, member: SparseInt8Linear):
        super().__init__()
        self._group, self.idx = group, idx
        self.in_features, self.out_features = member.in_features, member.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._group.get(x, self.idx)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, slice={self.idx}"


def _concat_packed(members: list[SparseInt8Linear]) -> PackedLinear:
    ps = [m.packed for m in members]
    q = np.concatenate([p.int_weight() for p in ps], axis=0)
    scale = np.concatenate([p.scale for p in ps])
    bias = None
    if any(p.bias is not None for p in ps):
        bias = np.concatenate([p.bias if p.bias is not None else np.zeros(p.out_features, np.float32)
                               for p in ps])
    p0 = ps[0]
    return FORMATS[p0.format].from_int(q, scale, bias, bits=p0.bits, **p0.meta())


def fuse_shared_input(model: nn.Module, siblings=SIBLINGS) -> int:
    """Fuse packed sibling layers that read the same input (e.g. BERT's query/key/value) into
    one kernel call each; in place, returns how many groups were fused. Members must share the
    format, bits and activation quantization (dynamic, or equal static scales). Numerics are
    unchanged (same activation scale, same integer codes). Count packed bytes before fusing."""
    fused = 0
    for parent in list(model.modules()):
        for names in siblings:
            members = [getattr(parent, n, None) for n in names]
            if not all(isinstance(m, SparseInt8Linear) for m in members):
                continue
            m0 = members[0]
            if any(m.in_features != m0.in_features or m.packed.format != m0.packed.format
                   or m.packed.bits != m0.packed.bits or m.act_scale != m0.act_scale
                   or m.act_qmax != m0.act_qmax or m.packed.meta() != m0.packed.meta()
                   for m in members):
                continue
            layer = SparseInt8Linear(_concat_packed(members), act_scale=m0.act_scale,
                                     path=m0.path, act_qmax=m0.act_qmax)
            group = _SharedInput(layer, [m.out_features for m in members])
            for i, (n, m) in enumerate(zip(names, members, strict=True)):
                setattr(parent, n, FusedSliceLinear(group, i, m))
            fused += 1
    return fused


def kernel_paths(model: nn.Module, m: int | None = None) -> str:
    """The kernel paths the model's packed layers ran (``ops.chosen_path``: forced, autotuned or
    static) for ``m`` rows, or for any M seen; '+'-joined in ``cpu.PATHS`` order, e.g.
    "amx_int8+avx2" ("" before any call)."""
    from .cpu import PATHS

    used = set()
    for mod in model.modules():
        if isinstance(mod, SparseInt8Linear):
            paths = mod.packed._cache.get("paths", {})
            used |= set(paths.values()) if m is None else {ops.chosen_path(mod.packed, m)}
    return "+".join(p for p in PATHS if p in used)
