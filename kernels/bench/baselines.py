"""Competitor backends for the layer benchmark. Each builder returns a zero-argument callable
computing y = x @ W.T + b for the fixed input (same threads for all, set by the caller)."""

from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np
import torch
from torch import nn


def _linear(w: np.ndarray, b: np.ndarray) -> nn.Linear:
    lin = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w))
        lin.bias.copy_(torch.from_numpy(b))
    return lin.eval()


def torch_fp32(w, b, x):
    lin, xt = _linear(w, b), torch.from_numpy(x)

    def run():
        with torch.inference_mode():
            return lin(xt)
    return run


def quantize_dynamic_torch(module: nn.Module, engine: str) -> nn.Module:
    torch.backends.quantized.engine = engine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8)


def _torch_int8(engine):
    def build(w, b, x):
        if engine not in torch.backends.quantized.supported_engines:
            raise RuntimeError(f"quantized engine {engine} not available")
        q = quantize_dynamic_torch(nn.Sequential(_linear(w, b)), engine)
        xt = torch.from_numpy(x)

        def run():
            torch.backends.quantized.engine = engine
            with torch.inference_mode():
                return q(xt)
        return run
    return build


def torch_csr_fp32(w, b, x):
    wc = torch.from_numpy(w).to_sparse_csr()
    bt, xt = torch.from_numpy(b), torch.from_numpy(x)

    def run():
        with torch.inference_mode():
            return torch.sparse.mm(wc, xt.t()).t() + bt
    return run


def ort_session(model_bytes: bytes, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def ort_quantize_dynamic(model_path: str) -> bytes:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = model_path + ".int8.onnx"
    quantize_dynamic(model_path, out, weight_type=QuantType.QInt8)
    with open(out, "rb") as fh:
        return fh.read()


def onnxruntime_int8(w, b, x, threads=None):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    k, n = w.shape[1], w.shape[0]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "wt"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])],
        [numpy_helper.from_array(np.ascontiguousarray(w.T), "wt"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "linear.onnx")
        onnx.save(model, p)
        sess = ort_session(ort_quantize_dynamic(p), threads or torch.get_num_threads())
    feed = {"x": x}

    def run():
        return sess.run(None, feed)[0]
    return run


BASELINES = {
    "torch_fp32": torch_fp32,
    "torch_int8_fbgemm": _torch_int8("fbgemm"),
    "torch_int8_onednn": _torch_int8("onednn"),
    "onnxruntime_int8": onnxruntime_int8,
    "torch_csr_fp32": torch_csr_fp32,
}
