"""Pack + measure stage of a cell: the trained model's compressed encoder Linears on the packed
int8 kernels (``kernels/``), evaluated on the cell's eval features, and encoder latency side by
side with torch fp32 and the cell's own exported ONNX model under ONNX Runtime (static int8 QDQ
with the cell's scales; fp32 for an unquantized cell). An int8 latency is always of the model
whose accuracy is reported: torch dynamic int8 of the fp32 weights (``torch_int8_onednn``) and
ORT dynamic int8 (``onnxruntime_int8``) quantize the activations their own way, so they are
opt-in baselines (``measure.backends``), not the cell's int8 latency.

What it logs (metrics unless noted):
  eval_primary_packed, eval_packed_delta (packed - eval_primary, points), packed_agreement
  (fraction of equal predictions, classification), packed_max_abs_logit_diff,
  encoder_bytes_packed_sparq (= kernels.packed_model_bytes of the packed layers),
  latency_ms_torch_fp32, latency_ms_sparq_<format>, latency_ms_onnxruntime_qdq_int8 (or
  latency_ms_onnxruntime_fp32 for an unquantized cell; latency_ms_torch_int8_onednn when asked)
  (median ms of the model forward at measure.latency_batch x measure.latency_seq, same threads),
  loadavg_1m (also a param), timing_wait_s and timing_cpu_busy (suite/quiet.py: the other sparq
  loops on the machine pause while a cell times; the busy share of the CPUs just before timing);
  tags cpu_flags, kernel_path, sparq_format, measure_threads, timing_quiet.

Quantized cells reuse the fake-quant state exactly: the weight is packed from its effective
(fake-quantized) value with the fake-quant weight scale, so the integer codes are the ones the
fake-quant model used; a static input-activation scale and its clamp (+-qmax of the zero-
preserving grid) replace the per-tensor fake-quant of the input. Non-zero-preserving grids
(mid-rise ablation) cannot be represented by int codes at that scale: those layers are
re-quantized (tag packed_requantized=true), so packed != fake-quant there by design.
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from types import SimpleNamespace

import torch
from torch import nn

from suite.config import MeasureConfig
from suite.quiet import timing_window, yield_to_timer

log = logging.getLogger("sparq")


def compressed(cfg) -> bool:
    return cfg.sparsity.prunes or cfg.quant.quantized


def wanted(cfg) -> tuple[bool, bool]:
    """(packed_eval, latency) for this cell, resolving the auto (null) settings."""
    m = cfg.measure
    auto = compressed(cfg) and cfg.profile.name != "smoke"
    pe = auto if m.packed_eval is None else bool(m.packed_eval)
    lat = auto if m.latency is None else bool(m.latency)
    return pe, lat


# ----------------------------------------------------------------------------- models
def _fq_state(mod: nn.Module):
    """(weight fake-quant or None, input fake-quant module or None) of a prunable Linear."""
    from suite.quant.fakequant import weight_fake_quant

    return weight_fake_quant(mod), getattr(mod, "act_quant", None)


@torch.no_grad()
def pack_model(model: nn.Module, cfg) -> tuple[nn.Module, dict]:
    """A CPU copy of `model` whose prunable Linears run on the packed kernels (fake-quant scales
    reused). Returns (packed model, info: format, bits, per-layer formats, requantized)."""
    from kernels import convert_model
    from suite.compression import prunable_linears

    model = copy.deepcopy(model).cpu().eval()
    linears = prunable_linears(model)
    bits = cfg.quant.kernel_bits()
    base_fmt = cfg.sparsity.packed_format()
    formats, wscales, ascales, aqmax, requant = {}, {}, {}, {}, []
    for name, mod in linears.items():
        w = mod.weight  # effective weight (fake-quantized when quantized)
        formats[name] = cfg.sparsity.layer_format(w)  # e.g. csr where an N:M pattern did not survive
        wfq, afq = _fq_state(mod)
        if wfq is not None and wfq.zero_preserving and wfq.bits == bits:
            s = wfq.lsq_scale.detach().float().clamp_min(1e-12).reshape(-1)
            wscales[name] = s.expand(w.shape[0]).contiguous() if s.numel() == 1 else s
        elif wfq is not None:
            requant.append(name)
        if afq is not None and afq.zero_preserving and afq.bits in (4, 8):
            from suite.quant.quantizers import qmax

            ascales[name] = float(afq.lsq_scale.detach().float().clamp_min(1e-12))
            aqmax[name] = int(qmax(afq.bits, True))
        elif afq is not None:
            requant.append(name)
    names = set(linears)
    packed = convert_model(model, format=base_fmt, filter=lambda nm_, _m: nm_ in names, bits=bits,
                           weight_scales=wscales, act_scales=ascales, act_qmax=aqmax,
                           formats=formats, **cfg.sparsity.format_args())
    fmts = sorted(set(formats.values()))
    info = {"format": fmts[0] if len(fmts) == 1 else "+".join(fmts), "bits": bits,
            "formats": formats, "requantized": sorted(set(requant))}
    return packed, info


@torch.no_grad()
def plain_fp32(model: nn.Module) -> nn.Module:
    """A CPU fp32 eager copy with fake-quant parametrizations and input hooks removed (the
    "trained model, fp32 eager" baseline: same effective weights, no fake-quant overhead).
    Parametrized Linears are replaced by plain ones (``remove_parametrizations`` on a deep copy
    would edit the class shared with the original model)."""
    from torch.nn.utils import parametrize

    model = copy.deepcopy(model).cpu().float().eval()
    swap = [(n, m) for n, m in model.named_modules()
            if isinstance(m, nn.Linear) and (parametrize.is_parametrized(m) or hasattr(m, "act_quant"))]
    for name, mod in swap:
        lin = nn.Linear(mod.in_features, mod.out_features, bias=mod.bias is not None)
        lin.weight = nn.Parameter(mod.weight.detach().clone(), requires_grad=False)
        if mod.bias is not None:
            lin.bias = nn.Parameter(mod.bias.detach().clone(), requires_grad=False)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, lin.eval())
    return model


def torch_int8_onednn(model_fp32: nn.Module, names) -> nn.Module:
    engine = "onednn"
    if engine not in torch.backends.quantized.supported_engines:
        raise RuntimeError("quantized engine onednn not available")
    torch.backends.quantized.engine = engine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model_fp32), set(names),
                                                      dtype=torch.qint8)


# ----------------------------------------------------------------------------- measurements
@torch.no_grad()
def compare_predictions(model_a, model_b, features, collate, batch_size, output_keys, task_kind,
                        task, eval_ds) -> dict[str, float]:
    """Task metric of model_b on the eval features, and its agreement with model_a."""
    from suite.evaluation import predict
    from suite.metrics import compute_metrics

    cpu = torch.device("cpu")
    out_a = predict(model_a, features, collate, batch_size, output_keys, cpu)
    out_b = predict(model_b, features, collate, batch_size, output_keys, cpu)
    res = {"packed_max_abs_logit_diff": max(float((out_a[k] - out_b[k]).abs().max())
                                            for k in output_keys)}
    if task.kind == "classification":
        pa, pb = out_a["logits"].argmax(-1), out_b["logits"].argmax(-1)
        res["packed_agreement"] = float((pa == pb).float().mean())
    metrics = compute_metrics(task, **task_kind.metric_inputs(task, out_b, eval_ds, features))
    res["eval_primary_packed"] = metrics["eval_primary"]
    return res


def _inputs(model: nn.Module, batch: int, seq: int) -> dict[str, torch.Tensor]:
    vocab = int(getattr(getattr(model, "config", None), "vocab_size", 30522))
    g = torch.Generator().manual_seed(0)
    lo = min(1000, vocab // 2)
    ids = torch.randint(lo, vocab, (batch, seq), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones(batch, seq, dtype=torch.long)}


def median_ms(fn, repeats: int, warmup: int = 2) -> float:
    """Median wall time (ms) of `fn()` over `repeats` timed calls after `warmup` untimed ones
    (torch.utils.benchmark.Timer: the thread count pinned, a Measurement with median and IQR)."""
    from torch.utils import benchmark

    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    for _ in range(warmup):
        fn()
    m = benchmark.Measurement.merge([timer.timeit(1) for _ in range(repeats)])[0]
    return m.median * 1e3


def latency_ms(model: nn.Module, inputs: dict, repeats: int, warmup: int = 2,
               engine: str | None = None) -> float:
    """Median wall time (ms) of one forward pass."""
    def run():
        if engine:
            torch.backends.quantized.engine = engine
        with torch.inference_mode():
            model(**inputs)

    return median_ms(run, repeats, warmup)


class _LogitsAsHidden(nn.Module):
    """Adapter for kernels.bench.model.ort_model, which exports ``m(...).last_hidden_state``."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids, attention_mask):
        out = self.m(input_ids=input_ids, attention_mask=attention_mask)
        return SimpleNamespace(last_hidden_state=out[0] if isinstance(out, tuple) else out.logits)


def _ort_latency(model_fp32, inputs, threads, repeats) -> float:
    from kernels.bench.model import ort_model

    fn = ort_model(_LogitsAsHidden(model_fp32), inputs["input_ids"], inputs["attention_mask"], threads)
    return median_ms(fn, repeats)


def _own_onnx_latency(bundle, inputs: dict, threads: int, repeats: int) -> tuple[str, float]:
    """(backend name, median ms) of the cell's exported ONNX model under ONNX Runtime."""
    from kernels.bench.baselines import ort_session
    from kernels.bundle import read_manifest

    if bundle is None:
        raise RuntimeError("no exported student (export.formats without onnx)")
    manifest = read_manifest(bundle)
    entry = manifest["formats"].get("onnx")
    if entry is None:
        raise RuntimeError(f"no ONNX export: {manifest['skipped'].get('onnx', 'not asked')}")
    sess = ort_session((bundle / entry["file"]).read_bytes(), threads)
    feed = {n: (torch.zeros_like(inputs["input_ids"]) if n == "token_type_ids" else inputs[n]).numpy()
            for n in entry["inputs"]}
    return ("onnxruntime_qdq_int8" if entry["quant"] == "qdq_int8" else "onnxruntime_fp32",
            median_ms(lambda: sess.run(None, feed), repeats))


def measure(cfg, model: nn.Module, metrics: dict[str, float], task_kind, eval_ds, eval_features,
            collate, threads: int, bundle=None) -> tuple[dict[str, float], dict[str, str]]:
    """Run the packed evaluation and latency measurement the config asks for; returns
    (metrics, tags) to add to the cell's record. `bundle`: the cell's exported student directory
    (suite/export; its ONNX model is the onnxruntime_qdq backend). Never raises for a measurement
    failure: the error goes into the tag ``measure_error`` so the trained cell is still recorded."""
    do_eval, do_lat = wanted(cfg)
    if not (do_eval or do_lat):
        return {}, {}
    import numba

    from kernels import cpu_flags_string, packed_model_bytes

    mc = cfg.measure
    out: dict[str, float] = {}
    tags: dict[str, str] = {"cpu_flags": cpu_flags_string(), "measure_threads": str(threads)}
    from kernels import cpu as kernels_cpu

    if hasattr(kernels_cpu, "kernel_path"):  # INTERFACES #4: which kernel path ran
        tags["kernel_path"] = kernels_cpu.kernel_path()
    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        yield_to_timer()
        packed, info = pack_model(model, cfg)
    except Exception as e:  # pragma: no cover - reported, cell still recorded
        log.exception("packing failed")
        return {}, {**tags, "measure_error": f"pack: {type(e).__name__}: {e}"[:500]}
    fmt = info["format"]
    tags.update({"sparq_format": fmt, "sparq_bits": str(info["bits"]),
                 "packed_requantized": str(bool(info["requantized"])).lower()})
    out["encoder_bytes_packed_sparq"] = float(packed_model_bytes(packed))
    if "encoder_bytes_packed" in metrics and metrics["encoder_bytes_packed"] != out["encoder_bytes_packed_sparq"]:
        log.info("encoder_bytes_packed %d (suite.pack) != %d (kernels.packed_model_bytes)",
                 metrics["encoder_bytes_packed"], out["encoder_bytes_packed_sparq"])
    fp32 = plain_fp32(model)
    if do_eval:
        try:
            ref = model if next(model.parameters()).device.type == "cpu" else copy.deepcopy(model).cpu()
            res = compare_predictions(ref, packed, eval_features, collate, cfg.train.eval_batch_size,
                                      task_kind.output_keys, task_kind, cfg.task, eval_ds)
            out.update(res)
            if "eval_primary" in metrics:
                out["eval_packed_delta"] = res["eval_primary_packed"] - metrics["eval_primary"]
        except Exception as e:  # pragma: no cover
            log.exception("packed eval failed")
            tags["measure_error"] = f"packed_eval: {type(e).__name__}: {e}"[:500]
    if do_lat:
        with timing_window() as quiet:  # other sparq loops on this machine pause; wait for idle CPUs
            _time_backends(out, tags, mc, fmt, fp32, packed, threads, quiet, bundle)
        from kernels import kernel_paths  # the paths the timed layers ran (autotuned per layer)

        tags["kernel_path"] = kernel_paths(packed) or tags.get("kernel_path", "")
    return out, tags


def _time_backends(out: dict, tags: dict, mc: MeasureConfig, fmt: str, fp32, packed, threads: int,
                   quiet, bundle=None) -> None:
    """Median latency of each backend, side by side, inside the caller's quiet window."""
    load = os.getloadavg()[0]
    out["loadavg_1m"] = load
    _log_param("measure.loadavg_1m", f"{load:.2f}")
    out["timing_wait_s"] = quiet.waited_s
    if quiet.busy is not None:
        out["timing_cpu_busy"] = quiet.busy
    tags["timing_quiet"] = str(quiet.quiet).lower()
    inputs = _inputs(fp32, mc.latency_batch, mc.latency_seq)
    names = [n for n, _ in packed.named_modules() if type(_).__name__ == "SparseInt8Linear"]
    from kernels.encoder import fuse_for_inference

    fused = fuse_for_inference(packed)  # Q/K/V, GELU, add + LayerNorm, attention; same numerics
    tags["sparq_fused"] = ",".join(f"{k}={v}" for k, v in sorted(fused.items()))
    for be in mc.backends:
        try:
            if be == "torch_fp32":
                out["latency_ms_torch_fp32"] = latency_ms(fp32, inputs, mc.latency_repeats)
            elif be == "torch_int8_onednn":
                q = torch_int8_onednn(fp32, names)
                out["latency_ms_torch_int8_onednn"] = latency_ms(q, inputs, mc.latency_repeats,
                                                                 engine="onednn")
            elif be == "sparq":
                out[f"latency_ms_sparq_{fmt}"] = latency_ms(packed, inputs, mc.latency_repeats)
            elif be == "onnxruntime_int8":
                out["latency_ms_onnxruntime_int8"] = _ort_latency(fp32, inputs, threads,
                                                                  mc.latency_repeats)
            elif be == "onnxruntime_qdq":
                name, ms = _own_onnx_latency(bundle, inputs, threads, mc.latency_repeats)
                out[f"latency_ms_{name}"] = ms
        except Exception as e:  # pragma: no cover - one backend failing keeps the others
            log.warning("latency %s failed: %s", be, e)
            tags[f"latency_error_{be}"] = f"{type(e).__name__}: {e}"[:300]
    if "latency_ms_torch_fp32" in out and f"latency_ms_sparq_{fmt}" in out:
        out["speedup_sparq_vs_fp32"] = out["latency_ms_torch_fp32"] / out[f"latency_ms_sparq_{fmt}"]


def _log_param(key: str, value: str) -> None:
    try:
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.log_param(key, value)
    except Exception:  # pragma: no cover - logging is best effort
        pass
