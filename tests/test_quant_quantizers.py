"""Quantizers and calibration: half-step error, zeros kept, STE, heavy-tail clipping, PTQ hooks."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from suite.quant import quantizers as Q


@pytest.mark.parametrize("bits", [4, 8])
def test_quant_dequant_error_within_half_step(bits):
    x = torch.randn(64, 33, generator=torch.Generator().manual_seed(0))
    scale = Q.weight_scale(x, bits, "channel")
    y = Q.fake_quant(x, scale, bits)
    assert bool(((y - x).abs() <= scale / 2 + 1e-7).all())
    codes = y / scale
    assert torch.allclose(codes, codes.round(), atol=1e-4)
    assert float(codes.abs().max()) <= Q.qmax(bits) + 1e-4
    st = Q.weight_scale(x, bits, "tensor")
    assert st.ndim == 0 and float(st) == pytest.approx(float(x.abs().max()) / Q.qmax(bits))


@pytest.mark.parametrize("bits", [4, 8])
def test_zero_preserving_keeps_zeros_mid_rise_does_not(bits):
    x = torch.randn(16, 16)
    x[x.abs() < 0.8] = 0.0
    scale = Q.weight_scale(x, bits, "channel")
    assert bool((Q.fake_quant(x, scale, bits, zero_preserving=True)[x == 0] == 0).all())
    assert bool((Q.fake_quant(x, scale, bits, zero_preserving=False)[x == 0] != 0).all())
    q = Q.quantize_int(x, scale, bits)
    assert bool((q[x == 0] == 0).all()) and int(q.abs().max()) <= Q.qmax(bits)


def test_ste_gradients():
    x = torch.tensor([-3.0, -0.26, 0.0, 0.4, 3.0], requires_grad=True)
    s = torch.tensor(0.1, requires_grad=True)
    Q.fake_quant(x, s, 4).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]  # identity inside the range, 0 clipped
    assert s.grad is not None and float(s.grad) != 0.0  # LSQ step-size gradient


def _observe(calibration, x):
    obs = Q.make_observer(calibration)
    for chunk in x.split(4096):
        obs(chunk)
    return Q.activation_amax(calibration, obs, 8, percentile=99.9)


def test_percentile_and_entropy_clip_heavy_tails():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40000, generator=g)
    x[:20] = 60.0 * torch.sign(torch.randn(20, generator=g))  # rare huge outliers
    maxabs, pct, ent = (_observe(c, x) for c in Q.CALIBRATIONS)
    assert maxabs == pytest.approx(60.0)
    assert pct < 10.0 and ent < 20.0  # clipped well below the outliers
    assert pct > 2.0 and ent > 2.0  # but not into the bulk


def test_entropy_threshold_no_clip_for_uniform():
    hist = torch.ones(2048, dtype=torch.float64)
    assert Q.entropy_threshold(hist, 1.0, 8) > 0.9


def test_bits_checked():
    with pytest.raises(ValueError):
        Q.qmax(16)


def test_ptq_modifier_keeps_sparsity_and_quantizes():
    from suite.prune import masks as M
    from suite.quant.fakequant import weight_fake_quant
    from suite.quant.ptq import PtqConfig, PTQModifier

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    with torch.no_grad():
        model[0].weight.mul_(M.magnitude_mask(model[0].weight, 0.5))

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x, labels=None):
            return self.net(x)

    wrap = Wrap()
    loader = [{"x": torch.randn(4, 8)} for _ in range(3)]
    lin = {"net.0": model[0], "net.2": model[2]}
    ref = wrap(loader[0]["x"]).detach()
    for cal in Q.CALIBRATIONS:
        m = PTQModifier(PtqConfig(calibration=cal, calib_batches=2), SimpleNamespace(train_loader=loader), lin)
        m.on_train_end(wrap, None)
        w = model[0].weight
        assert weight_fake_quant(model[0]) is not None
        assert float((w == 0).float().mean()) == pytest.approx(0.5)
        assert torch.allclose(wrap(loader[0]["x"]), ref, atol=0.1)
        from torch.nn.utils import parametrize
        for mod in lin.values():  # undo for the next calibration
            parametrize.remove_parametrizations(mod, "weight")
            mod._forward_pre_hooks.clear()
