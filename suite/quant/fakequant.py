"""Fake-quant plumbing for the prunable Linears: weights through a parametrization, input
activations through a forward pre-hook. The maths is in quantizers.py."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize

from suite.quant import quantizers as Q


class WeightFakeQuant(nn.Module):
    """Parametrization W -> fake_quant(W): per-channel ([out, 1]) or per-tensor scale."""

    def __init__(self, scale: torch.Tensor, bits: int, zero_preserving: bool = True, learn: bool = False):
        super().__init__()
        self.bits, self.zero_preserving = bits, zero_preserving
        self.lsq_scale = nn.Parameter(scale.detach().clone().float(), requires_grad=learn)
        self.learn = learn

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        g = Q.lsq_grad_scale(w.numel() // max(1, self.lsq_scale.numel()), self.bits) if self.learn else None
        return Q.fake_quant(w, self.lsq_scale, self.bits, self.zero_preserving, g)


class ActFakeQuant(nn.Module):
    """Per-tensor symmetric fake-quant of a Linear's input."""

    def __init__(self, amax: float, bits: int, zero_preserving: bool = True, learn: bool = False):
        super().__init__()
        self.bits, self.zero_preserving, self.learn = bits, zero_preserving, learn
        scale = max(float(amax), 1e-8) / Q.qmax(bits, zero_preserving)
        self.lsq_scale = nn.Parameter(torch.tensor(scale), requires_grad=learn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = Q.lsq_grad_scale(x[0].numel(), self.bits) if self.learn else None
        return Q.fake_quant(x, self.lsq_scale, self.bits, self.zero_preserving, g)


def _act_hook(module: nn.Module, args):
    return (module.act_quant(args[0]),) + tuple(args[1:])


def attach(linears: Mapping[str, nn.Linear], weight_scales: Mapping[str, torch.Tensor] | None,
           act_amax: Mapping[str, float] | None, weight_bits: int, act_bits: int,
           zero_preserving: bool = True, learn: bool = False) -> list:
    """Put weight fake-quant (when weight_scales) and input fake-quant (when act_amax) on each
    Linear. Returns the hook handles."""
    handles = []
    for name, mod in linears.items():
        if weight_scales is not None:
            scale = weight_scales[name].to(mod.weight.device)
            parametrize.register_parametrization(
                mod, "weight", WeightFakeQuant(scale, weight_bits, zero_preserving, learn))
        if act_amax is not None:
            mod.act_quant = ActFakeQuant(act_amax[name], act_bits, zero_preserving, learn).to(mod.weight.device)
            handles.append(mod.register_forward_pre_hook(_act_hook))
    return handles


def weight_fake_quant(module: nn.Module) -> WeightFakeQuant | None:
    if parametrize.is_parametrized(module, "weight"):
        for p in module.parametrizations.weight:
            if isinstance(p, WeightFakeQuant):
                return p
    return None


@torch.no_grad()
def calibrate_activations(model: nn.Module, linears: Mapping[str, nn.Linear], batches: Iterable[dict],
                          calibration: str, bits: int, percentile: float = 99.99,
                          device: torch.device | None = None) -> dict[str, float]:
    """Observe the inputs of `linears` over `batches` (model in eval mode); returns the clip
    value (amax) per layer for the calibration method."""
    observers = {name: Q.make_observer(calibration) for name in linears}
    handles = [mod.register_forward_pre_hook(lambda m, a, n=name: observers[n](a[0].detach().float()))
               for name, mod in linears.items()]
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            model(**{k: v.to(device) if device is not None else v for k, v in batch.items()})
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {name: Q.activation_amax(calibration, obs, bits, percentile) for name, obs in observers.items()}


def take_batches(loader, n: int) -> list[dict]:
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) >= n:
            break
    return out
