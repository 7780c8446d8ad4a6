"""One cell end to end on the tiny model: every task in the data dir, recorded in MLflow per design.md."""

import json
import os

import mlflow
import pytest

from suite.config import compose

GLUE_IN_DATA = ["sst2", "cola", "mrpc", "qnli"]


def run_of(result):
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    return mlflow.get_run(result.run_id)


@pytest.mark.parametrize("task", GLUE_IN_DATA + ["squad"])
def test_smoke_cell_for_every_task_in_the_data_dir(task, smoke_overrides, run_cell, data_dir):
    extra = ["task.max_length=128", "task.doc_stride=64"] if task == "squad" else []
    result = run_cell([*smoke_overrides, f"task={task}", "experiment_name=smoke-tasks", "force=true", *extra])
    assert result.status == "FINISHED"
    run = run_of(result)
    m, p, t = run.data.metrics, run.data.params, run.data.tags
    assert 0.0 <= m["eval_primary"] <= 100.0
    for key in ("sparsity_measured", "compression_nominal", "compression_packed", "encoder_bytes_packed"):
        assert key in m
    assert m["sparsity_measured"] < 0.01 and m["compression_nominal"] == pytest.approx(1 / (1 - m["sparsity_measured"]))
    assert p["task"] == task and p["profile"] == "smoke" and p["seed"] == "42"
    assert p["sparsity.method"] == "dense" and p["quant.method"] == "fp32" and p["quant.weight_bits"] == "32"
    assert t["cell_id"] == result.cell_id and t["git_sha"] and t["suite.version"]
    assert t["train_from_dev"] == ("true" if task in ("qnli", "squad") else "false")
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(result.run_id)}
    assert {"config.yaml", "environment.json", "result.json"} <= artifacts


def test_environment_records_data_hashes_and_cpu(smoke_overrides, run_cell, data_dir, tmp_path):
    result = run_cell([*smoke_overrides, "task=mrpc", "experiment_name=smoke-env", "seed=3"])
    path = mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path="environment.json",
                                               dst_path=str(tmp_path))
    env = json.load(open(path))
    assert env["packages"]["torch"].startswith("2.13.0")
    hashes = {os.path.basename(k): v for k, v in env["data_files"].items()}
    # sha256 from ../shared/data/MANIFEST.md
    assert hashes["dev.tsv"] == "81c8a1a9e1dfe461dd2c1a4f98f43fe18bece44d2bf9e3d0b245b88e5aa5eaf7"
    assert env["cpu"]["cores"] >= 1 and "flags" in env["cpu"]


def test_same_seed_same_metrics_and_skip(smoke_overrides, run_cell):
    overrides = [*smoke_overrides, "task=sst2", "experiment_name=smoke-repeat", "seed=5"]
    first = run_cell(overrides)
    again = run_cell(overrides)
    assert again.status == "SKIPPED" and again.run_id == first.run_id
    forced = run_cell([*overrides, "force=true"])
    assert forced.status == "FINISHED" and forced.run_id != first.run_id
    for key in ("eval_primary", "train_loss"):
        assert forced.metrics[key] == first.metrics[key]


def test_model_name_or_path_loads_local_dir_offline(tiny_model):
    from suite.models import load_model

    cfg = compose([f"model.name_or_path={tiny_model}", "task=stsb"])
    model = load_model(cfg.model, cfg.task)
    assert model.config.num_labels == 1 and model.config.problem_type == "regression"
    assert cfg.model.label == str(tiny_model) or cfg.model.label == "minilm"
