"""A synthetic MLflow store with realistic keys (design.md), for the report tests.

No test functions here: `synthetic_store(path)` builds the store with plain MlflowClient calls
(seconds, no training), and the expected verdicts are written next to the data that implies them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

MALICIOUS = "<script>alert(1)</script>"
BASE_BYTES = 42_550_272.0  # MiniLM-L6 prunable encoder, fp32

KERNEL_CSV = """k,n,m,sparsity,pattern,backend,median_ms,min_ms,max_ms,speedup_vs_fp32,cpu_flags
768,3072,128,0.9,unstructured,torch_fp32,20.0,19.0,21.0,1.0,avx512f
768,3072,128,0.9,unstructured,torch_int8_fbgemm,8.0,7.5,9.0,2.5,avx512f
768,3072,128,0.9,unstructured,sparq_csr,5.0,4.5,6.0,4.0,avx512f
768,3072,128,0.5,unstructured,sparq_csr,12.0,11.0,13.0,1.6667,avx512f
768,3072,128,2:4,nm,sparq_nm,9.0,8.0,10.0,2.2222,avx512f
"""


def _params(exp: str, model: str, task: str, seed: int, sp: str = "dense", target: float = 0.0,
            quant: str = "fp32", wb: int = 32, ab: int = 32, distill: str = "none", **extra) -> dict:
    primary = {"mrpc": "accuracy", "sst2": "accuracy"}[task]
    p = {"model": model, "task": task, "profile": "quick", "seed": str(seed), "sparsity.method": sp,
         "sparsity.target": str(target), "quant.method": quant, "quant.weight_bits": str(wb),
         "quant.act_bits": str(ab), "distill.method": distill, "experiment": exp, "model.name": model,
         "model.shrink_keep_every": "1", "model.shrink_intermediate": "None", "task.name": task,
         "task.primary": primary, "task.kind": "classification", "train.lr": "5e-05", "threads": "0",
         "data_dir": "/data", "profile.name": "quick"}
    p.update({k.replace("__", "."): str(v) for k, v in extra.items()})
    return p


def _metrics(primary: float, sparsity: float = 0.0, bits: int = 32, bytes_dense: float = BASE_BYTES,
             task: str = "sst2", **extra) -> dict:
    density = 1 - sparsity
    packed = bytes_dense * density * bits / 32 * 1.1 if (sparsity or bits < 32) else bytes_dense
    m = {"eval_accuracy": primary / 100, "eval_primary": primary, "eval_examples": 872.0,
         "sparsity_measured": sparsity, "compression_nominal": 32 / bits / density,
         "compression_packed": bytes_dense / packed, "encoder_bytes_packed": packed,
         "encoder_bytes_dense_fp32": bytes_dense, "train_seconds": 12.5, "wall_seconds": 20.0}
    if task == "mrpc":
        m["eval_f1"] = (primary + 3) / 100
    m.update(extra)
    return m


# (experiment, params kwargs, metrics kwargs); the comments say which claim each row feeds.
CELLS = [
    # dense baselines: sst2 90.0 / 91.0 (mean 90.5), mrpc 85.0
    ("default", dict(model="minilm", task="sst2", seed=1), dict(primary=90.0)),
    ("default", dict(model="minilm", task="sst2", seed=2), dict(primary=91.0)),
    ("default", dict(model="minilm", task="mrpc", seed=1), dict(primary=85.0, task="mrpc")),
    ("default", dict(model=MALICIOUS, task="sst2", seed=1), dict(primary=50.0)),
    # PO1 holds (89.5 vs 90.5; mrpc 84.0 vs 85.0); PO2 holds (qat drop 0.5); PO3 fails (89.0 < 0.99 x 90.5)
    ("prune_ofa", dict(model="minilm", task="sst2", seed=1, sp="gmp", target=0.9),
     dict(primary=89.5, sparsity=0.9)),
    ("prune_ofa", dict(model="minilm", task="mrpc", seed=1, sp="gmp", target=0.9),
     dict(primary=84.0, sparsity=0.9, task="mrpc")),
    ("prune_ofa", dict(model="minilm", task="sst2", seed=1, sp="gmp", target=0.9, quant="qat", wb=8, ab=8),
     dict(primary=89.0, sparsity=0.9, bits=8)),
    # IC1 fails (percentile -1.5), IC3 holds (spread 1.4), IC2 holds (latency 20 / 10 = 2x)
    *[("intelcaffe_int8", dict(model="minilm", task="sst2", seed=1, quant="ptq", wb=8, ab=8, quant__calibration=cal),
       dict(primary=acc, bits=8, latency_ms_torch_fp32=20.0, latency_ms_sparq_int8=10.0))
      for cal, acc in (("max", 90.2), ("percentile", 89.0), ("entropy", 90.4))],
    # DC1 holds (2:4 + 4 bit, 90.0 vs 90.5), DC2 holds (measured 0.5), DC3 holds (+2 pt with zero_preserving)
    ("ibm_deep_compression", dict(model="minilm", task="sst2", seed=1, sp="nm", target=0.0, quant="qat", wb=4, ab=8,
                                  sparsity__n=2, sparsity__m=4, quant__zero_preserving=True),
     dict(primary=90.0, sparsity=0.5, bits=4)),
    ("ibm_deep_compression", dict(model="minilm", task="sst2", seed=1, sp="nm", target=0.0, quant="qat", wb=4, ab=8,
                                  sparsity__n=2, sparsity__m=4, quant__zero_preserving=False),
     dict(primary=88.0, sparsity=0.5, bits=4)),
    # S3 holds (95% + logits: 89.0 vs 90.5); S1 holds (gmp 90% 89.5 beats half-depth dense 85.0)
    ("sparsebert_s4", dict(model="minilm", task="sst2", seed=1, sp="gmp", target=0.95, distill="logits"),
     dict(primary=89.0, sparsity=0.95)),
    ("sparsebert_s4", dict(model="minilm", task="sst2", seed=1, model__shrink_keep_every=2),
     dict(primary=85.0, bytes_dense=BASE_BYTES / 2)),
]

EXPECTED = {"PO1": "holds", "PO2": "holds", "PO3": "does not hold", "IC1": "does not hold", "IC2": "holds",
            "IC3": "holds", "DC1": "holds", "DC2": "holds", "DC3": "holds", "S1": "holds", "S2": "not run",
            "S3": "holds"}

ENVIRONMENT = {"suite_version": "0.1.0", "git_sha": "abc123", "python": "3.11.2",
               "packages": {"torch": "2.13.0", "transformers": "5.23.0"},
               "cpu": {"model": "Test CPU", "cores": 2, "flags": ["avx512f", "avx512_vnni"]}, "torch_threads": 2}


def cell_id(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def synthetic_store(root: Path, kernels_in_mlflow: bool = True) -> str:
    """Create the store under `root`; returns its tracking URI."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    exps: dict[str, str] = {}

    def exp_id(name: str) -> str:
        if name not in exps:
            exps[name] = client.create_experiment(name, artifact_location=(root / "artifacts" / name).as_uri())
        return exps[name]

    def log(name: str, params: dict, metrics: dict, status: str = "FINISHED", tags: dict | None = None,
            start_time: int | None = None) -> str:
        run = client.create_run(exp_id(name), start_time=start_time)
        rid = run.info.run_id
        tags = {"cell_id": cell_id(params), "suite.version": "0.1.0", "git_sha": "abc123", "threads": "2",
                "data_source": "data_dir", "train_from_dev": "false", **(tags or {})}
        client.log_batch(rid, metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()],
                         params=[Param(k, v) for k, v in params.items()],
                         tags=[RunTag(k, v) for k, v in tags.items()])
        client.log_dict(rid, ENVIRONMENT, "environment.json")
        client.set_terminated(rid, status)
        return rid

    for exp, pk, mk in CELLS:
        log(f"{exp}-quick", _params(exp, **pk), _metrics(**mk))
    # noise that the report must ignore: a FAILED run, and an older run of a re-run cell
    exp, pk, mk = CELLS[0]
    log(f"{exp}-quick", _params(exp, **pk, quant__calibration="x"), _metrics(primary=1.0), status="FAILED",
        tags={"error": "RuntimeError: boom"})
    log(f"{exp}-quick", _params(exp, **pk), _metrics(primary=10.0), start_time=1000)  # superseded by a re-run
    if kernels_in_mlflow:
        rid = client.create_run(exp_id("kernels-bench")).info.run_id
        client.log_text(rid, KERNEL_CSV, "bench.csv")
        client.set_terminated(rid, "FINISHED")
    return uri


def expected_primaries() -> set[float]:
    return {mk["primary"] for _, _, mk in CELLS}


_SHARED: dict[str, str] = {}


def shared_store(tmp_path_factory) -> str:
    """One synthetic store per test session (creating an SQLite MLflow store costs seconds)."""
    if "uri" not in _SHARED:
        _SHARED["uri"] = synthetic_store(tmp_path_factory.mktemp("report-store"))
    return _SHARED["uri"]
