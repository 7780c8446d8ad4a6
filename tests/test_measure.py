"""Pack + measure stage (suite/measure.py): a sparse + quantized smoke cell on the tiny model and
real SST-2 dev rows; the packed int8 model must agree with the fake-quant model it came from."""

from __future__ import annotations

import pytest
import torch

from suite.config import compose
from suite.errors import ConfigError

MEASURE = ["measure.packed_eval=true", "measure.latency=true", "measure.latency_repeats=2",
           "measure.latency_seq=32", "profile.eval_samples=64", "sparsity.every=1"]


@pytest.mark.parametrize("quant", ["ptq", "qat"])
def test_packed_cell_matches_fake_quant(run_cell, smoke_overrides, data_dir, quant):
    result = run_cell(smoke_overrides + ["sparsity=gmp", f"quant={quant}"] + MEASURE)
    assert result.status == "FINISHED"
    m = result.metrics
    for key in ("eval_primary_packed", "eval_packed_delta", "packed_agreement",
                "packed_max_abs_logit_diff", "encoder_bytes_packed_sparq", "latency_ms_torch_fp32",
                "latency_ms_onnxruntime_qdq_int8", "latency_ms_sparq_csr", "loadavg_1m",
                "timing_wait_s", "timing_cpu_busy"):  # the quiet window (suite/quiet.py)
        assert key in m, key
    assert m["eval_examples"] == 64
    assert m["packed_agreement"] >= 0.95
    assert m["packed_max_abs_logit_diff"] < 1e-2
    assert abs(m["eval_packed_delta"]) <= 100.0 * (1 - m["packed_agreement"]) + 1e-9
    assert all(m[k] > 0 for k in m if k.startswith("latency_ms_"))
    import mlflow

    fused = mlflow.get_run(result.run_id).data.tags["sparq_fused"]
    assert "gelu=" in fused and "add_layernorm=" in fused  # the timed encoder has its epilogues fused
    assert "attention=" in fused  # and its attention read from the fused Q/K/V output


def test_pack_model_reuses_fake_quant_scales():
    """Layer level: packed codes are exactly the fake-quant codes (weights), and the packed
    layer equals the fake-quant Linear up to float rounding (static act scale, +-127 clamp)."""
    from torch import nn

    from kernels import SparseInt8Linear
    from suite.measure import pack_model
    from suite.quant import fakequant as F
    from suite.quant import quantizers as Q

    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("encoder", nn.Module())
    model.encoder.add_module("layer", nn.ModuleList([nn.Linear(40, 24)]))
    lin = model.encoder.layer[0]
    with torch.no_grad():
        lin.weight.mul_((torch.rand_like(lin.weight) > 0.9).float())
    linears = {"encoder.layer.0": lin}
    scales = {"encoder.layer.0": Q.weight_scale(lin.weight, 8, "channel")}
    F.attach(linears, scales, {"encoder.layer.0": 1.5}, 8, 8)
    cfg = compose(["sparsity=gmp", "quant=ptq"])
    packed, info = pack_model(model, cfg)
    layer = packed.encoder.layer[0]
    assert isinstance(layer, SparseInt8Linear) and info["format"] == "csr"
    codes = Q.quantize_int(lin.parametrizations.weight.original, scales["encoder.layer.0"], 8)
    assert torch.equal(torch.from_numpy(layer.packed.int_weight()), codes)
    x = torch.randn(7, 40) * 2  # some inputs beyond amax: clamped at +-127 like fake-quant
    with torch.no_grad():
        torch.testing.assert_close(layer(x), lin(x), rtol=1e-4, atol=1e-4)


def test_measure_defaults_and_validation():
    cfg = compose([])
    assert cfg.measure.packed_eval is None and cfg.measure.latency_seq == 128
    from suite.measure import wanted

    assert wanted(compose(["profile=smoke", "sparsity=gmp"])) == (False, False)
    assert wanted(compose(["profile=quick", "sparsity=gmp"])) == (True, True)
    assert wanted(compose(["profile=quick"])) == (False, False)
    with pytest.raises(ConfigError, match="^measure.backends"):
        compose(["measure.backends=[tvm]"])
