"""CellRecord: round trip, validation against the shipped schema, and the schema's generator."""

import json
import math

import jsonschema
import pytest
from pydantic import ValidationError

from suite.paths import RESULTS_DIR
from suite.record import SCHEMA_FILE, Axes, CellRecord, schema_text


def _record(**over) -> CellRecord:
    axes = Axes(model="minilm", task="sst2", profile="quick", seed=42, sparsity_method="nm",
                sparsity_target=0.5, sparsity_pattern="2:4", quant_method="qat", weight_bits=8, act_bits=8,
                distill_method="logits", variant={"quant.zero_preserving": "False"})
    base = dict(cell_id="0123456789abcdef", run_id="r1", experiment="prune_ofa-quick",
                command="python -m suite.run sparsity=nm quant=qat", git_sha="abc", axes=axes,
                metrics={"eval_accuracy": 0.85, "eval_primary": 85.0, "train_loss": math.nan},
                compression={"sparsity_measured": 0.5, "compression_packed": 6.1},
                latency={"latency_ms_sparq": 3.2, "kernel_path": "avx2", "batch": 1, "seq": 128, "threads": 2},
                budget={"steps": 100, "batch_size": 32, "train_examples": 2000, "eval_examples": 872},
                data={"source": "data_dir", "files": {"glue/sst2/dev.tsv": "ff" * 32}},
                environment={"cpu_model": "x", "cpu_flags": ["avx2"], "threads": 2, "torch": "2.13.0"})
    base.update(over)
    return CellRecord(**base)


def test_record_round_trips_and_validates_against_shipped_schema():
    rec = _record()
    text = rec.to_json()
    assert CellRecord.from_json(text) == rec
    data = json.loads(text)
    assert data["metrics"]["train_loss"] is None  # NaN is stored as null (strict JSON)
    shipped = json.loads((RESULTS_DIR / SCHEMA_FILE).read_text())
    jsonschema.validate(data, shipped)


def test_shipped_schema_is_generated_from_the_class():
    assert (RESULTS_DIR / SCHEMA_FILE).read_text() == schema_text(), \
        "results/cell_record.schema.json is stale: run python -m suite.record"


def test_bad_records_are_rejected_by_class_and_schema():
    shipped = json.loads((RESULTS_DIR / SCHEMA_FILE).read_text())
    good = _record().to_dict()
    for path, value in ((("kind",), "student"), (("axes", "seed"), "abc"), (("latency", "latency_us"), 1.0),
                        (("status",), "DONE"), (("axes", "colour"), "red")):
        bad = json.loads(json.dumps(good))
        node = bad
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        with pytest.raises(ValidationError):
            CellRecord.model_validate(bad)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, shipped)
    missing = {k: v for k, v in good.items() if k != "axes"}
    with pytest.raises(ValidationError):
        CellRecord.model_validate(missing)
