"""IntelCaffe-style PTQ activations (issue 13 item 6): unsigned asymmetric grids for skewed inputs
(after GELU), signed symmetric elsewhere, one observer for every calibration method."""

import pytest
import torch
from torch import nn

from suite.quant import fakequant as F
from suite.quant import quantizers as Q


def post_gelu(n=4096, seed=0):
    g = torch.Generator().manual_seed(seed)
    return nn.functional.gelu(torch.randn(n, generator=g) * 3)


def test_unsigned_round_trip_post_gelu():
    x = post_gelu()
    lo, hi = float(x.min()), float(x.max())
    assert lo < 0 and Q.is_skewed(lo, hi, 0.1)  # GELU's minimum is -0.17
    scale, zp = Q.unsigned_grid(lo, hi, 8)
    y = Q.fake_quant_unsigned(x, torch.tensor(scale), torch.tensor(zp), 8)
    assert float((y - x).abs().max()) <= scale / 2 + 1e-6  # within half a step everywhere
    assert float(Q.fake_quant_unsigned(torch.zeros(3), torch.tensor(scale), torch.tensor(zp), 8).abs().max()) == 0
    assert len(torch.unique(y)) > 129  # more codes than a signed grid has on the positive side
    # a signed symmetric grid wastes half its codes on the (nearly empty) negative side
    signed = Q.fake_quant(x, torch.tensor(max(abs(lo), hi) / Q.qmax(8)), 8)
    assert float((signed - x).abs().max()) > 1.5 * float((y - x).abs().max())


def test_unsigned_gradient_is_straight_through():
    x = post_gelu(64).requires_grad_()
    scale, zp = Q.unsigned_grid(-0.2, 4.0, 8)
    Q.fake_quant_unsigned(x, torch.tensor(scale), torch.tensor(zp), 8).sum().backward()
    inside = (x.detach() > -0.2) & (x.detach() < 4.0)
    assert bool(inside.any()) and bool((~inside).any())
    assert torch.equal(x.grad, inside.float())  # identity inside the range, zero outside


class Ffn(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.up, self.down = nn.Linear(8, 32), nn.Linear(32, 8)

    def forward(self, x):
        return self.down(nn.functional.gelu(self.up(x)))


@pytest.mark.parametrize("calibration", ["maxabs", "percentile", "entropy"])
def test_calibrate_ranges_unsigned_after_gelu_only(calibration):
    model = Ffn()
    linears = {"up": model.up, "down": model.down}
    data = [{"x": torch.randn(64, 8) * 2} for _ in range(4)]
    amax, lows = F.calibrate_ranges(model, linears, data, calibration, 8)
    assert set(lows) == {"down"}  # the input after GELU; `up` sees a symmetric input
    assert -0.2 <= lows["down"] <= 0 and amax["down"] > 0
    F.attach(linears, None, amax, 8, 8, act_lo=lows)
    assert not model.down.act_quant.signed and model.up.act_quant.signed
    x = torch.randn(16, 8)
    with torch.no_grad():
        h = nn.functional.gelu(model.up(x))
        assert torch.allclose(model.down.act_quant(h), h, atol=float(model.down.act_quant.lsq_scale) * 0.5 + 1e-6) \
            or calibration != "maxabs"


def test_every_calibration_uses_the_same_observer():
    assert {type(Q.make_observer(c)) for c in Q.CALIBRATIONS} == {type(Q.make_observer())}
    with pytest.raises(ValueError):
        Q.make_observer("minmax")
