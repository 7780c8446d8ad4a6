"""`CellRecord`: the one typed record every MLflow run writes as its `result.json` artifact.

The report reads these records only (never params or tags), so everything a table, a claim or the
leaderboard needs is a field here. `results/cell_record.schema.json` is generated from the class
(`python -m suite.record`), never edited by hand; a test checks the shipped file is current.
Fields may be added (bump nothing); a field is never renamed or retyped without bumping
`SCHEMA_VERSION`. NaN and infinities are written as null (strict JSON).

This module imports pydantic only (no torch, no MLflow), so readers stay light.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = 1
SCHEMA_FILE = "cell_record.schema.json"
ARTIFACT = "result.json"

Kind = Literal["cell", "teacher", "upstream"]
Status = Literal["FINISHED", "FAILED", "KILLED", "RUNNING", "SKIPPED"]
Num = float | None  # NaN / inf are stored as null


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Axes(_Part):
    """What a cell is: the axes of design.md, as plain values the report groups and filters on."""

    model: str = Field(description="model label (minilm, bert_base, a hub id or local dir)")
    task: str
    profile: str = Field(description="smoke | quick | full")
    seed: int
    init: str | None = Field(None, description="where the student's weights start (e.g. pretrained, "
                             "upstream:<id>); null: the model's pretrained weights")
    budget: str | None = Field(None, description="training budget label, when an experiment sets one")
    sparsity_method: str = Field(description="the sparsity group option (dense, gmp, block, nm, ...)")
    sparsity_target: float = Field(description="nominal fraction of prunable weights removed (0 for dense)")
    sparsity_pattern: str = Field(description="mask pattern the method guarantees: dense, unstructured, "
                                  "block1x<B>, <n>:<m>")
    quant_method: str = Field(description="fp32 | ptq | qat | ...")
    weight_bits: int
    act_bits: int
    distill_method: str = Field(description="none | logits | hidden | ...")
    variant: dict[str, str] = Field(default_factory=dict, description=(
        "options that differ from their option file's defaults (conf/<group>/<method>.yaml, "
        "conf/train/default.yaml), flattened key -> value, e.g. quant.zero_preserving: 'False'; "
        "axes (method, target, bits, n, m, block) are never a variant; empty for the default recipe"))
    # Added after v1 (optional, so v1 records still validate): the methods' own words.
    sparsity_kind: str | None = Field(None, description="mask family (SparsityConfig.pattern): dense | "
                                      "unstructured | block | nm")
    sparsity_label: str | None = Field(None, description="what tables call the sparsity option, e.g. "
                                       "'gmp 90%', 'nm 2:4', 'dense'")
    quant_label: str | None = Field(None, description="what tables call the quant option, e.g. 'fp32', "
                                    "'qat w8a8'")
    ablated: list[str] = Field(default_factory=list, description=(
        "technique switches this cell turns off (QuantConfig.techniques), e.g. ['quant.zero_preserving']"))


class Compression(_Part):
    sparsity_measured: Num = None
    sparsity_after_quant: Num = None
    compression_nominal: Num = Field(None, description="32/bits x 1/density, values only (paper convention)")
    compression_packed: Num = Field(None, description="encoder_bytes_dense_fp32 / encoder_bytes_packed")
    encoder_bytes_packed: Num = None
    encoder_bytes_dense_fp32: Num = None

    @field_validator("*", mode="before")
    @classmethod
    def _nan(cls, v: Any) -> Any:
        return _finite(v)


class Latency(_Part):
    """latency_ms_<backend> (median ms of the encoder forward) plus how it was taken."""

    model_config = ConfigDict(extra="allow", json_schema_extra=lambda schema: schema.update(
        patternProperties={"^latency_ms_": schema.pop("additionalProperties")}, additionalProperties=False))
    __pydantic_extra__: dict[str, Num] = Field(init=False)  # latency_ms_<backend>: float
    kernel_path: str | None = Field(None, description="kernels.cpu.kernel_path() of the packed kernels")
    batch: int | None = None
    seq: int | None = None
    threads: int | None = None
    cpu_busy: float | None = Field(None, description="busy share (0-1) of the machine's CPUs just before "
                                   "timing, other sparq loops paused (suite/quiet.py)")
    quiet: bool | None = Field(None, description="cpu_busy was below suite.quiet.QUIET_BUSY: the machine was idle")

    @model_validator(mode="before")
    @classmethod
    def _check_extra(cls, v: Any) -> Any:
        if isinstance(v, dict):
            bad = [k for k in v if k not in cls.model_fields and not k.startswith("latency_ms_")]
            if bad:
                raise ValueError(f"latency: unknown key '{bad[0]}' (latency_ms_<backend> or "
                                 f"{', '.join(cls.model_fields)})")
            v = {k: _finite(x) for k, x in v.items()}
        return v


class Budget(_Part):
    steps: int | None = Field(None, description="optimizer steps taken")
    batch_size: int | None = None
    train_examples: int | None = None
    eval_examples: int | None = None


class DataInfo(_Part):
    source: str | None = Field(None, description="where the data came from (data dir or hub id)")
    files: dict[str, str] = Field(default_factory=dict, description="path relative to the data dir -> sha256")
    train_from_dev: bool = Field(False, description="true when train was split off dev (no train file)")


class Outcomes(_Part):
    """What the model predicted on each eval example (suite/outcomes.py): any two records with the
    same `examples` digest can be paired example by example (suite/report/intervals.py)."""

    metric: str = Field(description="suite.outcomes.METRICS key of the primary metric (accuracy, f1, mcc, "
                        "pearson, spearmanr, exact_match, squad_f1)")
    examples: str = Field(description="sha256 (16 hex) of the eval examples in order, with their labels")
    n: int = Field(description="number of eval examples")
    predictions: str | list[float] = Field(description="class ids as one digit per example, or floats "
                                           "(regression values; per-example QA scores in percent)")
    references: str | list[float] | None = Field(None, description="labels in the same form; null for QA "
                                                 "(its predictions are per-example scores)")

    @model_validator(mode="after")
    def _lengths(self) -> Outcomes:
        for name in ("predictions", "references"):
            v = getattr(self, name)
            if v is not None and len(v) != self.n:
                raise ValueError(f"outcomes.{name}: {len(v)} values for n={self.n}")
        return self


class Environment(_Part):
    """Where the numbers were made; host-free (no host name, user or absolute path)."""

    cpu_model: str | None = None
    cpu_flags: list[str] = Field(default_factory=list)
    threads: int | None = None
    torch: str | None = None
    transformers: str | None = None
    python: str | None = None


class CellRecord(_Part):
    """One MLflow run of a stage (a grid cell, a dense teacher, an upstream model)."""

    schema_version: int = SCHEMA_VERSION
    kind: Kind = "cell"
    cell_id: str = Field(description="config_hash(cfg, kind): what defines the stage's output")
    run_id: str | None = None
    experiment: str = Field(description="MLflow experiment, <experiment>-<profile>")
    status: Status = "FINISHED"
    command: str = Field(description="the command that reproduces this run, e.g. python -m suite.run ...")
    git_sha: str
    git_dirty: bool = False
    axes: Axes
    metrics: dict[str, Num] = Field(default_factory=dict, description=(
        "eval_<metric> (raw scale), eval_primary (percent) and the other numbers the run logged"))
    compression: Compression = Field(default_factory=Compression)
    latency: Latency = Field(default_factory=Latency)
    budget: Budget = Field(default_factory=Budget)
    data: DataInfo = Field(default_factory=DataInfo)
    environment: Environment = Field(default_factory=Environment)
    tags: dict[str, str] = Field(default_factory=dict, description="extra facts (teacher_key, "
                                 "upstream_cell_id, sparq_format, error, ...)")
    config: dict[str, Any] = Field(default_factory=dict, description="the resolved config (host-free)")
    outcomes: Outcomes | None = Field(None, description="per-example predictions of the eval (pairing, intervals)")

    @field_validator("metrics", mode="before")
    @classmethod
    def _nan_metrics(cls, v: Any) -> Any:
        return {k: _finite(x) for k, x in v.items()} if isinstance(v, dict) else v

    # ---- I/O
    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def to_dict(self) -> dict:
        return json.loads(self.to_json())

    @classmethod
    def from_json(cls, text: str | bytes) -> CellRecord:
        return cls.model_validate_json(text)

    @classmethod
    def json_schema(cls) -> dict:
        schema = cls.model_json_schema(mode="serialization")
        return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_FILE,
                "title": "sparq cell record", **{k: v for k, v in schema.items() if k != "title"}}


def schema_text() -> str:
    return json.dumps(CellRecord.json_schema(), indent=2, sort_keys=True) + "\n"


def write_schema(directory: Path | str | None = None) -> Path:
    """Write the JSON schema of `CellRecord` to <directory>/cell_record.schema.json (default results/)."""
    from suite.paths import RESULTS_DIR

    path = Path(directory or RESULTS_DIR) / SCHEMA_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(schema_text())
    return path


if __name__ == "__main__":
    import sys

    print(write_schema(sys.argv[1] if len(sys.argv) > 1 else None))
