"""The student as ONNX: int8 QDQ where the cell's quantization is expressible, fp32 where the cell
is not quantized.

Each fake-quantized Linear becomes QuantizeLinear -> DequantizeLinear on its input (the cell's
static scale: int8 with zero point 0, or uint8 with the cell's zero point for an unsigned grid)
and an int8 weight initializer -> DequantizeLinear (per output channel) feeding the MatMul:
what ONNX Runtime runs as static int8 (QDQ). The codes are the cell's; ONNX's range is
[-128, 127] where the cell's zero-preserving grid stops at +-127, and ONNX Runtime's int8
kernels requantize differently, so outputs agree within int8 rounding, not bit for bit.
Not expressible (skipped, with the reason): 4-bit activations (no int8 clamp to +-7 in QDQ),
a mid-rise (non-zero-preserving) grid.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

FILE = "model.onnx"
OPSET = 17


def not_expressible(model: nn.Module) -> str | None:
    """Why the cell's quantization has no QDQ form, or None."""
    from suite.export.student import quantized_linears
    from suite.quant.fakequant import weight_fake_quant

    for name, mod in quantized_linears(model).items():
        wfq, afq = weight_fake_quant(mod), getattr(mod, "act_quant", None)
        if wfq is not None and not wfq.zero_preserving:
            return f"{name}: mid-rise weight grid (no zero point in int8 QDQ)"
        if afq is not None and afq.bits != 8:
            return f"{name}: {afq.bits}-bit activations (QDQ int8 cannot clamp to the {afq.bits}-bit grid)"
        if afq is not None and afq.signed and not afq.zero_preserving:
            return f"{name}: mid-rise activation grid"
    return None


class QDQLinear(nn.Module):
    """y = linear(QDQ(x), DQ(codes) ) with the cell's scales; traced into ONNX Q/DQ nodes."""

    def __init__(self, weight, bias, weight_scale=None, act=None):
        super().__init__()
        self.register_buffer("weight", weight.detach().float().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        if weight_scale is not None:
            scale = weight_scale.detach().float().reshape(-1).expand(weight.shape[0]).clone()
            self.register_buffer("weight_scale", scale)
            self.register_buffer("weight_zero_point", torch.zeros(weight.shape[0], dtype=torch.int32))
        else:
            self.weight_scale = None
        self.act = act  # (scale, zero point, qmin, qmax) or None

    def forward(self, x):
        if self.act is not None:
            x = torch.fake_quantize_per_tensor_affine(x, *self.act)
        w = self.weight
        if self.weight_scale is not None:
            w = torch.fake_quantize_per_channel_affine(w, self.weight_scale, self.weight_zero_point, 0, -128, 127)
        return nn.functional.linear(x, w, self.bias)


@torch.no_grad()
def qdq_model(model: nn.Module) -> nn.Module:
    """A CPU copy of the cell's model whose fake-quantized Linears are `QDQLinear`s (eager attention)."""
    from suite.export.student import quantized_linears, weight_codes
    from suite.measure import plain_fp32
    from suite.quant.fakequant import weight_fake_quant

    out = plain_fp32(model)
    if hasattr(out, "set_attn_implementation"):
        out.set_attn_implementation("eager")  # sdpa's mask handling does not trace
    for name, mod in quantized_linears(model).items():
        mod = copy.deepcopy(mod).cpu().float()
        wfq, afq = weight_fake_quant(mod), getattr(mod, "act_quant", None)
        weight = mod.weight.detach()
        coded = weight_codes(weight, wfq)
        act = None
        if afq is not None:
            scale = float(afq.lsq_scale.detach().clamp_min(1e-12))
            act = (scale, 0, -128, 127) if afq.signed else (scale, int(afq.zero_point), 0, 255)
        new = QDQLinear(weight, mod.bias, None if coded is None else coded[1], act)
        parent_name, _, child = name.rpartition(".")
        setattr(out.get_submodule(parent_name) if parent_name else out, child, new)
    return out.eval()


class _Named(nn.Module):
    """Positional inputs (ONNX) to the model's keyword inputs; its outputs as a tuple."""

    def __init__(self, model, inputs, outputs):
        super().__init__()
        self.model, self.inputs, self.outputs = model, list(inputs), list(outputs)

    def forward(self, *args):
        out = self.model(**dict(zip(self.inputs, args, strict=True)))
        return tuple(out[k] for k in self.outputs)


def fold_weight_quantize(proto) -> int:
    """Replace each QuantizeLinear of a constant (the weights) by its int8 result as an
    initializer (ONNX rounding: half to even, saturate); returns how many were folded."""
    from onnx import numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    made = {o: n for n in proto.graph.node for o in n.output}

    def const(name: str):
        """The value of an initializer, a Constant, or an Identity of one (the exporter shares
        equal constants through Identity nodes); None for a computed tensor."""
        if name in inits:
            return numpy_helper.to_array(inits[name])
        node = made.get(name)
        if node is not None and node.op_type == "Constant":
            return next((numpy_helper.to_array(a.t) for a in node.attribute if a.name == "value"), None)
        if node is not None and node.op_type == "Identity":
            return const(node.input[0])
        return None

    folded, drop = 0, []
    for node in list(proto.graph.node):
        if node.op_type != "QuantizeLinear" or node.input[0] not in inits:
            continue
        values = [const(i) for i in node.input]
        if any(v is None for v in values):
            continue
        w, s = values[0].astype(np.float32), values[1].astype(np.float32)
        zp = values[2] if len(values) > 2 else np.zeros((), np.int8)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * w.ndim
        if s.ndim:
            shape[axis] = -1
        info = np.iinfo(zp.dtype)
        q = np.clip(np.rint(w / s.reshape(shape)) + zp.astype(np.int32).reshape(shape), info.min, info.max)
        proto.graph.initializer.append(numpy_helper.from_array(q.astype(zp.dtype), node.output[0]))
        proto.graph.node.remove(node)
        drop.append(node.input[0])
        folded += 1
    used = {i for n in proto.graph.node for i in n.input}
    for t in [t for t in proto.graph.initializer if t.name in drop and t.name not in used]:
        proto.graph.initializer.remove(t)
    return folded


@torch.no_grad()
def write(model: nn.Module, directory: Path, batch: dict[str, torch.Tensor], outputs: list[str]) -> dict:
    """Write ``DIR/model.onnx`` (QDQ int8, or fp32 for a cell without quantization); returns the
    manifest entry."""
    import onnx

    from suite.export.student import quantized_linears

    quantized = bool(quantized_linears(model))
    export = qdq_model(model)
    names = sorted(batch)
    wrapper = _Named(export, names, outputs).eval()
    path = directory / FILE
    axes = {n: {0: "batch", 1: "seq"} for n in names}
    axes.update({o: {0: "batch"} for o in outputs})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, tuple(batch[n] for n in names), str(path), input_names=names,
                          output_names=outputs, dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    proto = onnx.load(str(path))
    folded = fold_weight_quantize(proto)
    onnx.save(proto, str(path))
    return {"file": FILE, "quant": "qdq_int8" if quantized else "none", "opset": OPSET,
            "weights_int8": folded, "inputs": names, "outputs": outputs}


def session(path: str | Path, threads: int = 1):
    """An ONNX Runtime CPU session (all graph optimizations: QDQ pairs become int8 kernels)."""
    from kernels.bench.baselines import ort_session

    return ort_session(Path(path).read_bytes(), threads)


def run(sess, batch: dict[str, torch.Tensor]) -> list[np.ndarray]:
    feed = {i.name: batch[i.name].numpy() for i in sess.get_inputs()}
    return sess.run(None, feed)
