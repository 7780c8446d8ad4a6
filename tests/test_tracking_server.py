"""MLFLOW_TRACKING_URI pointing at a real `mlflow server` (SQLite backend, proxied artifacts),
started on 127.0.0.1 on a free port for this test and stopped after it."""

from __future__ import annotations

import pytest
from mlflow_server import start_servers, stop_server


@pytest.fixture
def tracking_server(tmp_path, monkeypatch):
    import mlflow

    previous = mlflow.get_tracking_uri()
    [(proc, url)] = start_servers(tmp_path, timeout=180)
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        yield url
    finally:
        mlflow.set_tracking_uri(previous)  # later tests talk to the session's store again
        stop_server(proc)  # the server and its uvicorn/gunicorn workers


def test_cells_record_and_resume_through_a_tracking_server(tracking_server, smoke_overrides, run_cell, tmp_path):
    import mlflow

    overrides = smoke_overrides + ["experiment_name=server", "task=sst2", "seed=2"]
    first = run_cell(overrides)
    assert first.status == "FINISHED"
    assert mlflow.get_tracking_uri() == tracking_server
    run = mlflow.get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["cell_id"] == first.cell_id
    assert run.data.metrics["eval_primary"] == first.metrics["eval_primary"]
    artifacts = {a.path for a in mlflow.artifacts.list_artifacts(run_id=first.run_id)}
    assert {"config.yaml", "environment.json", "result.json"} <= artifacts  # proxied by the server
    assert (tmp_path / "artifacts").is_dir()
    assert run_cell(overrides).status == "SKIPPED"  # resume reads the server's records
