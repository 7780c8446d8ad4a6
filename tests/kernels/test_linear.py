import numpy as np
import pytest
import torch
from _kernels_helpers import to_nm
from torch import nn

import kernels
from kernels import SparseInt8Linear, convert_model


def _fake_quant_linear(lin: nn.Linear, bits=8, act_scale=None):
    """Independent fake-quant reference built from torch's fake-quantize ops."""
    w = lin.weight.detach().double()
    qm = 127 if bits == 8 else 7
    amax = w.abs().amax(1)
    ws = torch.where(amax > 0, amax / qm, torch.ones_like(amax))
    wq = torch.clamp(torch.round(w / ws[:, None]), -qm - 1, qm) * ws[:, None]
    b = None if lin.bias is None else lin.bias.detach().double()

    def fwd(x):
        xd = x.double()
        s = act_scale if act_scale is not None else max(xd.abs().max().item() / 127, 1e-12)
        xq = torch.clamp(torch.round(xd / s), -128, 127) * s
        y = xq @ wq.T
        return (y if b is None else y + b).to(x.dtype)

    return fwd


class FakeQuant(nn.Module):
    def __init__(self, lin, **kw):
        super().__init__()
        self.f = _fake_quant_linear(lin, **kw)

    def forward(self, x):
        return self.f(x)


@pytest.mark.parametrize("fmt", ["csr", "block1x4", "nm", "dense"])
@pytest.mark.parametrize("bits", [8, 4])
def test_from_linear_matches_fake_quant(fmt, bits):
    torch.manual_seed(0)
    lin = nn.Linear(45, 19)
    with torch.no_grad():
        w = lin.weight.numpy()
        w[:] = to_nm(w) if fmt == "nm" else w * (np.random.default_rng(0).random(w.shape) > 0.8)
    layer = SparseInt8Linear.from_linear(lin, format=fmt, bits=bits)
    x = torch.randn(2, 3, 45)
    y = layer(x)
    assert y.shape == (2, 3, 19) and y.dtype == torch.float32
    ref = _fake_quant_linear(lin, bits=bits)(x)
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4)
    assert layer.packed_bytes == kernels.packed_bytes(layer.packed)
    assert "format=" + fmt in repr(layer)


def test_from_linear_given_scales_static_act():
    torch.manual_seed(1)
    lin = nn.Linear(32, 8, bias=False)
    ws = lin.weight.detach().abs().amax(1) / 127
    layer = SparseInt8Linear.from_linear(lin, format="csr", weight_scale=ws, act_scale=0.02)
    x = torch.randn(5, 32)
    torch.testing.assert_close(layer(x), _fake_quant_linear(lin, act_scale=0.02)(x),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.packed.scale, ws.numpy(), rtol=1e-6)


def _tiny_bert():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=64,
                                  max_position_embeddings=32, hidden_dropout_prob=0.0,
                                  attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    model = transformers.BertModel(cfg).eval()
    with torch.no_grad():
        for name, mod in model.named_modules():
            if isinstance(mod, nn.Linear) and ".encoder." in f".{name}":
                w = mod.weight
                thr = w.abs().flatten().kthvalue(int(0.9 * w.numel())).values
                w[w.abs() <= thr] = 0
    return model


@pytest.mark.parametrize("fmt", ["csr", "block1x4"])
def test_convert_tiny_bert_matches_fake_quant(fmt, tmp_path):
    import copy

    model = _tiny_bert()
    ref = copy.deepcopy(model)
    for name, mod in list(ref.named_modules()):
        if isinstance(mod, nn.Linear) and name.startswith("encoder."):
            parent, _, child = name.rpartition(".")
            setattr(ref.get_submodule(parent), child, FakeQuant(mod))
    ids = torch.randint(0, 50, (2, 11))
    with torch.no_grad():
        fp = model(input_ids=ids).last_hidden_state
        expect = ref(input_ids=ids).last_hidden_state
        convert_model(model, format=fmt)
        got = model(input_ids=ids).last_hidden_state
    converted = [n for n, m in model.named_modules() if isinstance(m, SparseInt8Linear)]
    assert len(converted) == 2 * 6 and all(n.startswith("encoder.") for n in converted)
    assert isinstance(model.pooler.dense, nn.Linear)  # not an encoder layer, dense: untouched
    quant_err = (expect - fp).abs().max().item()
    err = (got - expect).abs().max().item()
    assert quant_err > 0
    assert err < 1e-3, (err, quant_err)  # only rare rounding-tie flips may differ
    # bytes and save/load of the whole packed encoder
    nbytes = kernels.packed_model_bytes(model)
    layers = kernels.packed_layers(model)
    assert nbytes == sum(kernels.packed_bytes(p) for p in layers.values())
    fp32_bytes = sum(4 * p.in_features * p.out_features for p in layers.values())
    assert nbytes < 0.3 * fp32_bytes
    kernels.save(tmp_path / "enc.spk", layers)
    fresh = _tiny_bert()
    kernels.load_packed_into(fresh, kernels.load(tmp_path / "enc.spk"))
    with torch.no_grad():
        torch.testing.assert_close(fresh(input_ids=ids).last_hidden_state, got)


def test_convert_model_filters():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    with torch.no_grad():
        model[2].weight[0, 0] = 0
    convert_model(model, format="dense")  # default: only layers with zeros
    assert isinstance(model[0], nn.Linear) and isinstance(model[2], SparseInt8Linear)
    m2 = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 4))
    convert_model(m2, filter="0")
    assert isinstance(m2[0], SparseInt8Linear) and isinstance(m2[1], nn.Linear)
    m3 = nn.Sequential(nn.Linear(8, 8))
    convert_model(m3, filter=lambda n, m: True, format="block1x4")
    assert m3[0].packed.format == "block1x4"
    with pytest.raises(ValueError, match="choose one of"):
        convert_model(m3, format="coo")


@pytest.mark.parametrize("m", [1, 5, 40])
def test_forward_shapes_and_dtypes_match_ops_linear(m):
    """The lean forward (float32, contiguous, no grad: straight to the kernel runner) and the
    general one (other dtypes, views, grad) give what ops.linear gives on the 2-D input."""
    torch.manual_seed(0)
    lin = nn.Linear(36, 20)
    layer = SparseInt8Linear.from_linear(lin, format="block1x4")
    x = torch.randn(2, m, 36)
    want = kernels.ops.linear(x.reshape(-1, 36).numpy(), layer.packed).reshape(2, m, 20)
    assert torch.equal(layer(x), torch.from_numpy(want))
    assert torch.equal(layer(x[0]), torch.from_numpy(kernels.ops.linear(x[0].numpy(), layer.packed)))
    assert torch.equal(layer(x.requires_grad_()), torch.from_numpy(want))
    xt = torch.randn(36, 2 * m).T  # not contiguous
    assert torch.equal(layer(xt), torch.from_numpy(kernels.ops.linear(xt.numpy(), layer.packed)))
    assert layer(x.double()).dtype == torch.float64
    assert layer(torch.zeros(0, 36)).shape == (0, 20)
