"""The backends a recorded cell is timed against, and rounds of interleaved timing in one process.

A round times every backend once, in an order rotated each round, each as a block of calls that
lasts at least `min_time` seconds after one untimed call (the hand-over from another runtime's
threads is not timed). Threads are pinned alike for torch, Numba and ONNX Runtime, and ORT's
worker threads do not spin between calls, so no runtime keeps a core busy while another is timed.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn

SPARQ = "sparq"  # the cell's packed model, fused as the timed encoders run (kernels.load_model)
TORCH_FP32 = "torch_fp32"  # the same architecture in dense torch fp32 (dequantized weights)
ORT_INT8_DENSE = "ort_int8_dense"  # that fp32 model under ONNX Runtime dynamic int8 (dense)
ORT_QDQ = "ort_qdq_int8"  # the cell's own exported QDQ model under ONNX Runtime (static int8)
MATCHED = "dense_matched_fp32"  # the size-matched smaller dense fp32 model of a recorded cell


def set_threads(threads: int) -> None:
    import numba

    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


def inputs_for(names, vocab: int, batch: int, seq: int) -> dict[str, torch.Tensor]:
    """Fixed random token ids (seed 0), full attention mask, segment 0."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(min(1000, vocab // 2), vocab, (batch, seq), generator=g)
    made = {"input_ids": ids, "attention_mask": torch.ones(batch, seq, dtype=torch.long),
            "token_type_ids": torch.zeros(batch, seq, dtype=torch.long)}
    return {n: made[n] for n in names}


def torch_call(model: nn.Module, inputs: dict) -> Callable[[], object]:
    def run():
        with torch.inference_mode():
            return model(**inputs)
    return run


def ort_session(data: bytes, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def ort_call(sess, inputs: dict) -> Callable[[], object]:
    feed = {i.name: inputs[i.name].numpy() for i in sess.get_inputs()}
    return lambda: sess.run(None, feed)


@torch.no_grad()
def ort_dynamic_int8(model: nn.Module, inputs: dict, outputs: list[str], threads: int):
    """ONNX Runtime dynamic int8 (quantize_dynamic, QInt8 weights) of a torch fp32 model."""
    import copy

    from kernels.bench.baselines import ort_quantize_dynamic
    from suite.export.onnx import OPSET, _Named

    model = copy.deepcopy(model)
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    names = list(inputs)
    with tempfile.TemporaryDirectory(prefix="sparq-ort-") as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = os.path.join(d, "dense.onnx")
        torch.onnx.export(_Named(model.eval(), names, outputs), tuple(inputs[n] for n in names), path,
                          input_names=names, output_names=outputs, opset_version=OPSET, dynamo=False,
                          dynamic_axes={n: {0: "batch", 1: "seq"} for n in names})
        return ort_session(ort_quantize_dynamic(path), threads)


def block_ms(fn: Callable[[], object], min_time: float) -> float:
    """Mean ms per call over a block of at least `min_time` s, after one untimed call."""
    start = time.perf_counter()
    fn()
    one = time.perf_counter() - start
    n = max(1, math.ceil(min_time / max(one, 1e-6)))
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e3


def time_rounds(calls: dict[str, Callable[[], object]], rounds: int, min_time: float,
                block: Callable[[Callable[[], object], float], float] = block_ms,
                warmup_s: float = 0.0) -> tuple[dict[str, list[float]], list]:
    """({backend: [ms per round]}, [share of the CPUs other processes used in each round]);
    `warmup_s`: each backend first runs that long untimed (clocks, allocator, thread pools)."""
    from kernels.bench.common import OtherLoad

    names = list(calls)
    for fn in calls.values():  # JIT, caches, ORT's arena
        fn()
        fn()
        end = time.perf_counter() + warmup_s
        while time.perf_counter() < end:
            fn()
    times: dict[str, list[float]] = {n: [] for n in names}
    others = []
    for r in range(rounds):
        load = OtherLoad()
        k = r % len(names)
        for n in names[k:] + names[:k]:
            times[n].append(block(calls[n], min_time))
        others.append(load.share())
    return times, others


def matched_model(record: dict) -> nn.Module:
    """A recorded dense cell's architecture (its model config and shrink options) in torch fp32;
    weights as loaded (timing does not depend on their values)."""
    from suite.config import ModelConfig, TaskConfig
    from suite.models import load_model

    cfg = record.get("config") or {}
    model = load_model(ModelConfig(**cfg["model"]), TaskConfig(**cfg["task"]))
    return model.float().eval()


def vocab_of(model: nn.Module) -> int:
    return int(getattr(getattr(model, "config", None), "vocab_size", 30522))
