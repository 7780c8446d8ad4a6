"""Faults tier (issue 17, cases 4 and 5): bad values and bad files are one-line errors before any
compute, and nothing is logged to MLflow."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest

from suite.config import compose
from suite.errors import SparqError

pytestmark = pytest.mark.faults

BAD_VALUES = {
    "max_grad_norm=-1": (["train.max_grad_norm=-1"], "train.max_grad_norm: must be >= 0, got -1.0"),
    "epochs=0": (["profile.epochs=0"], "profile.epochs: must be > 0 or null, got 0.0"),
    "epochs=-1": (["profile.epochs=-1"], "profile.epochs: must be > 0 or null, got -1.0"),
    "epochs=nan": (["profile.epochs=nan"], "profile.epochs: must be > 0 or null, got nan"),
    "train epochs=0": (["train.epochs=0"], "train.epochs: must be > 0, got 0.0"),
    "eval_batch_size=0": (["train.eval_batch_size=0"], "train.eval_batch_size: must be >= 1, got 0"),
    "dropout=1.5": (["train.dropout=1.5"], "train.dropout: must be [0, 1) or null, got 1.5"),
    "weight_decay<0": (["train.weight_decay=-0.01"], "train.weight_decay: must be >= 0, got -0.01"),
    "qat percentile=0": (["quant=qat", "quant.percentile=0"], "quant.percentile: 0.0; must be in (50, 100]"),
    "ptq percentile=0": (["quant=ptq", "quant.percentile=0"], "quant.percentile: 0.0; must be in (50, 100]"),
}


def _n_runs() -> int:
    return sum(len(mlflow.search_runs([e.experiment_id], output_format="list"))
               for e in mlflow.search_experiments())


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_value_is_one_line_before_compute(case):
    overrides, expected = BAD_VALUES[case]
    with pytest.raises(SparqError) as e:
        compose(["task=sst2", *overrides])
    assert str(e.value) == expected


def test_seed_abc_names_the_key_and_why(capsys):
    from suite.run import precheck

    with pytest.raises(SystemExit) as e:
        precheck(["seed=abc"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == "sparq: error: seed: Value 'abc' of type 'str' could not be converted to Integer"


def _data_dir(tmp_path: Path, data_dir: Path, name: str, split: str, content: bytes | None) -> Path:
    root = tmp_path / name
    shutil.copytree(data_dir / "glue" / "sst2", root / "glue" / "sst2")
    path = root / "glue" / "sst2" / f"{split}.tsv"
    if content is not None:
        path.write_bytes(content)
    else:  # a renamed header
        lines = path.read_bytes().split(b"\n", 1)
        path.write_bytes(lines[0].replace(b"sentence", b"text") + b"\n" + lines[1])
    return root


BAD_FILES = {
    "empty dev": ("dev", b"", "dev.tsv: empty file (expected a header line, then examples)"),
    "header-only dev": ("dev", b"sentence\tlabel\n", "dev.tsv: no examples after the header"),
    "non-UTF-8 dev": ("dev", b"sentence\tlabel\ngood\t1\nbad \xff film\t0\n",
                      "dev.tsv:3: not UTF-8 (byte 0xff at column 5)"),
    "renamed header": ("dev", None, "dev.tsv:1: header column 0 (text_a) is 'text', expected 'sentence' "
                       "(task.header_names.text_a)"),
    "empty train": ("train", b"", "train.tsv: empty file (expected a header line, then examples)"),
    "bad label": ("dev", b"sentence\tlabel\ngood\t1\nbad\tmaybe\n", "dev.tsv:3: label 'maybe' not in task.labels"),
    "short row": ("train", b"sentence\tlabel\ngood\n", "train.tsv:2: expected >= 2 tab-separated fields, got 1"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_data_file_is_named_with_its_line_and_logs_nothing(case, tmp_path, data_dir, smoke_overrides, run_cell):
    split, content, expected = BAD_FILES[case]
    root = _data_dir(tmp_path, data_dir, case.replace(" ", "_"), split, content)
    before = _n_runs()
    with pytest.raises(SparqError) as e:
        run_cell(smoke_overrides + ["task=sst2", f"data_dir={root}", "experiment_name=faults-files"])
    assert expected in str(e.value) and "\n" not in str(e.value)
    assert str(root) in str(e.value)  # the file, by its full path
    assert _n_runs() == before


def test_squad_file_that_is_not_json_names_the_line(tmp_path):
    from suite.tasks.squad import read_squad_json

    path = tmp_path / "dev-v1.1.json"
    path.write_text('{"data": [\n  {"title": "x",\n  "paragraphs": [}\n]}')
    with pytest.raises(SparqError, match=r"dev-v1.1.json:3: not JSON"):
        read_squad_json(path)
    path.write_text('{"data": []}')
    with pytest.raises(SparqError, match="no questions"):
        read_squad_json(path)


@pytest.mark.parametrize("name", ["no/such/model", "tmp/no-such-model", "./missing"])
def test_missing_relative_model_path_is_said_so_not_sent_to_the_hub(name, smoke_overrides, run_cell, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    before = _n_runs()
    overrides = [o for o in smoke_overrides if not o.startswith("model.name_or_path")]
    with pytest.raises(SparqError) as e:
        run_cell(overrides + [f"model.name_or_path={name}", "task=sst2", "experiment_name=faults-model"])
    message = str(e.value)
    assert message.startswith("model.name_or_path: ") and "\n" not in message
    assert "does not exist" in message and "connect" not in message.lower()
    assert _n_runs() == before


def test_changed_data_is_a_new_cell_and_a_new_teacher(tmp_path, data_dir, smoke_overrides, run_cell):
    """Case 1: every dev label flipped under the same task name is never answered from the old run."""
    from suite.teacher import teacher_key
    from suite.tracking import cell_id

    root = tmp_path / "flipped"
    shutil.copytree(data_dir / "glue" / "sst2", root / "glue" / "sst2")
    overrides = smoke_overrides + ["task=sst2", "seed=43", "experiment_name=faults-data"]
    first = run_cell(overrides + [f"data_dir={root}"])
    dev = root / "glue" / "sst2" / "dev.tsv"
    head, *rows = dev.read_text().splitlines()
    dev.write_text("\n".join([head] + [r[:-1] + ("0" if r.endswith("1") else "1") for r in rows]) + "\n")
    second = run_cell(overrides + [f"data_dir={root}"])
    assert second.status == "FINISHED" and second.cell_id != first.cell_id  # not SKIPPED
    assert second.metrics["eval_primary"] == pytest.approx(100 - first.metrics["eval_primary"])
    train = root / "glue" / "sst2" / "train.tsv"
    before = teacher_key(compose(overrides + [f"data_dir={root}"]))
    train.write_text(train.read_text().replace("\t1\n", "\t2\n").replace("\t0\n", "\t1\n").replace("\t2\n", "\t0\n"))
    assert teacher_key(compose(overrides + [f"data_dir={root}"])) != before
    assert cell_id(compose(overrides + [f"data_dir={root}"])) != second.cell_id
