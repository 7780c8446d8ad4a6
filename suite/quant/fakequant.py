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
    """Per-tensor fake-quant of a Linear's input: symmetric signed (scale from amax), or with
    `lo` given, unsigned asymmetric over [lo, amax] (IntelCaffe's u8 after ReLU; here after GELU).
    `signed` tells the packers which; an unsigned grid is not the kernels' symmetric one, so it
    reports zero_preserving=False (measure.py then re-quantizes that input)."""

    def __init__(self, amax: float, bits: int, zero_preserving: bool = True, learn: bool = False,
                 lo: float | None = None):
        super().__init__()
        self.bits, self.learn, self.signed = bits, learn, lo is None
        self.zero_preserving = zero_preserving and self.signed
        if self.signed:
            scale, zp = max(float(amax), 1e-8) / Q.qmax(bits, zero_preserving), 0.0
        else:
            scale, zp = Q.unsigned_grid(lo, float(amax), bits)
        self.lsq_scale = nn.Parameter(torch.tensor(scale), requires_grad=learn and self.signed)
        self.register_buffer("zero_point", torch.tensor(zp))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.signed:
            return Q.fake_quant_unsigned(x, self.lsq_scale, self.zero_point, self.bits)
        g = Q.lsq_grad_scale(x[0].numel(), self.bits) if self.learn else None
        return Q.fake_quant(x, self.lsq_scale, self.bits, self.zero_preserving, g)


def _act_hook(module: nn.Module, args):
    return (module.act_quant(args[0]),) + tuple(args[1:])


def attach(linears: Mapping[str, nn.Linear], weight_scales: Mapping[str, torch.Tensor] | None,
           act_amax: Mapping[str, float] | None, weight_bits: int, act_bits: int,
           zero_preserving: bool = True, learn: bool = False,
           act_lo: Mapping[str, float] | None = None) -> list:
    """Put weight fake-quant (when weight_scales) and input fake-quant (when act_amax) on each
    Linear; layers named in `act_lo` get an unsigned grid over [lo, amax]. Returns the hooks."""
    handles = []
    for name, mod in linears.items():
        if weight_scales is not None:
            scale = weight_scales[name].to(mod.weight.device)
            parametrize.register_parametrization(
                mod, "weight", WeightFakeQuant(scale, weight_bits, zero_preserving, learn))
        if act_amax is not None:
            lo = (act_lo or {}).get(name)
            mod.act_quant = ActFakeQuant(act_amax[name], act_bits, zero_preserving, learn, lo).to(mod.weight.device)
            handles.append(mod.register_forward_pre_hook(_act_hook))
    return handles


def weight_fake_quant(module: nn.Module) -> WeightFakeQuant | None:
    if parametrize.is_parametrized(module, "weight"):
        for p in module.parametrizations.weight:
            if isinstance(p, WeightFakeQuant):
                return p
    return None


MODEL_INPUTS_SKIP = ("example_idx",)  # loader bookkeeping, not a model input (suite/train.py)


@torch.no_grad()
def observe_inputs(model: nn.Module, linears: Mapping[str, nn.Linear], batches: Iterable[dict],
                   device: torch.device | None = None) -> dict:
    """One HistogramObserver per Linear input (forward pre-hook, model in eval mode) over
    `batches`: the same placement and statistics for every calibration method."""
    observers = {name: Q.make_observer() for name in linears}
    handles = [mod.register_forward_pre_hook(lambda m, a, n=name: observers[n](a[0].detach().float()))
               for name, mod in linears.items()]
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            model(**{k: v.to(device) if device is not None else v for k, v in batch.items()
                     if k not in MODEL_INPUTS_SKIP})
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return observers


def calibrate_activations(model: nn.Module, linears: Mapping[str, nn.Linear], batches: Iterable[dict],
                          calibration: str, bits: int, percentile: float = 99.99,
                          device: torch.device | None = None) -> dict[str, float]:
    """Symmetric clip value (amax) per Linear input for the calibration method."""
    observers = observe_inputs(model, linears, batches, device)
    return {name: Q.activation_amax(calibration, obs, bits, percentile) for name, obs in observers.items()}


def calibrate_ranges(model: nn.Module, linears: Mapping[str, nn.Linear], batches: Iterable[dict],
                     calibration: str, bits: int, percentile: float = 99.99, device: torch.device | None = None,
                     skew_ratio: float | None = 0.1) -> tuple[dict[str, float], dict[str, float]]:
    """IntelCaffe-style ranges: (amax per layer, lo per layer with an unsigned grid). Inputs that
    are non-negative or skewed (`Q.is_skewed`, e.g. after GELU) get an unsigned asymmetric grid
    [lo, hi]; the others a signed symmetric one. `skew_ratio=None`: all signed."""
    observers = observe_inputs(model, linears, batches, device)
    amax, lows = {}, {}
    for name, obs in observers.items():
        lo, hi = float(obs.min_val), float(obs.max_val)
        if skew_ratio is not None and Q.is_skewed(lo, hi, skew_ratio):
            lows[name], amax[name] = Q.activation_range(calibration, obs, bits, percentile)
        else:
            amax[name] = Q.activation_amax(calibration, obs, bits, percentile)
    return amax, lows


def take_batches(loader, n: int) -> list[dict]:
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) >= n:
            break
    return out
