"""``python -m kernels.bench --model``: end-to-end encoders (random weights, encoder Linear
layers pruned to exactly 90%), seq 128, packed on sparq kernels vs torch fp32, torch dynamic
int8 (fbgemm, oneDNN) and ONNX Runtime dynamic int8 (torch.onnx.export + quantize_dynamic)."""

from __future__ import annotations

import copy
import csv
import os
import tempfile
import warnings

import numpy as np
import torch
from torch import nn

from .. import cpu
from ..encoder import fuse_for_inference
from ..linear import convert_model, kernel_paths, packed_model_bytes
from .baselines import ort_quantize_dynamic, ort_session, quantize_dynamic_torch
from .common import (
    OtherLoad,
    check_load,
    log_mlflow,
    path_line,
    quiet_columns,
    quiet_window,
    timeit,
)

CONFIGS = {
    "minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                   intermediate_size=1536),
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                      intermediate_size=3072),
}
SEQ = 128


def build_encoder(name: str, sparsity: float = 0.9, pattern: str = "unstructured",
                  seed: int = 0, attn: str = "sdpa") -> nn.Module:
    """Random BERT encoder (seeded: same weights for any ``attn``). Attention runs on
    ``torch.nn.functional.scaled_dot_product_attention`` ("sdpa") for every torch-run variant
    (fp32, torch int8, sparq); "eager" is what the ONNX export uses."""
    import transformers

    cfg = transformers.BertConfig(vocab_size=30522, max_position_embeddings=512,
                                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                  attn_implementation=attn, **CONFIGS[name])
    torch.manual_seed(seed)
    model = transformers.BertModel(cfg, add_pooling_layer=False).eval()
    with torch.no_grad():
        for mname, mod in model.named_modules():
            if isinstance(mod, nn.Linear) and mname.startswith("encoder."):
                prune_exact_(mod.weight, sparsity, pattern)
    return model


def prune_exact_(w: torch.Tensor, sparsity: float, pattern: str) -> None:
    """Zero exactly round(sparsity * count) smallest-magnitude weights (or 1x4 blocks)."""
    if pattern == "block1x4":
        n, k = w.shape
        score = w.abs().reshape(n, k // 4, 4).sum(2).flatten()
        kill = torch.argsort(score)[: int(round(sparsity * score.numel()))]
        mask = torch.ones_like(score, dtype=torch.bool)
        mask[kill] = False
        w.mul_(mask.reshape(n, k // 4, 1).expand(n, k // 4, 4).reshape(n, k))
    else:
        kill = torch.argsort(w.abs().flatten())[: int(round(sparsity * w.numel()))]
        w.view(-1)[kill] = 0


class _Wrap(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids, attention_mask):
        return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def ort_model(model: nn.Module, ids, mask, threads: int):
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "enc.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(_Wrap(model), (ids, mask), p, input_names=["input_ids", "attention_mask"],
                              output_names=["h"], opset_version=17, dynamo=False,
                              dynamic_axes={"input_ids": {0: "b", 1: "s"},
                                            "attention_mask": {0: "b", 1: "s"}})
        sess = ort_session(ort_quantize_dynamic(p), threads)
    feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    return lambda: sess.run(None, feed)[0]


def run_model_bench(a):
    flags = cpu.cpu_flags_string()
    path = cpu.kernel_path()
    print(f"cpu: {flags}\nthreads: {a.threads}  {path_line()}")
    check_load(a.threads)
    rows = []
    for name in a.models.split(","):
        base = build_encoder(name)
        ort_base = build_encoder(name, attn="eager")  # same weights; exported to ONNX
        blk = build_encoder(name, pattern="block1x4")
        variants = {"torch_fp32": base}
        for eng in ("fbgemm", "onednn"):
            variants[f"torch_int8_{eng}"] = quantize_dynamic_torch(copy.deepcopy(base), eng)
        sparq_csr = convert_model(copy.deepcopy(base), format="csr")
        sparq_blk = convert_model(copy.deepcopy(blk), format="block1x4")
        variants.update(sparq_csr=sparq_csr, sparq_block1x4=sparq_blk)
        print(f"{name}: packed encoder bytes csr {packed_model_bytes(sparq_csr):,}, "
              f"block1x4 {packed_model_bytes(sparq_blk):,}")
        for mdl in (sparq_csr, sparq_blk):
            fuse_for_inference(mdl, attention=getattr(a, "fused_attention", True))
        with quiet_window(getattr(a, "settle", None)) as q:  # other sparq loops pause
            for bsz in [int(v) for v in a.batches.split(",")]:
                ids = torch.randint(1000, 30000, (bsz, SEQ))
                mask = torch.ones(bsz, SEQ, dtype=torch.long)
                try:
                    ort_fn = ort_model(ort_base, ids, mask, a.threads)
                except Exception as e:
                    ort_fn = None
                    print(f"  onnxruntime_int8 skipped: torch.onnx.export/ORT failed ({str(e)[:200]})")
                rounds = getattr(a, "rounds", 1)
                for rnd in range(1, rounds + 1):
                    rows += _time_round(a, name, bsz, rnd, variants, ort_fn, ids, mask, flags, path, q)
                if rounds > 1:
                    _round_summary([r for r in rows if r["model"] == name and r["batch"] == bsz])
    out = a.csv  # exactly the path asked for (parse() gives runs/kernels/bench_model.csv by default)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", newline="") as fh:
        wr = csv.DictWriter(fh, list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    print(f"wrote {out}")
    if not a.no_mlflow:
        mets = {}
        for r in rows:  # the median over rounds
            mets.setdefault(f"{r['model']}_b{r['batch']}_{r['backend']}_ms", []).append(r["median_ms"])
        mets = {k: float(np.median(v)) for k, v in mets.items()}
        log_mlflow("kernels-bench", {"mode": "model", "threads": a.threads, "cpu_flags": flags,
                                     "kernel_path": path,
                                     "models": a.models, "batches": a.batches}, mets, [out])
    return rows


def _time_round(a, name, bsz, rnd, variants, ort_fn, ids, mask, flags, path, q) -> list[dict]:
    """One timing of every variant (and ORT) at one batch size: the rows, ratios within it."""
    res, others = {}, OtherLoad()
    for be, model in variants.items():
        eng = be.rsplit("_", 1)[-1] if be.startswith("torch_int8") else None

        def run(model=model, eng=eng):
            if eng:
                torch.backends.quantized.engine = eng
            with torch.inference_mode():
                return model(input_ids=ids, attention_mask=mask).last_hidden_state
        res[be] = timeit(run, repeats=max(5, a.repeats // (2 if bsz > 1 else 1)), warmup=2)
    if ort_fn is not None:
        res["onnxruntime_int8"] = timeit(ort_fn, repeats=max(5, a.repeats // 2), warmup=2)
    fp = res["torch_fp32"][0]
    ort = res.get("onnxruntime_int8", (float("nan"),))[0]
    print(f"\n{name} batch {bsz} x seq {SEQ}" + (f"  (round {rnd})" if rnd > 1 else ""))
    rows = []
    for be, (med, lo, hi) in sorted(res.items(), key=lambda kv: kv[1][0]):
        print(f"  {be:20s} {med:9.2f} ms [{lo:.2f}-{hi:.2f}]  x{fp / med:5.2f} vs fp32"
              f"  x{ort / med:5.2f} vs ORT int8")
        rows.append({"model": name, "batch": bsz, "seq": SEQ, "sparsity": 0.9,
                     "backend": be, "median_ms": med, "min_ms": lo, "max_ms": hi,
                     "speedup_vs_fp32": fp / med, "speedup_vs_ort": ort / med,
                     "threads": a.threads,
                     "kernel_path": (kernel_paths(variants[be], bsz * SEQ) or path)
                     if be.startswith("sparq") else "",
                     "cpu_flags": flags,
                     "loadavg": round(os.getloadavg()[0], 2), **quiet_columns(q),
                     "others_busy": others.share(), "round": rnd,
                     "machine": cpu.machine_label(), "isa": cpu.forced_path() or "auto"})
    return rows


def _round_summary(rows) -> None:
    """Each sparq encoder's ratios over the rounds (median [min-max]; within each round)."""
    name, bsz = rows[0]["model"], rows[0]["batch"]
    print(f"\n{name} batch {bsz}: ratios over {max(r['round'] for r in rows)} rounds")
    for be in sorted({r["backend"] for r in rows if r["backend"].startswith("sparq")}):
        mine = [r for r in rows if r["backend"] == be]
        cells = "  ".join(f"{label} {np.median(v):5.2f}x [{min(v):.2f}-{max(v):.2f}]"
                          for label, v in (("vs ORT", [r["speedup_vs_ort"] for r in mine]),
                                           ("vs fp32", [r["speedup_vs_fp32"] for r in mine])))
        print(f"  {be:20s} {cells}")


