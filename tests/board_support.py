"""Records and boards for the board tests: CellRecords made by hand (no MLflow, no training)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from test_report_support import synthetic_outcomes

from suite.record import CellRecord

MALICIOUS = '<img src=x onerror="alert(1)"><script>alert(2)</script>&amp;'
AVX512 = ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni"]


def record(task: str = "sst2", method: str = "dense", target: float = 0.0, bits: int = 32, distill: str = "none",
           primary: float = 85.0, seed: int = 42, cpu: str = "Test CPU A", kernel_path: str | None = "avx512_vnni",
           flags: list[str] | None = None, threads: int = 2, dirty: bool = False, model: str = "minilm",
           experiment: str = "prune_ofa-quick", latency: float | None = None, n_eval: int | None = None,
           steps: int = 63, train_examples: int = 2000, command: str | None = None, **axes) -> dict:
    """One CellRecord; with `n_eval`, per-example outcomes whose accuracy is `primary`."""
    pattern = {"dense": "dense", "gmp": "unstructured", "nm": "2:4"}[method]
    quant = "fp32" if bits == 32 else "qat"
    density = 1 - target
    ident = json.dumps([task, method, target, bits, distill, seed, model, experiment, steps, train_examples, axes],
                       sort_keys=True)
    cell_id = hashlib.sha256(ident.encode()).hexdigest()[:16]
    dense_bytes = 42_550_272.0
    packed = dense_bytes * density * bits / 32 * (1.2 if method != "dense" else 1.0)
    lat = {} if latency is None else {"latency_ms_torch_fp32": latency * 2, "latency_ms_sparq": latency}
    rec = CellRecord(
        cell_id=cell_id, run_id=f"run{cell_id[:6]}{kernel_path or ''}", experiment=experiment,
        command=command or f"python -m suite.run task={task} sparsity={method} seed={seed}",
        git_sha="0123456789abcdef0123456789abcdef01234567", git_dirty=dirty,
        axes={"model": model, "task": task, "profile": experiment.rsplit("-", 1)[-1], "seed": seed,
              "sparsity_method": method, "sparsity_target": target, "sparsity_pattern": pattern,
              "quant_method": quant, "weight_bits": bits, "act_bits": 32 if bits == 32 else 8,
              "distill_method": distill, **axes},
        metrics={"eval_accuracy": primary / 100, "eval_primary": primary},
        compression={"sparsity_measured": target, "compression_nominal": 32 / bits / density,
                     "compression_packed": dense_bytes / packed, "encoder_bytes_packed": packed,
                     "encoder_bytes_dense_fp32": dense_bytes},
        latency={**lat, "kernel_path": kernel_path, "threads": threads},
        budget={"steps": steps, "batch_size": 32, "train_examples": train_examples, "eval_examples": n_eval or 500},
        environment={"cpu_model": cpu, "cpu_flags": flags if flags is not None else AVX512, "threads": threads,
                     "torch": "2.13.0+cpu", "transformers": "5.23.0", "python": "3.11.7"},
        outcomes=synthetic_outcomes(primary, n_eval, seed) if n_eval else None)
    return rec.to_dict()


def grid(cpu: str = "Test CPU A", kernel_path: str | None = "avx512_vnni", shift: float = 0.0) -> list[dict]:
    """Seven cells on two tasks: dense, 90% gmp + KD, 2:4 + 8 bits, two seeds of dense sst2."""
    kw = {"cpu": cpu, "kernel_path": kernel_path}
    return [
        record("sst2", "dense", primary=85.0 + shift, latency=10.0, **kw),
        record("sst2", "dense", primary=84.6 + shift, seed=43, latency=10.2, **kw),
        record("sst2", "gmp", 0.9, distill="logits", primary=80.0 + shift, latency=4.0, **kw),
        record("sst2", "nm", 0.5, bits=8, primary=83.0 + shift, latency=3.0, **kw),
        record("mrpc", "dense", primary=70.0 + shift, latency=10.0, **kw),
        record("mrpc", "gmp", 0.9, distill="logits", primary=68.0 + shift, latency=4.0, **kw),
        record("mrpc", "dense", primary=66.0, model=MALICIOUS, **kw),
    ]


CHANCE_SST2 = 51.0  # within the 2-point margin of sst2's chance level (50.92): a configuration at chance


def configs_grid(cpu: str = "Test CPU A", kernel_path: str | None = "avx512_vnni", shift: float = 0.0) -> list[dict]:
    """Nine configurations of 13 records with per-example outcomes (500 examples), on one machine:

    sst2, 2000 train examples, budget 1x: dense over three seeds (85.0, 84.6, 85.4), gmp 90% + KD over two
    (80.0, 80.6), 2:4 + 8 bits (83.0), gmp 95% at chance (51.0; the smallest and fastest), a distilled dense
    model without latency (its record makes no machine of its own); sst2 budget 2x: dense (86.0); mrpc: dense
    over two seeds (80.0, 79.0), gmp 90% + KD (75.0), and a dense model named MALICIOUS at chance (66.0).
    """
    kw = {"cpu": cpu, "kernel_path": kernel_path, "n_eval": 500}
    return [
        *[record("sst2", "dense", primary=p + shift, seed=s, latency=10.0, **kw)
          for s, p in ((42, 85.0), (43, 84.6), (44, 85.4))],
        *[record("sst2", "gmp", 0.9, distill="logits", primary=p + shift, seed=s, latency=4.0, **kw)
          for s, p in ((42, 80.0), (43, 80.6))],
        record("sst2", "nm", 0.5, bits=8, primary=83.0 + shift, latency=3.0, **kw),
        record("sst2", "gmp", 0.95, primary=CHANCE_SST2, latency=2.0, **kw),
        record("sst2", "dense", distill="logits", primary=84.0 + shift, **{**kw, "kernel_path": None}),
        record("sst2", "dense", primary=86.0 + shift, budget="2x", steps=126, latency=10.0, **kw),
        *[record("mrpc", "dense", primary=p + shift, seed=s, latency=10.0, **kw) for s, p in ((42, 80.0), (43, 79.0))],
        record("mrpc", "gmp", 0.9, distill="logits", primary=75.0 + shift, latency=4.0, **kw),
        record("mrpc", "dense", primary=66.0, model=MALICIOUS, **kw),
    ]


def write_board(path: Path, records: list[dict]) -> Path:
    from suite.report.leaderboard import document

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document(records, ["mlflow"])))
    return path
