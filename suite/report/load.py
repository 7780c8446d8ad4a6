"""The only part of the report that reads: runs from MLflow, kernel benchmarks from MLflow or CSV.

Everything downstream (tables, claims, plots, leaderboard) is a pure function of what this returns.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from suite.report.records import Cell

log = logging.getLogger("sparq.report")
KERNEL_EXPERIMENT = "kernels-bench"
KERNEL_COLUMNS = ("k", "n", "m", "sparsity", "pattern", "backend", "median_ms", "min_ms", "max_ms",
                  "speedup_vs_fp32", "cpu_flags")


@dataclass
class Store:
    """Everything the report needs, read once."""

    uri: str
    cells: list[Cell] = field(default_factory=list)
    kernel_rows: list[dict] = field(default_factory=list)
    kernel_source: str = ""  # where kernel rows came from ("mlflow:<run_id>/<path>" or a CSV path)


def load_store(uri: str, kernel_csvs: tuple[Path, ...] = (), environment: bool = True,
               kernel_experiment: str = KERNEL_EXPERIMENT) -> Store:
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # A client bound to `uri`; never mlflow.set_tracking_uri, which would also rewrite the
    # process-wide MLFLOW_TRACKING_URI.
    client = MlflowClient(uri)
    store = Store(uri)
    env_cache: dict[str, dict] = {}
    for exp in client.search_experiments():
        if exp.name == kernel_experiment:
            continue
        for run in _all_runs(client, exp.experiment_id):
            if ("model" not in run.data.params or "eval_primary" not in run.data.metrics
                    or run.data.tags.get("stage") == "upstream"):
                continue  # not a grid cell (e.g. an upstream pre-training run)
            env = _environment(client, run, env_cache) if environment else {}
            store.cells.append(Cell(run_id=run.info.run_id, experiment=exp.name,
                                    params=dict(run.data.params), metrics=dict(run.data.metrics),
                                    tags={k: v for k, v in run.data.tags.items()
                                          if not k.startswith("mlflow.")},
                                    environment=env, start_time=run.info.start_time or 0))
    store.kernel_rows, store.kernel_source = _kernel_rows(client, kernel_csvs, kernel_experiment)
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


def _environment(client, run, cache: dict[str, dict]) -> dict:
    """environment.json of a run, summarised; runs of one commit on one machine share it."""
    key = run.data.tags.get("git_sha", "") + "|" + run.data.tags.get("threads", "") + "|" + run.info.experiment_id
    if key in cache:
        return cache[key]
    env: dict = {}
    try:
        text = _read_artifact(client, run.info.run_id, "environment.json")
        env = summarise_environment(json.loads(text)) if text else {}
    except Exception as e:  # a missing or unreadable artifact leaves the summary empty
        log.debug("environment.json of %s unreadable: %s", run.info.run_id, e)
    cache[key] = env
    return env


def summarise_environment(env: dict) -> dict:
    cpu = env.get("cpu") or {}
    packages = env.get("packages") or {}
    return {"cpu_model": cpu.get("model"), "cpu_cores": cpu.get("cores"),
            "cpu_flags": " ".join(cpu.get("flags") or []), "torch_threads": env.get("torch_threads"),
            "python": env.get("python"), "torch": packages.get("torch"),
            "transformers": packages.get("transformers"), "git_sha": env.get("git_sha")}


def _read_artifact(client, run_id: str, path: str) -> str | None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(run_id, path, tmp)
        return Path(local).read_text()


def _kernel_rows(client, csvs: tuple[Path, ...], experiment: str) -> tuple[list[dict], str]:
    """Rows of the newest kernels-bench run's CSV artifact; else the first CSV that exists."""
    try:
        exp = client.get_experiment_by_name(experiment)
        if exp is not None:
            for run in client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'",
                                          order_by=["attributes.start_time DESC"], max_results=20):
                for path in _csv_artifacts(client, run.info.run_id):
                    text = _read_artifact(client, run.info.run_id, path)
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


def parse_kernel_csv(text: str) -> list[dict]:
    """Kernel bench rows with numbers parsed; rows lacking the contract columns are dropped."""
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
