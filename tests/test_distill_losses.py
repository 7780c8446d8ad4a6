"""Distillation maths: KD at temperature, regression MSE, layer map for shrunk students."""

import pytest
import torch

from suite.distill import losses as L


def test_kd_zero_when_equal_and_positive_otherwise():
    t = torch.randn(5, 3)
    assert float(L.kd_logits(t, t, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(L.kd_logits(torch.zeros(5, 3), t, 2.0)) > 0
    assert float(L.kd_regression(torch.ones(4, 1), torch.zeros(4, 1))) == pytest.approx(1.0)


def test_layer_map():
    assert L.layer_map(6, 6) == [0, 1, 2, 3, 4, 5]
    assert L.layer_map(3, 6) == [1, 3, 5]
    assert L.layer_map(1, 6) == [5]
    assert L.layer_map(2, 12) == [5, 11]


def test_hidden_mse_masks_padding_and_maps_layers():
    t = [torch.randn(2, 4, 8) for _ in range(7)]
    s = [t[0]] + [t[j + 1] for j in L.layer_map(3, 6)]
    assert float(L.hidden_mse(s, t)) == pytest.approx(0.0, abs=1e-7)
    s2 = [x.clone() for x in s]
    for x in s2[1:]:
        x[:, -1] += 100.0  # only on a padded position
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0]])
    assert float(L.hidden_mse(s2, t, mask)) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError):
        L.hidden_mse([t[0], torch.randn(2, 4, 5)], t)
