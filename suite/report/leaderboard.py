"""leaderboard.json: one record per recorded cell, and its JSON Schema (leaderboard.schema.json)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from suite.report.records import Cell, Group, bits_label, is_task_metric, sparsity_label

SCHEMA_VERSION = 1

_num = {"type": ["number", "null"]}
_str = {"type": ["string", "null"]}

SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "leaderboard.schema.json",
    "title": "sparq leaderboard",
    "description": "One record per recorded grid cell (newest FINISHED MLflow run of each cell_id), rebuilt "
                   "by `python -m suite.report` from MLflow alone. Percent values are 0-100; NaN is null.",
    "type": "object",
    "required": ["schema_version", "generated_from", "records"],
    "additionalProperties": False,
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "generated_from": {"type": "string", "description": "MLflow tracking URI the records were read from"},
        "records": {"type": "array", "items": {"$ref": "#/$defs/record"}},
    },
    "$defs": {"record": {
        "type": "object",
        "additionalProperties": False,
        "required": ["run_id", "cell_id", "experiment", "paper", "profile", "model", "task", "seed", "sparsity",
                     "quant", "distill", "variant", "eval", "eval_primary", "compression", "latency_ms",
                     "environment"],
        "properties": {
            "run_id": {"type": "string", "description": "MLflow run id"},
            "cell_id": {"type": "string", "description": "tag cell_id: hash of the resolved config"},
            "experiment": {"type": "string", "description": "MLflow experiment, <experiment>-<profile>"},
            "paper": {"type": "string", "description": "param experiment (the paper grid)"},
            "profile": {"type": "string", "description": "smoke | quick | full"},
            "model": {"type": "string", "description": "param model (+ shrink options, if any)"},
            "task": {"type": "string"},
            "seed": {"type": "string"},
            "sparsity": {"type": "object", "additionalProperties": False,
                         "required": ["method", "target", "label", "measured"],
                         "properties": {"method": {"type": "string", "description": "dense | gmp | block | nm"},
                                        "target": _num, "n": {"type": ["integer", "null"]},
                                        "m": {"type": ["integer", "null"]}, "label": {"type": "string"},
                                        "measured": {**_num, "description": "metric sparsity_measured"}}},
            "quant": {"type": "object", "additionalProperties": False,
                      "required": ["method", "weight_bits", "act_bits", "label"],
                      "properties": {"method": {"type": "string", "description": "fp32 | ptq | qat"},
                                     "weight_bits": {"type": "integer"}, "act_bits": {"type": "integer"},
                                     "calibration": _str, "label": {"type": "string"}}},
            "distill": {"type": "string", "description": "none | logits | hidden"},
            "variant": {"type": "object", "additionalProperties": {"type": "string"},
                        "description": "params beyond the axes that tell apart otherwise equal cells"},
            "eval": {"type": "object", "additionalProperties": _num,
                     "description": "eval_<metric> metrics as recorded (no eval_ prefix, raw scale)"},
            "eval_primary": {**_num, "description": "the task's headline metric, percent"},
            "compression": {"type": "object", "additionalProperties": False,
                            "required": ["nominal", "packed"],
                            "properties": {"nominal": _num, "packed": _num, "encoder_bytes_packed": _num,
                                           "encoder_bytes_dense_fp32": _num}},
            "latency_ms": {"type": "object", "additionalProperties": {"type": "number"},
                           "description": "latency_ms_<backend> metrics, backend -> ms"},
            "train_seconds": _num,
            "wall_seconds": _num,
            "environment": {"type": "object", "additionalProperties": {"type": ["string", "number", "null"]},
                            "description": "tags (git_sha, suite.version, threads, data_source, train_from_dev)"
                                           " and the environment.json summary (cpu_model, cpu_flags, torch, ...)"},
        }}},
}


def _n(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _i(v) -> int | None:
    try:
        return int(float(v))
    except (TypeError, ValueError):
        return None


def record(cell: Cell, variant: dict[str, str]) -> dict:
    m, p = cell.metrics, cell.params
    env = {k: cell.tags.get(k) for k in ("git_sha", "suite.version", "threads", "data_source", "train_from_dev")}
    env.update({k: v for k, v in cell.environment.items() if isinstance(v, (str, int, float)) or v is None})
    nm = cell.nm
    return {
        "run_id": cell.run_id, "cell_id": cell.cell_id, "experiment": cell.experiment, "paper": cell.paper,
        "profile": cell.profile, "model": cell.model_label, "task": cell.task, "seed": cell.seed,
        "sparsity": {"method": cell.sparsity_method, "target": _n(cell.sparsity_target),
                     "n": nm[0] if nm else None, "m": nm[1] if nm else None,
                     "label": sparsity_label(cell.sparsity_method, cell.sparsity_target, nm),
                     "measured": _n(m.get("sparsity_measured"))},
        "quant": {"method": cell.quant_method, "weight_bits": cell.weight_bits, "act_bits": cell.act_bits,
                  "calibration": p.get("quant.calibration"),
                  "label": bits_label(cell.quant_method, cell.weight_bits, cell.act_bits)},
        "distill": cell.distill_method,
        "variant": dict(variant),
        "eval": {k.removeprefix("eval_"): _n(v) for k, v in sorted(m.items()) if is_task_metric(k)},
        "eval_primary": _n(m.get("eval_primary")),
        "compression": {"nominal": _n(m.get("compression_nominal")), "packed": _n(m.get("compression_packed")),
                        "encoder_bytes_packed": _n(m.get("encoder_bytes_packed")),
                        "encoder_bytes_dense_fp32": _n(m.get("encoder_bytes_dense_fp32"))},
        "latency_ms": {k: v for k, v in sorted(cell.latencies().items())},
        "train_seconds": _n(m.get("train_seconds")), "wall_seconds": _n(m.get("wall_seconds")),
        "environment": env,
    }


def records(groups: Sequence[Group]) -> list[dict]:
    out = [record(c, dict(g.variant_items)) for g in groups for c in g.cells]
    return sorted(out, key=lambda r: (r["experiment"], r["model"], r["task"], r["sparsity"]["label"],
                                      r["quant"]["label"], r["distill"], str(r["variant"]), r["seed"]))


def document(groups: Sequence[Group], uri: str) -> dict:
    return {"schema_version": SCHEMA_VERSION, "generated_from": uri, "records": records(groups)}
