"""The only part of the report that reads: `result.json` records (CellRecord) from MLflow, kernel
benchmarks from MLflow or CSV. A run without a record is not a result (it is counted, not guessed);
a record that does not validate (suite/report/validate.py) is skipped and named, never guessed either.

Everything downstream (tables, claims, plots, leaderboard) is a pure function of what this returns.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from suite.errors import SparqError, one_line
from suite.report.records import Cell
from suite.report.validate import InvalidRecord, Skipped, check_record, parse_record

log = logging.getLogger("sparq.report")
KERNEL_EXPERIMENT = "kernels-bench"
RECORD_ARTIFACT = "result.json"
KERNEL_COLUMNS = ("k", "n", "m", "sparsity", "pattern", "backend", "median_ms", "min_ms", "max_ms",
                  "speedup_vs_fp32", "cpu_flags")


@dataclass
class Store:
    """Everything the report needs, read once."""

    uri: str
    cells: list[Cell] = field(default_factory=list)
    kernel_rows: list[dict] = field(default_factory=list)
    kernel_source: str = ""  # where kernel rows came from ("mlflow:<run_id>/<path>" or a CSV path)
    without_record: int = 0  # FINISHED runs with no readable result.json (not results)
    records: list[dict] = field(default_factory=list)  # every record read, any kind (cells, teachers)
    latency: list[dict] = field(default_factory=list)  # latency stage reports, newest first (suite/latency)
    skipped: list[Skipped] = field(default_factory=list)  # records that failed validation, and why


@contextlib.contextmanager
def _using(uri: str):
    """Resolve runs:/ and mlflow-artifacts:/ against `uri` without touching MLFLOW_TRACKING_URI (MLflow's
    context manager can leave the variable unset on exit: it is restored here as it was)."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        from mlflow.tracking._tracking_service.utils import _use_tracking_uri
    except ImportError:  # a future MLflow without it: artifact URIs of file stores still resolve
        yield
        return
    try:
        with _use_tracking_uri(uri):
            yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before


def _record_text(uri: str, artifact_uri: str) -> str:
    import mlflow.artifacts

    with _using(uri):
        return mlflow.artifacts.load_text(f"{artifact_uri.rstrip('/')}/{RECORD_ARTIFACT}")


def read_run_record(client, uri: str, run) -> dict | None:
    """The run's record, validated (`suite.report.validate`): None when the run has no result.json
    (a stage that died early); InvalidRecord when it has one that is not a readable record."""
    try:
        text = _record_text(uri, run.info.artifact_uri)
    except Exception as e:  # noqa: BLE001 - missing, or there but unreadable: which one, asked below
        if not _has_record(client, run.info.run_id):
            return None
        raise InvalidRecord(f"{RECORD_ARTIFACT} unreadable ({type(e).__name__}: {one_line(e)[:200]})") from None
    data = parse_record(text)
    if isinstance(data, dict) and data.get("run_id") is None:
        data["run_id"] = run.info.run_id
    return check_record(data)


def _has_record(client, run_id: str) -> bool:
    try:
        return any(f.path == RECORD_ARTIFACT for f in client.list_artifacts(run_id))
    except Exception:  # noqa: BLE001 - a store that cannot list: treat the artifact as missing
        return False


def load_store(uri: str, kernel_csvs: tuple[Path, ...] = (), environment: bool = True,
               kernel_experiment: str = KERNEL_EXPERIMENT) -> Store:
    """Records of every FINISHED run (grid cells become `Cell`s); `environment` is kept for the CLI
    (the record carries its environment). A record that is not valid is skipped, named in one
    warning line (run id, experiment, why) and listed in `Store.skipped`."""
    from mlflow.exceptions import MlflowException

    del environment
    try:
        return _load_store(uri, kernel_csvs, kernel_experiment)
    except MlflowException as e:  # an unreachable server, a store MLflow cannot read
        raise SparqError(f"MLflow store {uri}: {str(e).splitlines()[0][:300]}") from None


def check_store(uri: str) -> None:
    """SparqError when `uri` names an SQLite store that does not exist (MLflow would create an empty
    one there, and the report would say nothing was ever recorded)."""
    if uri.startswith("sqlite:///") and not uri.endswith(":memory:"):
        path = Path(uri.split(":///", 1)[1])
        if not path.is_file():
            raise SparqError(f"tracking URI {uri}: no MLflow store at {path}; run a cell first, or point "
                             "MLFLOW_TRACKING_URI (or --tracking-uri) at your store")


def _load_store(uri: str, kernel_csvs: tuple[Path, ...], kernel_experiment: str) -> Store:
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = MlflowClient(uri)  # bound to `uri`, never mlflow.set_tracking_uri (process-wide)
    store = Store(uri)
    from suite.latency import EXPERIMENT as LATENCY_EXPERIMENT
    from suite.latency import load_reports

    for exp in client.search_experiments():
        if exp.name in (kernel_experiment, LATENCY_EXPERIMENT):
            continue
        for run in _all_runs(client, exp.experiment_id):
            try:
                rec = read_run_record(client, uri, run)
            except InvalidRecord as e:
                store.skipped.append(Skipped(f"run {run.info.run_id} (experiment {exp.name})", str(e)))
                log.warning("sparq: warning: %s", store.skipped[-1].line())
                continue
            if not rec or rec.get("status", "FINISHED") != "FINISHED":
                store.without_record += rec is None
                continue
            store.records.append(rec)
            if rec.get("kind", "cell") == "cell":
                store.cells.append(Cell(rec, start_time=run.info.start_time or 0))
    store.kernel_rows, store.kernel_source = _kernel_rows(client, uri, kernel_csvs, kernel_experiment)
    store.latency = load_reports(uri)
    return store


def _all_runs(client, experiment_id: str):
    token = None
    while True:
        page = client.search_runs([experiment_id], "attributes.status = 'FINISHED'",
                                  max_results=1000, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def _kernel_rows(client, uri: str, csvs: tuple[Path, ...], experiment: str) -> tuple[list[dict], str]:
    """Rows of the newest kernels-bench run's CSV artifact; else the first CSV that exists."""
    import mlflow.artifacts

    try:
        exp = client.get_experiment_by_name(experiment)
        if exp is not None:
            for run in client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'",
                                          order_by=["attributes.start_time DESC"], max_results=20):
                for path in _csv_artifacts(client, run.info.run_id):
                    with _using(uri):
                        text = mlflow.artifacts.load_text(f"{run.info.artifact_uri.rstrip('/')}/{path}")
                    rows = parse_kernel_csv(text or "")
                    if rows:
                        return rows, f"mlflow:{experiment}/{run.info.run_id}/{path}"
    except Exception as e:
        log.warning("kernel bench artifact unreadable from MLflow (%s); trying CSV", e)
    for path in csvs:
        if path.is_file():
            rows = parse_kernel_csv(path.read_text())
            if rows:
                return rows, str(path)
    return [], ""


def _csv_artifacts(client, run_id: str, prefix: str = "") -> list[str]:
    out = []
    for info in client.list_artifacts(run_id, prefix or None):
        if info.is_dir:
            out += _csv_artifacts(client, run_id, info.path)
        elif info.path.endswith(".csv") and "model" not in Path(info.path).name:
            out.append(info.path)
    return sorted(out, key=lambda p: (Path(p).name != "bench.csv", p))


def kernel_machine(row: dict) -> str:
    """The machine of a kernel bench row: its ``machine`` column, else from ``cpu_flags``
    ("AMD EPYC | llvm:znver3 | ..." -> "AMD EPYC (znver3)")."""
    if row.get("machine"):
        return str(row["machine"])
    parts = [p.strip() for p in str(row.get("cpu_flags") or "").split("|")]
    llvm = next((p[5:] for p in parts if p.startswith("llvm:")), "")
    return f"{parts[0] or 'unknown CPU'}" + (f" ({llvm})" if llvm else "")


def parse_kernel_csv(text: str) -> list[dict]:
    """Kernel bench rows with numbers parsed (``machine`` filled in from ``cpu_flags`` where the
    column is missing); rows lacking the contract columns are dropped."""
    rows = []
    for raw in csv.DictReader(io.StringIO(text)):
        if not {"backend", "sparsity", "speedup_vs_fp32"} <= raw.keys():
            return []
        row = dict(raw)
        for k in ("k", "n", "m", "median_ms", "min_ms", "max_ms", "speedup_vs_fp32"):
            try:
                row[k] = float(raw[k]) if raw.get(k) not in (None, "") else None
            except ValueError:
                row[k] = None
        row["sparsity_value"] = kernel_sparsity(raw.get("sparsity", ""))
        row["machine"] = kernel_machine(row)
        rows.append(row)
    return rows


def kernel_sparsity(text: str) -> float | None:
    """'0.9' -> 0.9, '90%' -> 0.9, '2:4' -> 0.5 (N:M keeps N of every M), 'dense' -> 0."""
    text = (text or "").strip()
    if text in ("dense", "none", ""):
        return 0.0 if text else None
    try:
        if ":" in text:
            n, m = (float(x) for x in text.split(":"))
            return 1 - n / m
        if text.endswith("%"):
            return float(text[:-1]) / 100
        return float(text)
    except ValueError:
        return None
