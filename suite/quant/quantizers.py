"""Quantizers and calibrators as pure functions (no modules, no state).

Symmetric signed integer grids. `zero_preserving=True` (mid-tread, restricted range
[-(2^(b-1)-1), 2^(b-1)-1]): 0 maps to 0 exactly, so pruned weights stay pruned (IBM Deep
Compression). `zero_preserving=False` (mid-rise, 2^b levels at (k + 1/2) * scale): all levels
used, but zero is not representable (the ablation). Rounding is half-to-even (torch.round).
The fake-quant functions use a straight-through estimator: identity gradient inside the range,
zero outside, and the LSQ gradient for the scale.
"""

from __future__ import annotations

import math

import torch

BITS = (4, 8)
CALIBRATIONS = ("maxabs", "percentile", "entropy")


def qmax(bits: int, zero_preserving: bool = True) -> float:
    """Largest grid value in units of the scale (127 / 7 mid-tread; 127.5 / 7.5 mid-rise)."""
    if bits not in BITS:
        raise ValueError(f"bits={bits}; supported: 4, 8")
    return float(2 ** (bits - 1) - 1) if zero_preserving else 2 ** (bits - 1) - 0.5


def _grad_scale(x: torch.Tensor, g: float) -> torch.Tensor:
    y = x * g
    return (x - y).detach() + y


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def _floor_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.floor(x) - x).detach()


def fake_quant(x: torch.Tensor, scale: torch.Tensor, bits: int, zero_preserving: bool = True,
               grad_scale: float | None = None) -> torch.Tensor:
    """Quantize-dequantize `x` with `scale` (broadcastable, > 0), differentiable (STE / LSQ)."""
    if grad_scale is not None:
        scale = _grad_scale(scale, grad_scale)
    scale = scale.clamp_min(1e-12)
    q = qmax(bits, zero_preserving)
    v = torch.clamp(x / scale, -q, q)
    if zero_preserving:
        return _round_ste(v) * scale
    # mid-rise: levels at k + 1/2; floor(v) + 1/2, clamped to the outermost level
    return torch.clamp(_floor_ste(v) + 0.5, -q, q) * scale


def fake_quant_unsigned(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, bits: int) -> torch.Tensor:
    """Asymmetric unsigned grid (IntelCaffe's u8 activations): codes 0 .. 2^bits - 1,
    x ~ (code - zero_point) * scale; integer zero point, so 0 is exact. STE like fake_quant."""
    scale = scale.clamp_min(1e-12)
    top = float(2 ** bits - 1)
    v = torch.clamp(x / scale + zero_point, 0.0, top)
    return (_round_ste(v) - zero_point) * scale


def unsigned_grid(lo: float, hi: float, bits: int) -> tuple[float, float]:
    """(scale, zero_point) of the unsigned grid covering [min(lo, 0), max(hi, 0)]."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-8) / (2 ** bits - 1)
    return scale, float(round(-lo / scale))


def quantize_int(x: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    """Integer codes of the zero-preserving grid (for packing): round(x / scale) clamped."""
    q = qmax(bits, True)
    return torch.clamp(torch.round(x / scale.clamp_min(1e-12)), -q, q).to(torch.int8)


def lsq_grad_scale(numel: int, bits: int) -> float:
    """LSQ step-size gradient scale 1 / sqrt(numel * qmax)."""
    return 1.0 / math.sqrt(max(1, numel) * qmax(bits))


# ----------------------------------------------------------------------------- weight scales
def weight_scale(w: torch.Tensor, bits: int, granularity: str = "channel", zero_preserving: bool = True,
                 percentile: float | None = None) -> torch.Tensor:
    """Scale from the fp32 weight: max|w| (or a percentile of |w|) / qmax, per output channel
    ([out, 1]) or per tensor (scalar). Uses torch.ao observers for the max-abs case."""
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

    w = w.detach().float()
    if percentile is not None:
        a = w.abs().reshape(w.shape[0], -1) if granularity == "channel" else w.abs().reshape(1, -1)
        amax = torch.quantile(a, percentile / 100.0, dim=1)
    elif granularity == "channel":
        obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
        obs(w)
        amax = torch.maximum(obs.min_val.abs(), obs.max_val.abs())
    elif granularity == "tensor":
        obs = MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
        obs(w)
        amax = torch.maximum(obs.min_val.abs(), obs.max_val.abs()).reshape(1)
    else:
        raise ValueError(f"granularity={granularity!r}; allowed: channel, tensor")
    scale = torch.where(amax > 0, amax, torch.ones_like(amax)) / qmax(bits, zero_preserving)
    return scale.reshape(-1, 1) if granularity == "channel" else scale.reshape(())


# ----------------------------------------------------------------------------- calibration
def abs_histogram(hist: torch.Tensor, lo: float, hi: float, bins: int = 2048) -> tuple[torch.Tensor, float]:
    """Fold a signed histogram over [lo, hi] (e.g. a HistogramObserver's) into a histogram of
    |x| over [0, amax] with `bins` bins. Returns (counts, amax)."""
    hist = hist.detach().double().cpu()
    edges = torch.linspace(lo, hi, hist.numel() + 1, dtype=torch.float64)
    centers = ((edges[:-1] + edges[1:]) / 2).abs()
    amax = max(abs(lo), abs(hi))
    if amax <= 0:
        return torch.zeros(bins, dtype=torch.float64), 0.0
    idx = torch.clamp((centers / amax * bins).long(), 0, bins - 1)
    out = torch.zeros(bins, dtype=torch.float64).index_add_(0, idx, hist)
    return out, amax


def percentile_threshold(abs_hist: torch.Tensor, amax: float, percentile: float = 99.99) -> float:
    """Clip value: the `percentile` of |x| from a histogram over [0, amax]."""
    total = float(abs_hist.sum())
    if total <= 0 or amax <= 0:
        return amax
    cdf = torch.cumsum(abs_hist, 0) / total
    i = int(torch.searchsorted(cdf, torch.tensor(percentile / 100.0, dtype=cdf.dtype)))
    i = min(i, abs_hist.numel() - 1)
    return (i + 1) / abs_hist.numel() * amax


def entropy_threshold(abs_hist: torch.Tensor, amax: float, bits: int = 8, stride: int = 16) -> float:
    """Clip value minimising KL(P || Q) between the |x| distribution and its quantized version
    (TensorRT-style entropy calibration), searched over bin edges >= the number of levels."""
    import numpy as np

    hist = abs_hist.detach().cpu().numpy().astype(np.float64)
    n_bins = hist.size
    levels = int(2 ** (bits - 1))  # magnitude levels of a symmetric grid
    if hist.sum() <= 0 or amax <= 0:
        return amax
    best_i, best_kl = n_bins, float("inf")
    for i in range(levels, n_bins + 1, stride):
        p = hist[:i].copy()
        p[i - 1] += hist[i:].sum()  # outliers folded into the last bin
        nz = p > 0
        # quantize the first i bins into `levels` chunks, spread back over their nonzero bins
        src = hist[:i]
        sizes = np.full(levels, i // levels) + (np.arange(levels) < i % levels)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        mass = np.add.reduceat(src, starts)
        cnt = np.add.reduceat((src > 0).astype(np.float64), starts)
        per = np.repeat(np.divide(mass, cnt, out=np.zeros_like(mass), where=cnt > 0), sizes)
        q = np.where(src > 0, per, 0.0)
        ps, qs = p.sum(), q.sum()
        if qs <= 0:
            continue
        pn, qn = p / ps, q / qs
        mask = nz & (qn > 0)
        kl = float(np.sum(pn[mask] * np.log(pn[mask] / qn[mask]))) + float(np.sum(pn[nz & (qn <= 0)])) * 1e3
        if kl < best_kl:
            best_kl, best_i = kl, i
    return best_i / n_bins * amax


def activation_amax(calibration: str, obs, bits: int, percentile: float = 99.99) -> float:
    """Clip value |x| <= amax of a symmetric signed grid, from the layer's HistogramObserver
    (its exact running min/max for maxabs, its histogram for percentile and entropy)."""
    lo, hi = float(obs.min_val), float(obs.max_val)
    if calibration == "maxabs":
        return max(abs(lo), abs(hi))
    hist, amax = abs_histogram(obs.histogram, lo, hi)
    if calibration == "percentile":
        return percentile_threshold(hist, amax, percentile)
    if calibration == "entropy":
        return entropy_threshold(hist, amax, bits)
    raise ValueError(f"calibration={calibration!r}; allowed: {', '.join(CALIBRATIONS)}")


def is_skewed(lo: float, hi: float, ratio: float) -> bool:
    """Non-negative or skewed input (e.g. after GELU, whose minimum is -0.17): min >= -ratio * max."""
    return hi > 0 and lo >= -ratio * hi


def activation_range(calibration: str, obs, bits: int, percentile: float = 99.99) -> tuple[float, float]:
    """(lo, hi) of an unsigned asymmetric grid: lo = the observed minimum (kept: it is small for a
    skewed input), hi clipped by the calibration method on the same histogram (offset by lo)."""
    lo, hi = float(obs.min_val), float(obs.max_val)
    lo = min(lo, 0.0)
    if calibration == "maxabs" or hi <= lo:
        return lo, hi
    hist = obs.histogram.detach().double().cpu()  # uniform bins over [min_val, max_val]
    width = float(obs.max_val) - float(obs.min_val)
    if calibration == "percentile":
        top = percentile_threshold(hist, width, percentile)
    elif calibration == "entropy":
        top = entropy_threshold(hist, width, bits)  # the signed search (2^(bits-1) chunks): clips less
    else:
        raise ValueError(f"calibration={calibration!r}; allowed: {', '.join(CALIBRATIONS)}")
    return lo, float(obs.min_val) + top


def make_observer(calibration: str = "maxabs"):
    """One observer type for every calibration method (same placement, same statistics):
    HistogramObserver keeps the exact running min/max and a 2048-bin histogram."""
    from torch.ao.quantization.observer import HistogramObserver

    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration={calibration!r}; allowed: {', '.join(CALIBRATIONS)}")
    return HistogramObserver(bins=2048, dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
