"""The latency stage, apart from training: `python -m suite.latency` times every recorded cell's
exported packed model (suite/export) against its baselines on an idle machine and records, per
ratio, the median and a 95% interval over rounds (suite/latency/stats.py).

Each invocation is one MLflow run in experiment `sparq-latency` whose `latency.json` artifact is a
`LatencyReport`: the machine (CPU model, flags, kernel path, threads, versions), the settings, and
per cell (linked by cell_id and run_id) the milliseconds of each backend per round, their medians
and intervals, and the ratios packed vs torch fp32 dense of the same architecture, vs ONNX
Runtime dynamic int8 dense, vs the cell's own QDQ model under ORT and vs the size-matched dense
model where the store has one. Claims read them with `cell_ratios(load_reports(uri))`.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

EXPERIMENT = "sparq-latency"
ARTIFACT = "latency.json"
SCHEMA_VERSION = 1
MATCH_TOLERANCE = 1.1  # a dense model matches when its nonzero encoder weights <= 1.1x the cell's


class Machine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cpu_model: str | None = None
    cpu_flags: str | None = None
    kernel_path: str | None = None
    threads: int
    versions: dict[str, str | None] = Field(default_factory=dict)


class CellTiming(BaseModel):
    """One recorded cell, timed: results per shape ("b<batch>_s<seq>"): ms and ratios (Interval
    dicts), the ms of every round per backend, and the other processes' CPU share per round."""

    model_config = ConfigDict(extra="forbid")
    cell_id: str
    run_id: str
    experiment: str | None = None
    label: str = ""
    packed_format: str | None = None
    quiet: bool = Field(description="idle before timing (suite.quiet) and others under the quiet share in every round")
    cpu_busy: float | None = Field(None, description="busy share of the CPUs just before timing")
    others_busy_max: float | None = None
    results: dict[str, dict[str, Any]] = Field(default_factory=dict)
    baselines: dict[str, dict[str, Any]] = Field(default_factory=dict, description="what each baseline is")
    skipped: dict[str, str] = Field(default_factory=dict, description="baseline -> why not timed")


class LatencyReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    run_id: str | None = None
    started: float
    machine: Machine
    settings: dict[str, Any]
    cells: list[CellTiming] = Field(default_factory=list)


def nonzero_weights(record: dict) -> float:
    """Nonzero encoder Linear weights of a recorded cell (dense fp32 bytes / 4 x density)."""
    comp = record.get("compression") or {}
    dense, sparsity = comp.get("encoder_bytes_dense_fp32"), comp.get("sparsity_measured") or 0.0
    return dense / 4 * (1 - sparsity) if dense else math.nan


def is_dense_fp32(record: dict) -> bool:
    ax = record.get("axes") or {}
    return ax.get("sparsity_method") == "dense" and ax.get("quant_method") == "fp32" and record.get("kind", "cell") == "cell"


def size_matched(record: dict, records: list[dict]) -> dict | None:
    """The dense fp32 cell of the same task and profile, of a smaller model, whose nonzero encoder
    weights are the most that stay <= MATCH_TOLERANCE x the cell's (S1's pairing; the cell's own
    experiment first among equals), or None."""
    ax, mine = record.get("axes") or {}, nonzero_weights(record)
    dense_size = (record.get("compression") or {}).get("encoder_bytes_dense_fp32") or math.inf
    cands = [r for r in records if is_dense_fp32(r) and (r.get("axes") or {}).get("task") == ax.get("task")
             and (r.get("axes") or {}).get("profile") == ax.get("profile")
             and ((r.get("compression") or {}).get("encoder_bytes_dense_fp32") or math.inf) < dense_size
             and nonzero_weights(r) <= MATCH_TOLERANCE * mine]
    return max(cands, key=lambda r: (nonzero_weights(r), r.get("experiment") == record.get("experiment")),
               default=None)


def load_reports(uri: str) -> list[dict]:
    """Every `latency.json` of the store's latency runs (FINISHED), newest first."""
    import mlflow.artifacts
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        return []
    out = []
    for run in client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time DESC"], max_results=1000):
        try:
            text = mlflow.artifacts.load_text(f"{run.info.artifact_uri.rstrip('/')}/{ARTIFACT}")
        except Exception:  # noqa: BLE001 - a run that died before its artifact
            continue
        out.append(LatencyReport.model_validate(json.loads(text)).model_dump())
    return out


def cell_ratios(reports: list[dict], quiet_only: bool = True) -> dict[str, dict[str, dict]]:
    from suite.latency.stats import cell_ratios as ratios

    return ratios(reports, quiet_only)
